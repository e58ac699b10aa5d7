import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { BACKENDS } from '../helpers/backends.ts';
import {
  assertError,
  assertNoServerErrors,
  listFiles,
  rawRequest,
  readBlob,
  startUpload,
  storedBlobDigests,
  uploadFileSize,
  uploadRange,
  uploadsDir,
  withQuery,
} from '../helpers/http.ts';
import { pushBlob, randomBlob, sha256 } from '../helpers/oci.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** A body sent with chunked transfer encoding (no Content-Length), as streaming clients do. */
function streamed(parts: Buffer[]): { body: ReadableStream<Uint8Array>; duplex: 'half' } {
  return {
    body: new ReadableStream<Uint8Array>({
      start(controller) {
        for (const part of parts) controller.enqueue(part);
        controller.close();
      },
    }),
    duplex: 'half',
  };
}

async function assertBlob(server: TestServer, name: string, digest: string, bytes: Buffer): Promise<void> {
  const res = await readBlob(server.url, name, digest);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('docker-content-digest'), digest);
  assert.deepEqual(Buffer.from(await res.arrayBuffer()), bytes);
}

/** Checks the 201 of a completed upload (PUT or monolithic POST). */
function assertCreated(res: Response, name: string, digest: string): void {
  assert.equal(res.status, 201);
  assert.equal(res.headers.get('location'), `/v2/${name}/blobs/${digest}`);
  assert.equal(res.headers.get('docker-content-digest'), digest);
  assert.equal(res.headers.get('content-length'), '0');
}

for (const backend of BACKENDS) {
  describe(`blob uploads (${backend})`, () => {
    let server: TestServer;
    before(async () => {
      server = await startTestServer(backend);
    });
    after(() => server.close());

    it('POST opens a session: 202 with Location, Docker-Upload-UUID and Range 0-0', async () => {
      const name = 'up/start';
      for (const path of [`/v2/${name}/blobs/uploads/`, `/v2/${name}/blobs/uploads`]) {
        const res = await fetch(`${server.url}${path}`, { method: 'POST' });
        assert.equal(res.status, 202);
        assert.equal((await res.arrayBuffer()).byteLength, 0);
        const id = res.headers.get('docker-upload-uuid') ?? '';
        assert.match(id, UUID);
        assert.equal(res.headers.get('location'), `/v2/${name}/blobs/uploads/${id}`);
        assert.equal(res.headers.get('range'), '0-0');
        assert.equal(res.headers.get('content-length'), '0');
        assert.equal(await uploadRange(server.url, `/v2/${name}/blobs/uploads/${id}`), '0-0');
        assert.equal(await uploadFileSize(server, id), 0);
      }
    });

    it('a body on a POST without digest is not taken as upload data', async () => {
      const res = await fetch(`${server.url}/v2/up/start/blobs/uploads/`, { method: 'POST', body: randomBlob(100) });
      assert.equal(res.status, 202);
      assert.equal(res.headers.get('range'), '0-0');
      assert.equal(await uploadFileSize(server, res.headers.get('docker-upload-uuid') as string), 0);
    });

    it('monolithic POST ?digest= → 201 with Location and Docker-Content-Digest; no session is left', async () => {
      const name = 'up/mono';
      const before = await listFiles(uploadsDir(server));
      const bytes = randomBlob(2048);
      const digest = sha256(bytes);
      const res = await fetch(`${server.url}/v2/${name}/blobs/uploads/?digest=${digest}`, { method: 'POST', body: bytes });
      assertCreated(res, name, digest);
      await assertBlob(server, name, digest, bytes);
      assert.deepEqual(await listFiles(uploadsDir(server)), before);
    });

    it('monolithic POST of an empty blob and of a streamed (chunked-encoding) body', async () => {
      const name = 'up/mono';
      const empty = await fetch(`${server.url}/v2/${name}/blobs/uploads/?digest=${sha256('')}`, { method: 'POST' });
      assertCreated(empty, name, sha256(''));
      await assertBlob(server, name, sha256(''), Buffer.alloc(0));
      const parts = [randomBlob(1000), randomBlob(3000), randomBlob(5)];
      const whole = Buffer.concat(parts);
      const res = await fetch(`${server.url}/v2/${name}/blobs/uploads/?digest=${sha256(whole)}`, { method: 'POST', ...streamed(parts) });
      assertCreated(res, name, sha256(whole));
      await assertBlob(server, name, sha256(whole), whole);
    });

    it('POST then PUT with the whole body → 201; the session is gone afterwards', async () => {
      const name = 'up/put';
      const bytes = randomBlob(4096);
      const digest = sha256(bytes);
      const upload = await startUpload(server.url, name);
      const res = await fetch(withQuery(upload.url, { digest }), { method: 'PUT', body: bytes });
      assertCreated(res, name, digest);
      await assertBlob(server, name, digest, bytes);
      await assertError(await fetch(upload.url), 404, 'BLOB_UPLOAD_UNKNOWN');
      await assertError(await fetch(upload.url, { method: 'PATCH', body: 'x' }), 404, 'BLOB_UPLOAD_UNKNOWN');
      await assertError(await fetch(withQuery(upload.url, { digest }), { method: 'PUT' }), 404, 'BLOB_UPLOAD_UNKNOWN');
      assert.equal(await uploadFileSize(server, upload.id), undefined);
    });

    it('streamed PATCHes without Content-Range, then PUT without body → 201', async () => {
      const name = 'up/streamed';
      const parts = [randomBlob(1500), randomBlob(10), randomBlob(70_000)];
      const whole = Buffer.concat(parts);
      const upload = await startUpload(server.url, name);
      let location = upload.location;
      let received = 0;
      for (const part of parts) {
        const res = await fetch(new URL(location, server.url), { method: 'PATCH', body: part, headers: { 'content-type': 'application/octet-stream' } });
        assert.equal(res.status, 202, await res.clone().text());
        received += part.length;
        assert.equal(res.headers.get('range'), `0-${received - 1}`);
        assert.equal(res.headers.get('docker-upload-uuid'), upload.id);
        assert.equal(res.headers.get('content-length'), '0');
        location = res.headers.get('location') as string;
        assert.equal(location, upload.location);
      }
      assert.equal(await uploadRange(server.url, location), `0-${whole.length - 1}`);
      const put = await fetch(new URL(`${location}?digest=${sha256(whole)}`, server.url), { method: 'PUT' });
      assertCreated(put, name, sha256(whole));
      await assertBlob(server, name, sha256(whole), whole);
    });

    it('a streamed PATCH in chunked transfer encoding (no Content-Length) is appended whole', async () => {
      const name = 'up/streamed';
      const parts = [randomBlob(100), randomBlob(200_000), randomBlob(1)];
      const whole = Buffer.concat(parts);
      const upload = await startUpload(server.url, name);
      const res = await fetch(upload.url, { method: 'PATCH', ...streamed(parts) });
      assert.equal(res.status, 202);
      assert.equal(res.headers.get('range'), `0-${whole.length - 1}`);
      const put = await fetch(withQuery(upload.url, { digest: sha256(whole) }), { method: 'PUT' });
      assertCreated(put, name, sha256(whole));
      await assertBlob(server, name, sha256(whole), whole);
    });

    it('chunked PATCHes with Content-Range, then PUT with a final chunk and Content-Range → 201', async () => {
      const name = 'up/chunked';
      const whole = randomBlob(10_000);
      const cuts = [0, 1, 4000, 4001, 9000, 10_000];
      const upload = await startUpload(server.url, name);
      for (let i = 0; i < cuts.length - 2; i++) {
        const start = cuts[i] as number;
        const end = (cuts[i + 1] as number) - 1;
        const res = await fetch(upload.url, { method: 'PATCH', body: whole.subarray(start, end + 1), headers: { 'content-range': `${start}-${end}`, 'content-type': 'application/octet-stream' } });
        assert.equal(res.status, 202, await res.clone().text());
        assert.equal(res.headers.get('range'), `0-${end}`);
        assert.equal(res.headers.get('location'), upload.location);
        assert.equal(await uploadRange(server.url, upload.location), `0-${end}`);
      }
      const put = await fetch(withQuery(upload.url, { digest: sha256(whole) }), { method: 'PUT', body: whole.subarray(9000), headers: { 'content-range': '9000-9999' } });
      assertCreated(put, name, sha256(whole));
      await assertBlob(server, name, sha256(whole), whole);
    });

    it('Content-Range is also accepted as "bytes a-b/total"; a final PUT chunk may come without Content-Range', async () => {
      const name = 'up/chunked';
      const whole = randomBlob(3000);
      const upload = await startUpload(server.url, name);
      const first = await fetch(upload.url, { method: 'PATCH', body: whole.subarray(0, 1000), headers: { 'content-range': 'bytes 0-999/3000' } });
      assert.equal(first.status, 202);
      const second = await fetch(upload.url, { method: 'PATCH', body: whole.subarray(1000, 2000), headers: { 'content-range': 'bytes 1000-1999/*' } });
      assert.equal(second.status, 202);
      assert.equal(second.headers.get('range'), '0-1999');
      const put = await fetch(withQuery(upload.url, { digest: sha256(whole) }), { method: 'PUT', body: whole.subarray(2000) });
      assertCreated(put, name, sha256(whole));
      await assertBlob(server, name, sha256(whole), whole);
    });

    it('GET upload status → 204 with Range, Location, Docker-Upload-UUID and no body', async () => {
      const upload = await startUpload(server.url, 'up/status');
      await fetch(upload.url, { method: 'PATCH', body: randomBlob(123) });
      const res = await rawRequest(server.url, `GET ${upload.location} HTTP/1.1\r\nHost: x`);
      assert.equal(res.status, 204);
      assert.equal(res.headers.range, '0-122');
      assert.equal(res.headers.location, upload.location);
      assert.equal(res.headers['docker-upload-uuid'], upload.id);
      assert.equal(res.body.length, 0);
    });

    it('DELETE upload → 204, then the session is unknown (404 BLOB_UPLOAD_UNKNOWN) and its data gone', async () => {
      const upload = await startUpload(server.url, 'up/cancel');
      await fetch(upload.url, { method: 'PATCH', body: randomBlob(500) });
      assert.equal(await uploadFileSize(server, upload.id), 500);
      const del = await fetch(upload.url, { method: 'DELETE' });
      assert.equal(del.status, 204);
      assert.equal((await del.arrayBuffer()).byteLength, 0);
      await assertError(await fetch(upload.url), 404, 'BLOB_UPLOAD_UNKNOWN');
      await assertError(await fetch(upload.url, { method: 'PATCH', body: 'more' }), 404, 'BLOB_UPLOAD_UNKNOWN');
      await assertError(await fetch(withQuery(upload.url, { digest: sha256('x') }), { method: 'PUT', body: 'x' }), 404, 'BLOB_UPLOAD_UNKNOWN');
      await assertError(await fetch(upload.url, { method: 'DELETE' }), 404, 'BLOB_UPLOAD_UNKNOWN');
      assert.equal(await uploadFileSize(server, upload.id), undefined);
    });

    it('cross-repository mount with mount+from → 201 and the blob readable in the target, stored once', async () => {
      const bytes = randomBlob(777);
      const { digest } = await pushBlob(server.url, 'mount/src', bytes);
      const res = await fetch(`${server.url}/v2/mount/dst/blobs/uploads/?mount=${digest}&from=mount/src`, { method: 'POST' });
      assertCreated(res, 'mount/dst', digest);
      await assertBlob(server, 'mount/dst', digest, bytes);
      const head = await fetch(`${server.url}/v2/mount/dst/blobs/${digest}`, { method: 'HEAD' });
      assert.equal(head.headers.get('content-length'), '777');
      assert.equal((await storedBlobDigests(server)).filter((d) => d === digest).length, 1);
    });

    it('from is accepted unencoded (from=a/b, as ctr sends it) and encoded (from=a%2Fb)', async () => {
      const bytes = randomBlob(50);
      const { digest } = await pushBlob(server.url, 'mount/deep/src', bytes);
      const plain = await rawRequest(server.url, `POST /v2/mount/plain/blobs/uploads/?mount=${digest}&from=mount/deep/src HTTP/1.1\r\nHost: x\r\nContent-Length: 0`);
      assert.equal(plain.status, 201, plain.body.toString());
      assert.equal(plain.headers['docker-content-digest'], digest);
      const encoded = await rawRequest(server.url, `POST /v2/mount/encoded/blobs/uploads/?mount=${encodeURIComponent(digest)}&from=mount%2Fdeep%2Fsrc HTTP/1.1\r\nHost: x\r\nContent-Length: 0`);
      assert.equal(encoded.status, 201, encoded.body.toString());
      await assertBlob(server, 'mount/plain', digest, bytes);
      await assertBlob(server, 'mount/encoded', digest, bytes);
    });

    it('mount from a repository that lacks the blob → 202: a normal upload session that completes', async () => {
      const bytes = randomBlob(64);
      const digest = sha256(bytes);
      await pushBlob(server.url, 'mount/other', randomBlob(8));
      for (const from of ['mount/other', 'mount/does-not-exist']) {
        const res = await fetch(`${server.url}/v2/mount/fallback/blobs/uploads/?mount=${digest}&from=${from}`, { method: 'POST' });
        assert.equal(res.status, 202);
        const id = res.headers.get('docker-upload-uuid') ?? '';
        assert.match(id, UUID);
        assert.equal(res.headers.get('location'), `/v2/mount/fallback/blobs/uploads/${id}`);
        assert.equal(res.headers.get('range'), '0-0');
        if (from === 'mount/other') await assertError(await readBlob(server.url, 'mount/fallback', digest), 404, 'BLOB_UNKNOWN');
        const put = await fetch(new URL(`${res.headers.get('location')}?digest=${digest}`, server.url), { method: 'PUT', body: bytes });
        assertCreated(put, 'mount/fallback', digest);
      }
      await assertBlob(server, 'mount/fallback', digest, bytes);
    });

    it('a blob linked elsewhere but not in `from` is not mounted from `from`', async () => {
      const bytes = randomBlob(40);
      const { digest } = await pushBlob(server.url, 'mount/holder', bytes);
      await pushBlob(server.url, 'mount/nonholder', randomBlob(9));
      const res = await fetch(`${server.url}/v2/mount/target2/blobs/uploads/?mount=${digest}&from=mount/nonholder`, { method: 'POST' });
      assert.equal(res.status, 202);
      await assertError(await readBlob(server.url, 'mount/target2', digest), 404, 'BLOB_UNKNOWN');
    });

    it('mount without from → 201 when the registry holds the blob, 202 when it does not', async () => {
      const bytes = randomBlob(90);
      const { digest } = await pushBlob(server.url, 'mount/anywhere', bytes);
      const res = await fetch(`${server.url}/v2/mount/nofrom/blobs/uploads/?mount=${digest}`, { method: 'POST' });
      assertCreated(res, 'mount/nofrom', digest);
      await assertBlob(server, 'mount/nofrom', digest, bytes);
      const unknown = await fetch(`${server.url}/v2/mount/nofrom/blobs/uploads/?mount=${sha256('unheard of')}`, { method: 'POST' });
      assert.equal(unknown.status, 202);
      assert.match(unknown.headers.get('docker-upload-uuid') ?? '', UUID);
    });

    it('a failed mount with ?digest= falls back to a monolithic upload of the body', async () => {
      const bytes = randomBlob(33);
      const digest = sha256(bytes);
      const res = await fetch(`${server.url}/v2/mount/mono/blobs/uploads/?mount=${digest}&from=mount/src&digest=${digest}`, { method: 'POST', body: bytes });
      assertCreated(res, 'mount/mono', digest);
      await assertBlob(server, 'mount/mono', digest, bytes);
    });

    it('mount with an invalid digest → 400 DIGEST_INVALID; with an invalid from → 400 NAME_INVALID', async () => {
      await assertError(await fetch(`${server.url}/v2/mount/bad/blobs/uploads/?mount=sha256:nope&from=mount/src`, { method: 'POST' }), 400, 'DIGEST_INVALID');
      const { digest } = await pushBlob(server.url, 'mount/src2', randomBlob(5));
      await assertError(await fetch(`${server.url}/v2/mount/bad/blobs/uploads/?mount=${digest}&from=Mount/SRC`, { method: 'POST' }), 400, 'NAME_INVALID');
      await assertError(await fetch(`${server.url}/v2/mount/bad/blobs/uploads/?mount=${digest}&from=..`, { method: 'POST' }), 400, 'NAME_INVALID');
      await assertError(await readBlob(server.url, 'mount/bad', digest), 404, 'BLOB_UNKNOWN');
    });

    it('absolute-form request targets (http://host:port/v2/…) work for POST, PATCH, GET and PUT', async () => {
      const name = 'up/absolute';
      const { host } = new URL(server.url);
      const bytes = randomBlob(300);
      const digest = sha256(bytes);
      const post = await rawRequest(server.url, `POST http://${host}/v2/${name}/blobs/uploads/ HTTP/1.1\r\nHost: ${host}\r\nContent-Length: 0`);
      assert.equal(post.status, 202);
      const location = post.headers.location as string;
      assert.equal(location, `/v2/${name}/blobs/uploads/${post.headers['docker-upload-uuid']}`);
      const patch = await rawRequest(server.url, `PATCH http://${host}${location} HTTP/1.1\r\nHost: ${host}\r\nContent-Length: 100\r\nContent-Range: 0-99`, bytes.subarray(0, 100));
      assert.equal(patch.status, 202, patch.body.toString());
      assert.equal(patch.headers.range, '0-99');
      const status = await rawRequest(server.url, `GET http://${host}${location} HTTP/1.1\r\nHost: ${host}`);
      assert.equal(status.status, 204);
      assert.equal(status.headers.range, '0-99');
      const put = await rawRequest(server.url, `PUT http://${host}${location}?digest=${digest} HTTP/1.1\r\nHost: ${host}\r\nContent-Length: 200`, bytes.subarray(100));
      assert.equal(put.status, 201, put.body.toString());
      assert.equal(put.headers['docker-content-digest'], digest);
      assert.equal(put.headers.location, `/v2/${name}/blobs/${digest}`);
      await assertBlob(server, name, digest, bytes);
      const mono = randomBlob(20);
      const monoPost = await rawRequest(server.url, `POST http://${host}/v2/${name}/blobs/uploads/?digest=${sha256(mono)} HTTP/1.1\r\nHost: ${host}\r\nContent-Length: 20`, mono);
      assert.equal(monoPost.status, 201, monoPost.body.toString());
      const get = await rawRequest(server.url, `GET http://${host}/v2/${name}/blobs/${sha256(mono)} HTTP/1.1\r\nHost: ${host}`);
      assert.equal(get.status, 200);
      assert.deepEqual(get.body, mono);
    });

    it('a blob pushed twice to the same repository is stored once and both pushes succeed', async () => {
      const bytes = randomBlob(256);
      const first = await pushBlob(server.url, 'up/twice', bytes);
      const upload = await startUpload(server.url, 'up/twice');
      const res = await fetch(withQuery(upload.url, { digest: first.digest }), { method: 'PUT', body: bytes });
      assertCreated(res, 'up/twice', first.digest);
      assert.equal((await storedBlobDigests(server)).filter((d) => d === first.digest).length, 1);
      await assertBlob(server, 'up/twice', first.digest, bytes);
    });

    it('answered no request with a 5xx', () => assertNoServerErrors(server));
  });

  describe(`concurrent uploads (${backend})`, () => {
    let server: TestServer;
    before(async () => {
      server = await startTestServer(backend);
    });
    after(() => server.close());

    async function chunkedPush(name: string, bytes: Buffer): Promise<Response> {
      const upload = await startUpload(server.url, name);
      const half = Math.floor(bytes.length / 2);
      const patch = await fetch(upload.url, { method: 'PATCH', body: bytes.subarray(0, half), headers: { 'content-range': `0-${half - 1}` } });
      assert.equal(patch.status, 202, await patch.clone().text());
      return fetch(withQuery(upload.url, { digest: sha256(bytes) }), { method: 'PUT', body: bytes.subarray(half) });
    }

    it('20 parallel uploads of different blobs all succeed', async () => {
      const blobs = Array.from({ length: 20 }, (_, i) => randomBlob(50_000 + i));
      const results = await Promise.all(
        blobs.map((bytes, i) =>
          i % 2 === 0
            ? chunkedPush(`conc/diff${i % 4}`, bytes)
            : fetch(`${server.url}/v2/conc/diff${i % 4}/blobs/uploads/?digest=${sha256(bytes)}`, { method: 'POST', body: bytes }),
        ),
      );
      for (const [i, res] of results.entries()) assertCreated(res, `conc/diff${i % 4}`, sha256(blobs[i] as Buffer));
      for (const [i, bytes] of blobs.entries()) await assertBlob(server, `conc/diff${i % 4}`, sha256(bytes), bytes);
      const stored = await storedBlobDigests(server);
      for (const bytes of blobs) assert.equal(stored.filter((d) => d === sha256(bytes)).length, 1);
    });

    it('10 parallel uploads of the same blob all succeed and it is stored once', async () => {
      const bytes = randomBlob(120_000);
      const digest = sha256(bytes);
      const names = Array.from({ length: 10 }, (_, i) => (i < 6 ? 'conc/same' : `conc/same${i}`));
      const results = await Promise.all(
        names.map((name, i) =>
          i % 2 === 0 ? chunkedPush(name, bytes) : fetch(`${server.url}/v2/${name}/blobs/uploads/?digest=${digest}`, { method: 'POST', body: bytes }),
        ),
      );
      for (const [i, res] of results.entries()) assertCreated(res, names[i] as string, digest);
      for (const name of new Set(names)) await assertBlob(server, name, digest, bytes);
      assert.deepEqual((await storedBlobDigests(server)).filter((d) => d === digest), [digest]);
      // No session or scratch data is left behind by any of them.
      assert.deepEqual(await listFiles(uploadsDir(server)), []);
    });

    it('parallel PATCHes of the same chunk to one session: one is taken, the others get 416, nothing is doubled', async () => {
      const bytes = randomBlob(100_000);
      const upload = await startUpload(server.url, 'conc/session');
      const results = await Promise.all(
        Array.from({ length: 5 }, () => fetch(upload.url, { method: 'PATCH', body: bytes, headers: { 'content-range': `0-${bytes.length - 1}` } })),
      );
      const statuses = results.map((r) => r.status).sort();
      assert.deepEqual(statuses, [202, 416, 416, 416, 416]);
      for (const res of results) {
        await res.arrayBuffer();
        assert.equal(res.headers.get('range'), `0-${bytes.length - 1}`);
      }
      assert.equal(await uploadFileSize(server, upload.id), bytes.length);
      const put = await fetch(withQuery(upload.url, { digest: sha256(bytes) }), { method: 'PUT' });
      assertCreated(put, 'conc/session', sha256(bytes));
    });

    it('parallel streamed PATCHes to one session are appended one after the other', async () => {
      const parts = Array.from({ length: 4 }, () => randomBlob(30_000));
      const upload = await startUpload(server.url, 'conc/session');
      const results = await Promise.all(parts.map((part) => fetch(upload.url, { method: 'PATCH', body: part })));
      for (const res of results) assert.equal(res.status, 202);
      assert.equal(await uploadRange(server.url, upload.location), `0-${4 * 30_000 - 1}`);
      // The order is the server's, told by each response's Range; the parts must not interleave.
      const ends = results.map((r) => Number((r.headers.get('range') as string).slice(2)) + 1);
      assert.deepEqual([...ends].sort((a, b) => a - b), [30_000, 60_000, 90_000, 120_000]);
      const whole = Buffer.concat(parts.map((part, i) => ({ part, end: ends[i] as number })).sort((a, b) => a.end - b.end).map((p) => p.part));
      const put = await fetch(withQuery(upload.url, { digest: sha256(whole) }), { method: 'PUT' });
      assertCreated(put, 'conc/session', sha256(whole));
      await assertBlob(server, 'conc/session', sha256(whole), whole);
    });

    it('answered no request with a 5xx', () => assertNoServerErrors(server));
  });
}
