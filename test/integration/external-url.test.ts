import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { BACKENDS } from '../helpers/backends.ts';
import { imageManifest, putManifest, randomBlob, sha256 } from '../helpers/oci.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';

/** Behind a proxy, server.externalUrl makes every Location absolute under the public URL. */
for (const backend of BACKENDS) {
  describe(`server.externalUrl (${backend})`, () => {
    let server: TestServer;
    const PUBLIC = 'https://registry.example.com/mirror';
    before(async () => {
      server = await startTestServer(backend, { config: { server: { externalUrl: `${PUBLIC}/` } } });
    });
    after(() => server.close());

    /** What the proxy would do: send the public URL's path, without its prefix, to Berth. */
    const viaProxy = (location: string) => {
      assert.ok(location.startsWith(`${PUBLIC}/v2/`), `absolute under the public URL: ${location}`);
      return `${server.url}${location.slice(PUBLIC.length)}`;
    };

    it('upload, chunk, completion, mount and manifest Locations are absolute', async () => {
      const bytes = randomBlob(2048);
      const digest = sha256(bytes);
      const start = await fetch(`${server.url}/v2/ext/app/blobs/uploads/`, { method: 'POST' });
      assert.equal(start.status, 202);
      const patched = await fetch(viaProxy(start.headers.get('location') as string), { method: 'PATCH', body: bytes });
      assert.equal(patched.status, 202);
      const done = await fetch(`${viaProxy(patched.headers.get('location') as string)}?digest=${encodeURIComponent(digest)}`, { method: 'PUT' });
      assert.equal(done.status, 201);
      assert.equal(done.headers.get('location'), `${PUBLIC}/v2/ext/app/blobs/${digest}`);

      const mounted = await fetch(`${server.url}/v2/ext/other/blobs/uploads/?mount=${digest}&from=ext/app`, { method: 'POST' });
      assert.equal(mounted.status, 201);
      assert.equal(mounted.headers.get('location'), `${PUBLIC}/v2/ext/other/blobs/${digest}`);

      const { bytes: manifest } = await imageManifest(server.url, 'ext/app');
      const put = await putManifest(server.url, 'ext/app', 'v1', manifest);
      assert.equal(put.status, 201);
      assert.equal(put.headers.get('location'), `${PUBLIC}/v2/ext/app/manifests/${put.headers.get('docker-content-digest')}`);
    });

    it('an out-of-order chunk names the absolute upload Location in its 416', async () => {
      const start = await fetch(`${server.url}/v2/ext/app/blobs/uploads/`, { method: 'POST' });
      const location = start.headers.get('location') as string;
      const res = await fetch(viaProxy(location), { method: 'PATCH', body: Buffer.alloc(10), headers: { 'content-range': '5-14' } });
      assert.equal(res.status, 416);
      assert.equal(res.headers.get('location'), location);
    });
  });
}
