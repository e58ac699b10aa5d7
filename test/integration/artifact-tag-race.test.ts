/**
 * Tag creation and artifact deletion through Harbor's artifact API racing garbage collection's
 * deletion of the same (untagged) manifest: the API answers 404 NOT_FOUND and stores nothing,
 * never a 500 from the tag's foreign key, and never stores the manifest anew. Likewise tag
 * additions and manifest pushes racing the deletion of their whole repository.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { RegistryApiStore } from '../../src/registry/api-store.ts';
import { BACKENDS } from '../helpers/backends.ts';
import { type Collector, collectorFor } from '../helpers/gc.ts';
import { ADMIN, api, assertApiError, type Pushed, pushImage } from '../helpers/harbor-api.ts';
import { OCI_MANIFEST } from '../helpers/oci.ts';
import { assertNoServerErrors } from '../helpers/http.ts';
import type { TestServer } from '../helpers/server.ts';
import { startAuthServer } from '../helpers/harbor-api.ts';

const NAME = 'library/race';
const REPO = '/projects/library/repositories/race';

for (const backend of BACKENDS) {
  describe(`artifact tags racing garbage collection (${backend})`, () => {
    let server: TestServer;
    let base: string;
    let gc: Collector;
    let repositoryId: number;

    before(async () => {
      server = await startAuthServer(backend);
      base = server.url;
      gc = collectorFor(server);
      await pushImage(base, NAME, { tags: ['keep'] });
      const row = await server.app.database.db.selectFrom('repositories').select('id').where('name', '=', NAME).executeTakeFirstOrThrow();
      repositoryId = Number(row.id);
    });
    after(async () => {
      try {
        assertNoServerErrors(server);
      } finally {
        await server.close();
      }
    });

    const db = () => server.app.database.db;
    const tagRow = (name: string) => db().selectFrom('tags').select(['name', 'digest']).where('repository_id', '=', repositoryId).where('name', '=', name).executeTakeFirst();
    const manifestRow = (digest: string) => db().selectFrom('manifests').select('digest').where('repository_id', '=', repositoryId).where('digest', '=', digest).executeTakeFirst();
    /** What a collection does to an untagged manifest (src/gc), with no time window. */
    const collect = (digest: string) => gc.registry.deleteUntaggedManifest(repositoryId, digest, { createdBefore: Date.now() + 60_000 });

    /** Runs `hook` once, the first time the API reads through `method` with `when` true, before the read. */
    async function withSeam<K extends 'findTag' | 'parentDigests'>(method: K, when: (args: unknown[]) => boolean, hook: () => Promise<void>, run: () => Promise<void>): Promise<void> {
      const proto = RegistryApiStore.prototype as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
      const original = proto[method] as (...args: unknown[]) => Promise<unknown>;
      let fired = false;
      proto[method] = async function (this: unknown, ...args: unknown[]) {
        if (!fired && when(args)) {
          fired = true;
          await hook();
        }
        return original.apply(this, args);
      };
      try {
        await run();
      } finally {
        proto[method] = original;
      }
      assert.ok(fired, `the seam on ${method} ran`);
    }

    it('answers 404 and stores nothing when a collection deletes the manifest between the check and the insert', async () => {
      const image = await pushImage(base, NAME);
      await withSeam(
        'findTag',
        (args) => args[1] === 'raced',
        async () => assert.equal(await collect(image.digest), true, 'the collection deleted the untagged manifest'),
        async () => {
          const res = await api(base, `${REPO}/artifacts/${image.digest}/tags`, { method: 'POST', auth: ADMIN, body: { name: 'raced' } });
          await assertApiError(res, 404, 'NOT_FOUND');
        },
      );
      assert.equal(await tagRow('raced'), undefined, 'no tag stored');
      assert.equal(await manifestRow(image.digest), undefined, 'the manifest is not stored anew');
      await assertApiError(await api(base, `${REPO}/artifacts/${image.digest}`, { auth: ADMIN }), 404, 'NOT_FOUND');
    });

    it('answers 404 when the artifact to delete is deleted meanwhile', async () => {
      const image = await pushImage(base, NAME);
      await withSeam(
        'parentDigests',
        (args) => args[1] === image.digest,
        async () => assert.equal(await collect(image.digest), true),
        async () => {
          await assertApiError(await api(base, `${REPO}/artifacts/${image.digest}`, { method: 'DELETE', auth: ADMIN }), 404, 'NOT_FOUND');
        },
      );
      assert.equal(await manifestRow(image.digest), undefined);
    });

    it('a tag added before the collection keeps the manifest', async () => {
      const image = await pushImage(base, NAME);
      const res = await api(base, `${REPO}/artifacts/${image.digest}/tags`, { method: 'POST', auth: ADMIN, body: { name: 'first' } });
      assert.equal(res.status, 201, await res.text());
      assert.equal(await collect(image.digest), false, 'a tagged manifest is not collected');
      assert.deepEqual(await tagRow('first'), { name: 'first', digest: image.digest });
      assert.ok(await manifestRow(image.digest));
    });

    it('never answers 500 while collections and deletions race tag additions', async () => {
      const outcomes = { added: 0, gone: 0 };
      for (let i = 0; i < 24; i++) {
        const image: Pushed = await pushImage(base, NAME);
        const tag = `stress-${i}`;
        const add = async () => {
          if (i % 3 === 1) await new Promise((resolve) => setImmediate(resolve));
          const res = await api(base, `${REPO}/artifacts/${image.digest}/tags`, { method: 'POST', auth: ADMIN, body: { name: tag } });
          const text = await res.text();
          assert.ok(res.status === 201 || res.status === 404, `tag add answered ${res.status}: ${text}`);
          return res.status;
        };
        const remove = async () => {
          if (i % 3 === 2) await new Promise((resolve) => setImmediate(resolve));
          if (i % 4 === 3) {
            const res = await api(base, `${REPO}/artifacts/${image.digest}`, { method: 'DELETE', auth: ADMIN });
            const text = await res.text();
            assert.ok(res.status === 200 || res.status === 404, `artifact delete answered ${res.status}: ${text}`);
            return res.status === 200;
          }
          return collect(image.digest);
        };
        const [status, deleted] = await Promise.all([add(), remove()]);
        const stored = await tagRow(tag);
        const manifest = await manifestRow(image.digest);
        if (status === 404) {
          outcomes.gone++;
          assert.equal(stored, undefined, `${tag}: a refused tag is not stored`);
          assert.ok(deleted, `${tag}: 404 only because the manifest was deleted`);
          assert.equal(manifest, undefined, `${tag}: the manifest is not stored anew`);
        } else {
          outcomes.added++;
          if (i % 4 === 3) {
            // An artifact deletion takes its tags with it; one that lost the race finds nothing.
            assert.equal(stored === undefined, deleted, `${tag}: the tag is there unless the artifact was deleted after it`);
          } else {
            assert.equal(deleted, false, `${tag}: the collection does not delete a manifest that got a tag`);
            assert.deepEqual(stored, { name: tag, digest: image.digest });
            assert.ok(manifest);
          }
        }
      }
      // Whole collections meanwhile, racing tag additions too.
      const images: Pushed[] = [];
      for (let i = 0; i < 6; i++) images.push(await pushImage(base, NAME));
      const results = await Promise.all([
        gc.run({ deleteUntagged: true, timeWindowHours: 0 }),
        ...images.map(async (image, i) => {
          const res = await api(base, `${REPO}/artifacts/${image.digest}/tags`, { method: 'POST', auth: ADMIN, body: { name: `full-${i}` } });
          const text = await res.text();
          assert.ok(res.status === 201 || res.status === 404, `tag add answered ${res.status}: ${text}`);
          const stored = await tagRow(`full-${i}`);
          assert.equal(stored !== undefined, res.status === 201);
          if (stored) assert.ok(await manifestRow(image.digest), 'a tagged manifest stays');
          return res.status;
        }),
      ]);
      assert.ok(results.length > 0);
      assert.equal(outcomes.added + outcomes.gone, 24);
    });

    it('never answers 500 while repository deletions race tag additions and manifest pushes', async () => {
      const seen = { tag: new Map<number, number>(), push: new Map<number, number>() };
      for (let i = 0; i < 16; i++) {
        const name = `library/race-repo-${i}`;
        const repo = `/projects/library/repositories/race-repo-${i}`;
        const image = await pushImage(base, name, { tags: ['first'] });
        const addTag = async () => {
          if (i % 2 === 1) await new Promise((resolve) => setImmediate(resolve));
          const res = await api(base, `${repo}/artifacts/${image.digest}/tags`, { method: 'POST', auth: ADMIN, body: { name: 'second' } });
          const text = await res.text();
          assert.ok(res.status === 201 || res.status === 404, `tag add answered ${res.status}: ${text}`);
          seen.tag.set(res.status, (seen.tag.get(res.status) ?? 0) + 1);
        };
        const push = async () => {
          if (i % 4 >= 2) await new Promise((resolve) => setImmediate(resolve));
          const res = await fetch(`${base}/v2/${name}/manifests/third`, { method: 'PUT', body: image.bytes, headers: { authorization: ADMIN, 'content-type': OCI_MANIFEST } });
          const text = await res.text();
          // After the deletion the repository's blobs are no longer linked (400), or it is gone under the push (404).
          assert.ok([201, 400, 404].includes(res.status), `manifest push answered ${res.status}: ${text}`);
          if (res.status !== 201) assert.match(text, res.status === 400 ? /MANIFEST_BLOB_UNKNOWN/ : /NAME_UNKNOWN/);
          seen.push.set(res.status, (seen.push.get(res.status) ?? 0) + 1);
        };
        const remove = async () => {
          const res = await api(base, repo, { method: 'DELETE', auth: ADMIN });
          assert.equal(res.status, 200, `repository delete answered ${res.status}: ${await res.text()}`);
        };
        await Promise.all([addTag(), push(), remove()]);
        // Whatever won, no tag names a manifest that is not there, and the repository is gone: a
        // push that came after the deletion finds its blobs unlinked and stores nothing.
        const orphans = await db()
          .selectFrom('tags as t')
          .leftJoin('manifests as m', (join) => join.onRef('m.repository_id', '=', 't.repository_id').onRef('m.digest', '=', 't.digest'))
          .select('t.name')
          .where('m.digest', 'is', null)
          .execute();
        assert.deepEqual(orphans, []);
        assert.equal(await db().selectFrom('repositories').select('id').where('name', '=', name).executeTakeFirst(), undefined, `${name} is gone`);
      }
      assert.equal([...seen.tag.values()].reduce((a, b) => a + b, 0), 16);
      assert.equal([...seen.push.values()].reduce((a, b) => a + b, 0), 16);
    });
  });
}
