/**
 * Storage quotas enforced on pushes: refused pushes leave nothing, shared blobs count once per
 * project, deletes give space back, and parallel pushes racing to the limit never pass it.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { BACKENDS } from '../helpers/backends.ts';
import { assertError, startUpload, withQuery } from '../helpers/http.ts';
import { createProject, quotaOf } from '../helpers/iam.ts';
import { imageManifest, putManifest, randomBlob, sha256 } from '../helpers/oci.ts';
import { ADMIN_AUTH, startTestServer, type TestServer } from '../helpers/server.ts';

const auth = { authorization: ADMIN_AUTH };

for (const backend of BACKENDS) {
  describe(`storage quotas (${backend})`, () => {
    let server: TestServer;
    before(async () => {
      server = await startTestServer(backend, { config: { auth: { enabled: true } } });
    });
    after(() => server.close());

    const monolithic = (repo: string, bytes: Buffer) =>
      fetch(`${server.url}/v2/${repo}/blobs/uploads/?digest=${sha256(bytes)}`, { method: 'POST', body: bytes, headers: auth });

    async function chunked(repo: string, bytes: Buffer): Promise<Response> {
      const upload = await startUpload(server.url, repo, auth);
      const half = Math.floor(bytes.length / 2);
      const patch = await fetch(upload.url, { method: 'PATCH', body: bytes.subarray(0, half), headers: { ...auth, 'content-range': `0-${half - 1}` } });
      assert.equal(patch.status, 202);
      return fetch(withQuery(upload.url, { digest: sha256(bytes) }), { method: 'PUT', body: bytes.subarray(half), headers: auth });
    }

    const db = () => server.app.database.db;
    const linked = async (repo: string, digest: string) =>
      (await db().selectFrom('repository_blobs as rb').innerJoin('repositories as r', 'r.id', 'rb.repository_id').select('rb.digest').where('r.name', '=', repo).where('rb.digest', '=', digest).executeTakeFirst()) !==
      undefined;

    it('refuses a blob past the limit with 403 DENIED naming the quota, and leaves nothing behind', async () => {
      const id = await createProject(server, 'small', { storageLimit: 1000 });
      const fits = randomBlob(600);
      assert.equal((await monolithic('small/app', fits)).status, 201);
      assert.deepEqual(await quotaOf(server, id), { hard: 1000, used: 600 });

      const tooBig = randomBlob(500);
      const exceeded: unknown[] = [];
      const stop = server.app.events.on('quota.exceeded', (e) => exceeded.push(e));
      const res = await monolithic('small/app', tooBig);
      stop();
      assert.equal(exceeded.length, 1, 'the refusal is announced (webhooks QUOTA_EXCEED, audit)');
      const event = exceeded[0] as { actor: { name: string }; project: string; repository: string; used: number; hard: number; message: string };
      assert.deepEqual([event.actor.name, event.project, event.repository, event.used, event.hard], ['admin', 'small', 'small/app', 600, 1000]);
      assert.match(event.message, /quota exceeded/);
      await assertError(res.clone(), 403, 'DENIED');
      assert.match(((await res.json()) as { errors: Array<{ message: string }> }).errors[0]?.message ?? '', /quota.*small/);
      assert.equal(await linked('small/app', sha256(tooBig)), false);
      assert.equal(await db().selectFrom('blobs').select('digest').where('digest', '=', sha256(tooBig)).executeTakeFirst(), undefined, 'no blob row');
      assert.deepEqual(await quotaOf(server, id), { hard: 1000, used: 600 });

      // The same through a chunked upload: the final PUT is refused and the session is gone.
      const upload = await startUpload(server.url, 'small/app', auth);
      await fetch(upload.url, { method: 'PATCH', body: tooBig, headers: auth });
      const put = await fetch(withQuery(upload.url, { digest: sha256(tooBig) }), { method: 'PUT', headers: auth });
      await assertError(put, 403, 'DENIED');
      const status = await fetch(upload.url, { headers: auth });
      await assertError(status, 404, 'BLOB_UPLOAD_UNKNOWN');
      assert.deepEqual(await quotaOf(server, id), { hard: 1000, used: 600 });
    });

    it('raises one quota warning when a push crosses 85% of the limit', async () => {
      await createProject(server, 'warn', { storageLimit: 1000 });
      const warnings: unknown[] = [];
      const stop = server.app.events.on('quota.warning', (e) => warnings.push(e));
      try {
        assert.equal((await monolithic('warn/app', randomBlob(800))).status, 201);
        assert.equal(warnings.length, 0, '80% is below the threshold');
        assert.equal((await monolithic('warn/app', randomBlob(100))).status, 201);
        assert.equal((await monolithic('warn/app', randomBlob(50))).status, 201);
        assert.equal(warnings.length, 1, 'only the push that crossed 85% warns');
        assert.deepEqual({ ...(warnings[0] as object), at: 0, message: '' }, { type: 'quota.warning', at: 0, actor: { name: 'system', kind: 'system' }, project: 'warn', used: 900, hard: 1000, message: '' });
      } finally {
        stop();
      }
    });

    it('counts a blob once per project however many repositories hold it, and once more in another project', async () => {
      const a = await createProject(server, 'share-a', { storageLimit: -1 });
      const b = await createProject(server, 'share-b', { storageLimit: -1 });
      const layer = randomBlob(700);
      assert.equal((await monolithic('share-a/one', layer)).status, 201);
      assert.equal((await monolithic('share-a/two', layer)).status, 201);
      assert.equal((await chunked('share-a/three', layer)).status, 201);
      const mount = await fetch(`${server.url}/v2/share-a/four/blobs/uploads/?mount=${sha256(layer)}&from=share-a/one`, { method: 'POST', headers: auth });
      assert.equal(mount.status, 201);
      assert.equal((await quotaOf(server, a)).used, 700);
      const cross = await fetch(`${server.url}/v2/share-b/one/blobs/uploads/?mount=${sha256(layer)}&from=share-a/one`, { method: 'POST', headers: auth });
      assert.equal(cross.status, 201);
      assert.equal((await quotaOf(server, b)).used, 700);
      assert.equal((await quotaOf(server, a)).used, 700);
    });

    it('charges manifests with their blobs, and gives space back when artifacts are deleted', async () => {
      const id = await createProject(server, 'del', { storageLimit: -1 });
      const first = await imageManifest(server.url, 'del/app', { layers: 2, headers: auth });
      assert.equal((await putManifest(server.url, 'del/app', 'v1', first.bytes, undefined, auth)).status, 201);
      const blobs = first.config.size + first.layers.reduce((n, l) => n + l.size, 0);
      assert.equal((await quotaOf(server, id)).used, blobs + first.bytes.length);

      // A second image sharing the first layer (mounted), with its own config.
      const shared = first.layers[0];
      assert.ok(shared);
      const config = Buffer.from(JSON.stringify({ architecture: 'arm64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }));
      assert.equal((await monolithic('del/other', config)).status, 201);
      await fetch(`${server.url}/v2/del/other/blobs/uploads/?mount=${shared.digest}&from=del/app`, { method: 'POST', headers: auth });
      const second = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(config), size: config.length },
          layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: shared.digest, size: shared.size }],
        }),
      );
      assert.equal((await putManifest(server.url, 'del/other', 'v1', second, undefined, auth)).status, 201);
      const both = blobs + first.bytes.length + config.length + second.length;
      assert.equal((await quotaOf(server, id)).used, both);

      // Deleting the first image frees its manifest, config and the layer only it used; the shared layer stays counted.
      const digest = sha256(first.bytes);
      assert.equal((await fetch(`${server.url}/v2/del/app/manifests/${digest}`, { method: 'DELETE', headers: auth })).status, 202);
      const secondLayer = first.layers[1];
      assert.ok(secondLayer);
      assert.equal((await quotaOf(server, id)).used, both - first.bytes.length - first.config.size - secondLayer.size);
      assert.equal((await fetch(`${server.url}/v2/del/other/manifests/${sha256(second)}`, { method: 'DELETE', headers: auth })).status, 202);
      assert.equal((await quotaOf(server, id)).used, 0);
    });

    it('gives everything back when a repository is deleted through the API, blobs no manifest references included', async () => {
      const id = await createProject(server, 'gone', { storageLimit: -1 });
      const image = await imageManifest(server.url, 'gone/app', { headers: auth });
      assert.equal((await putManifest(server.url, 'gone/app', 'v1', image.bytes, undefined, auth)).status, 201);
      assert.equal((await monolithic('gone/app', randomBlob(300))).status, 201, 'a blob no manifest references');
      assert.ok((await quotaOf(server, id)).used > 300);
      const res = await fetch(`${server.url}/api/v2.0/projects/gone/repositories/app`, { method: 'DELETE', headers: auth });
      assert.equal(res.status, 200, await res.text());
      assert.equal((await quotaOf(server, id)).used, 0);
      assert.equal(await db().selectFrom('project_blobs').select('digest').where('project_id', '=', id).executeTakeFirst(), undefined);
    });

    it('refuses a manifest whose new content would pass the limit, and stores nothing of it', async () => {
      const id = await createProject(server, 'mani', { storageLimit: 100_000 });
      const image = await imageManifest(server.url, 'mani/app', { headers: auth });
      const used = (await quotaOf(server, id)).used;
      await db().updateTable('quotas').set({ hard: used }).where('project_id', '=', id).execute();
      const res = await putManifest(server.url, 'mani/app', 'v1', image.bytes, undefined, auth);
      await assertError(res, 403, 'DENIED');
      assert.equal(await db().selectFrom('manifests').select('digest').where('digest', '=', sha256(image.bytes)).executeTakeFirst(), undefined);
      assert.equal((await quotaOf(server, id)).used, used);
    });

    it('never lets parallel pushes racing to the limit pass it', async () => {
      const size = 2000;
      const id = await createProject(server, 'race', { storageLimit: 10 * size });
      const blobs = Array.from({ length: 24 }, () => randomBlob(size));
      const results = await Promise.all(blobs.map((bytes, i) => (i % 2 === 0 ? chunked(`race/r${i % 3}`, bytes) : monolithic(`race/r${i % 3}`, bytes))));
      const statuses = results.map((r) => r.status);
      await Promise.all(results.map((r) => r.arrayBuffer()));
      assert.equal(statuses.filter((s) => s === 201).length, 10, `statuses ${statuses}`);
      assert.equal(statuses.filter((s) => s === 403).length, 14, `statuses ${statuses}`);
      const quota = await quotaOf(server, id);
      assert.deepEqual(quota, { hard: 10 * size, used: 10 * size });
      const ledger = await db().selectFrom('project_blobs').select((eb) => eb.fn.sum<number>('size').as('total')).where('project_id', '=', id).executeTakeFirstOrThrow();
      assert.equal(Number(ledger.total), quota.used, 'the ledger and the counter agree');
    });
  });
}
