/**
 * The /v2 base endpoint and the error contract, on every database backend: the API version
 * header on every /v2 response, JSON errors in the spec's shape for unknown routes and wrong
 * methods (405 with Allow), and a sweep of client mistakes none of which may yield a 500.
 */
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { BACKENDS } from '../helpers/backends.ts';
import { imageManifest, OCI_MANIFEST, putManifest, sha256 } from '../helpers/oci.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';

interface ErrorBody {
  errors: Array<{ code: string; message: string; detail?: unknown }>;
}

/** Asserts the spec's error shape: {"errors":[{"code","message"(,"detail")}]}, codes in upper snake case. */
function assertErrorShape(text: string, context: string): ErrorBody {
  let body: ErrorBody;
  try {
    body = JSON.parse(text) as ErrorBody;
  } catch {
    assert.fail(`${context}: error body is not JSON: ${text}`);
  }
  assert.ok(Array.isArray(body.errors) && body.errors.length > 0, `${context}: ${text}`);
  for (const error of body.errors) {
    assert.match(error.code, /^[A-Z][A-Z_]*$/, context);
    assert.equal(typeof error.message, 'string', context);
    assert.ok(error.message.length > 0, context);
    assert.deepEqual(Object.keys(error).filter((k) => !['code', 'message', 'detail'].includes(k)), [], context);
  }
  return body;
}

/** Sends raw bytes and returns what the server answered before closing. */
function rawRequest(base: string, text: string): Promise<string> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(url.port), url.hostname);
    let data = '';
    socket.on('data', (chunk) => {
      data += chunk.toString('latin1');
    });
    socket.on('end', () => resolve(data));
    socket.on('error', reject);
    socket.end(text);
  });
}

for (const backend of BACKENDS) {
  describe(`base endpoint and errors (${backend})`, () => {
    let server: TestServer;
    let base: string;
    let digest: string;
    before(async () => {
      server = await startTestServer(backend);
      base = server.url;
      const { bytes } = await imageManifest(base, 'errors/app');
      assert.equal((await putManifest(base, 'errors/app', 'v1', bytes)).status, 201);
      digest = sha256(bytes);
    });
    after(() => server.close());

    it('GET /v2/ and /v2 answer 200 {} with the API version header', async () => {
      for (const path of ['/v2/', '/v2']) {
        const res = await fetch(`${base}${path}`);
        assert.equal(res.status, 200, path);
        assert.equal(res.headers.get('docker-distribution-api-version'), 'registry/2.0');
        assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
        assert.deepEqual(await res.json(), {});
        const head = await fetch(`${base}${path}`, { method: 'HEAD' });
        assert.equal(head.status, 200);
        assert.equal(head.headers.get('docker-distribution-api-version'), 'registry/2.0');
        assert.equal((await head.arrayBuffer()).byteLength, 0);
      }
    });

    it('an unknown route is a 404 JSON error, with the API version header under /v2', async () => {
      for (const path of ['/v2/errors/app/nothing', '/v2/errors/app/manifests/', '/v2/errors/app/blobs/', '/v2/_catalog/extra', '/v2/errors', '/v2/errors/app/tags', '/v2/errors/app/referrers/']) {
        const res = await fetch(`${base}${path}`);
        const text = await res.text();
        assert.equal(res.status, 404, `${path}: ${text}`);
        assert.equal(res.headers.get('docker-distribution-api-version'), 'registry/2.0', path);
        assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
        assert.equal(assertErrorShape(text, path).errors[0]?.code, 'NOT_FOUND');
      }
      for (const path of ['/', '/nothing', '/v3/', '/v20/']) {
        const res = await fetch(`${base}${path}`);
        assert.equal(res.status, 404, path);
        assertErrorShape(await res.text(), path);
      }
      // A path that cannot even be percent-decoded is just another unknown route.
      const undecodable = await fetch(`${base}/v2/%E0%A4%A/manifests/x`);
      assert.equal(undecodable.status, 404);
      assert.equal(assertErrorShape(await undecodable.text(), 'undecodable path').errors[0]?.code, 'NOT_FOUND');
    });

    it('a wrong method is 405 UNSUPPORTED with an Allow header', async () => {
      const cases: Array<[string, string, string]> = [
        ['POST', '/v2/errors/app/manifests/v1', 'GET, HEAD, PUT, DELETE'],
        ['PATCH', '/v2/errors/app/manifests/v1', 'GET, HEAD, PUT, DELETE'],
        ['OPTIONS', `/v2/errors/app/manifests/${digest}`, 'GET, HEAD, PUT, DELETE'],
        ['PATCH', '/v2/_catalog', 'GET'],
        ['DELETE', '/v2/_catalog', 'GET'],
        ['POST', '/v2/', 'GET, HEAD'],
        ['DELETE', '/v2', 'GET, HEAD'],
        ['PUT', '/v2/errors/app/tags/list', 'GET'],
        ['DELETE', `/v2/errors/app/referrers/${digest}`, 'GET'],
        ['PUT', `/v2/errors/app/blobs/${digest}`, 'GET, HEAD, DELETE'],
        ['GET', '/v2/errors/app/blobs/uploads/', 'POST'],
        ['POST', '/v2/errors/app/blobs/uploads/some-id', 'GET, PATCH, PUT, DELETE'],
      ];
      for (const [method, path, allow] of cases) {
        const res = await fetch(`${base}${path}`, { method, ...(method === 'GET' ? {} : { body: '' }) });
        const text = await res.text();
        assert.equal(res.status, 405, `${method} ${path}: ${text}`);
        assert.equal(res.headers.get('allow'), allow, `${method} ${path}`);
        assert.equal(res.headers.get('docker-distribution-api-version'), 'registry/2.0');
        assert.equal(assertErrorShape(text, `${method} ${path}`).errors[0]?.code, 'UNSUPPORTED');
      }
      // The refused request changed nothing.
      const still = await fetch(`${base}/v2/errors/app/manifests/v1`);
      assert.equal(still.status, 200);
      assert.equal(still.headers.get('docker-content-digest'), digest);
      const head = await fetch(`${base}/v2/_catalog`, { method: 'HEAD' });
      assert.equal(head.status, 405);
      assert.equal(head.headers.get('allow'), 'GET');
      assert.equal((await head.arrayBuffer()).byteLength, 0);
    });

    it('every error under /v2 carries the API version header and the spec error shape', async () => {
      const requests: Array<[string, string, RequestInit?]> = [
        ['GET', '/v2/errors/app/manifests/nope'],
        ['GET', '/v2/never/seen/manifests/v1'],
        ['GET', '/v2/errors/app/manifests/-bad'],
        ['GET', '/v2/errors/app/manifests/sha256:short'],
        ['GET', '/v2/NOPE/manifests/v1'],
        ['PUT', '/v2/errors/app/manifests/v2', { body: 'not json', headers: { 'content-type': OCI_MANIFEST } }],
        ['GET', '/v2/errors/app/tags/list?n=x'],
        ['GET', '/v2/never/seen/tags/list'],
        ['GET', '/v2/_catalog?n=-5'],
        ['GET', '/v2/errors/app/referrers/latest'],
        ['GET', `/v2/errors/app/blobs/${sha256('absent')}`],
        ['GET', '/v2/errors/app/blobs/uploads/no-such-upload'],
      ];
      for (const [method, path, init] of requests) {
        const res = await fetch(`${base}${path}`, { method, ...init });
        const text = await res.text();
        assert.ok(res.status >= 400 && res.status < 500, `${method} ${path}: ${res.status} ${text}`);
        assert.equal(res.headers.get('docker-distribution-api-version'), 'registry/2.0', `${method} ${path}`);
        assert.match(res.headers.get('content-type') ?? '', /^application\/json/, `${method} ${path}`);
        assertErrorShape(text, `${method} ${path}`);
        // A HEAD of the same manifest or blob gets the status and no body.
        if (method === 'GET' && /\/(manifests|blobs)\/[^/]+$/.test(path)) {
          const head = await fetch(`${base}${path}`, { method: 'HEAD' });
          assert.equal(head.status, res.status, `HEAD ${path}`);
          assert.equal((await head.arrayBuffer()).byteLength, 0);
        }
      }
    });

    it('no client mistake yields a 500', async () => {
      const longName = Array.from({ length: 40 }, () => 'abcdefgh').join('/');
      const requests: Array<[string, string, RequestInit?]> = [
        ['GET', `/v2/${longName}/manifests/v1`],
        ['GET', `/v2/${'a'.repeat(300)}/tags/list`],
        ['PUT', `/v2/${'a'.repeat(300)}/manifests/v1`, { body: '{}' }],
        ['GET', '/v2/errors/app/manifests/sha256:'],
        ['GET', '/v2/errors/app/manifests/:'],
        ['GET', '/v2/errors/app/manifests/constructor:abc'],
        ['GET', '/v2/errors/app/manifests/__proto__:abc'],
        ['GET', '/v2/errors/app/manifests/toString'],
        ['GET', '/v2/errors/app/manifests/%00'],
        ['GET', '/v2/errors/app/manifests/a%2Fb'],
        ['GET', `/v2/errors/app/manifests/sha256:${'a'.repeat(64)}%00`],
        ['GET', `/v2/errors/app/manifests/sha512:${'a'.repeat(64)}`],
        ['GET', `/v2/errors/app/manifests/SHA256:${'a'.repeat(64)}`],
        ['GET', '/v2/errors/app/referrers/constructor:x'],
        ['GET', '/v2/errors/app/tags/list?n=99999999999999999999999'],
        ['GET', '/v2/errors/app/tags/list?n=1&n=abc&last=%ff'],
        ['GET', '/v2/errors/app/tags/list?last=' + 'z'.repeat(5000)],
        ['GET', '/v2/_catalog?last=%E0%A4%A&n=1'],
        ['GET', '/v2/errors/app/referrers/' + digest + '?artifactType=&n='],
        ['GET', '/v2/errors/app/manifests/v1?x=%'],
        ['PUT', '/v2/errors/app/manifests/v3'],
        ['PUT', '/v2/errors/app/manifests/v3', { body: '{"schemaVersion":2,"config":{"mediaType":"a","digest":"constructor:x","size":1}}', headers: { 'content-type': OCI_MANIFEST } }],
        ['PUT', '/v2/errors/app/manifests/v3', { body: '{"schemaVersion":2,"mediaType":"toString","config":{}}', headers: { 'content-type': 'toString' } }],
        ['PUT', '/v2/errors/app/manifests/v3', { body: '{"schemaVersion":2,"manifests":[{"mediaType":"x","digest":"sha256:' + 'a'.repeat(64) + '","size":1e400}]}' }],
        ['PUT', '/v2/errors/app/manifests/v3', { body: JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: { mediaType: 'x', digest: sha256('x'), size: 1 }, layers: [null] }), headers: { 'content-type': OCI_MANIFEST } }],
        ['PUT', '/v2/errors/app/manifests/v3', { body: '{"schemaVersion":2,"__proto__":{"x":1},"subject":[]}', headers: { 'content-type': OCI_MANIFEST } }],
        ['PUT', '/v2/errors/app/manifests/v3', { body: Buffer.from([0xff, 0xfe, 0x00, 0x7b]), headers: { 'content-type': OCI_MANIFEST } }],
        ['PUT', '/v2/errors/app/manifests/v3', { body: '{"schemaVersion":2}', headers: { 'content-type': 'text/plain; charset=utf-8' } }],
        ['PUT', '/v2/errors/app/manifests/v3', { body: '{"schemaVersion":2}', headers: { 'content-type': 'not a media type' } }],
        ['DELETE', '/v2/errors/app/manifests/-bad'],
        ['DELETE', '/v2/errors/app/manifests/sha256:zz'],
        ['POST', '/v2/errors/app/blobs/uploads/?digest=nonsense', { body: 'x' }],
        ['POST', '/v2/errors/app/blobs/uploads/?mount=nonsense&from=NOT..valid'],
        ['GET', '/v2/errors/app/blobs/nonsense'],
        ['GET', `/v2/errors/app/blobs/${sha256('absent')}`, { headers: { range: 'bytes=zz' } }],
        ['GET', '/v2/errors/app/manifests/v1', { headers: { 'if-none-match': '"' } }],
        ['GET', '/v2/errors/app/manifests/v1', { headers: { accept: '*/*;q=abc' } }],
        ['GET', '/v2/', { headers: { 'x-request-id': '\u00e9'.repeat(10) } }],
      ];
      for (const [method, path, init] of requests) {
        const res = await fetch(`${base}${path}`, { method, ...init });
        const text = await res.text();
        assert.ok(res.status < 500, `${method} ${path}: ${res.status} ${text}`);
        if (res.status >= 400) assertErrorShape(text, `${method} ${path}`);
      }
      // Malformed HTTP on a raw socket: a 4xx in the same shape, never a 500 or a dropped connection.
      for (const raw of [
        'GARBAGE\r\n\r\n',
        'GET /v2/ HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n',
        'GET /v2/errors/app/manifests/v1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n',
        `GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(64 * 1024)}\r\n\r\n`,
        'PUT /v2/errors/app/manifests/v4 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n',
        // A body cut short: the client hangs up after 4 of 100 bytes.
        'PUT /v2/errors/app/manifests/v4 HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"a"',
      ]) {
        const answer = await rawRequest(base, raw);
        const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1]);
        assert.ok(status >= 400 && status < 500, `${JSON.stringify(raw.slice(0, 60))}: ${answer.slice(0, 200)}`);
        assertErrorShape(answer.slice(answer.indexOf('\r\n\r\n') + 4), raw.slice(0, 30));
      }
      // The server is still healthy and its data intact after all that.
      const after = await fetch(`${base}/v2/errors/app/manifests/v1`);
      assert.equal(after.status, 200);
      assert.equal(after.headers.get('docker-content-digest'), digest);
      assert.equal((await fetch(`${base}/v2/errors/app/manifests/v3`)).status, 404);
      const errors = server.logs.filter((l) => l.includes('"level":50'));
      assert.deepEqual(errors, [], 'nothing was logged as an unhandled error');
    });
  });
}
