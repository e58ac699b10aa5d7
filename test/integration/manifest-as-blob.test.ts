import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { BACKENDS } from '../helpers/backends.ts';
import { errorCode, imageManifest, putManifest } from '../helpers/oci.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';

/** As in distribution, a manifest can be read through the blobs endpoint of its repository. */
for (const backend of BACKENDS) {
  describe(`manifests through the blobs endpoint (${backend})`, () => {
    let server: TestServer;
    before(async () => {
      server = await startTestServer(backend);
    });
    after(() => server.close());

    it('GET and HEAD /blobs/<manifest digest> serve the manifest bytes, ranges too; other repositories do not see it', async () => {
      const { bytes } = await imageManifest(server.url, 'mab/app');
      const put = await putManifest(server.url, 'mab/app', 'v1', bytes);
      const digest = put.headers.get('docker-content-digest') as string;

      const got = await fetch(`${server.url}/v2/mab/app/blobs/${digest}`);
      assert.equal(got.status, 200);
      assert.equal(got.headers.get('docker-content-digest'), digest);
      assert.equal(got.headers.get('content-length'), String(bytes.length));
      assert.ok(Buffer.from(await got.arrayBuffer()).equals(bytes));

      const head = await fetch(`${server.url}/v2/mab/app/blobs/${digest}`, { method: 'HEAD' });
      assert.equal(head.status, 200);
      assert.equal(head.headers.get('content-length'), String(bytes.length));

      const part = await fetch(`${server.url}/v2/mab/app/blobs/${digest}`, { headers: { range: 'bytes=2-9' } });
      assert.equal(part.status, 206);
      assert.equal(part.headers.get('content-range'), `bytes 2-9/${bytes.length}`);
      assert.ok(Buffer.from(await part.arrayBuffer()).equals(bytes.subarray(2, 10)));

      const elsewhere = await fetch(`${server.url}/v2/mab/other/blobs/${digest}`);
      assert.equal(elsewhere.status, 404);
      assert.equal(await errorCode(elsewhere), 'BLOB_UNKNOWN');

      assert.equal((await fetch(`${server.url}/v2/mab/app/manifests/${digest}`, { method: 'DELETE' })).status, 202);
      assert.equal((await fetch(`${server.url}/v2/mab/app/blobs/${digest}`)).status, 404, 'gone with the manifest');
    });
  });
}
