import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { BACKENDS } from '../helpers/backends.ts';
import {
  abortMidBody,
  assertError,
  assertNoServerErrors,
  assertRawError,
  listFiles,
  rawRequest,
  readBlob,
  type StartedUpload,
  startUpload,
  storedBlobDigests,
  uploadFileSize,
  uploadRange,
  uploadsDir,
  waitUntil,
  withQuery,
} from '../helpers/http.ts';
import { randomBlob, sha256 } from '../helpers/oci.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';

/** The blob files on disk when the current test started (set by each suite's beforeEach). */
let blobsAtTestStart: string[] = [];

/**
 * Nothing was kept: no digest is readable in the repository, and storage/blobs holds exactly the
 * files it held when the test started (call it before the test's own successful pushes).
 */
async function assertNotKept(server: TestServer, name: string, ...digests: string[]): Promise<void> {
  for (const digest of digests) await assertError(await readBlob(server.url, name, digest), 404, 'BLOB_UNKNOWN');
  assert.deepEqual(await storedBlobDigests(server), blobsAtTestStart, 'a file was left in storage/blobs');
}

/** The session still exists at `bytes` received, with exactly that much data stored. */
async function assertSessionAt(server: TestServer, upload: StartedUpload, bytes: number): Promise<void> {
  assert.equal(await uploadRange(server.url, upload.location), `0-${Math.max(0, bytes - 1)}`);
  assert.equal(await uploadFileSize(server, upload.id), bytes);
}

/** The session is gone: 404 BLOB_UPLOAD_UNKNOWN and no data left. */
async function assertSessionGone(server: TestServer, upload: StartedUpload): Promise<void> {
  await assertError(await fetch(new URL(upload.location, server.url)), 404, 'BLOB_UPLOAD_UNKNOWN');
  assert.equal(await uploadFileSize(server, upload.id), undefined);
}

async function patch(server: TestServer, upload: StartedUpload, body: Buffer, range?: string): Promise<Response> {
  return fetch(new URL(upload.location, server.url), { method: 'PATCH', body, headers: range ? { 'content-range': range } : {} });
}

for (const backend of BACKENDS) {
  describe(`upload failures keep nothing (${backend})`, () => {
    let server: TestServer;
    before(async () => {
      server = await startTestServer(backend);
    });
    after(() => server.close());
    beforeEach(async () => {
      blobsAtTestStart = await storedBlobDigests(server);
    });

    it('wrong digest on PUT → 400 DIGEST_INVALID, the session is gone, nothing stored', async () => {
      const name = 'fail/put';
      const bytes = randomBlob(3000);
      const wrong = sha256('not these bytes');
      const upload = await startUpload(server.url, name);
      assert.equal((await patch(server, upload, bytes.subarray(0, 1000))).status, 202);
      await assertError(await fetch(withQuery(upload.url, { digest: wrong }), { method: 'PUT', body: bytes.subarray(1000) }), 400, 'DIGEST_INVALID');
      await assertSessionGone(server, upload);
      await assertNotKept(server, name, wrong, sha256(bytes));
      // Completing it again is not possible either.
      await assertError(await fetch(withQuery(upload.url, { digest: sha256(bytes) }), { method: 'PUT' }), 404, 'BLOB_UPLOAD_UNKNOWN');
    });

    it('wrong digest on a PUT with the whole body → 400 DIGEST_INVALID and nothing kept', async () => {
      const name = 'fail/put';
      const bytes = randomBlob(500);
      const upload = await startUpload(server.url, name);
      await assertError(await fetch(withQuery(upload.url, { digest: sha256('other') }), { method: 'PUT', body: bytes }), 400, 'DIGEST_INVALID');
      await assertSessionGone(server, upload);
      await assertNotKept(server, name, sha256('other'), sha256(bytes));
    });

    it('wrong digest on a monolithic POST → 400 DIGEST_INVALID, no blob and no scratch data', async () => {
      const name = 'fail/mono';
      const before = await listFiles(uploadsDir(server));
      const bytes = randomBlob(4000);
      const wrong = sha256('wrong');
      await assertError(await fetch(`${server.url}/v2/${name}/blobs/uploads/?digest=${wrong}`, { method: 'POST', body: bytes }), 400, 'DIGEST_INVALID');
      await assertNotKept(server, name, wrong, sha256(bytes));
      assert.deepEqual(await listFiles(uploadsDir(server)), before);
    });

    for (const bad of ['sha256:short', `md5:${'0'.repeat(32)}`, `sha256:${'F'.repeat(64)}`, 'plain']) {
      it(`a malformed digest (${bad.slice(0, 12)}) on a monolithic POST → 400 DIGEST_INVALID`, async () => {
        const before = await listFiles(uploadsDir(server));
        const bytes = randomBlob(100);
        await assertError(await fetch(`${server.url}/v2/fail/mono/blobs/uploads/?digest=${encodeURIComponent(bad)}`, { method: 'POST', body: bytes }), 400, 'DIGEST_INVALID');
        await assertNotKept(server, 'fail/mono', sha256(bytes));
        assert.deepEqual(await listFiles(uploadsDir(server)), before);
      });
    }

    it('PUT without digest, with an empty one or a malformed one → 400 DIGEST_INVALID; the session and its bytes stay as they were', async () => {
      const name = 'fail/nodigest';
      const bytes = randomBlob(200);
      const upload = await startUpload(server.url, name);
      assert.equal((await patch(server, upload, bytes.subarray(0, 100))).status, 202);
      await assertError(await fetch(upload.url, { method: 'PUT', body: bytes.subarray(100) }), 400, 'DIGEST_INVALID');
      await assertError(await fetch(withQuery(upload.url, { digest: '' }), { method: 'PUT', body: bytes.subarray(100) }), 400, 'DIGEST_INVALID');
      await assertError(await fetch(withQuery(upload.url, { digest: 'sha256:zz' }), { method: 'PUT', body: bytes.subarray(100) }), 400, 'DIGEST_INVALID');
      await assertSessionAt(server, upload, 100);
      await assertNotKept(server, name, sha256(bytes), sha256(bytes.subarray(0, 100)));
      // A correct PUT still completes it: none of the refused bodies was appended.
      const put = await fetch(withQuery(upload.url, { digest: sha256(bytes) }), { method: 'PUT', body: bytes.subarray(100) });
      assert.equal(put.status, 201);
    });

    it('an out-of-order chunk → 416 RANGE_INVALID with Range of the current offset; nothing appended', async () => {
      const name = 'fail/order';
      const bytes = randomBlob(300);
      const upload = await startUpload(server.url, name);
      // First chunk not starting at 0.
      const early = await patch(server, upload, bytes.subarray(5, 100), '5-99');
      await assertError(early.clone(), 416, 'RANGE_INVALID');
      assert.equal(early.headers.get('range'), '0-0');
      assert.equal(early.headers.get('location'), upload.location);
      assert.equal((await patch(server, upload, bytes.subarray(0, 100), '0-99')).status, 202);
      // A gap after the current offset.
      const gap = await patch(server, upload, bytes.subarray(150, 200), '150-199');
      await assertError(gap.clone(), 416, 'RANGE_INVALID');
      assert.equal(gap.headers.get('range'), '0-99');
      await assertSessionAt(server, upload, 100);
      // The right chunk then completes the blob.
      assert.equal((await patch(server, upload, bytes.subarray(100, 200), '100-199')).status, 202);
      const put = await fetch(withQuery(upload.url, { digest: sha256(bytes) }), { method: 'PUT', body: bytes.subarray(200), headers: { 'content-range': '200-299' } });
      assert.equal(put.status, 201);
      const res = await readBlob(server.url, name, sha256(bytes));
      assert.deepEqual(Buffer.from(await res.arrayBuffer()), bytes);
    });

    it('an overlapping or repeated chunk → 416 with Range of the current offset', async () => {
      const name = 'fail/overlap';
      const bytes = randomBlob(200);
      const upload = await startUpload(server.url, name);
      assert.equal((await patch(server, upload, bytes.subarray(0, 100), '0-99')).status, 202);
      for (const [start, end] of [[50, 149], [0, 99], [99, 120]] as const) {
        const res = await patch(server, upload, bytes.subarray(start, end + 1), `${start}-${end}`);
        await assertError(res.clone(), 416, 'RANGE_INVALID');
        assert.equal(res.headers.get('range'), '0-99');
      }
      await assertSessionAt(server, upload, 100);
    });

    for (const header of ['abc', '100-50', 'bytes=x-y', '-5', '5-', '1e3-2e3', '0-99/abc']) {
      it(`a malformed Content-Range "${header}" → 416 RANGE_INVALID with the current Range`, async () => {
        const upload = await startUpload(server.url, 'fail/malformed');
        assert.equal((await patch(server, upload, randomBlob(10))).status, 202);
        const res = await patch(server, upload, randomBlob(50), header);
        await assertError(res.clone(), 416, 'RANGE_INVALID');
        assert.equal(res.headers.get('range'), '0-9');
        await assertSessionAt(server, upload, 10);
      });
    }

    it('Content-Range and Content-Length that disagree → 416 on PATCH and on PUT; nothing appended', async () => {
      const name = 'fail/disagree';
      const bytes = randomBlob(300);
      const upload = await startUpload(server.url, name);
      assert.equal((await patch(server, upload, bytes.subarray(0, 100), '0-99')).status, 202);
      // The range claims 100 bytes, the body has 50; then it claims 50 and the body has 100.
      const short = await patch(server, upload, bytes.subarray(100, 150), '100-199');
      await assertError(short.clone(), 416, 'RANGE_INVALID');
      assert.equal(short.headers.get('range'), '0-99');
      await assertError(await patch(server, upload, bytes.subarray(100, 200), '100-149'), 416, 'RANGE_INVALID');
      await assertError(
        await fetch(withQuery(upload.url, { digest: sha256(bytes) }), { method: 'PUT', body: bytes.subarray(100), headers: { 'content-range': '100-199' } }),
        416,
        'RANGE_INVALID',
      );
      await assertSessionAt(server, upload, 100);
      await assertNotKept(server, name, sha256(bytes));
    });

    it('a final PUT chunk at the wrong offset → 416; the session is kept', async () => {
      const name = 'fail/putrange';
      const bytes = randomBlob(200);
      const upload = await startUpload(server.url, name);
      assert.equal((await patch(server, upload, bytes.subarray(0, 100))).status, 202);
      const res = await fetch(withQuery(upload.url, { digest: sha256(bytes) }), { method: 'PUT', body: bytes.subarray(150), headers: { 'content-range': '150-199' } });
      await assertError(res.clone(), 416, 'RANGE_INVALID');
      assert.equal(res.headers.get('range'), '0-99');
      await assertSessionAt(server, upload, 100);
      await assertNotKept(server, name, sha256(bytes));
    });

    it('an unknown upload id → 404 BLOB_UPLOAD_UNKNOWN on GET, PATCH, PUT and DELETE', async () => {
      // Raw requests: fetch would resolve the dot segments of the last two ids itself.
      for (const id of ['9b2f1c3e-0000-4000-8000-000000000000', 'not-a-uuid', '..%2F..%2Fberth.db', '%2E%2E']) {
        const path = `/v2/fail/unknown/blobs/uploads/${id}`;
        assertRawError(await rawRequest(server.url, `GET ${path} HTTP/1.1\r\nHost: x`), 404, 'BLOB_UPLOAD_UNKNOWN');
        assertRawError(await rawRequest(server.url, `PATCH ${path} HTTP/1.1\r\nHost: x\r\nContent-Length: 10`, randomBlob(10)), 404, 'BLOB_UPLOAD_UNKNOWN');
        assertRawError(await rawRequest(server.url, `PATCH ${path} HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nContent-Range: 0-9`, randomBlob(10)), 404, 'BLOB_UPLOAD_UNKNOWN');
        assertRawError(await rawRequest(server.url, `PUT ${path}?digest=${sha256('x')} HTTP/1.1\r\nHost: x\r\nContent-Length: 1`, 'x'), 404, 'BLOB_UPLOAD_UNKNOWN');
        assertRawError(await rawRequest(server.url, `DELETE ${path} HTTP/1.1\r\nHost: x`), 404, 'BLOB_UPLOAD_UNKNOWN');
      }
      await assertNotKept(server, 'fail/unknown', sha256('x'));
    });

    it('an upload id used under another repository name → 404; the session is untouched', async () => {
      const bytes = randomBlob(100);
      const upload = await startUpload(server.url, 'fail/owner');
      assert.equal((await patch(server, upload, bytes.subarray(0, 40))).status, 202);
      for (const other of ['fail/thief', 'fail', 'fail/owner/sub']) {
        const url = `${server.url}/v2/${other}/blobs/uploads/${upload.id}`;
        await assertError(await fetch(url), 404, 'BLOB_UPLOAD_UNKNOWN');
        await assertError(await fetch(url, { method: 'PATCH', body: bytes.subarray(40) }), 404, 'BLOB_UPLOAD_UNKNOWN');
        await assertError(await fetch(`${url}?digest=${sha256(bytes)}`, { method: 'PUT', body: bytes.subarray(40) }), 404, 'BLOB_UPLOAD_UNKNOWN');
        await assertError(await fetch(url, { method: 'DELETE' }), 404, 'BLOB_UPLOAD_UNKNOWN');
        await assertNotKept(server, other, sha256(bytes));
      }
      await assertSessionAt(server, upload, 40);
      const put = await fetch(withQuery(upload.url, { digest: sha256(bytes) }), { method: 'PUT', body: bytes.subarray(40) });
      assert.equal(put.status, 201);
    });

    it('a client that disconnects mid-PATCH leaves the offset unchanged; a retry of the chunk succeeds', { timeout: 60_000 }, async () => {
      const name = 'fail/disconnect';
      const bytes = randomBlob(100 + 400_000);
      const upload = await startUpload(server.url, name);
      assert.equal((await patch(server, upload, bytes.subarray(0, 100), '0-99')).status, 202);
      const head = `PATCH ${upload.location} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 400000\r\nContent-Range: 100-400099`;
      // Wait until part of the chunk reached the disk, then hang up.
      await abortMidBody(server.url, head, bytes.subarray(100, 100 + 65_536), async () => ((await uploadFileSize(server, upload.id)) ?? 0) > 100);
      await waitUntil(async () => (await uploadFileSize(server, upload.id)) === 100, 'the partial chunk to be cut back');
      assert.equal(await uploadRange(server.url, upload.location), '0-99');
      const retry = await patch(server, upload, bytes.subarray(100), '100-400099');
      assert.equal(retry.status, 202, await retry.clone().text());
      assert.equal(retry.headers.get('range'), '0-400099');
      const put = await fetch(withQuery(upload.url, { digest: sha256(bytes) }), { method: 'PUT' });
      assert.equal(put.status, 201, await put.clone().text());
      assert.equal(put.headers.get('docker-content-digest'), sha256(bytes));
      const res = await readBlob(server.url, name, sha256(bytes));
      assert.deepEqual(Buffer.from(await res.arrayBuffer()), bytes);
    });

    it('a client that hangs up right after the headers of a streamed PATCH changes nothing; the retry succeeds', { timeout: 60_000 }, async () => {
      const name = 'fail/disconnect';
      const bytes = randomBlob(50 + 200_000);
      const upload = await startUpload(server.url, name);
      assert.equal((await patch(server, upload, bytes.subarray(0, 50))).status, 202);
      const head = `PATCH ${upload.location} HTTP/1.1\r\nHost: x\r\nContent-Length: 200000`;
      await abortMidBody(server.url, head, bytes.subarray(50, 1050));
      await waitUntil(async () => (await uploadFileSize(server, upload.id)) === 50, 'the upload data to be back at 50 bytes');
      assert.equal(await uploadRange(server.url, upload.location), '0-49');
      const retry = await patch(server, upload, bytes.subarray(50));
      assert.equal(retry.status, 202, await retry.clone().text());
      assert.equal(retry.headers.get('range'), `0-${bytes.length - 1}`);
      const put = await fetch(withQuery(upload.url, { digest: sha256(bytes) }), { method: 'PUT' });
      assert.equal(put.status, 201, await put.clone().text());
      const res = await readBlob(server.url, name, sha256(bytes));
      assert.deepEqual(Buffer.from(await res.arrayBuffer()), bytes);
    });

    it('a client that disconnects mid final PUT leaves the session as it was and publishes nothing', { timeout: 60_000 }, async () => {
      const name = 'fail/disconnect';
      const bytes = randomBlob(1000 + 300_000);
      const upload = await startUpload(server.url, name);
      assert.equal((await patch(server, upload, bytes.subarray(0, 1000))).status, 202);
      const head = `PUT ${upload.location}?digest=${sha256(bytes)} HTTP/1.1\r\nHost: x\r\nContent-Length: 300000`;
      await abortMidBody(server.url, head, bytes.subarray(1000, 100_000), async () => ((await uploadFileSize(server, upload.id)) ?? 0) > 1000);
      await waitUntil(async () => (await uploadFileSize(server, upload.id)) === 1000, 'the partial final chunk to be cut back');
      await assertSessionAt(server, upload, 1000);
      await assertNotKept(server, name, sha256(bytes));
      const put = await fetch(withQuery(upload.url, { digest: sha256(bytes) }), { method: 'PUT', body: bytes.subarray(1000) });
      assert.equal(put.status, 201, await put.clone().text());
    });

    it('a client that disconnects mid monolithic POST leaves no blob and no scratch data', { timeout: 60_000 }, async () => {
      const name = 'fail/disconnect-mono';
      const bytes = randomBlob(500_000);
      const before = await listFiles(uploadsDir(server));
      const scratch = async () => (await listFiles(uploadsDir(server))).filter((f) => !before.includes(f));
      const head = `POST /v2/${name}/blobs/uploads/?digest=${sha256(bytes)} HTTP/1.1\r\nHost: x\r\nContent-Length: ${bytes.length}`;
      // Once as soon as the scratch upload exists (before or as its bytes start to flow), once when
      // part of the body reached it; each time the scratch upload must go away.
      for (const ready of [async () => (await scratch()).length > 0, async () => (await Promise.all((await scratch()).map((id) => uploadFileSize(server, id)))).some((size) => (size ?? 0) > 0)]) {
        await abortMidBody(server.url, head, bytes.subarray(0, 200_000), ready);
        await waitUntil(async () => (await scratch()).length === 0, 'the scratch upload to be removed');
        await assertNotKept(server, name, sha256(bytes));
      }
      assert.deepEqual(await listFiles(uploadsDir(server)), before);
      // The same push, complete, then works.
      const res = await fetch(`${server.url}/v2/${name}/blobs/uploads/?digest=${sha256(bytes)}`, { method: 'POST', body: bytes });
      assert.equal(res.status, 201);
    });

    it('a body shorter than its Content-Length, then a half-close, is refused and leaves nothing', { timeout: 60_000 }, async () => {
      const name = 'fail/truncated';
      const bytes = randomBlob(1000);
      const upload = await startUpload(server.url, name);
      assert.equal((await patch(server, upload, bytes.subarray(0, 100))).status, 202);
      // "Connection: close" and a half-close after 400 of the 900 declared bytes.
      const res = await rawRequest(server.url, `PATCH ${upload.location} HTTP/1.1\r\nHost: x\r\nContent-Length: 900\r\nContent-Range: 100-999`, bytes.subarray(100, 500), { halfClose: true }).catch(() => undefined);
      if (res) assert.ok(res.status < 500, `answered ${res.status}`);
      await waitUntil(async () => (await uploadFileSize(server, upload.id)) === 100, 'the truncated chunk to be cut back');
      await assertSessionAt(server, upload, 100);
      const retry = await patch(server, upload, bytes.subarray(100), '100-999');
      assert.equal(retry.status, 202);
    });

    it('answered no request with a 5xx', () => assertNoServerErrors(server));
  });

  describe(`upload size limit, invalid names, oversized headers (${backend})`, () => {
    let server: TestServer;
    before(async () => {
      server = await startTestServer(backend, { config: { uploads: { maxBlobBytes: 1000 } } });
    });
    after(() => server.close());
    beforeEach(async () => {
      blobsAtTestStart = await storedBlobDigests(server);
    });

    /** A body in chunked transfer encoding: no Content-Length tells the server its size up front. */
    const streamed = (bytes: Buffer) => ({
      body: new ReadableStream<Uint8Array>({
        start(controller) {
          for (let i = 0; i < bytes.length; i += 256) controller.enqueue(bytes.subarray(i, i + 256));
          controller.close();
        },
      }),
      duplex: 'half' as const,
    });

    it('a monolithic POST over uploads.maxBlobBytes → 400 SIZE_INVALID and nothing kept; exactly the limit is accepted', async () => {
      const name = 'limit/mono';
      const before = await listFiles(uploadsDir(server));
      const over = randomBlob(1001);
      await assertError(await fetch(`${server.url}/v2/${name}/blobs/uploads/?digest=${sha256(over)}`, { method: 'POST', body: over }), 400, 'SIZE_INVALID');
      const overStreamed = randomBlob(5000);
      await assertError(await fetch(`${server.url}/v2/${name}/blobs/uploads/?digest=${sha256(overStreamed)}`, { method: 'POST', ...streamed(overStreamed) }), 400, 'SIZE_INVALID');
      await assertNotKept(server, name, sha256(over), sha256(overStreamed));
      assert.deepEqual(await listFiles(uploadsDir(server)), before);
      const exact = randomBlob(1000);
      assert.equal((await fetch(`${server.url}/v2/${name}/blobs/uploads/?digest=${sha256(exact)}`, { method: 'POST', body: exact })).status, 201);
    });

    it('chunks that together pass the limit → 400 SIZE_INVALID; the session keeps what it had and can finish within the limit', async () => {
      const name = 'limit/chunked';
      const bytes = randomBlob(1000);
      const upload = await startUpload(server.url, name);
      assert.equal((await patch(server, upload, bytes.subarray(0, 600), '0-599')).status, 202);
      await assertError(await patch(server, upload, randomBlob(401), '600-1000'), 400, 'SIZE_INVALID');
      await assertSessionAt(server, upload, 600);
      // Streamed, with no length to refuse up front: cut off once past the limit, and cut back.
      await assertError(await fetch(upload.url, { method: 'PATCH', ...streamed(randomBlob(2000)) }), 400, 'SIZE_INVALID');
      await assertSessionAt(server, upload, 600);
      // A final PUT chunk past the limit, declared and streamed.
      const tooMuch = randomBlob(500);
      await assertError(await fetch(withQuery(upload.url, { digest: sha256(Buffer.concat([bytes.subarray(0, 600), tooMuch])) }), { method: 'PUT', body: tooMuch }), 400, 'SIZE_INVALID');
      await assertError(await fetch(withQuery(upload.url, { digest: sha256('x') }), { method: 'PUT', ...streamed(tooMuch) }), 400, 'SIZE_INVALID');
      await assertSessionAt(server, upload, 600);
      await assertNotKept(server, name, sha256(Buffer.concat([bytes.subarray(0, 600), tooMuch])));
      assert.equal((await patch(server, upload, bytes.subarray(600, 1000), '600-999')).status, 202);
      const put = await fetch(withQuery(upload.url, { digest: sha256(bytes) }), { method: 'PUT' });
      assert.equal(put.status, 201);
      const res = await readBlob(server.url, name, sha256(bytes));
      assert.deepEqual(Buffer.from(await res.arrayBuffer()), bytes);
    });

    const badNames: Array<[string, string]> = [
      ['..', 'dot-dot'],
      ['a/../b', 'a dot-dot component'],
      ['.', 'dot'],
      ['Upper', 'uppercase'],
      ['lib/Alpine', 'uppercase component'],
      ['a//b', 'an empty component'],
      ['a/', 'a trailing slash'],
      ['/a', 'a leading slash'],
      ['-a', 'a leading separator'],
      ['a-', 'a trailing separator'],
      ['a..b', 'a doubled period'],
      ['a%20b', 'a space'],
      ['x'.repeat(256), 'more than 255 characters'],
      [`a/${'b'.repeat(254)}`, '256 characters with a slash'],
    ];
    for (const [bad, why] of badNames) {
      it(`a repository name with ${why} → 400 NAME_INVALID on every blob and upload route`, async () => {
        const id = '9b2f1c3e-0000-4000-8000-000000000000';
        const digest = sha256('x');
        const requests = [
          `POST /v2/${bad}/blobs/uploads/ HTTP/1.1\r\nHost: x\r\nContent-Length: 0`,
          `POST /v2/${bad}/blobs/uploads/?digest=${digest} HTTP/1.1\r\nHost: x\r\nContent-Length: 1`,
          `GET /v2/${bad}/blobs/${digest} HTTP/1.1\r\nHost: x`,
          `HEAD /v2/${bad}/blobs/${digest} HTTP/1.1\r\nHost: x`,
          `DELETE /v2/${bad}/blobs/${digest} HTTP/1.1\r\nHost: x`,
          `GET /v2/${bad}/blobs/uploads/${id} HTTP/1.1\r\nHost: x`,
          `PATCH /v2/${bad}/blobs/uploads/${id} HTTP/1.1\r\nHost: x\r\nContent-Length: 1`,
          `PUT /v2/${bad}/blobs/uploads/${id}?digest=${digest} HTTP/1.1\r\nHost: x\r\nContent-Length: 1`,
          `DELETE /v2/${bad}/blobs/uploads/${id} HTTP/1.1\r\nHost: x`,
        ];
        for (const head of requests) {
          const res = await rawRequest(server.url, head, head.includes('Content-Length: 1') ? 'x' : '');
          if (head.startsWith('HEAD')) {
            assert.equal(res.status, 400, head);
            assert.equal(res.body.length, 0);
          } else {
            assertRawError(res, 400, 'NAME_INVALID');
          }
        }
      });
    }

    it('a name of exactly 255 characters is accepted', async () => {
      const name = `a/${'b'.repeat(253)}`;
      assert.equal(name.length, 255);
      const upload = await startUpload(server.url, name);
      const put = await fetch(withQuery(upload.url, { digest: sha256('x') }), { method: 'PUT', body: 'x' });
      assert.equal(put.status, 201);
      assert.equal((await readBlob(server.url, name, sha256('x'))).status, 200);
    });

    it('request headers larger than server.maxHeaderBytes → 431, never a 500', async () => {
      const upload = await startUpload(server.url, 'limit/headers');
      assert.equal((await patch(server, upload, randomBlob(10))).status, 202);
      const big = 'a'.repeat(20_000);
      const cases = [
        [`GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Filler: ${big}`, ''],
        [`GET /v2/limit/headers/blobs/${sha256('x')}?pad=${big} HTTP/1.1\r\nHost: x`, ''],
        [`GET /v2/ HTTP/1.1\r\nHost: x\r\n${Array.from({ length: 100 }, (_, i) => `X-H${i}: ${'b'.repeat(200)}`).join('\r\n')}`, ''],
        [`PATCH ${upload.location} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\nX-Filler: ${big}`, randomBlob(100)],
      ] as const;
      for (const [head, body] of cases) {
        const res = await rawRequest(server.url, head, body);
        assert.equal(res.status, 431, `${head.slice(0, 40)}: ${res.status}`);
        const parsed = JSON.parse(res.body.toString()) as { errors: Array<{ code: string }> };
        assert.equal(parsed.errors[0]?.code, 'REQUEST_HEADER_TOO_LARGE');
      }
      await assertSessionAt(server, upload, 10);
      // Below the limit is fine.
      const ok = await rawRequest(server.url, `GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Filler: ${'a'.repeat(12_000)}`);
      assert.equal(ok.status, 200);
    });

    it('answered no request with a 5xx', () => assertNoServerErrors(server));
  });
}
