import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { BACKENDS } from '../helpers/backends.ts';
import { imageManifest, putManifest } from '../helpers/oci.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';

for (const backend of BACKENDS) {
  describe(`push and pull an image (${backend})`, () => {
    let server: TestServer;
    before(async () => {
      server = await startTestServer(backend);
    });
    after(() => server.close());

    it('serves back the manifest it stored, by tag and by digest', async () => {
      const { bytes } = await imageManifest(server.url, 'smoke/app', { layers: 2 });
      const put = await putManifest(server.url, 'smoke/app', 'v1', bytes);
      assert.equal(put.status, 201);
      const digest = put.headers.get('docker-content-digest');
      for (const reference of ['v1', digest]) {
        const res = await fetch(`${server.url}/v2/smoke/app/manifests/${reference}`);
        assert.equal(res.status, 200);
        assert.deepEqual(Buffer.from(await res.arrayBuffer()), bytes);
        assert.equal(res.headers.get('docker-content-digest'), digest);
      }
    });
  });
}
