import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { BACKENDS } from '../helpers/backends.ts';
import { errorCode, imageManifest, OCI_MANIFEST, randomBlob, sha256 } from '../helpers/oci.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';

/** Blob bodies are bytes whatever their Content-Type; a manifest's Content-Type is checked by the registry, not the framework. */
const ODD_TYPES = ['foo', ';;;', 'a/b/c', 'text/plain; charset', 'application/json '];

for (const backend of BACKENDS) {
  describe(`request Content-Types (${backend})`, () => {
    let server: TestServer;
    before(async () => {
      server = await startTestServer(backend);
    });
    after(() => server.close());

    for (const type of ODD_TYPES) {
      it(`a blob upload with Content-Type ${JSON.stringify(type)} is accepted`, async () => {
        const bytes = randomBlob(300);
        const digest = sha256(bytes);
        const start = await fetch(`${server.url}/v2/types/app/blobs/uploads/`, { method: 'POST', headers: { 'content-type': type } });
        assert.equal(start.status, 202);
        const patched = await fetch(`${server.url}${start.headers.get('location')}`, { method: 'PATCH', body: bytes, headers: { 'content-type': type } });
        assert.equal(patched.status, 202, await patched.text());
        const done = await fetch(`${server.url}${patched.headers.get('location')}?digest=${encodeURIComponent(digest)}`, { method: 'PUT', headers: { 'content-type': type } });
        assert.equal(done.status, 201);
        const monolithic = randomBlob(200);
        const single = await fetch(`${server.url}/v2/types/app/blobs/uploads/?digest=${encodeURIComponent(sha256(monolithic))}`, { method: 'POST', body: monolithic, headers: { 'content-type': type } });
        assert.equal(single.status, 201);
      });
    }

    it('a manifest whose Content-Type names another type is refused as MANIFEST_INVALID; one with no type in it counts as absent', async () => {
      const { bytes } = await imageManifest(server.url, 'types/app');
      for (const type of ['foo', 'a/b/c']) {
        const res = await fetch(`${server.url}/v2/types/app/manifests/odd`, { method: 'PUT', body: bytes, headers: { 'content-type': type } });
        assert.equal(res.status, 400);
        assert.equal(await errorCode(res), 'MANIFEST_INVALID');
      }
      assert.equal((await fetch(`${server.url}/v2/types/app/manifests/odd`)).status, 404, 'nothing was stored');
      const empty = await fetch(`${server.url}/v2/types/app/manifests/empty`, { method: 'PUT', body: bytes, headers: { 'content-type': ';;;' } });
      assert.equal(empty.status, 201, 'the manifest\'s own mediaType decides');
      const ok = await fetch(`${server.url}/v2/types/app/manifests/odd`, { method: 'PUT', body: bytes, headers: { 'content-type': OCI_MANIFEST } });
      assert.equal(ok.status, 201);
      const got = await fetch(`${server.url}/v2/types/app/manifests/odd`);
      assert.equal(got.headers.get('content-type'), OCI_MANIFEST);
    });
  });
}
