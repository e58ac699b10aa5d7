/**
 * No audit entry is lost on a graceful shutdown, on every backend: with a flush interval far
 * longer than the test (so nothing is written before the stop), N pushes and N pulls, then the
 * server stops at once; after a restart on the same data every one of them is in the log, and the
 * chain verifies. Both with the batches written on the request thread (the default) and on the
 * writer thread (audit.writerThread).
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { apiJson } from '../helpers/harbor-api.ts';
import { OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, pushBlob, putManifest } from '../helpers/oci.ts';
import { BACKENDS } from '../helpers/backends.ts';
import { ADMIN_AUTH, startTestServer, type TestServer } from '../helpers/server.ts';

const N = 40;

for (const backend of BACKENDS) {
  describe(`audit log at shutdown (${backend})`, () => {
    let server: TestServer | undefined;
    after(() => server?.close());

    for (const writerThread of [false, true]) {
      it(`keeps all ${N} pushes and ${N} pulls made just before a graceful stop (${writerThread ? 'on the writer thread' : 'on the request thread'})`, async () => {
        if (server) await server.close();
        let current = await startTestServer(backend, { config: { auth: { enabled: true }, audit: { flushIntervalMs: 60_000, batchEntries: 2000, writerThread } } });
        server = current;
        const headers = { authorization: ADMIN_AUTH };
        const config = await pushBlob(current.url, 'library/burst', Buffer.from('{"architecture":"amd64","os":"linux"}'), headers);
        const layer = await pushBlob(current.url, 'library/burst', Buffer.from('layer'), headers);
        const manifest = (i: number) =>
          Buffer.from(
            JSON.stringify({
              schemaVersion: 2,
              mediaType: OCI_MANIFEST,
              config: { mediaType: OCI_CONFIG, digest: config.digest, size: config.size },
              layers: [{ mediaType: OCI_LAYER, digest: layer.digest, size: layer.size }],
              annotations: { n: String(i) },
            }),
          );
        const statuses = await Promise.all(
          Array.from({ length: N }, async (_, i) => {
            const res = await putManifest(current.url, 'library/burst', `t${i}`, manifest(i), OCI_MANIFEST, headers);
            await res.arrayBuffer();
            const pull = await fetch(`${current.url}/v2/library/burst/manifests/t${i}`, { headers: { ...headers, accept: OCI_MANIFEST } });
            await pull.arrayBuffer();
            return [res.status, pull.status];
          }),
        );
        assert.deepEqual(new Set(statuses.flat()), new Set([201, 200]));
        await current.stop();

        current = await current.restart();
        server = current;
        const count = async (q: string) => Number((await apiJson(current.url, `/audit-logs?q=${encodeURIComponent(q)}`, 200, { auth: ADMIN_AUTH })).res.headers.get('x-total-count'));
        assert.equal(await count('operation=create,resource=~library/burst:t'), N);
        assert.equal(await count('operation=pull,resource=~library/burst:t'), N);
        const verified = (await apiJson<{ valid: boolean; checked: number }>(current.url, '/system/audit/verify', 200, { auth: ADMIN_AUTH })).body;
        assert.equal(verified.valid, true);
        assert.ok(verified.checked >= 2 * N);
      });
    }
  });
}
