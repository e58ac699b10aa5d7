/**
 * RegistryStore (src/registry/store.ts) against every database backend: the same queries must
 * give the same answers on SQLite and PostgreSQL, including the byte order of listings.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createDatabase, type DatabaseHandle } from '../../src/platform/db/database.ts';
import { MIGRATIONS } from '../../src/platform/db/migrations.ts';
import type { Database } from '../../src/platform/db/schema.ts';
import { type NewManifest, RegistryStore } from '../../src/registry/store.ts';
import { type Backend, BACKENDS, createTestDatabase, type TestDatabase } from '../helpers/backends.ts';
import { sha256 } from '../helpers/oci.ts';

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';

/** Names chosen so that byte order differs from case-insensitive and locale orders. */
const TAG_NAMES = ['a', 'A', 'B', '_', '0', '9', 'b', 'Z', 'a0', 'a_', 'a-', 'a.', '_a', 'A_', 'latest', 'v1.0', 'V1.0', '10', '2'];
const REPOSITORY_NAMES = ['a', 'A', 'B', '_', '0', '9', 'b', 'a/b', 'a-b', 'a.b', 'a_b', 'ab', 'a0', 'z/_', 'Z'];

// Rows from node:sqlite have a null prototype; tests compare plain copies ({ ...row }).

/** What each backend listed, compared at the end. */
const listings = new Map<Backend, { tags: string[]; repositories: string[]; referrers: string[] }>();

let manifestCounter = 0;
/** A distinct manifest, with the edges given. */
function manifest(fields: Partial<NewManifest> = {}): NewManifest {
  const content = Buffer.from(JSON.stringify({ schemaVersion: 2, n: ++manifestCounter, ...fields }));
  return {
    digest: sha256(content),
    mediaType: OCI_MANIFEST,
    artifactType: null,
    subjectDigest: null,
    annotations: null,
    content,
    blobDigests: [],
    childDigests: [],
    ...fields,
  };
}

/** All rows of the reference edges of one manifest, sorted. */
async function edgesOf(db: DatabaseHandle['db'], repositoryId: number, parent: string) {
  const rows = await db
    .selectFrom('manifest_references')
    .select(['child_digest', 'child_kind'])
    .where('repository_id', '=', repositoryId)
    .where('parent_digest', '=', parent)
    .execute();
  return rows.map((r) => `${r.child_kind}:${r.child_digest}`).sort();
}

async function countRows(db: DatabaseHandle['db'], table: keyof Database): Promise<number> {
  const row = await db
    .selectFrom(table)
    .select((eb) => eb.fn.countAll<number | string>().as('n'))
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

/** Reads a whole listing page by page, `size` at a time, through `last`. */
async function allPages(fetch: (last: string | undefined, limit: number) => Promise<string[]>, size: number): Promise<string[]> {
  const out: string[] = [];
  let last: string | undefined;
  for (;;) {
    const page = await fetch(last, size);
    out.push(...page);
    if (page.length < size) return out;
    last = page.at(-1);
  }
}

for (const backend of BACKENDS) {
  describe(`RegistryStore on ${backend}`, () => {
    let testDatabase: TestDatabase;
    let dataDir: string;
    let handle: DatabaseHandle;
    let store: RegistryStore;
    let now = 1_700_000_000_000;
    let firstMigration: string[];

    before(async () => {
      manifestCounter = 0; // the same manifests, digest for digest, on every backend
      testDatabase = await createTestDatabase(backend);
      dataDir = await mkdtemp(path.join(tmpdir(), 'berth-store-'));
      handle = createDatabase({ url: testDatabase.url, sqliteFile: path.join(dataDir, 'berth.db') });
      firstMigration = await handle.migrate();
      store = new RegistryStore(handle.db, () => now);
    });

    after(async () => {
      await handle?.close();
      await testDatabase?.drop();
      if (dataDir) await rm(dataDir, { recursive: true, force: true });
    });

    it('applies every migration once, on the right dialect', async () => {
      assert.equal(handle.dialect, backend);
      assert.deepEqual(firstMigration, Object.keys(MIGRATIONS));
      assert.deepEqual(await handle.migrate(), [], 'a second run applies nothing');
      for (const table of ['repositories', 'blobs', 'repository_blobs', 'manifests', 'manifest_references', 'tags', 'uploads'] as const) {
        assert.equal(await countRows(handle.db, table), 0, table);
      }
    });

    describe('repositories', () => {
      it('ensureRepository is idempotent under 20 concurrent calls', async () => {
        const ids = await Promise.all(Array.from({ length: 20 }, () => store.ensureRepository('race/app')));
        assert.equal(new Set(ids).size, 1);
        assert.equal(await store.findRepositoryId('race/app'), ids[0]);
        const rows = await handle.db.selectFrom('repositories').select('id').where('name', '=', 'race/app').execute();
        assert.equal(rows.length, 1);
        assert.equal(await store.ensureRepository('race/app'), ids[0]);
      });

      it('different names get different ids', async () => {
        const ids = await Promise.all(['race/one', 'race/two', 'race/three'].map((n) => store.ensureRepository(n)));
        assert.equal(new Set(ids).size, 3);
        assert.equal(await store.findRepositoryId('race/nope'), undefined);
      });
    });

    describe('blobs', () => {
      it('linkBlob is idempotent and records the blob once for the whole registry', async () => {
        const one = await store.ensureRepository('blobs/one');
        const two = await store.ensureRepository('blobs/two');
        const digest = sha256('blob-link');
        await store.linkBlob(one, digest, 9);
        await store.linkBlob(one, digest, 9);
        await Promise.all(Array.from({ length: 5 }, () => store.linkBlob(one, digest, 9)));
        await store.linkBlob(two, digest, 9);
        const blobRows = await handle.db.selectFrom('blobs').selectAll().where('digest', '=', digest).execute();
        assert.equal(blobRows.length, 1);
        assert.equal(blobRows[0]?.size, 9);
        const links = await handle.db.selectFrom('repository_blobs').select('repository_id').where('digest', '=', digest).execute();
        assert.deepEqual(links.map((l) => l.repository_id).sort((a, b) => a - b), [one, two].sort((a, b) => a - b));
        assert.equal(await store.linkedBlobSize(one, digest), 9);
        assert.equal(await store.blobSize(digest), 9);
      });

      it('unlinkBlob removes only that repository link', async () => {
        const one = await store.ensureRepository('blobs/one');
        const two = await store.ensureRepository('blobs/two');
        const digest = sha256('blob-link');
        assert.equal(await store.unlinkBlob(one, digest), true);
        assert.equal(await store.unlinkBlob(one, digest), false);
        assert.equal(await store.linkedBlobSize(one, digest), undefined);
        assert.equal(await store.linkedBlobSize(two, digest), 9);
        assert.equal(await store.blobSize(digest), 9, 'the blob record stays for garbage collection');
      });

      it('missingBlobs names the digests the repository does not link', async () => {
        const repo = await store.ensureRepository('blobs/missing');
        const [a, b, c] = [sha256('m-a'), sha256('m-b'), sha256('m-c')];
        await store.linkBlob(repo, a, 1);
        assert.deepEqual(await store.missingBlobs(repo, [a, b, c, b]), [b, c]);
        assert.deepEqual(await store.missingBlobs(repo, []), []);
      });
    });

    describe('manifests and tags', () => {
      it('putManifest stores the manifest and its edges once, however often it is put', async () => {
        const repo = await store.ensureRepository('manifests/edges');
        const [config, layer] = [sha256('config'), sha256('layer')];
        const m = manifest({ blobDigests: [config, layer, layer], subjectDigest: sha256('subject'), annotations: { a: '1' } });
        await store.putManifest(repo, m, null);
        await store.putManifest(repo, m, 'v1');
        await store.putManifest(repo, m, 'v2');
        assert.deepEqual(await edgesOf(handle.db, repo, m.digest), [`blob:${config}`, `blob:${layer}`].sort());
        const rows = await handle.db.selectFrom('manifests').select('digest').where('repository_id', '=', repo).execute();
        assert.equal(rows.length, 1);
        const stored = await store.getManifest(repo, m.digest);
        assert.ok(stored);
        assert.equal(stored.mediaType, OCI_MANIFEST);
        assert.equal(stored.size, m.content.byteLength);
        assert.equal(stored.subjectDigest, sha256('subject'));
        assert.ok(Buffer.from(stored.content).equals(Buffer.from(m.content)));
        assert.equal(await store.resolveTag(repo, 'v1'), m.digest);
        assert.equal(await store.resolveTag(repo, 'v2'), m.digest);
      });

      it('stores index edges to child manifests, and many edges at once', async () => {
        const repo = await store.ensureRepository('manifests/index');
        const children = [manifest(), manifest()];
        for (const child of children) await store.putManifest(repo, child, null);
        const index = manifest({ mediaType: OCI_INDEX, childDigests: children.map((c) => c.digest) });
        await store.putManifest(repo, index, 'multi');
        assert.deepEqual(await edgesOf(handle.db, repo, index.digest), children.map((c) => `manifest:${c.digest}`).sort());
        assert.deepEqual(await store.missingManifests(repo, [children[0]!.digest, sha256('absent')]), [sha256('absent')]);

        const many = Array.from({ length: 1234 }, (_, i) => sha256(`layer-${i}`));
        const big = manifest({ blobDigests: many });
        await store.putManifest(repo, big, null);
        assert.equal((await edgesOf(handle.db, repo, big.digest)).length, 1234);
      });

      it('putManifest with a tag that exists moves the tag', async () => {
        const repo = await store.ensureRepository('manifests/moving');
        const [first, second] = [manifest(), manifest()];
        await store.putManifest(repo, first, 'latest');
        assert.equal(await store.resolveTag(repo, 'latest'), first.digest);
        now += 1000;
        await store.putManifest(repo, second, 'latest');
        assert.equal(await store.resolveTag(repo, 'latest'), second.digest);
        const tagRows = await handle.db.selectFrom('tags').selectAll().where('repository_id', '=', repo).execute();
        assert.equal(tagRows.length, 1);
        assert.equal(tagRows[0]?.updated_at, now);
        assert.ok(await store.getManifest(repo, first.digest), 'the untagged manifest stays');
      });

      it('the same tag name in two repositories is two tags', async () => {
        const [one, two] = [await store.ensureRepository('manifests/t1'), await store.ensureRepository('manifests/t2')];
        const [m1, m2] = [manifest(), manifest()];
        await store.putManifest(one, m1, 'same');
        await store.putManifest(two, m2, 'same');
        assert.equal(await store.resolveTag(one, 'same'), m1.digest);
        assert.equal(await store.resolveTag(two, 'same'), m2.digest);
      });

      it('deleteManifest removes the manifest, every tag pointing at it and its edges', async () => {
        const repo = await store.ensureRepository('manifests/delete');
        const doomed = manifest({ blobDigests: [sha256('d-config')] });
        const kept = manifest();
        await store.putManifest(repo, doomed, 't1');
        await store.putManifest(repo, doomed, 't2');
        await store.putManifest(repo, kept, 't3');
        assert.equal(await store.deleteManifest(repo, doomed.digest), true);
        assert.equal(await store.getManifest(repo, doomed.digest), undefined);
        assert.equal(await store.resolveTag(repo, 't1'), undefined);
        assert.equal(await store.resolveTag(repo, 't2'), undefined);
        assert.equal(await store.resolveTag(repo, 't3'), kept.digest);
        assert.deepEqual(await edgesOf(handle.db, repo, doomed.digest), []);
        assert.deepEqual(await store.listTags(repo, undefined, 100), ['t3']);
        assert.equal(await store.deleteManifest(repo, doomed.digest), false);
      });

      it('deleteTag removes only the tag', async () => {
        const repo = await store.ensureRepository('manifests/deltag');
        const m = manifest();
        await store.putManifest(repo, m, 'x');
        assert.equal(await store.deleteTag(repo, 'x'), true);
        assert.equal(await store.deleteTag(repo, 'x'), false);
        assert.ok(await store.getManifest(repo, m.digest));
      });
    });

    describe('listings', () => {
      it('listTags is in byte order, and pages through `last`', async () => {
        const repo = await store.ensureRepository('listing/tags');
        const m = manifest();
        for (const tag of [...TAG_NAMES].reverse()) await store.putManifest(repo, m, tag);
        const expected = [...TAG_NAMES].sort();
        const all = await store.listTags(repo, undefined, 1000);
        assert.deepEqual(all, expected);
        assert.equal(all.indexOf('A') < all.indexOf('_') && all.indexOf('_') < all.indexOf('a'), true);
        for (const size of [1, 2, 5]) assert.deepEqual(await allPages((last, limit) => store.listTags(repo, last, limit), size), expected);
        assert.deepEqual(await store.listTags(repo, 'Q', 3), expected.filter((t) => t > 'Q').slice(0, 3));
        assert.deepEqual(await store.listTags(repo, 'v1.0', 10), []);
        listings.set(backend, { tags: all, repositories: [], referrers: [] });
      });

      it('listRepositories lists repositories with a manifest, in byte order', async () => {
        for (const name of REPOSITORY_NAMES) {
          const repo = await store.ensureRepository(`~/${name}`);
          await store.putManifest(repo, manifest(), null);
        }
        await store.ensureRepository('~/empty');
        const mine = (await allPages((last, limit) => store.listRepositories(last, limit), 4)).filter((n) => n.startsWith('~/'));
        const expected = REPOSITORY_NAMES.map((n) => `~/${n}`).sort();
        assert.deepEqual(mine, expected);
        const all = await store.listRepositories(undefined, 1000);
        assert.deepEqual(all, [...all].sort(), 'the whole catalog is byte-ordered');
        assert.ok(!all.includes('~/empty'), 'a repository without manifests is not listed');
        const entry = listings.get(backend);
        assert.ok(entry, 'the tags test ran first');
        entry.repositories = all;
      });

      it('listReferrers lists the manifests whose subject is the digest, filtered by artifactType', async () => {
        const repo = await store.ensureRepository('listing/referrers');
        const other = await store.ensureRepository('listing/referrers-other');
        const subject = manifest();
        await store.putManifest(repo, subject, 'subject');
        const sbomA = manifest({ subjectDigest: subject.digest, artifactType: 'application/vnd.example.sbom', annotations: { n: '1' } });
        const sig = manifest({ subjectDigest: subject.digest, artifactType: 'application/vnd.example.sig' });
        const sbomB = manifest({ subjectDigest: subject.digest, artifactType: 'application/vnd.example.sbom' });
        const unrelated = manifest({ subjectDigest: sha256('other subject'), artifactType: 'application/vnd.example.sbom' });
        for (const m of [sbomA, sig, sbomB, unrelated]) await store.putManifest(repo, m, null);
        await store.putManifest(other, manifest({ subjectDigest: subject.digest, artifactType: 'application/vnd.example.sbom' }), null);

        const all = await store.listReferrers(repo, subject.digest, undefined, undefined, 100);
        assert.deepEqual(all.map((r) => r.digest), [sbomA, sig, sbomB].map((m) => m.digest).sort());
        const a = all.find((r) => r.digest === sbomA.digest);
        assert.deepEqual({ ...a }, { digest: sbomA.digest, media_type: OCI_MANIFEST, artifact_type: 'application/vnd.example.sbom', annotations: JSON.stringify({ n: '1' }), size: sbomA.content.byteLength });

        const sboms = await store.listReferrers(repo, subject.digest, 'application/vnd.example.sbom', undefined, 100);
        assert.deepEqual(sboms.map((r) => r.digest), [sbomA, sbomB].map((m) => m.digest).sort());
        assert.deepEqual(await store.listReferrers(repo, subject.digest, 'application/vnd.example.none', undefined, 100), []);

        const first = await store.listReferrers(repo, subject.digest, undefined, undefined, 1);
        const rest = await store.listReferrers(repo, subject.digest, undefined, first[0]?.digest, 100);
        assert.deepEqual([...first, ...rest].map((r) => r.digest), all.map((r) => r.digest));
        const entry = listings.get(backend);
        assert.ok(entry);
        entry.referrers = all.map((r) => r.digest);
      });
    });

    describe('uploads', () => {
      it('advanceUpload is a compare-and-set on the offset', async () => {
        const repo = await store.ensureRepository('uploads/cas');
        await store.createUpload('cas-1', repo);
        assert.deepEqual({ ...(await store.findUpload('cas-1')) }, { id: 'cas-1', repository_id: repo, repository: 'uploads/cas', offset: 0 });
        assert.equal(await store.advanceUpload('cas-1', 0, 100), true);
        assert.equal(await store.advanceUpload('cas-1', 0, 200), false, 'a stale offset loses');
        assert.equal((await store.findUpload('cas-1'))?.offset, 100);
        assert.equal(await store.advanceUpload('cas-1', 100, 250), true);
        assert.equal(await store.advanceUpload('nope', 0, 1), false);

        const results = await Promise.all([store.advanceUpload('cas-1', 250, 300), store.advanceUpload('cas-1', 250, 400), store.advanceUpload('cas-1', 250, 500)]);
        assert.equal(results.filter(Boolean).length, 1, 'exactly one concurrent advance wins');
        const winner = [300, 400, 500][results.indexOf(true)];
        assert.equal((await store.findUpload('cas-1'))?.offset, winner);
      });

      it('tracks idleness and deletes sessions', async () => {
        const repo = await store.ensureRepository('uploads/idle');
        now += 10_000;
        const start = now;
        await store.createUpload('idle-old', repo);
        await store.createUpload('idle-busy', repo);
        now += 60_000;
        await store.advanceUpload('idle-busy', 0, 5);
        const idle = await store.uploadsIdleSince(start + 1, 100);
        assert.ok(idle.includes('idle-old'));
        assert.ok(!idle.includes('idle-busy'));
        assert.equal(await store.uploadExists('idle-old'), true);
        assert.equal(await store.deleteUpload('idle-old'), true);
        assert.equal(await store.deleteUpload('idle-old'), false);
        assert.equal(await store.uploadExists('idle-old'), false);
        assert.equal(await store.findUpload('idle-old'), undefined);
      });
    });
  });
}

describe('both backends agree', () => {
  it('list tags, repositories and referrers identically', () => {
    const results = BACKENDS.map((b) => listings.get(b));
    for (const [i, result] of results.entries()) assert.ok(result, `${BACKENDS[i]} produced no listings`);
    const [first, ...others] = results;
    assert.ok(first);
    assert.deepEqual(first.tags, [...TAG_NAMES].sort());
    for (const other of others) {
      assert.deepEqual(other?.tags, first.tags);
      assert.deepEqual(other?.repositories, first.repositories);
      assert.deepEqual(other?.referrers, first.referrers);
    }
  });
});
