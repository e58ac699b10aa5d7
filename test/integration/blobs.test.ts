import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { BACKENDS } from '../helpers/backends.ts';
import { assertError, assertNoServerErrors, assertRawError, blobsDir, rawRequest, readBlob, startUpload, storedBlobDigests, withQuery } from '../helpers/http.ts';
import { pushBlob, randomBlob, sha256, sha512 } from '../helpers/oci.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';

const SIZE = 1000;

for (const backend of BACKENDS) {
  describe(`blob GET and HEAD (${backend})`, () => {
    let server: TestServer;
    let bytes: Buffer;
    let digest: string;
    const name = 'blobs/read';

    before(async () => {
      server = await startTestServer(backend);
      bytes = randomBlob(SIZE);
      digest = (await pushBlob(server.url, name, bytes)).digest;
    });
    after(() => server.close());

    it('GET returns the bytes with digest, length, ETag and Accept-Ranges', async () => {
      const res = await readBlob(server.url, name, digest);
      assert.equal(res.status, 200);
      assert.deepEqual(Buffer.from(await res.arrayBuffer()), bytes);
      assert.equal(res.headers.get('docker-content-digest'), digest);
      assert.equal(res.headers.get('content-length'), String(SIZE));
      assert.equal(res.headers.get('etag'), `"${digest}"`);
      assert.equal(res.headers.get('accept-ranges'), 'bytes');
      assert.equal(res.headers.get('content-type'), 'application/octet-stream');
      assert.equal(res.headers.get('docker-distribution-api-version'), 'registry/2.0');
    });

    it('HEAD returns the same headers and no body bytes', async () => {
      const res = await rawRequest(server.url, `HEAD /v2/${name}/blobs/${digest} HTTP/1.1\r\nHost: x`);
      assert.equal(res.status, 200);
      assert.equal(res.headers['docker-content-digest'], digest);
      assert.equal(res.headers['content-length'], String(SIZE));
      assert.equal(res.headers.etag, `"${digest}"`);
      assert.equal(res.headers['accept-ranges'], 'bytes');
      assert.equal(res.body.length, 0);
    });

    it('If-None-Match with the ETag answers 304 without a body; another ETag gets the blob', async () => {
      const hit = await fetch(`${server.url}/v2/${name}/blobs/${digest}`, { headers: { 'if-none-match': `"${digest}"` } });
      assert.equal(hit.status, 304);
      assert.equal((await hit.arrayBuffer()).byteLength, 0);
      assert.equal(hit.headers.get('etag'), `"${digest}"`);
      assert.equal(hit.headers.get('docker-content-digest'), digest);
      const raw = await rawRequest(server.url, `GET /v2/${name}/blobs/${digest} HTTP/1.1\r\nHost: x\r\nIf-None-Match: "${digest}"`);
      assert.equal(raw.status, 304);
      assert.equal(raw.body.length, 0);
      const miss = await fetch(`${server.url}/v2/${name}/blobs/${digest}`, { headers: { 'if-none-match': `"${sha256('other')}"` } });
      assert.equal(miss.status, 200);
      assert.deepEqual(Buffer.from(await miss.arrayBuffer()), bytes);
    });

    it('If-None-Match compares like RFC 9110 asks: a list, a weak tag and * all match', async () => {
      for (const header of [`"${sha256('a')}", "${digest}"`, `W/"${digest}"`, '*']) {
        const res = await fetch(`${server.url}/v2/${name}/blobs/${digest}`, { headers: { 'if-none-match': header } });
        assert.equal(res.status, 304, header);
        assert.equal((await res.arrayBuffer()).byteLength, 0);
        assert.equal(res.headers.get('etag'), `"${digest}"`);
      }
      const head = await fetch(`${server.url}/v2/${name}/blobs/${digest}`, { method: 'HEAD', headers: { 'if-none-match': `"${digest}"` } });
      assert.equal(head.status, 304);
    });

    it('the blob is cacheable; its error responses (416) are not', async () => {
      const ok = await readBlob(server.url, name, digest);
      await ok.arrayBuffer();
      assert.match(ok.headers.get('cache-control') ?? '', /max-age=\d+/);
      const refused = await rawRequest(server.url, `GET /v2/${name}/blobs/${digest} HTTP/1.1\r\nHost: x\r\nRange: bytes=5000-`);
      assert.equal(refused.status, 416);
      assert.doesNotMatch(refused.headers['cache-control'] ?? '', /max-age/);
    });

    it('a blob linked in the database whose file is gone from storage → 404 BLOB_UNKNOWN, not cacheable, never a 500', async () => {
      const lost = await pushBlob(server.url, name, randomBlob(700));
      const hex = lost.digest.slice('sha256:'.length);
      await rm(path.join(blobsDir(server), 'sha256', hex.slice(0, 2), hex));
      const res = await rawRequest(server.url, `GET /v2/${name}/blobs/${lost.digest} HTTP/1.1\r\nHost: x`);
      assertRawError(res, 404, 'BLOB_UNKNOWN');
      assert.equal(Number(res.headers['content-length']), res.body.length);
      assert.doesNotMatch(res.headers['cache-control'] ?? '', /max-age/);
      const ranged = await rawRequest(server.url, `GET /v2/${name}/blobs/${lost.digest} HTTP/1.1\r\nHost: x\r\nRange: bytes=0-9`);
      assertRawError(ranged, 404, 'BLOB_UNKNOWN');
    });

    const ranges: Array<[string, number, number]> = [
      ['bytes=0-99', 0, 99],
      ['bytes=100-199', 100, 199],
      ['bytes=0-0', 0, 0],
      ['bytes=999-999', 999, 999],
      ['bytes=900-', 900, 999],
      ['bytes=0-', 0, 999],
      ['bytes=-100', 900, 999],
      ['bytes=-1', 999, 999],
      ['bytes=-5000', 0, 999],
      ['bytes=990-5000', 990, 999],
    ];
    for (const [header, start, end] of ranges) {
      it(`Range ${header} → 206 bytes ${start}-${end}/${SIZE}`, async () => {
        const res = await fetch(`${server.url}/v2/${name}/blobs/${digest}`, { headers: { range: header } });
        assert.equal(res.status, 206);
        assert.equal(res.headers.get('content-range'), `bytes ${start}-${end}/${SIZE}`);
        assert.equal(res.headers.get('content-length'), String(end - start + 1));
        assert.equal(res.headers.get('docker-content-digest'), digest);
        assert.deepEqual(Buffer.from(await res.arrayBuffer()), bytes.subarray(start, end + 1));
      });
    }

    it('HEAD with a Range answers 206 with Content-Range and no body', async () => {
      const res = await rawRequest(server.url, `HEAD /v2/${name}/blobs/${digest} HTTP/1.1\r\nHost: x\r\nRange: bytes=10-19`);
      assert.equal(res.status, 206);
      assert.equal(res.headers['content-range'], `bytes 10-19/${SIZE}`);
      assert.equal(res.headers['content-length'], '10');
      assert.equal(res.body.length, 0);
    });

    for (const header of ['bytes=1000-', 'bytes=1000-1001', 'bytes=5000-6000', 'bytes=500-100', 'bytes=-0', 'bytes=-']) {
      it(`unsatisfiable Range ${header} → 416 with bytes */${SIZE} and a JSON error`, async () => {
        const res = await rawRequest(server.url, `GET /v2/${name}/blobs/${digest} HTTP/1.1\r\nHost: x\r\nRange: ${header}`);
        assertRawError(res, 416, 'RANGE_INVALID');
        assert.equal(res.headers['content-range'], `bytes */${SIZE}`);
        assert.match(res.headers['content-type'] ?? '', /^application\/json/);
        assert.equal(Number(res.headers['content-length']), res.body.length);
      });
    }

    it('HEAD with an unsatisfiable Range → 416, Content-Range and no body', async () => {
      const res = await rawRequest(server.url, `HEAD /v2/${name}/blobs/${digest} HTTP/1.1\r\nHost: x\r\nRange: bytes=2000-`);
      assert.equal(res.status, 416);
      assert.equal(res.headers['content-range'], `bytes */${SIZE}`);
      assert.equal(res.body.length, 0);
    });

    for (const header of ['bytes=0-1,5-6', 'items=0-5', 'bytes=a-b']) {
      it(`a Range it cannot parse (${header}) is ignored: 200 with the whole blob`, async () => {
        const res = await fetch(`${server.url}/v2/${name}/blobs/${digest}`, { headers: { range: header } });
        assert.equal(res.status, 200);
        assert.equal(res.headers.get('content-range'), null);
        assert.deepEqual(Buffer.from(await res.arrayBuffer()), bytes);
      });
    }

    it('a blob larger than one read buffer streams back byte-identical, and ranges across buffers work', async () => {
      const big = randomBlob(3 * 1024 * 1024 + 17);
      const pushed = await pushBlob(server.url, name, big);
      const res = await readBlob(server.url, name, pushed.digest);
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('content-length'), String(big.length));
      assert.deepEqual(Buffer.from(await res.arrayBuffer()), big);
      const start = 1024 * 1024 - 5;
      const end = 2 * 1024 * 1024 + 5;
      const part = await fetch(`${server.url}/v2/${name}/blobs/${pushed.digest}`, { headers: { range: `bytes=${start}-${end}` } });
      assert.equal(part.status, 206);
      assert.equal(part.headers.get('content-range'), `bytes ${start}-${end}/${big.length}`);
      assert.deepEqual(Buffer.from(await part.arrayBuffer()), big.subarray(start, end + 1));
    });

    it('an empty blob reads back with length 0; any Range on it is unsatisfiable', async () => {
      const empty = await pushBlob(server.url, name, Buffer.alloc(0));
      assert.equal(empty.digest, sha256(''));
      const res = await readBlob(server.url, name, empty.digest);
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('content-length'), '0');
      assert.equal((await res.arrayBuffer()).byteLength, 0);
      const ranged = await rawRequest(server.url, `GET /v2/${name}/blobs/${empty.digest} HTTP/1.1\r\nHost: x\r\nRange: bytes=0-`);
      assertRawError(ranged, 416, 'RANGE_INVALID');
      assert.equal(ranged.headers['content-range'], 'bytes */0');
    });

    it('GET of an unknown blob → 404 BLOB_UNKNOWN', async () => {
      await assertError(await readBlob(server.url, name, sha256('never pushed')), 404, 'BLOB_UNKNOWN');
    });

    it('HEAD of an unknown blob → 404 with no body', async () => {
      const res = await rawRequest(server.url, `HEAD /v2/${name}/blobs/${sha256('never pushed')} HTTP/1.1\r\nHost: x`);
      assert.equal(res.status, 404);
      assert.equal(res.body.length, 0);
      assert.equal(res.headers['docker-content-digest'], undefined);
    });

    it('a blob pushed to one repository is not readable through another', async () => {
      const other = 'blobs/other';
      await pushBlob(server.url, other, randomBlob(10));
      for (const repo of [other, 'blobs/never-created']) {
        await assertError(await readBlob(server.url, repo, digest), 404, 'BLOB_UNKNOWN');
        const head = await fetch(`${server.url}/v2/${repo}/blobs/${digest}`, { method: 'HEAD' });
        assert.equal(head.status, 404);
        await assertError(await fetch(`${server.url}/v2/${repo}/blobs/${digest}`, { headers: { range: 'bytes=0-9' } }), 404, 'BLOB_UNKNOWN');
        await assertError(await fetch(`${server.url}/v2/${repo}/blobs/${digest}`, { method: 'DELETE' }), 404, 'BLOB_UNKNOWN');
      }
      // The failed reads and deletes elsewhere did not touch it where it is linked.
      assert.equal((await readBlob(server.url, name, digest)).status, 200);
    });

    const badDigests = [
      'notadigest',
      'sha256:xyz',
      `sha256:${'a'.repeat(63)}`,
      `sha256:${'a'.repeat(65)}`,
      `sha256:${'A'.repeat(64)}`,
      `sha512:${'a'.repeat(64)}`,
      `md5:${'a'.repeat(32)}`,
      `sha256:${'g'.repeat(64)}`,
      'sha256:',
    ];
    for (const bad of badDigests) {
      it(`an invalid digest (${bad.slice(0, 20)}…) → 400 DIGEST_INVALID on GET, HEAD and DELETE`, async () => {
        const url = `${server.url}/v2/${name}/blobs/${encodeURIComponent(bad)}`;
        await assertError(await fetch(url), 400, 'DIGEST_INVALID');
        const head = await fetch(url, { method: 'HEAD' });
        assert.equal(head.status, 400);
        assert.equal((await head.arrayBuffer()).byteLength, 0);
        await assertError(await fetch(url, { method: 'DELETE' }), 400, 'DIGEST_INVALID');
      });
    }

    it('answered no request with a 5xx', () => assertNoServerErrors(server));
  });

  describe(`blob DELETE and sha512 (${backend})`, () => {
    let server: TestServer;
    before(async () => {
      server = await startTestServer(backend);
    });
    after(() => server.close());

    it('DELETE → 202, then GET and HEAD → 404 and a second DELETE → 404', async () => {
      const name = 'del/one';
      const { digest } = await pushBlob(server.url, name, randomBlob(300));
      const del = await fetch(`${server.url}/v2/${name}/blobs/${digest}`, { method: 'DELETE' });
      assert.equal(del.status, 202);
      assert.equal((await del.arrayBuffer()).byteLength, 0);
      await assertError(await readBlob(server.url, name, digest), 404, 'BLOB_UNKNOWN');
      assert.equal((await fetch(`${server.url}/v2/${name}/blobs/${digest}`, { method: 'HEAD' })).status, 404);
      await assertError(await fetch(`${server.url}/v2/${name}/blobs/${digest}`, { method: 'DELETE' }), 404, 'BLOB_UNKNOWN');
    });

    it('DELETE unlinks from one repository only; the blob stays readable where else it is linked', async () => {
      const bytes = randomBlob(400);
      const { digest } = await pushBlob(server.url, 'del/a', bytes);
      await pushBlob(server.url, 'del/b', bytes);
      assert.equal((await storedBlobDigests(server)).filter((d) => d === digest).length, 1, 'stored once');
      assert.equal((await fetch(`${server.url}/v2/del/a/blobs/${digest}`, { method: 'DELETE' })).status, 202);
      await assertError(await readBlob(server.url, 'del/a', digest), 404, 'BLOB_UNKNOWN');
      const res = await readBlob(server.url, 'del/b', digest);
      assert.equal(res.status, 200);
      assert.deepEqual(Buffer.from(await res.arrayBuffer()), bytes);
    });

    it('DELETE of a blob never pushed → 404 BLOB_UNKNOWN', async () => {
      await assertError(await fetch(`${server.url}/v2/del/a/blobs/${sha256('nothing')}`, { method: 'DELETE' }), 404, 'BLOB_UNKNOWN');
    });

    it('a deleted blob can be pushed again and reads back', async () => {
      const bytes = randomBlob(200);
      const { digest } = await pushBlob(server.url, 'del/again', bytes);
      assert.equal((await fetch(`${server.url}/v2/del/again/blobs/${digest}`, { method: 'DELETE' })).status, 202);
      await pushBlob(server.url, 'del/again', bytes);
      const res = await readBlob(server.url, 'del/again', digest);
      assert.equal(res.status, 200);
      assert.deepEqual(Buffer.from(await res.arrayBuffer()), bytes);
    });

    it('a sha512 blob pushed monolithically reads back with its sha512 digest', async () => {
      const name = 'sha512/mono';
      const bytes = randomBlob(5000);
      const digest = sha512(bytes);
      const put = await fetch(`${server.url}/v2/${name}/blobs/uploads/?digest=${encodeURIComponent(digest)}`, { method: 'POST', body: bytes });
      assert.equal(put.status, 201, await put.clone().text());
      assert.equal(put.headers.get('docker-content-digest'), digest);
      assert.equal(put.headers.get('location'), `/v2/${name}/blobs/${digest}`);
      const res = await readBlob(server.url, name, digest);
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('docker-content-digest'), digest);
      assert.equal(res.headers.get('etag'), `"${digest}"`);
      assert.deepEqual(Buffer.from(await res.arrayBuffer()), bytes);
      const head = await fetch(`${server.url}/v2/${name}/blobs/${digest}`, { method: 'HEAD' });
      assert.equal(head.status, 200);
      assert.equal(head.headers.get('docker-content-digest'), digest);
      assert.equal(head.headers.get('content-length'), '5000');
      const part = await fetch(`${server.url}/v2/${name}/blobs/${digest}`, { headers: { range: 'bytes=-10' } });
      assert.equal(part.status, 206);
      assert.deepEqual(Buffer.from(await part.arrayBuffer()), bytes.subarray(4990));
      // Its sha256 name is a different (unknown) blob.
      await assertError(await readBlob(server.url, name, sha256(bytes)), 404, 'BLOB_UNKNOWN');
      assert.ok((await storedBlobDigests(server)).includes(digest));
    });

    it('a sha512 blob uploaded in chunks completes with ?digest=sha512:…', async () => {
      const name = 'sha512/chunked';
      const bytes = randomBlob(3000);
      const digest = sha512(bytes);
      const upload = await startUpload(server.url, name);
      const first = await fetch(upload.url, { method: 'PATCH', body: bytes.subarray(0, 1000), headers: { 'content-range': '0-999' } });
      assert.equal(first.status, 202);
      const second = await fetch(new URL(first.headers.get('location') as string, server.url), { method: 'PATCH', body: bytes.subarray(1000, 2000) });
      assert.equal(second.status, 202);
      assert.equal(second.headers.get('range'), '0-1999');
      const put = await fetch(withQuery(upload.url, { digest }), { method: 'PUT', body: bytes.subarray(2000), headers: { 'content-range': '2000-2999' } });
      assert.equal(put.status, 201, await put.clone().text());
      assert.equal(put.headers.get('docker-content-digest'), digest);
      const res = await readBlob(server.url, name, digest);
      assert.equal(res.headers.get('docker-content-digest'), digest);
      assert.deepEqual(Buffer.from(await res.arrayBuffer()), bytes);
    });

    it('a sha512 blob mounts into another repository', async () => {
      const bytes = randomBlob(64);
      const digest = sha512(bytes);
      assert.equal((await fetch(`${server.url}/v2/sha512/src/blobs/uploads/?digest=${digest}`, { method: 'POST', body: bytes })).status, 201);
      const mount = await fetch(`${server.url}/v2/sha512/dst/blobs/uploads/?mount=${digest}&from=sha512/src`, { method: 'POST' });
      assert.equal(mount.status, 201);
      assert.equal(mount.headers.get('docker-content-digest'), digest);
      const res = await readBlob(server.url, 'sha512/dst', digest);
      assert.equal(res.status, 200);
      assert.deepEqual(Buffer.from(await res.arrayBuffer()), bytes);
    });

    it('a sha512 upload with the wrong sha512 digest → 400 DIGEST_INVALID and nothing stored', async () => {
      const bytes = randomBlob(64);
      const wrong = sha512('something else');
      await assertError(await fetch(`${server.url}/v2/sha512/bad/blobs/uploads/?digest=${wrong}`, { method: 'POST', body: bytes }), 400, 'DIGEST_INVALID');
      const stored = await storedBlobDigests(server);
      assert.ok(!stored.includes(wrong) && !stored.includes(sha512(bytes)));
      await assertError(await readBlob(server.url, 'sha512/bad', wrong), 404, 'BLOB_UNKNOWN');
    });

    it('answered no request with a 5xx', () => assertNoServerErrors(server));
  });
}
