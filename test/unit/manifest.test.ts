import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { OciError } from '../../src/platform/oci/errors.ts';
import { parseManifest } from '../../src/platform/oci/manifest.ts';
import { isIndexType, isNonDistributableLayer, MediaType, SUPPORTED_MANIFEST_TYPES } from '../../src/platform/oci/media-types.ts';

const d = (c: string) => `sha256:${c.repeat(64)}`;
const CONFIG = { mediaType: 'application/vnd.oci.image.config.v1+json', digest: d('c'), size: 10 };
const LAYER = { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: d('1'), size: 20 };
const LAYER2 = { mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: d('2'), size: 30 };
const DOCKER_CONFIG = { mediaType: 'application/vnd.docker.container.image.v1+json', digest: d('c'), size: 10 };
const DOCKER_LAYER = { mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip', digest: d('1'), size: 20 };
const CHILD = { mediaType: MediaType.ociManifest, digest: d('a'), size: 500, platform: { os: 'linux', architecture: 'amd64' } };
const CHILD2 = { mediaType: MediaType.ociManifest, digest: d('b'), size: 501 };
const SUBJECT = { mediaType: MediaType.ociManifest, digest: d('5'), size: 321 };

function bytes(value: unknown): Uint8Array {
  return new TextEncoder().encode(typeof value === 'string' ? value : JSON.stringify(value));
}

function parse(value: unknown, contentType?: string) {
  return parseManifest(bytes(value), contentType);
}

function assertInvalid(value: unknown, contentType: string | undefined, message: RegExp): void {
  assert.throws(
    () => parse(value, contentType),
    (err: unknown) => {
      assert.ok(err instanceof OciError, `expected an OciError, got ${String(err)}`);
      assert.equal(err.code, 'MANIFEST_INVALID');
      assert.match(err.message, message);
      return true;
    },
  );
}

const ociImage = { schemaVersion: 2, mediaType: MediaType.ociManifest, config: CONFIG, layers: [LAYER, LAYER2] };
const ociIndex = { schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: [CHILD, CHILD2] };
const dockerImage = { schemaVersion: 2, mediaType: MediaType.dockerManifest, config: DOCKER_CONFIG, layers: [DOCKER_LAYER] };
const dockerList = { schemaVersion: 2, mediaType: MediaType.dockerManifestList, manifests: [{ ...CHILD, mediaType: MediaType.dockerManifest }] };

describe('parseManifest: each media type', () => {
  it('OCI image manifest: config and layers are the blobs, no child manifests', () => {
    const parsed = parse(ociImage, MediaType.ociManifest);
    assert.equal(parsed.mediaType, MediaType.ociManifest);
    assert.deepEqual(parsed.blobs, [CONFIG, LAYER, LAYER2]);
    assert.deepEqual(parsed.manifests, []);
    assert.equal(parsed.subject, null);
    assert.equal(parsed.annotations, null);
  });

  it('OCI image index: entries are child manifests, no blobs; platform is kept', () => {
    const parsed = parse(ociIndex, MediaType.ociIndex);
    assert.equal(parsed.mediaType, MediaType.ociIndex);
    assert.deepEqual(parsed.blobs, []);
    assert.deepEqual(parsed.manifests[0]?.platform, { os: 'linux', architecture: 'amd64' });
    assert.deepEqual(parsed.manifests, [CHILD, CHILD2]);
  });

  it('Docker schema 2 manifest', () => {
    const parsed = parse(dockerImage, MediaType.dockerManifest);
    assert.equal(parsed.mediaType, MediaType.dockerManifest);
    assert.deepEqual(parsed.blobs, [DOCKER_CONFIG, DOCKER_LAYER]);
    assert.equal(parsed.artifactType, DOCKER_CONFIG.mediaType);
  });

  it('Docker manifest list', () => {
    const parsed = parse(dockerList, MediaType.dockerManifestList);
    assert.equal(parsed.mediaType, MediaType.dockerManifestList);
    assert.equal(parsed.manifests.length, 1);
    assert.deepEqual(parsed.blobs, []);
  });

  it('an OCI image manifest may have an empty layers list (artifacts)', () => {
    const parsed = parse({ ...ociImage, layers: [] }, MediaType.ociManifest);
    assert.deepEqual(parsed.blobs, [CONFIG]);
  });

  it('an empty index is valid', () => {
    const parsed = parse({ schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: [] }, MediaType.ociIndex);
    assert.deepEqual(parsed.manifests, []);
  });

  it('keeps descriptor annotations and artifactType, and drops unknown descriptor fields', () => {
    const layer = { ...LAYER, annotations: { 'org.opencontainers.image.title': 'a.txt' }, artifactType: 'x/y', urls: ['http://x'] };
    const parsed = parse({ ...ociImage, layers: [layer] }, MediaType.ociManifest);
    assert.deepEqual(parsed.blobs[1], { ...LAYER, annotations: layer.annotations, artifactType: 'x/y' });
  });

  it('returns manifest annotations', () => {
    const parsed = parse({ ...ociImage, annotations: { a: '1', b: '' } }, MediaType.ociManifest);
    assert.deepEqual(parsed.annotations, { a: '1', b: '' });
  });

  it('media-type helpers agree with the parser', () => {
    assert.equal(isIndexType(MediaType.ociIndex), true);
    assert.equal(isIndexType(MediaType.dockerManifestList), true);
    assert.equal(isIndexType(MediaType.ociManifest), false);
    assert.deepEqual([...SUPPORTED_MANIFEST_TYPES].sort(), [MediaType.dockerManifest, MediaType.dockerManifestList, MediaType.ociIndex, MediaType.ociManifest].sort());
  });
});

describe('parseManifest: mediaType and Content-Type', () => {
  const cases: Array<{ label: string; body: unknown; contentType: string | undefined; expected: string }> = [
    { label: 'both given and equal', body: ociImage, contentType: MediaType.ociManifest, expected: MediaType.ociManifest },
    { label: 'Content-Type with parameters and other case', body: ociImage, contentType: `${MediaType.ociManifest.toUpperCase()}; charset=utf-8`, expected: MediaType.ociManifest },
    { label: 'only the body field (no Content-Type)', body: ociImage, contentType: undefined, expected: MediaType.ociManifest },
    { label: 'only the body field (generic application/json)', body: dockerImage, contentType: 'application/json', expected: MediaType.dockerManifest },
    { label: 'only the body field (generic application/octet-stream)', body: ociIndex, contentType: 'application/octet-stream', expected: MediaType.ociIndex },
    { label: 'only the Content-Type (image)', body: { ...ociImage, mediaType: undefined }, contentType: MediaType.ociManifest, expected: MediaType.ociManifest },
    { label: 'only the Content-Type (docker)', body: { ...dockerImage, mediaType: undefined }, contentType: MediaType.dockerManifest, expected: MediaType.dockerManifest },
    { label: 'only the Content-Type (index)', body: { ...ociIndex, mediaType: undefined }, contentType: MediaType.ociIndex, expected: MediaType.ociIndex },
    { label: 'neither: a manifests list means an OCI index', body: { ...ociIndex, mediaType: undefined }, contentType: undefined, expected: MediaType.ociIndex },
    { label: 'neither: config and layers mean an OCI image manifest', body: { ...ociImage, mediaType: undefined }, contentType: 'application/json', expected: MediaType.ociManifest },
    { label: 'empty Content-Type counts as absent', body: { ...ociImage, mediaType: undefined }, contentType: '', expected: MediaType.ociManifest },
  ];
  for (const { label, body, contentType, expected } of cases) {
    it(label, () => {
      assert.equal(parse(body, contentType).mediaType, expected);
    });
  }

  it('rejects a Content-Type that disagrees with the mediaType field', () => {
    assertInvalid(ociImage, MediaType.ociIndex, /Content-Type "application\/vnd\.oci\.image\.index\.v1\+json" does not match.*mediaType "application\/vnd\.oci\.image\.manifest\.v1\+json"/);
    assertInvalid(dockerImage, MediaType.ociManifest, /does not match/);
  });

  it('rejects a non-string mediaType', () => {
    assertInvalid({ ...ociImage, mediaType: 7 }, MediaType.ociManifest, /mediaType must be a string/);
  });

  it('rejects Docker schema 1 by field or by Content-Type', () => {
    assertInvalid({ ...dockerImage, mediaType: MediaType.dockerSchema1 }, undefined, /schema 1/);
    assertInvalid({ ...dockerImage, mediaType: undefined }, MediaType.dockerSchema1Signed, /schema 1/);
  });

  it('rejects an unsupported media type by field or by Content-Type', () => {
    assertInvalid({ ...ociImage, mediaType: 'application/vnd.example+json' }, undefined, /unsupported manifest media type "application\/vnd\.example\+json"/);
    assertInvalid({ ...ociImage, mediaType: undefined }, 'text/plain', /unsupported manifest media type "text\/plain"/);
  });
});

describe('parseManifest: artifactType and subject', () => {
  it('an image manifest without artifactType takes its config media type', () => {
    assert.equal(parse(ociImage).artifactType, CONFIG.mediaType);
  });

  it("an image manifest's own artifactType wins over the config media type", () => {
    const body = { ...ociImage, artifactType: 'application/vnd.example.sbom', config: { ...CONFIG, mediaType: MediaType.ociEmpty } };
    assert.equal(parse(body).artifactType, 'application/vnd.example.sbom');
  });

  it('an index has its own artifactType or none', () => {
    assert.equal(parse(ociIndex).artifactType, null);
    assert.equal(parse({ ...ociIndex, artifactType: 'application/vnd.example.bundle' }).artifactType, 'application/vnd.example.bundle');
  });

  it('parses a subject descriptor on an image manifest and on an index', () => {
    assert.deepEqual(parse({ ...ociImage, subject: SUBJECT }).subject, SUBJECT);
    assert.deepEqual(parse({ ...ociIndex, subject: SUBJECT }).subject, SUBJECT);
  });

  it('rejects a non-string artifactType', () => {
    assertInvalid({ ...ociImage, artifactType: 1 }, undefined, /^artifactType must be a string/);
  });

  it('rejects a malformed subject', () => {
    assertInvalid({ ...ociImage, subject: 'sha256:x' }, undefined, /^subject must be a descriptor object/);
    assertInvalid({ ...ociImage, subject: { ...SUBJECT, digest: 'nope' } }, undefined, /^subject\.digest is not a valid digest/);
  });
});

describe('parseManifest: non-distributable layers', () => {
  const foreign = [
    'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
    'application/vnd.oci.image.layer.nondistributable.v1.tar',
    'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
    'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd',
  ];
  for (const mediaType of foreign) {
    it(`${mediaType} is not a blob that must exist`, () => {
      assert.equal(isNonDistributableLayer(mediaType), true);
      const layer = { mediaType, digest: d('f'), size: 99, urls: ['https://example.com/layer'] };
      const parsed = parse({ ...ociImage, layers: [LAYER, layer, LAYER2] });
      assert.deepEqual(parsed.blobs.map((b) => b.digest), [CONFIG.digest, LAYER.digest, LAYER2.digest]);
    });
  }

  it('ordinary layers are distributable', () => {
    assert.equal(isNonDistributableLayer(LAYER.mediaType), false);
    assert.equal(isNonDistributableLayer(DOCKER_LAYER.mediaType), false);
  });

  it('a Docker manifest whose only layer is foreign is valid and needs only its config', () => {
    const layer = { mediaType: 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip', digest: d('f'), size: 99 };
    assert.deepEqual(parse({ ...dockerImage, layers: [layer] }).blobs, [DOCKER_CONFIG]);
  });
});

describe('parseManifest: MANIFEST_INVALID', () => {
  const cases: Array<{ label: string; body: unknown; contentType?: string; message: RegExp }> = [
    { label: 'not JSON', body: '{"schemaVersion": 2,', message: /not valid JSON/ },
    { label: 'empty body', body: '', message: /not valid JSON/ },
    { label: 'a JSON array', body: [ociImage], message: /must be a JSON object/ },
    { label: 'JSON null', body: 'null', message: /must be a JSON object/ },
    { label: 'a JSON string', body: '"manifest"', message: /must be a JSON object/ },
    { label: 'schemaVersion missing', body: { ...ociImage, schemaVersion: undefined }, message: /schemaVersion must be 2/ },
    { label: 'schemaVersion 1', body: { ...ociImage, schemaVersion: 1 }, message: /schemaVersion must be 2/ },
    { label: 'schemaVersion as text', body: { ...ociImage, schemaVersion: '2' }, message: /schemaVersion must be 2/ },
    { label: 'manifest annotations not a map', body: { ...ociImage, annotations: ['a'] }, message: /^manifest\.annotations must be a map of strings/ },
    { label: 'manifest annotation value not a string', body: { ...ociImage, annotations: { a: 1 } }, message: /^manifest\.annotations must be a map of strings/ },
    { label: 'an index with layers', body: { ...ociIndex, layers: [LAYER] }, message: /an index has no config or layers/ },
    { label: 'an index with a config', body: { ...ociIndex, config: CONFIG }, message: /an index has no config or layers/ },
    { label: 'an index without manifests', body: { schemaVersion: 2, mediaType: MediaType.ociIndex }, message: /^manifests must be an array/ },
    { label: 'an index whose manifests is an object', body: { ...ociIndex, manifests: { a: CHILD } }, message: /^manifests must be an array/ },
    { label: 'an index entry that is not an object', body: { ...ociIndex, manifests: [CHILD, 'x'] }, message: /^manifests\[1\] must be a descriptor object/ },
    { label: 'an image manifest with a manifests list', body: { ...ociImage, manifests: [CHILD] }, message: /an image manifest has no manifests list/ },
    { label: 'an image manifest without config', body: { ...ociImage, config: undefined }, message: /^config must be a descriptor object/ },
    { label: 'layers not an array', body: { ...ociImage, layers: LAYER }, message: /^layers must be an array/ },
    { label: 'a Docker manifest without layers', body: { ...dockerImage, layers: undefined }, message: /^layers must be an array/ },
    { label: 'a Docker manifest with no layers', body: { ...dockerImage, layers: [] }, message: /needs at least one layer/ },
    { label: 'descriptor mediaType missing', body: { ...ociImage, config: { ...CONFIG, mediaType: undefined } }, message: /^config\.mediaType is required/ },
    { label: 'descriptor mediaType empty', body: { ...ociImage, layers: [{ ...LAYER, mediaType: '' }] }, message: /^layers\[0\]\.mediaType is required/ },
    { label: 'descriptor digest missing', body: { ...ociImage, layers: [LAYER, { ...LAYER2, digest: undefined }] }, message: /^layers\[1\]\.digest is not a valid digest/ },
    { label: 'descriptor digest malformed', body: { ...ociImage, config: { ...CONFIG, digest: 'sha256:abc' } }, message: /^config\.digest is not a valid digest/ },
    { label: 'descriptor digest uppercase', body: { ...ociImage, config: { ...CONFIG, digest: CONFIG.digest.toUpperCase() } }, message: /^config\.digest is not a valid digest/ },
    { label: 'descriptor size missing', body: { ...ociImage, config: { ...CONFIG, size: undefined } }, message: /^config\.size must be a non-negative integer/ },
    { label: 'descriptor size negative', body: { ...ociImage, layers: [{ ...LAYER, size: -1 }] }, message: /^layers\[0\]\.size must be a non-negative integer/ },
    { label: 'descriptor size fractional', body: { ...ociImage, layers: [{ ...LAYER, size: 1.5 }] }, message: /size must be a non-negative integer/ },
    { label: 'descriptor size as text', body: { ...ociImage, layers: [{ ...LAYER, size: '20' }] }, message: /size must be a non-negative integer/ },
    { label: 'descriptor size beyond 2^53', body: { ...ociImage, layers: [{ ...LAYER, size: 2 ** 53 }] }, message: /size must be a non-negative integer/ },
    { label: 'descriptor artifactType not a string', body: { ...ociIndex, manifests: [{ ...CHILD, artifactType: false }] }, message: /^manifests\[0\]\.artifactType must be a string/ },
    { label: 'descriptor annotations not strings', body: { ...ociImage, layers: [{ ...LAYER, annotations: { a: null } }] }, message: /^layers\[0\]\.annotations must be a map of strings/ },
  ];
  for (const { label, body, contentType, message } of cases) {
    it(`rejects ${label}`, () => assertInvalid(body, contentType, message));
  }

  it('accepts a size of zero', () => {
    assert.equal(parse({ ...ociImage, layers: [{ ...LAYER, size: 0 }] }).blobs[1]?.size, 0);
  });

  it('parses bytes from a view into a larger buffer', () => {
    const whole = new TextEncoder().encode(`xx${JSON.stringify(ociImage)}yy`);
    const view = whole.subarray(2, whole.length - 2);
    assert.equal(parseManifest(view, undefined).mediaType, MediaType.ociManifest);
  });
});
