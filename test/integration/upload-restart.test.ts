import assert from 'node:assert/strict';
import { utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { BACKENDS } from '../helpers/backends.ts';
import {
  assertError,
  assertNoServerErrors,
  readBlob,
  type StartedUpload,
  startUpload,
  storedBlobDigests,
  uploadFileSize,
  uploadRange,
  uploadsDir,
} from '../helpers/http.ts';
import { pushBlob, randomBlob, sha256, sha512 } from '../helpers/oci.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';

for (const backend of BACKENDS) {
  describe(`uploads survive a restart (${backend})`, () => {
    let server: TestServer;
    before(async () => {
      server = await startTestServer(backend);
    });
    after(() => server.close());

    /** The session's URL on the current server (the port changes with every restart). */
    const at = (upload: StartedUpload, query = '') => new URL(`${upload.location}${query}`, server.url);

    async function restart(): Promise<void> {
      assertNoServerErrors(server);
      server = await server.restart();
    }

    it('PATCH, restart, PATCH, PUT ?digest= → 201 and the blob reads back byte-identical', async () => {
      const name = 'restart/chunks';
      const bytes = randomBlob(300_000);
      const upload = await startUpload(server.url, name);
      const first = await fetch(at(upload), { method: 'PATCH', body: bytes.subarray(0, 100_000), headers: { 'content-range': '0-99999' } });
      assert.equal(first.status, 202);
      await restart();
      assert.equal(await uploadRange(server.url, upload.location), '0-99999');
      const second = await fetch(at(upload), { method: 'PATCH', body: bytes.subarray(100_000), headers: { 'content-range': `100000-${bytes.length - 1}` } });
      assert.equal(second.status, 202, await second.clone().text());
      assert.equal(second.headers.get('range'), `0-${bytes.length - 1}`);
      const put = await fetch(at(upload, `?digest=${sha256(bytes)}`), { method: 'PUT' });
      assert.equal(put.status, 201, await put.clone().text());
      assert.equal(put.headers.get('docker-content-digest'), sha256(bytes));
      const res = await readBlob(server.url, name, sha256(bytes));
      assert.equal(res.status, 200);
      assert.deepEqual(Buffer.from(await res.arrayBuffer()), bytes);
    });

    it('PATCH, restart, then PUT with the final chunk directly → 201', async () => {
      const name = 'restart/final';
      const bytes = randomBlob(50_000);
      const upload = await startUpload(server.url, name);
      assert.equal((await fetch(at(upload), { method: 'PATCH', body: bytes.subarray(0, 20_000) })).status, 202);
      await restart();
      const put = await fetch(at(upload, `?digest=${sha256(bytes)}`), { method: 'PUT', body: bytes.subarray(20_000), headers: { 'content-range': `20000-${bytes.length - 1}` } });
      assert.equal(put.status, 201, await put.clone().text());
      const res = await readBlob(server.url, name, sha256(bytes));
      assert.deepEqual(Buffer.from(await res.arrayBuffer()), bytes);
      await assertError(await fetch(at(upload)), 404, 'BLOB_UPLOAD_UNKNOWN');
    });

    it('a session restarted twice, finished with a sha512 digest, stores the right blob', async () => {
      const name = 'restart/sha512';
      const bytes = randomBlob(30_000);
      const upload = await startUpload(server.url, name);
      assert.equal((await fetch(at(upload), { method: 'PATCH', body: bytes.subarray(0, 10_000) })).status, 202);
      await restart();
      assert.equal((await fetch(at(upload), { method: 'PATCH', body: bytes.subarray(10_000, 20_000), headers: { 'content-range': '10000-19999' } })).status, 202);
      await restart();
      const put = await fetch(at(upload, `?digest=${sha512(bytes)}`), { method: 'PUT', body: bytes.subarray(20_000) });
      assert.equal(put.status, 201, await put.clone().text());
      assert.equal(put.headers.get('docker-content-digest'), sha512(bytes));
      const res = await readBlob(server.url, name, sha512(bytes));
      assert.deepEqual(Buffer.from(await res.arrayBuffer()), bytes);
    });

    it('after a restart a wrong digest is still refused and the session dropped', async () => {
      const name = 'restart/wrong';
      const bytes = randomBlob(4000);
      const upload = await startUpload(server.url, name);
      assert.equal((await fetch(at(upload), { method: 'PATCH', body: bytes })).status, 202);
      await restart();
      await assertError(await fetch(at(upload, `?digest=${sha256('not it')}`), { method: 'PUT' }), 400, 'DIGEST_INVALID');
      await assertError(await fetch(at(upload)), 404, 'BLOB_UPLOAD_UNKNOWN');
      assert.equal(await uploadFileSize(server, upload.id), undefined);
      const stored = await storedBlobDigests(server);
      assert.ok(!stored.includes(sha256(bytes)) && !stored.includes(sha256('not it')));
    });

    it('blobs, links and cancelled sessions stay as they were across a restart', async () => {
      const bytes = randomBlob(1234);
      const { digest } = await pushBlob(server.url, 'restart/kept', bytes);
      const cancelled = await startUpload(server.url, 'restart/kept');
      assert.equal((await fetch(at(cancelled), { method: 'DELETE' })).status, 204);
      await restart();
      const res = await readBlob(server.url, 'restart/kept', digest);
      assert.equal(res.status, 200);
      assert.deepEqual(Buffer.from(await res.arrayBuffer()), bytes);
      await assertError(await readBlob(server.url, 'restart/other', digest), 404, 'BLOB_UNKNOWN');
      await assertError(await fetch(at(cancelled)), 404, 'BLOB_UPLOAD_UNKNOWN');
    });

    it('answered no request with a 5xx', () => assertNoServerErrors(server));
  });

  describe(`upload expiry (${backend})`, () => {
    let server: TestServer;
    before(async () => {
      server = await startTestServer(backend, { config: { uploads: { expireAfterSeconds: 60 } } });
    });
    after(() => server.close());

    it('purgeExpired removes sessions idle past the expiry, with their data; younger ones stay', async () => {
      const name = 'expiry/app';
      const upload = await startUpload(server.url, name);
      assert.equal((await fetch(new URL(upload.location, server.url), { method: 'PATCH', body: randomBlob(2000) })).status, 202);
      assert.equal(await uploadFileSize(server, upload.id), 2000);
      // Not expired yet: nothing happens to it.
      await server.app.uploads.purgeExpired(Date.now());
      assert.equal(await uploadRange(server.url, upload.location), '0-1999');
      assert.equal(await uploadFileSize(server, upload.id), 2000);

      const purged = await server.app.uploads.purgeExpired(Date.now() + 120_000);
      assert.ok(purged >= 1, `purged ${purged}`);
      await assertError(await fetch(new URL(upload.location, server.url)), 404, 'BLOB_UPLOAD_UNKNOWN');
      await assertError(await fetch(new URL(upload.location, server.url), { method: 'PATCH', body: 'x' }), 404, 'BLOB_UPLOAD_UNKNOWN');
      await assertError(await fetch(new URL(`${upload.location}?digest=${sha256('x')}`, server.url), { method: 'PUT', body: 'x' }), 404, 'BLOB_UPLOAD_UNKNOWN');
      assert.equal(await uploadFileSize(server, upload.id), undefined);
    });

    it('purgeExpired also removes old upload data that has no session', async () => {
      const stray = path.join(uploadsDir(server), '11111111-2222-4333-8444-555555555555');
      await writeFile(stray, randomBlob(100));
      const old = new Date(Date.now() - 3600_000);
      await utimes(stray, old, old);
      await server.app.uploads.purgeExpired(Date.now());
      assert.equal(await uploadFileSize(server, '11111111-2222-4333-8444-555555555555'), undefined);
    });

    it('a session touched within the expiry survives a purge and completes', async () => {
      const bytes = randomBlob(500);
      const upload = await startUpload(server.url, 'expiry/fresh');
      assert.equal((await fetch(new URL(upload.location, server.url), { method: 'PATCH', body: bytes })).status, 202);
      await server.app.uploads.purgeExpired(Date.now() + 30_000);
      const put = await fetch(new URL(`${upload.location}?digest=${sha256(bytes)}`, server.url), { method: 'PUT' });
      assert.equal(put.status, 201);
    });

    it('answered no request with a 5xx', () => assertNoServerErrors(server));
  });
}
