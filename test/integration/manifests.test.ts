/**
 * Manifest PUT/GET/HEAD/DELETE over a real socket, on every database backend: each manifest
 * kind, the response headers, conditional GETs, content negotiation, digests, validation of
 * bad input, size limits, reference checks, `subject`, and tag movement and deletion.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { BACKENDS } from '../helpers/backends.ts';
import { imageManifest, OCI_CONFIG, OCI_EMPTY, OCI_INDEX, OCI_LAYER, OCI_MANIFEST, pushBlob, putManifest, randomBlob, sha256, sha512 } from '../helpers/oci.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';

const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';
const DOCKER_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json';
const DOCKER_CONFIG = 'application/vnd.docker.container.image.v1+json';
const DOCKER_LAYER = 'application/vnd.docker.image.rootfs.diff.tar.gzip';
const SCHEMA1 = 'application/vnd.docker.distribution.manifest.v1+prettyjws';

/** Asserts a registry error: status, the API version header, the spec's body shape and the code. */
async function assertError(res: Response, status: number, code: string): Promise<void> {
  const text = await res.text();
  assert.equal(res.status, status, `expected ${status} ${code}, got ${res.status}: ${text}`);
  assert.equal(res.headers.get('docker-distribution-api-version'), 'registry/2.0');
  assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
  const body = JSON.parse(text) as { errors: Array<{ code: string; message: string }> };
  assert.ok(Array.isArray(body.errors) && body.errors.length >= 1, text);
  assert.equal(body.errors[0]?.code, code, text);
  assert.equal(typeof body.errors[0]?.message, 'string');
}

function json(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value));
}

/** Pushes a Docker schema 2 image's blobs and returns its manifest bytes (not pushed). */
async function dockerManifest(base: string, name: string): Promise<Buffer> {
  const config = await pushBlob(base, name, json({ architecture: 'arm64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] }, n: Math.random() }));
  const layer = await pushBlob(base, name, randomBlob(700));
  return json({
    schemaVersion: 2,
    mediaType: DOCKER_MANIFEST,
    config: { mediaType: DOCKER_CONFIG, digest: config.digest, size: config.size },
    layers: [{ mediaType: DOCKER_LAYER, digest: layer.digest, size: layer.size }],
  });
}

/** Pushes children by digest, returns the index bytes listing them (not pushed). */
async function pushChildren(base: string, name: string, children: Array<{ bytes: Buffer; mediaType: string }>) {
  const descriptors = [];
  for (const [i, child] of children.entries()) {
    const res = await putManifest(base, name, sha256(child.bytes), child.bytes, child.mediaType);
    assert.equal(res.status, 201, await res.text());
    descriptors.push({ mediaType: child.mediaType, digest: sha256(child.bytes), size: child.bytes.length, platform: { architecture: i === 0 ? 'amd64' : 'arm64', os: 'linux' } });
  }
  return descriptors;
}

async function expectStored(base: string, name: string, reference: string, bytes: Buffer, mediaType: string): Promise<void> {
  const digest = sha256(bytes);
  const res = await fetch(`${base}/v2/${name}/manifests/${reference}`);
  const body = Buffer.from(await res.arrayBuffer());
  assert.equal(res.status, 200, body.toString());
  assert.deepEqual(body, bytes, 'GET returns the exact bytes that were pushed');
  assert.equal(res.headers.get('content-type'), mediaType);
  assert.equal(res.headers.get('docker-content-digest'), digest);
  assert.equal(res.headers.get('etag'), `"${digest}"`);
  assert.equal(res.headers.get('content-length'), String(bytes.length));
  assert.equal(res.headers.get('docker-distribution-api-version'), 'registry/2.0');

  const head = await fetch(`${base}/v2/${name}/manifests/${reference}`, { method: 'HEAD' });
  assert.equal(head.status, 200);
  assert.equal(head.headers.get('content-type'), mediaType);
  assert.equal(head.headers.get('docker-content-digest'), digest);
  assert.equal(head.headers.get('content-length'), String(bytes.length));
  assert.equal((await head.arrayBuffer()).byteLength, 0);
}

for (const backend of BACKENDS) {
  describe(`manifests (${backend})`, () => {
    let server: TestServer;
    let base: string;
    before(async () => {
      server = await startTestServer(backend);
      base = server.url;
    });
    after(() => server.close());

    const kinds: Array<{ kind: string; mediaType: string; build: (name: string) => Promise<Buffer> }> = [
      { kind: 'OCI image manifest', mediaType: OCI_MANIFEST, build: async (name) => (await imageManifest(base, name, { layers: 2 })).bytes },
      {
        kind: 'OCI index (children pushed first)',
        mediaType: OCI_INDEX,
        build: async (name) => {
          const a = await imageManifest(base, name);
          const b = await imageManifest(base, name);
          const manifests = await pushChildren(base, name, [{ bytes: a.bytes, mediaType: OCI_MANIFEST }, { bytes: b.bytes, mediaType: OCI_MANIFEST }]);
          return json({ schemaVersion: 2, mediaType: OCI_INDEX, manifests, annotations: { 'org.example': 'index' } });
        },
      },
      { kind: 'Docker schema 2 manifest', mediaType: DOCKER_MANIFEST, build: (name) => dockerManifest(base, name) },
      {
        kind: 'Docker manifest list',
        mediaType: DOCKER_LIST,
        build: async (name) => {
          const manifests = await pushChildren(base, name, [
            { bytes: await dockerManifest(base, name), mediaType: DOCKER_MANIFEST },
            { bytes: await dockerManifest(base, name), mediaType: DOCKER_MANIFEST },
          ]);
          return json({ schemaVersion: 2, mediaType: DOCKER_LIST, manifests });
        },
      },
      {
        kind: 'artifact manifest (artifactType, empty config)',
        mediaType: OCI_MANIFEST,
        build: async (name) => {
          const empty = await pushBlob(base, name, Buffer.from('{}'));
          assert.equal(empty.digest, 'sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a');
          const payload = await pushBlob(base, name, Buffer.from('{"spdxVersion":"SPDX-2.3"}'));
          return json({
            schemaVersion: 2,
            mediaType: OCI_MANIFEST,
            artifactType: 'application/spdx+json',
            config: { mediaType: OCI_EMPTY, digest: empty.digest, size: 2, data: 'e30=' },
            layers: [{ mediaType: 'application/spdx+json', digest: payload.digest, size: payload.size }],
          });
        },
      },
    ];

    for (const [i, { kind, mediaType, build }] of kinds.entries()) {
      it(`${kind}: PUT, GET, HEAD, conditional GET and DELETE by tag and by digest`, async () => {
        const name = `kinds/k${i}`;
        const bytes = await build(name);
        const digest = sha256(bytes);

        const put = await putManifest(base, name, 'v1', bytes, mediaType);
        assert.equal(put.status, 201, await put.text());
        assert.equal(put.headers.get('docker-content-digest'), digest);
        assert.equal(put.headers.get('location'), `/v2/${name}/manifests/${digest}`);
        assert.equal(put.headers.get('oci-subject'), null);

        await expectStored(base, name, 'v1', bytes, mediaType);
        await expectStored(base, name, digest, bytes, mediaType);

        for (const method of ['GET', 'HEAD']) {
          const cached = await fetch(`${base}/v2/${name}/manifests/v1`, { method, headers: { 'if-none-match': `"${digest}"` } });
          assert.equal(cached.status, 304);
          assert.equal((await cached.arrayBuffer()).byteLength, 0);
          const stale = await fetch(`${base}/v2/${name}/manifests/v1`, { method, headers: { 'if-none-match': `"sha256:${'0'.repeat(64)}"` } });
          assert.equal(stale.status, 200);
          await stale.arrayBuffer();
        }

        const untag = await fetch(`${base}/v2/${name}/manifests/v1`, { method: 'DELETE' });
        assert.equal(untag.status, 202);
        await assertError(await fetch(`${base}/v2/${name}/manifests/v1`), 404, 'MANIFEST_UNKNOWN');
        await expectStored(base, name, digest, bytes, mediaType);

        const del = await fetch(`${base}/v2/${name}/manifests/${digest}`, { method: 'DELETE' });
        assert.equal(del.status, 202);
        await assertError(await fetch(`${base}/v2/${name}/manifests/${digest}`), 404, 'MANIFEST_UNKNOWN');
        const head = await fetch(`${base}/v2/${name}/manifests/${digest}`, { method: 'HEAD' });
        assert.equal(head.status, 404);
        await assertError(await fetch(`${base}/v2/${name}/manifests/${digest}`, { method: 'DELETE' }), 404, 'MANIFEST_UNKNOWN');
      });
    }

    it('PUT by digest stores the manifest without a tag', async () => {
      const { bytes } = await imageManifest(base, 'bydigest/app');
      const digest = sha256(bytes);
      const put = await putManifest(base, 'bydigest/app', digest, bytes);
      assert.equal(put.status, 201);
      assert.equal(put.headers.get('docker-content-digest'), digest);
      assert.equal(put.headers.get('location'), `/v2/bydigest/app/manifests/${digest}`);
      await expectStored(base, 'bydigest/app', digest, bytes, OCI_MANIFEST);
      const tags = await (await fetch(`${base}/v2/bydigest/app/tags/list`)).json();
      assert.deepEqual(tags, { name: 'bydigest/app', tags: [] });
    });

    it('PUT by a sha512 digest works and is served with that digest', async () => {
      const { bytes } = await imageManifest(base, 'sha512/app');
      const digest = sha512(bytes);
      const put = await putManifest(base, 'sha512/app', digest, bytes);
      assert.equal(put.status, 201, await put.text());
      assert.equal(put.headers.get('docker-content-digest'), digest);
      assert.equal(put.headers.get('location'), `/v2/sha512/app/manifests/${digest}`);
      const res = await fetch(`${base}/v2/sha512/app/manifests/${digest}`);
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('docker-content-digest'), digest);
      assert.deepEqual(Buffer.from(await res.arrayBuffer()), bytes);
      const wrong = sha512(Buffer.concat([bytes, Buffer.from(' ')]));
      await assertError(await putManifest(base, 'sha512/app', wrong, bytes), 400, 'DIGEST_INVALID');
    });

    it('PUT by a digest that does not match the content is 400 DIGEST_INVALID and stores nothing', async () => {
      const { bytes } = await imageManifest(base, 'wrongdigest/app');
      const wrong = sha256('something else');
      await assertError(await putManifest(base, 'wrongdigest/app', wrong, bytes), 400, 'DIGEST_INVALID');
      await assertError(await fetch(`${base}/v2/wrongdigest/app/manifests/${wrong}`), 404, 'MANIFEST_UNKNOWN');
      await assertError(await fetch(`${base}/v2/wrongdigest/app/manifests/${sha256(bytes)}`), 404, 'MANIFEST_UNKNOWN');
    });

    it('serves the stored manifest whatever the Accept header lists (never 404)', async () => {
      const { bytes } = await imageManifest(base, 'negotiate/app');
      assert.equal((await putManifest(base, 'negotiate/app', 'latest', bytes)).status, 201);
      for (const accept of [DOCKER_MANIFEST, `${DOCKER_MANIFEST}, ${DOCKER_LIST}`, 'application/json', 'text/plain;q=0.1', `${OCI_INDEX}`]) {
        const res = await fetch(`${base}/v2/negotiate/app/manifests/latest`, { headers: { accept } });
        assert.equal(res.status, 200, `Accept: ${accept}`);
        assert.equal(res.headers.get('content-type'), OCI_MANIFEST);
        assert.deepEqual(Buffer.from(await res.arrayBuffer()), bytes);
      }
    });

    it('a Content-Type that disagrees with the mediaType field is 400 MANIFEST_INVALID', async () => {
      const { bytes } = await imageManifest(base, 'ctype/app');
      await assertError(await putManifest(base, 'ctype/app', 'v1', bytes, DOCKER_MANIFEST), 400, 'MANIFEST_INVALID');
      await assertError(await putManifest(base, 'ctype/app', 'v1', bytes, OCI_INDEX), 400, 'MANIFEST_INVALID');
      await assertError(await fetch(`${base}/v2/ctype/app/manifests/v1`), 404, 'MANIFEST_UNKNOWN');
    });

    it('malformed manifests are 400 MANIFEST_INVALID and nothing is stored', async () => {
      const name = 'invalid/app';
      const { manifest } = await imageManifest(base, name);
      const cases: Array<[string, Buffer | string, string?]> = [
        ['not JSON', '{"schemaVersion": 2,'],
        ['empty body', ''],
        ['a JSON array', '[]'],
        ['a JSON string', '"manifest"'],
        ['null', 'null'],
        ['schemaVersion 1', json({ ...manifest, schemaVersion: 1 })],
        ['schemaVersion "2"', json({ ...manifest, schemaVersion: '2' })],
        ['no schemaVersion', json({ ...manifest, schemaVersion: undefined })],
        ['missing config', json({ ...manifest, config: undefined })],
        ['config not an object', json({ ...manifest, config: 'sha256:abc' })],
        ['config with a bad digest', json({ ...manifest, config: { ...manifest.config, digest: 'sha256:xyz' } })],
        ['config with a negative size', json({ ...manifest, config: { ...manifest.config, size: -1 } })],
        ['config with a fractional size', json({ ...manifest, config: { ...manifest.config, size: 1.5 } })],
        ['config without mediaType', json({ ...manifest, config: { digest: manifest.config.digest, size: manifest.config.size } })],
        ['layers not an array', json({ ...manifest, layers: { 0: manifest.layers[0] } })],
        ['a layer with a bad digest', json({ ...manifest, layers: [{ ...manifest.layers[0], digest: 'md5:d41d8cd98f00b204e9800998ecf8427e' }] })],
        ['a layer with a negative size', json({ ...manifest, layers: [{ ...manifest.layers[0], size: -5 }] })],
        ['annotations that are not strings', json({ ...manifest, annotations: { a: 1 } })],
        ['an image manifest with a manifests list', json({ ...manifest, manifests: [] })],
        ['an index with layers', json({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: [], layers: [] }), OCI_INDEX],
        ['an index whose manifests is not an array', json({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: 'none' }), OCI_INDEX],
        ['an unknown media type', json({ ...manifest, mediaType: 'application/vnd.example.thing+json' }), 'application/vnd.example.thing+json'],
        ['a schema 1 media type', json({ ...manifest, mediaType: SCHEMA1 }), SCHEMA1],
        ['a schema 1 manifest', json({ schemaVersion: 1, name, tag: 'v1', architecture: 'amd64', fsLayers: [], history: [] }), SCHEMA1],
        ['a Docker manifest without layers', json({ ...manifest, mediaType: DOCKER_MANIFEST, layers: [] }), DOCKER_MANIFEST],
      ];
      for (const [label, body, contentType] of cases) {
        const bytes = typeof body === 'string' ? Buffer.from(body) : body;
        const res = await putManifest(base, name, 'v1', bytes, contentType ?? OCI_MANIFEST);
        await assertError(res, 400, 'MANIFEST_INVALID').catch((err: Error) => {
          throw new Error(`${label}: ${err.message}`);
        });
      }
      await assertError(await fetch(`${base}/v2/${name}/manifests/v1`), 404, 'MANIFEST_UNKNOWN');
    });

    it('a manifest referencing a missing blob is 400 MANIFEST_BLOB_UNKNOWN and no tag is created', async () => {
      const { manifest } = await imageManifest(base, 'missing/app');
      const absent = sha256('never pushed');
      const bytes = json({ ...manifest, layers: [...manifest.layers, { mediaType: OCI_LAYER, digest: absent, size: 12 }] });
      await assertError(await putManifest(base, 'missing/app', 'v1', bytes), 400, 'MANIFEST_BLOB_UNKNOWN');
      await assertError(await fetch(`${base}/v2/missing/app/manifests/v1`), 404, 'MANIFEST_UNKNOWN');
      await assertError(await fetch(`${base}/v2/missing/app/manifests/${sha256(bytes)}`), 404, 'MANIFEST_UNKNOWN');
      const missingConfig = json({ ...manifest, config: { mediaType: OCI_CONFIG, digest: absent, size: 12 } });
      await assertError(await putManifest(base, 'missing/app', 'v1', missingConfig), 400, 'MANIFEST_BLOB_UNKNOWN');
      const tags = (await (await fetch(`${base}/v2/missing/app/tags/list`)).json()) as { tags: string[] };
      assert.deepEqual(tags.tags, []);
    });

    it('non-distributable layers need not be present', async () => {
      const { manifest } = await imageManifest(base, 'foreign/app');
      const bytes = json({
        ...manifest,
        layers: [...manifest.layers, { mediaType: 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip', digest: sha256('foreign'), size: 7, urls: ['https://example.com/layer'] }],
      });
      assert.equal((await putManifest(base, 'foreign/app', 'v1', bytes)).status, 201);
    });

    it('an index referencing a missing child manifest is 400 and nothing is stored', async () => {
      const child = await imageManifest(base, 'missingchild/app');
      const bytes = json({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: [{ mediaType: OCI_MANIFEST, digest: sha256(child.bytes), size: child.bytes.length }] });
      await assertError(await putManifest(base, 'missingchild/app', 'v1', bytes, OCI_INDEX), 400, 'MANIFEST_BLOB_UNKNOWN');
      await assertError(await fetch(`${base}/v2/missingchild/app/manifests/v1`), 404, 'MANIFEST_UNKNOWN');
    });

    it('a blob or child manifest linked only in another repository does not satisfy the reference check', async () => {
      const { bytes } = await imageManifest(base, 'other/source');
      assert.equal((await putManifest(base, 'other/source', 'v1', bytes)).status, 201);
      await assertError(await putManifest(base, 'other/target', 'v1', bytes), 400, 'MANIFEST_BLOB_UNKNOWN');
      const index = json({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: [{ mediaType: OCI_MANIFEST, digest: sha256(bytes), size: bytes.length }] });
      await assertError(await putManifest(base, 'other/target', 'v1', index, OCI_INDEX), 400, 'MANIFEST_BLOB_UNKNOWN');
      // The refused pushes left nothing behind, not even the repository.
      await assertError(await fetch(`${base}/v2/other/target/manifests/v1`), 404, 'NAME_UNKNOWN');
      await assertError(await fetch(`${base}/v2/other/target/tags/list`), 404, 'NAME_UNKNOWN');
      // Nor can a manifest be read by digest through a repository that does not hold it.
      await pushBlob(base, 'other/target', Buffer.from('unrelated'));
      await assertError(await fetch(`${base}/v2/other/target/manifests/${sha256(bytes)}`), 404, 'MANIFEST_UNKNOWN');
    });

    it('DELETE by digest removes the manifest and every tag pointing at it', async () => {
      const { bytes } = await imageManifest(base, 'deltags/app');
      const digest = sha256(bytes);
      for (const tag of ['a', 'b', 'c']) assert.equal((await putManifest(base, 'deltags/app', tag, bytes)).status, 201);
      const other = await imageManifest(base, 'deltags/app');
      assert.equal((await putManifest(base, 'deltags/app', 'keep', other.bytes)).status, 201);
      assert.equal((await fetch(`${base}/v2/deltags/app/manifests/${digest}`, { method: 'DELETE' })).status, 202);
      for (const tag of ['a', 'b', 'c', digest]) await assertError(await fetch(`${base}/v2/deltags/app/manifests/${tag}`), 404, 'MANIFEST_UNKNOWN');
      assert.deepEqual(await (await fetch(`${base}/v2/deltags/app/tags/list`)).json(), { name: 'deltags/app', tags: ['keep'] });
      await expectStored(base, 'deltags/app', 'keep', other.bytes, OCI_MANIFEST);
    });

    it('DELETE of a tag removes only that tag', async () => {
      const { bytes } = await imageManifest(base, 'deltag/app');
      for (const tag of ['one', 'two']) assert.equal((await putManifest(base, 'deltag/app', tag, bytes)).status, 201);
      assert.equal((await fetch(`${base}/v2/deltag/app/manifests/one`, { method: 'DELETE' })).status, 202);
      await assertError(await fetch(`${base}/v2/deltag/app/manifests/one`), 404, 'MANIFEST_UNKNOWN');
      await expectStored(base, 'deltag/app', 'two', bytes, OCI_MANIFEST);
      await expectStored(base, 'deltag/app', sha256(bytes), bytes, OCI_MANIFEST);
      await assertError(await fetch(`${base}/v2/deltag/app/manifests/one`, { method: 'DELETE' }), 404, 'MANIFEST_UNKNOWN');
    });

    it('re-PUT of a tag moves it to the new manifest; the old one stays by digest', async () => {
      const first = await imageManifest(base, 'move/app');
      const second = await imageManifest(base, 'move/app');
      assert.equal((await putManifest(base, 'move/app', 'latest', first.bytes)).status, 201);
      assert.equal((await putManifest(base, 'move/app', 'latest', second.bytes)).status, 201);
      await expectStored(base, 'move/app', 'latest', second.bytes, OCI_MANIFEST);
      await expectStored(base, 'move/app', sha256(first.bytes), first.bytes, OCI_MANIFEST);
      // Pushing identical bytes again is idempotent.
      const again = await putManifest(base, 'move/app', 'latest', second.bytes);
      assert.equal(again.status, 201);
      assert.equal(again.headers.get('docker-content-digest'), sha256(second.bytes));
      assert.deepEqual(await (await fetch(`${base}/v2/move/app/tags/list`)).json(), { name: 'move/app', tags: ['latest'] });
    });

    it('tags at the limits of the grammar: 128 characters and a leading underscore are fine, others are 400 TAG_INVALID', async () => {
      const { bytes } = await imageManifest(base, 'tagrules/app');
      for (const tag of ['a'.repeat(128), '_under', 'V1.2-rc_3']) {
        assert.equal((await putManifest(base, 'tagrules/app', tag, bytes)).status, 201, tag);
        await expectStored(base, 'tagrules/app', tag, bytes, OCI_MANIFEST);
      }
      for (const tag of ['-bad', '.bad', 'a'.repeat(129), 'sp%20ace', 'bad%2Bplus']) {
        await assertError(await putManifest(base, 'tagrules/app', tag, bytes), 400, 'TAG_INVALID');
        await assertError(await fetch(`${base}/v2/tagrules/app/manifests/${tag}`), 400, 'TAG_INVALID');
      }
    });

    it('unknown tag is 404 MANIFEST_UNKNOWN; unknown repository is 404 NAME_UNKNOWN', async () => {
      const { bytes } = await imageManifest(base, 'known/app');
      assert.equal((await putManifest(base, 'known/app', 'v1', bytes)).status, 201);
      await assertError(await fetch(`${base}/v2/known/app/manifests/nope`), 404, 'MANIFEST_UNKNOWN');
      await assertError(await fetch(`${base}/v2/known/app/manifests/${sha256('nope')}`), 404, 'MANIFEST_UNKNOWN');
      await assertError(await fetch(`${base}/v2/known/app/manifests/nope`, { method: 'DELETE' }), 404, 'MANIFEST_UNKNOWN');
      // The spec's NAME_UNKNOWN: "repository name not known to registry".
      await assertError(await fetch(`${base}/v2/never/pushed/manifests/latest`), 404, 'NAME_UNKNOWN');
      await assertError(await fetch(`${base}/v2/never/pushed/manifests/${sha256('x')}`), 404, 'NAME_UNKNOWN');
      await assertError(await fetch(`${base}/v2/never/pushed/manifests/latest`, { method: 'DELETE' }), 404, 'NAME_UNKNOWN');
      const head = await fetch(`${base}/v2/never/pushed/manifests/latest`, { method: 'HEAD' });
      assert.equal(head.status, 404);
      assert.equal((await head.arrayBuffer()).byteLength, 0);
    });

    it('bad digests and names in the URL are 400, never 500', async () => {
      const { bytes } = await imageManifest(base, 'badref/app');
      for (const reference of ['sha256:abc', `sha256:${'A'.repeat(64)}`, `md5:${'0'.repeat(32)}`, `sha256:${'0'.repeat(63)}`, 'foo:bar']) {
        await assertError(await fetch(`${base}/v2/badref/app/manifests/${reference}`), 400, 'DIGEST_INVALID');
        await assertError(await putManifest(base, 'badref/app', reference, bytes), 400, 'DIGEST_INVALID');
        await assertError(await fetch(`${base}/v2/badref/app/manifests/${reference}`, { method: 'DELETE' }), 400, 'DIGEST_INVALID');
      }
      for (const name of ['Upper/app', 'a//b', 'trailing-', '_lead']) {
        await assertError(await putManifest(base, name, 'v1', bytes), 400, 'NAME_INVALID');
        await assertError(await fetch(`${base}/v2/${name}/manifests/v1`), 400, 'NAME_INVALID');
      }
    });

    it('PUT of a manifest with a subject answers OCI-Subject; the subject need not exist', async () => {
      const subject = { mediaType: OCI_MANIFEST, digest: sha256('a subject that was never pushed'), size: 1234 };
      const { bytes } = await imageManifest(base, 'subject/app', { subject, artifactType: 'application/vnd.example.sig' });
      const put = await putManifest(base, 'subject/app', sha256(bytes), bytes);
      assert.equal(put.status, 201, await put.text());
      assert.equal(put.headers.get('oci-subject'), subject.digest);
      await expectStored(base, 'subject/app', sha256(bytes), bytes, OCI_MANIFEST);
      const bad = json({ ...JSON.parse(bytes.toString()), subject: { ...subject, digest: 'sha256:nothex' } });
      await assertError(await putManifest(base, 'subject/app', 'v1', bad), 400, 'MANIFEST_INVALID');
    });

    it('keeps the exact bytes of pretty-printed, non-ASCII manifests; Content-Length counts bytes', async () => {
      const { manifest } = await imageManifest(base, 'pretty/app');
      const bytes = Buffer.from(`${JSON.stringify({ ...manifest, annotations: { 'org.opencontainers.image.description': 'Größe – 容器 🚢' } }, null, 3)}\n`);
      assert.notEqual(bytes.length, bytes.toString().length);
      assert.equal((await putManifest(base, 'pretty/app', 'v1', bytes)).status, 201);
      await expectStored(base, 'pretty/app', 'v1', bytes, OCI_MANIFEST);
    });

    it('If-None-Match also matches a weak tag, a list of tags and *', async () => {
      const { bytes } = await imageManifest(base, 'etags/app');
      const digest = sha256(bytes);
      assert.equal((await putManifest(base, 'etags/app', 'v1', bytes)).status, 201);
      for (const header of [`W/"${digest}"`, `"sha256:${'1'.repeat(64)}", "${digest}"`, '*']) {
        const res = await fetch(`${base}/v2/etags/app/manifests/v1`, { headers: { 'if-none-match': header } });
        assert.equal(res.status, 304, header);
      }
      const miss = await fetch(`${base}/v2/etags/app/manifests/v1`, { headers: { 'if-none-match': `"${digest}x", W/"other"` } });
      assert.equal(miss.status, 200);
      assert.deepEqual(Buffer.from(await miss.arrayBuffer()), bytes);
    });

    it('concurrent pushes of tags into a new repository all succeed', async () => {
      const { bytes } = await imageManifest(base, 'race/app');
      const others = await Promise.all([1, 2, 3].map(() => imageManifest(base, 'race/app')));
      const pushes = await Promise.all([
        ...Array.from({ length: 8 }, (_, i) => putManifest(base, 'race/app', `t${i}`, bytes)),
        ...others.map((o, i) => putManifest(base, 'race/app', `o${i}`, o.bytes)),
        putManifest(base, 'race/app', sha256(bytes), bytes),
      ]);
      for (const res of pushes) assert.equal(res.status, 201, await res.text());
      const tags = (await (await fetch(`${base}/v2/race/app/tags/list`)).json()) as { tags: string[] };
      assert.deepEqual(tags.tags, ['o0', 'o1', 'o2', 't0', 't1', 't2', 't3', 't4', 't5', 't6', 't7']);
      const fresh = await Promise.all(Array.from({ length: 6 }, async (_, i) => {
        const image = await imageManifest(base, `race/fresh${i % 2}`);
        return putManifest(base, `race/fresh${i % 2}`, `v${i}`, image.bytes);
      }));
      for (const res of fresh) assert.equal(res.status, 201, await res.text());
    });

    it('a manifest without a mediaType field takes its type from Content-Type', async () => {
      const docker = JSON.parse((await dockerManifest(base, 'nomediatype/app')).toString());
      delete docker.mediaType;
      const bytes = json(docker);
      assert.equal((await putManifest(base, 'nomediatype/app', 'v1', bytes, DOCKER_MANIFEST)).status, 201);
      await expectStored(base, 'nomediatype/app', 'v1', bytes, DOCKER_MANIFEST);
    });
  });

  describe(`manifest size limit (${backend})`, () => {
    let server: TestServer;
    before(async () => {
      server = await startTestServer(backend, { config: { registry: { manifestMaxBytes: 2048 } } });
    });
    after(() => server.close());

    it('an oversized manifest is 413 SIZE_INVALID and nothing is stored', async () => {
      const { manifest } = await imageManifest(server.url, 'big/app');
      const bytes = json({ ...manifest, annotations: { padding: 'x'.repeat(3000) } });
      assert.ok(bytes.length > 2048);
      await assertError(await putManifest(server.url, 'big/app', 'v1', bytes), 413, 'SIZE_INVALID');
      // The same without a Content-Length (chunked): the limit is counted, not trusted.
      const chunked = await fetch(`${server.url}/v2/big/app/manifests/v2`, {
        method: 'PUT',
        headers: { 'content-type': OCI_MANIFEST },
        body: new ReadableStream({
          start(controller) {
            controller.enqueue(bytes.subarray(0, 1000));
            controller.enqueue(bytes.subarray(1000));
            controller.close();
          },
        }),
        duplex: 'half',
      } as RequestInit);
      await assertError(chunked, 413, 'SIZE_INVALID');
      for (const reference of ['v1', 'v2', sha256(bytes)]) await assertError(await fetch(`${server.url}/v2/big/app/manifests/${reference}`), 404, 'MANIFEST_UNKNOWN');

      const small = json({ ...manifest, annotations: { padding: 'x'.repeat(100) } });
      assert.ok(small.length <= 2048);
      assert.equal((await putManifest(server.url, 'big/app', 'v1', small)).status, 201);
    });
  });

  describe(`reference checks switched off (${backend})`, () => {
    let server: TestServer;
    before(async () => {
      server = await startTestServer(backend, { config: { registry: { validateReferences: false } } });
    });
    after(() => server.close());

    it('accepts manifests and indexes whose blobs and children are absent', async () => {
      const manifest = json({
        schemaVersion: 2,
        mediaType: OCI_MANIFEST,
        config: { mediaType: OCI_CONFIG, digest: sha256('absent config'), size: 13 },
        layers: [{ mediaType: OCI_LAYER, digest: sha256('absent layer'), size: 12 }],
      });
      const put = await putManifest(server.url, 'lax/app', 'v1', manifest);
      assert.equal(put.status, 201, await put.text());
      await expectStored(server.url, 'lax/app', 'v1', manifest, OCI_MANIFEST);
      const index = json({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: [{ mediaType: OCI_MANIFEST, digest: sha256('absent child'), size: 12 }] });
      assert.equal((await putManifest(server.url, 'lax/app', 'multi', index, OCI_INDEX)).status, 201);
      await expectStored(server.url, 'lax/app', 'multi', index, OCI_INDEX);
      // Validation of the document itself still applies.
      await assertError(await putManifest(server.url, 'lax/app', 'v2', json({ schemaVersion: 2, mediaType: OCI_MANIFEST })), 400, 'MANIFEST_INVALID');
    });
  });
}
