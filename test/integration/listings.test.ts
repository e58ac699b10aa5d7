/**
 * The listings of the distribution API over a real socket, on every database backend:
 * tags/list and _catalog (byte order, n/last paging, Link headers, clamping, bad input) and
 * the referrers API (descriptors, artifactType filter, paging, deletion, bad input).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { BACKENDS } from '../helpers/backends.ts';
import { imageManifest, OCI_EMPTY, OCI_INDEX, OCI_MANIFEST, pushBlob, putManifest, sha256 } from '../helpers/oci.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';

async function assertError(res: Response, status: number, code: string): Promise<void> {
  const text = await res.text();
  assert.equal(res.status, status, `expected ${status} ${code}, got ${res.status}: ${text}`);
  assert.equal(res.headers.get('docker-distribution-api-version'), 'registry/2.0');
  const body = JSON.parse(text) as { errors: Array<{ code: string; message: string }> };
  assert.equal(body.errors[0]?.code, code, text);
  assert.equal(typeof body.errors[0]?.message, 'string');
}

interface Next {
  readonly path: string;
  readonly params: URLSearchParams;
}

/** Parses `Link: <path?query>; rel="next"`; undefined when there is no Link header. */
function nextLink(res: Response, expectedPath: string): Next | undefined {
  const header = res.headers.get('link');
  if (header === null) return undefined;
  const match = /^<([^>?]+)\?([^>]*)>; rel="next"$/.exec(header);
  assert.ok(match, `malformed Link header: ${header}`);
  assert.equal(match[1], expectedPath);
  return { path: `${match[1]}?${match[2]}`, params: new URLSearchParams(match[2]) };
}

/** Follows Link headers from `first`, returning every page's items. */
async function walk<T>(base: string, first: string, expectedPath: string, items: (body: unknown) => T[]): Promise<T[][]> {
  const pages: T[][] = [];
  let path: string | undefined = first;
  while (path !== undefined) {
    const res = await fetch(`${base}${path}`);
    assert.equal(res.status, 200);
    pages.push(items(await res.json()));
    path = nextLink(res, expectedPath)?.path;
    assert.ok(pages.length < 100, 'Link headers loop');
  }
  return pages;
}

async function pushTagged(base: string, name: string, tags: string[]): Promise<string> {
  const { bytes } = await imageManifest(base, name);
  for (const tag of tags) {
    const res = await putManifest(base, name, tag, bytes);
    assert.equal(res.status, 201, await res.text());
  }
  return sha256(bytes);
}

// Digits < uppercase < "_" < lowercase in byte order; "-" < "." < digits. Locale collation differs.
const TAGS = ['latest', 'Latest', 'LATEST', 'v1.10', 'v1.9', 'v1-9', 'v1_9', '10', '9', '_hidden', 'a', 'B', 'b', 'Z', 'z9', 'z10'];
const BYTE_ORDER = [...TAGS].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));

for (const backend of BACKENDS) {
  describe(`tags list (${backend})`, () => {
    let server: TestServer;
    let base: string;
    before(async () => {
      server = await startTestServer(backend, { config: { registry: { tagsPageMax: 5 } } });
      base = server.url;
      await pushTagged(base, 'tags/app', TAGS.slice(0, 8));
      await pushTagged(base, 'tags/app', TAGS.slice(8));
    });
    after(() => server.close());

    it('lists tags in byte order; n and last page through them with a Link header', async () => {
      const res = await fetch(`${base}/v2/tags/app/tags/list?n=4`);
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
      assert.equal(res.headers.get('docker-distribution-api-version'), 'registry/2.0');
      assert.deepEqual(await res.json(), { name: 'tags/app', tags: BYTE_ORDER.slice(0, 4) });
      const next = nextLink(res, '/v2/tags/app/tags/list');
      assert.ok(next);
      assert.equal(res.headers.get('link'), `</v2/tags/app/tags/list?n=4&last=${encodeURIComponent(BYTE_ORDER[3] as string)}>; rel="next"`);
      assert.equal(next.params.get('n'), '4');
      assert.equal(next.params.get('last'), BYTE_ORDER[3]);

      const after3 = await fetch(`${base}/v2/tags/app/tags/list?n=2&last=${encodeURIComponent(BYTE_ORDER[2] as string)}`);
      assert.deepEqual(await after3.json(), { name: 'tags/app', tags: BYTE_ORDER.slice(3, 5) });
      // `last` need not be an existing tag: listing resumes after where it would sort.
      const fromGap = await fetch(`${base}/v2/tags/app/tags/list?n=3&last=Y`);
      assert.deepEqual(((await fromGap.json()) as { tags: string[] }).tags, BYTE_ORDER.filter((t) => t > 'Y').slice(0, 3));
    });

    it('following Link pages visits every tag exactly once, in order', async () => {
      for (const n of [1, 3, 4, 5]) {
        const pages = await walk(base, `/v2/tags/app/tags/list?n=${n}`, '/v2/tags/app/tags/list', (body) => (body as { tags: string[] }).tags);
        assert.deepEqual(pages.flat(), BYTE_ORDER, `n=${n}`);
        for (const page of pages.slice(0, -1)) assert.equal(page.length, n);
      }
      // Without n, the server's page size applies and Link headers still lead to the end.
      const pages = await walk(base, '/v2/tags/app/tags/list', '/v2/tags/app/tags/list', (body) => (body as { tags: string[] }).tags);
      assert.deepEqual(pages.flat(), BYTE_ORDER);
      assert.equal(pages[0]?.length, 5);
    });

    it('the last page has no Link header; n=0 gives an empty list without one', async () => {
      const last = await fetch(`${base}/v2/tags/app/tags/list?n=3&last=${encodeURIComponent(BYTE_ORDER.at(-3) as string)}`);
      assert.deepEqual(((await last.json()) as { tags: string[] }).tags, BYTE_ORDER.slice(-2));
      assert.equal(last.headers.get('link'), null);
      const past = await fetch(`${base}/v2/tags/app/tags/list?last=${encodeURIComponent(BYTE_ORDER.at(-1) as string)}`);
      assert.deepEqual(await past.json(), { name: 'tags/app', tags: [] });
      assert.equal(past.headers.get('link'), null);
      const zero = await fetch(`${base}/v2/tags/app/tags/list?n=0`);
      assert.equal(zero.status, 200);
      assert.deepEqual(await zero.json(), { name: 'tags/app', tags: [] });
      assert.equal(zero.headers.get('link'), null);
    });

    it('n above tagsPageMax is clamped', async () => {
      const res = await fetch(`${base}/v2/tags/app/tags/list?n=1000`);
      assert.equal(res.status, 200);
      assert.deepEqual(((await res.json()) as { tags: string[] }).tags, BYTE_ORDER.slice(0, 5));
      assert.equal(nextLink(res, '/v2/tags/app/tags/list')?.params.get('last'), BYTE_ORDER[4]);
    });

    it('an invalid n is 400 PAGINATION_NUMBER_INVALID', async () => {
      for (const n of ['-1', 'abc', '1.5', '1e3', '0x10', ' 2']) {
        await assertError(await fetch(`${base}/v2/tags/app/tags/list?n=${encodeURIComponent(n)}`), 400, 'PAGINATION_NUMBER_INVALID');
      }
    });

    it('a repository emptied of tags lists `tags: []`, not null', async () => {
      const digest = await pushTagged(base, 'tags/emptied', ['x', 'y']);
      assert.equal((await fetch(`${base}/v2/tags/emptied/manifests/x`, { method: 'DELETE' })).status, 202);
      assert.deepEqual(await (await fetch(`${base}/v2/tags/emptied/tags/list`)).json(), { name: 'tags/emptied', tags: ['y'] });
      assert.equal((await fetch(`${base}/v2/tags/emptied/manifests/${digest}`, { method: 'DELETE' })).status, 202);
      const res = await fetch(`${base}/v2/tags/emptied/tags/list`);
      assert.equal(res.status, 200);
      assert.equal(await res.text(), '{"name":"tags/emptied","tags":[]}');
    });

    it('an unknown repository is 404 NAME_UNKNOWN; a bad name is 400 NAME_INVALID', async () => {
      await assertError(await fetch(`${base}/v2/no/such/repo/tags/list`), 404, 'NAME_UNKNOWN');
      await assertError(await fetch(`${base}/v2/Bad_Name/tags/list`), 400, 'NAME_INVALID');
    });
  });

  describe(`catalog (${backend})`, () => {
    let server: TestServer;
    let base: string;
    const listed = ['a', 'a-b', 'a.b', 'a/b/c', 'a/b', 'a_b', 'ab', 'b', '0lead', 'z/y/x/w'];
    const expected = [...listed].sort();
    before(async () => {
      server = await startTestServer(backend, { config: { registry: { catalogPageMax: 4 } } });
      base = server.url;
      for (const name of listed) await pushTagged(base, name, ['v1']);
      // Never listed: blobs only, a refused manifest, every manifest deleted.
      await pushBlob(base, 'blobs/only', Buffer.from('just a blob'));
      const { manifest } = await imageManifest(base, 'refused/app');
      const refused = Buffer.from(JSON.stringify({ ...manifest, config: { ...manifest.config, digest: sha256('absent') } }));
      assert.equal((await putManifest(base, 'refused/app', 'v1', refused)).status, 400);
      const gone = await pushTagged(base, 'gone/app', ['v1']);
      assert.equal((await fetch(`${base}/v2/gone/app/manifests/${gone}`, { method: 'DELETE' })).status, 202);
      // Listed although untagged: it still holds a manifest.
      const untagged = await pushTagged(base, 'untagged/app', ['v1']);
      assert.equal((await fetch(`${base}/v2/untagged/app/manifests/v1`, { method: 'DELETE' })).status, 202);
      assert.equal((await fetch(`${base}/v2/untagged/app/manifests/${untagged}`)).status, 200);
      expected.push('untagged/app');
      expected.sort();
    });
    after(() => server.close());

    it('lists repositories holding manifests, sorted, including nested names', async () => {
      const res = await fetch(`${base}/v2/_catalog?n=100`);
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
      assert.equal(res.headers.get('docker-distribution-api-version'), 'registry/2.0');
      assert.deepEqual(await res.json(), { repositories: expected.slice(0, 4) });
      const pages = await walk(base, '/v2/_catalog', '/v2/_catalog', (body) => (body as { repositories: string[] }).repositories);
      assert.deepEqual(pages.flat(), expected);
      assert.ok(!pages.flat().some((n) => ['blobs/only', 'refused/app', 'gone/app'].includes(n)));
    });

    it('n and last page with a Link header; following it visits every repository once', async () => {
      const res = await fetch(`${base}/v2/_catalog?n=3`);
      assert.deepEqual(await res.json(), { repositories: expected.slice(0, 3) });
      const next = nextLink(res, '/v2/_catalog');
      assert.equal(next?.params.get('n'), '3');
      assert.equal(next?.params.get('last'), expected[2]);
      for (const n of [1, 2, 3]) {
        const pages = await walk(base, `/v2/_catalog?n=${n}`, '/v2/_catalog', (body) => (body as { repositories: string[] }).repositories);
        assert.deepEqual(pages.flat(), expected, `n=${n}`);
      }
      const nested = await fetch(`${base}/v2/_catalog?n=2&last=${encodeURIComponent('a/b')}`);
      assert.deepEqual(await nested.json(), { repositories: expected.slice(expected.indexOf('a/b') + 1).slice(0, 2) });
      const zero = await fetch(`${base}/v2/_catalog?n=0`);
      assert.deepEqual(await zero.json(), { repositories: [] });
      assert.equal(zero.headers.get('link'), null);
      const end = await fetch(`${base}/v2/_catalog?last=zzz`);
      assert.deepEqual(await end.json(), { repositories: [] });
      assert.equal(end.headers.get('link'), null);
    });

    it('an invalid n is 400 PAGINATION_NUMBER_INVALID', async () => {
      for (const n of ['-1', 'abc', '2.0']) await assertError(await fetch(`${base}/v2/_catalog?n=${n}`), 400, 'PAGINATION_NUMBER_INVALID');
    });
  });

  describe(`referrers (${backend})`, () => {
    let server: TestServer;
    let base: string;
    const name = 'refs/app';
    let subject: { mediaType: string; digest: string; size: number };
    const referrers = new Map<string, { mediaType: string; digest: string; size: number; artifactType: string; annotations?: Record<string, string> }>();

    async function pushReferrer(bytes: Buffer, mediaType: string, artifactType: string, annotations?: Record<string, string>): Promise<string> {
      const digest = sha256(bytes);
      const res = await putManifest(base, name, digest, bytes, mediaType);
      assert.equal(res.status, 201, await res.text());
      assert.equal(res.headers.get('oci-subject'), subject.digest);
      referrers.set(digest, { mediaType, digest, size: bytes.length, artifactType, ...(annotations ? { annotations } : {}) });
      return digest;
    }

    before(async () => {
      server = await startTestServer(backend, { config: { registry: { referrersPageMax: 3 } } });
      base = server.url;
      const image = await imageManifest(base, name);
      assert.equal((await putManifest(base, name, 'v1', image.bytes)).status, 201);
      subject = { mediaType: OCI_MANIFEST, digest: sha256(image.bytes), size: image.bytes.length };

      const empty = await pushBlob(base, name, Buffer.from('{}'));
      const emptyConfig = { mediaType: OCI_EMPTY, digest: empty.digest, size: 2 };
      const sbomLayer = await pushBlob(base, name, Buffer.from('{"spdxVersion":"SPDX-2.3"}'));
      const sbomAnnotations = { 'org.opencontainers.image.created': '2024-01-01T00:00:00Z', 'org.example.tool': 'syft' };
      const sbom = { schemaVersion: 2, mediaType: OCI_MANIFEST, artifactType: 'application/spdx+json', config: emptyConfig, layers: [{ mediaType: 'application/spdx+json', digest: sbomLayer.digest, size: sbomLayer.size }], subject, annotations: sbomAnnotations };
      await pushReferrer(Buffer.from(JSON.stringify(sbom)), OCI_MANIFEST, 'application/spdx+json', sbomAnnotations);
      for (const i of [1, 2]) {
        const sig = { schemaVersion: 2, mediaType: OCI_MANIFEST, artifactType: 'application/vnd.example.signature', config: emptyConfig, layers: [{ ...emptyConfig }], subject, annotations: { n: String(i) } };
        await pushReferrer(Buffer.from(JSON.stringify(sig)), OCI_MANIFEST, 'application/vnd.example.signature', { n: String(i) });
      }
      // No artifactType: the config's media type stands in for it.
      const config = await pushBlob(base, name, Buffer.from('{"kind":"attestation"}'));
      const legacy = { schemaVersion: 2, mediaType: OCI_MANIFEST, config: { mediaType: 'application/vnd.example.attestation.config.v1+json', digest: config.digest, size: config.size }, layers: [], subject };
      await pushReferrer(Buffer.from(JSON.stringify(legacy)), OCI_MANIFEST, 'application/vnd.example.attestation.config.v1+json');
      // An index can refer to a subject too.
      const index = { schemaVersion: 2, mediaType: OCI_INDEX, artifactType: 'application/vnd.example.bundle', manifests: [], subject };
      await pushReferrer(Buffer.from(JSON.stringify(index)), OCI_INDEX, 'application/vnd.example.bundle');
      // A referrer in another repository is not a referrer here.
      const elsewhere = await imageManifest(base, 'refs/other', { subject, artifactType: 'application/spdx+json' });
      assert.equal((await putManifest(base, 'refs/other', 'v1', elsewhere.bytes)).status, 201);
    });
    after(() => server.close());

    const sortedReferrers = () => [...referrers.values()].sort((a, b) => (a.digest < b.digest ? -1 : 1));

    it('lists every referrer as a descriptor in an OCI index', async () => {
      const res = await fetch(`${base}/v2/${name}/referrers/${subject.digest}?n=100`);
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('content-type'), OCI_INDEX);
      assert.equal(res.headers.get('oci-filters-applied'), null);
      const body = (await res.json()) as { schemaVersion: number; mediaType: string; manifests: unknown[] };
      assert.equal(body.schemaVersion, 2);
      assert.equal(body.mediaType, OCI_INDEX);
      const pages = await walk(base, `/v2/${name}/referrers/${subject.digest}`, `/v2/${name}/referrers/${subject.digest}`, (b) => (b as { manifests: unknown[] }).manifests);
      const all = pages.flat();
      assert.equal(all.length, referrers.size);
      const byDigest = (list: unknown[]) => [...list].sort((a, b) => ((a as { digest: string }).digest < (b as { digest: string }).digest ? -1 : 1));
      assert.deepEqual(byDigest(all), sortedReferrers());
      assert.deepEqual(byDigest(body.manifests), sortedReferrers().slice(0, 3));
    });

    it('filters by artifactType and says so in OCI-Filters-Applied', async () => {
      const sigs = await fetch(`${base}/v2/${name}/referrers/${subject.digest}?artifactType=${encodeURIComponent('application/vnd.example.signature')}`);
      assert.equal(sigs.status, 200);
      assert.equal(sigs.headers.get('oci-filters-applied'), 'artifactType');
      const body = (await sigs.json()) as { manifests: Array<{ digest: string; artifactType: string }> };
      assert.deepEqual(body.manifests, sortedReferrers().filter((r) => r.artifactType === 'application/vnd.example.signature'));
      const byConfig = await fetch(`${base}/v2/${name}/referrers/${subject.digest}?artifactType=${encodeURIComponent('application/vnd.example.attestation.config.v1+json')}`);
      assert.equal(((await byConfig.json()) as { manifests: unknown[] }).manifests.length, 1);
      const none = await fetch(`${base}/v2/${name}/referrers/${subject.digest}?artifactType=application/none`);
      assert.equal(none.status, 200);
      assert.equal(none.headers.get('oci-filters-applied'), 'artifactType');
      assert.deepEqual(((await none.json()) as { manifests: unknown[] }).manifests, []);
    });

    it('pages with n and a Link header that keeps the filter', async () => {
      const first = await fetch(`${base}/v2/${name}/referrers/${subject.digest}?n=1`);
      const link = nextLink(first, `/v2/${name}/referrers/${subject.digest}`);
      assert.equal(link?.params.get('n'), '1');
      const pages = await walk(base, `/v2/${name}/referrers/${subject.digest}?n=2`, `/v2/${name}/referrers/${subject.digest}`, (b) => (b as { manifests: Array<{ digest: string }> }).manifests);
      assert.deepEqual(pages.flat(), sortedReferrers());
      const filtered = await fetch(`${base}/v2/${name}/referrers/${subject.digest}?artifactType=${encodeURIComponent('application/vnd.example.signature')}&n=1`);
      assert.equal(((await filtered.json()) as { manifests: unknown[] }).manifests.length, 1);
      const next = nextLink(filtered, `/v2/${name}/referrers/${subject.digest}`);
      assert.equal(next?.params.get('artifactType'), 'application/vnd.example.signature');
      const second = await fetch(`${base}${next?.path}`);
      assert.equal(second.headers.get('oci-filters-applied'), 'artifactType');
      const signatures = sortedReferrers().filter((r) => r.artifactType === 'application/vnd.example.signature');
      assert.deepEqual(((await second.json()) as { manifests: unknown[] }).manifests, signatures.slice(1));
      assert.equal(second.headers.get('link'), null);
    });

    it('a subject without referrers, or an unknown repository, is 200 with an empty list', async () => {
      for (const path of [`/v2/${name}/referrers/${sha256('no referrers')}`, `/v2/refs/unknown/referrers/${subject.digest}`]) {
        const res = await fetch(`${base}${path}`);
        assert.equal(res.status, 200, path);
        assert.equal(res.headers.get('content-type'), OCI_INDEX);
        assert.deepEqual(await res.json(), { schemaVersion: 2, mediaType: OCI_INDEX, manifests: [] });
      }
    });

    it('a deleted referrer disappears from the list', async () => {
      const doomed = sortedReferrers().find((r) => r.artifactType === 'application/vnd.example.bundle');
      assert.ok(doomed);
      assert.equal((await fetch(`${base}/v2/${name}/manifests/${doomed.digest}`, { method: 'DELETE' })).status, 202);
      referrers.delete(doomed.digest);
      const pages = await walk(base, `/v2/${name}/referrers/${subject.digest}`, `/v2/${name}/referrers/${subject.digest}`, (b) => (b as { manifests: Array<{ digest: string }> }).manifests);
      assert.deepEqual(pages.flat(), sortedReferrers());
    });

    it('an invalid digest or n is 400', async () => {
      for (const reference of ['v1', 'sha256:abc', `sha256:${'G'.repeat(64)}`, `md5:${'0'.repeat(32)}`]) {
        await assertError(await fetch(`${base}/v2/${name}/referrers/${reference}`), 400, 'DIGEST_INVALID');
      }
      await assertError(await fetch(`${base}/v2/${name}/referrers/${subject.digest}?n=-1`), 400, 'PAGINATION_NUMBER_INVALID');
      await assertError(await fetch(`${base}/v2/BAD/referrers/${subject.digest}`), 400, 'NAME_INVALID');
    });
  });
}
