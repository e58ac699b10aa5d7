/**
 * What operators see, on every database backend: Prometheus metrics that move with traffic,
 * request ids on every response and in the JSON logs, the health endpoint, and a graceful
 * shutdown that lets an upload in flight finish.
 */
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { BACKENDS } from '../helpers/backends.ts';
import { abortMidBody, waitUntil } from '../helpers/http.ts';
import { imageManifest, pushBlob, putManifest, randomBlob, sha256 } from '../helpers/oci.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';

/** The value of one sample in Prometheus text format; 0 when the series does not exist yet. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number {
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const have = new Map([...(match[2] ?? '').matchAll(/([a-zA-Z_]+)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1], m[2]]));
    if (Object.entries(labels).every(([k, v]) => have.get(k) === v)) return Number(match[3]);
  }
  return 0;
}

async function metrics(base: string): Promise<string> {
  const res = await fetch(`${base}/metrics`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain/);
  return res.text();
}

/** Waits (bounded by a count of tries, not by time) until `check` holds. */
async function until(check: () => Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (await check()) return;
    await sleep(10);
  }
  assert.fail(`gave up waiting for ${what}`);
}

interface RawResponse {
  status: number;
  headers: Record<string, string>;
}

/** Sends a request over a raw socket with its body in pieces, so a test can act in between. */
class SlowRequest {
  readonly #socket: Socket;
  readonly #response: Promise<RawResponse>;

  constructor(base: string, head: string) {
    const url = new URL(base);
    this.#socket = connect(Number(url.port), url.hostname);
    this.#socket.write(head);
    this.#response = new Promise((resolve, reject) => {
      let data = '';
      this.#socket.on('data', (chunk) => {
        data += chunk.toString('latin1');
        const end = data.indexOf('\r\n\r\n');
        if (end < 0) return;
        const [statusLine, ...lines] = data.slice(0, end).split('\r\n');
        const headers: Record<string, string> = {};
        for (const line of lines) {
          const colon = line.indexOf(':');
          headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
        }
        resolve({ status: Number(statusLine?.split(' ')[1]), headers });
      });
      this.#socket.on('error', reject);
      this.#socket.on('close', () => reject(new Error(`connection closed before a response; received: ${JSON.stringify(data)}`)));
    });
  }

  write(bytes: Buffer): Promise<void> {
    return new Promise((resolve, reject) => this.#socket.write(bytes, (err) => (err ? reject(err) : resolve())));
  }

  response(): Promise<RawResponse> {
    return this.#response;
  }

  close(): void {
    this.#socket.destroy();
  }
}

for (const backend of BACKENDS) {
  describe(`observability (${backend})`, () => {
    let server: TestServer;
    let base: string;
    before(async () => {
      server = await startTestServer(backend);
      base = server.url;
    });
    after(() => server.close());

    it('counts requests by route, method and status, and times them', async () => {
      const { bytes } = await imageManifest(base, 'metrics/app');
      assert.equal((await putManifest(base, 'metrics/app', 'v1', bytes)).status, 201);
      const ok = { method: 'GET', route: 'v2_manifest', status: '200' };
      const missing = { method: 'GET', route: 'v2_manifest', status: '404' };
      const before = await metrics(base);
      for (let i = 0; i < 3; i++) assert.equal((await fetch(`${base}/v2/metrics/app/manifests/v1`)).status, 200);
      assert.equal((await fetch(`${base}/v2/metrics/app/manifests/nope`)).status, 404);
      const text = await metrics(base);
      assert.match(text, /# TYPE berth_http_requests_total counter/);
      assert.equal(sample(text, 'berth_http_requests_total', ok) - sample(before, 'berth_http_requests_total', ok), 3);
      assert.equal(sample(text, 'berth_http_requests_total', missing) - sample(before, 'berth_http_requests_total', missing), 1);
      assert.ok(sample(text, 'berth_http_requests_total', { method: 'PUT', route: 'v2_manifest', status: '201' }) >= 1);
      assert.ok(sample(text, 'berth_http_requests_total', { method: 'POST', route: 'v2_uploads', status: '201' }) >= 2);
      assert.match(text, /# TYPE berth_http_request_duration_seconds histogram/);
      const count = (t: string) => sample(t, 'berth_http_request_duration_seconds_count', ok);
      assert.equal(count(text) - count(before), 3);
      assert.equal(sample(text, 'berth_http_request_duration_seconds_bucket', { ...ok, le: '+Inf' }), count(text));
      assert.ok(sample(text, 'berth_http_request_duration_seconds_sum', ok) > 0);
      // Unknown paths share one label value instead of one series per URL.
      await fetch(`${base}/no/such/${Math.random()}`);
      const after = await metrics(base);
      assert.ok(!/route="\/no\/such/.test(after));
    });

    it('counts the bytes of blobs and manifests pushed and pulled', async () => {
      const blob = randomBlob(4096 + 17);
      const manifest = (await imageManifest(base, 'bytes/app')).bytes;
      const start = await metrics(base);
      const received = (t: string) => sample(t, 'berth_registry_bytes_received_total');
      const sent = (t: string) => sample(t, 'berth_registry_bytes_sent_total');

      const pushed = await pushBlob(base, 'bytes/app', blob);
      const afterBlob = await metrics(base);
      assert.equal(received(afterBlob) - received(start), blob.length);
      assert.equal((await putManifest(base, 'bytes/app', 'v1', manifest)).status, 201);
      const afterManifest = await metrics(base);
      assert.equal(received(afterManifest) - received(afterBlob), manifest.length);

      const pulled = await fetch(`${base}/v2/bytes/app/blobs/${pushed.digest}`);
      assert.deepEqual(Buffer.from(await pulled.arrayBuffer()), blob);
      const afterPull = await metrics(base);
      assert.equal(sent(afterPull) - sent(afterManifest), blob.length);
      const ranged = await fetch(`${base}/v2/bytes/app/blobs/${pushed.digest}`, { headers: { range: 'bytes=10-109' } });
      assert.equal(ranged.status, 206);
      assert.equal((await ranged.arrayBuffer()).byteLength, 100);
      const got = await fetch(`${base}/v2/bytes/app/manifests/v1`);
      assert.equal((await got.arrayBuffer()).byteLength, manifest.length);
      // HEAD and 304 send no body bytes.
      await fetch(`${base}/v2/bytes/app/manifests/v1`, { method: 'HEAD' });
      await fetch(`${base}/v2/bytes/app/blobs/${pushed.digest}`, { method: 'HEAD' });
      assert.equal((await fetch(`${base}/v2/bytes/app/manifests/v1`, { headers: { 'if-none-match': `"${sha256(manifest)}"` } })).status, 304);
      const end = await metrics(base);
      assert.equal(sent(end) - sent(afterPull), 100 + manifest.length);
      assert.equal(received(end), received(afterManifest));
    });

    it('shows uploads whose bytes are streaming in', async () => {
      const gauge = async () => sample(await metrics(base), 'berth_uploads_in_progress');
      assert.match(await metrics(base), /# TYPE berth_uploads_in_progress gauge/);
      assert.equal(await gauge(), 0);
      const body = randomBlob(64 * 1024);
      const request = new SlowRequest(base, `POST /v2/gauge/app/blobs/uploads/?digest=${sha256(body)} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: ${body.length}\r\n\r\n`);
      try {
        await request.write(body.subarray(0, 1000));
        await until(async () => (await gauge()) === 1, 'the upload to show in berth_uploads_in_progress');
        await request.write(body.subarray(1000));
        assert.equal((await request.response()).status, 201);
      } finally {
        request.close();
      }
      await until(async () => (await gauge()) === 0, 'berth_uploads_in_progress to return to 0');
    });

    it('puts an X-Request-Id on every response and echoes a valid one the client sent', async () => {
      const seen = new Set<string>();
      for (const [path, method] of [['/v2/', 'GET'], ['/v2/x/manifests/none', 'GET'], ['/v2/_catalog', 'PATCH'], ['/metrics', 'GET'], ['/api/v2.0/health', 'GET'], ['/nowhere', 'GET'], ['/v2/Bad/tags/list', 'HEAD'], ['/v2/%E0%A4%A/manifests/x', 'GET'], ['/v2/x/manifests/v1', 'OPTIONS']] as const) {
        const res = await fetch(`${base}${path}`, { method });
        await res.arrayBuffer();
        const id = res.headers.get('x-request-id');
        assert.ok(id && id.length >= 8, `${method} ${path} has no X-Request-Id`);
        seen.add(id);
      }
      assert.equal(seen.size, 9, 'generated ids are unique');
      const mine = `test-${Date.now()}.abc:1`;
      const echoed = await fetch(`${base}/v2/`, { headers: { 'x-request-id': mine } });
      assert.equal(echoed.headers.get('x-request-id'), mine);
      // Ids that could break log lines or headers are replaced.
      for (const bad of ['has space', 'x'.repeat(200), 'semi;colon']) {
        const res = await fetch(`${base}/v2/`, { headers: { 'x-request-id': bad } });
        const id = res.headers.get('x-request-id');
        assert.ok(id && id !== bad);
      }
    });

    it('writes one JSON log line per request with its id, method and status', async () => {
      const id = `log-${Math.random().toString(36).slice(2)}`;
      const { bytes } = await imageManifest(base, 'logs/app');
      assert.equal((await fetch(`${base}/v2/logs/app/manifests/v1`, { method: 'PUT', body: bytes, headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json', 'x-request-id': id } })).status, 201);
      assert.equal((await fetch(`${base}/v2/logs/app/manifests/missing`, { headers: { 'x-request-id': `${id}-2` } })).status, 404);
      const lines = server.logs.flatMap((chunk) => chunk.split('\n')).filter((l) => l.trim() !== '').map((l) => JSON.parse(l) as Record<string, unknown>);
      const put = lines.filter((l) => l.reqId === id && l.status !== undefined);
      assert.equal(put.length, 1, 'one access-log line for the request');
      assert.equal(put[0]?.method, 'PUT');
      assert.equal(put[0]?.status, 201);
      assert.equal(put[0]?.url, '/v2/logs/app/manifests/v1');
      assert.equal(typeof put[0]?.time, 'number');
      const notFound = lines.find((l) => l.reqId === `${id}-2` && l.status !== undefined);
      assert.equal(notFound?.method, 'GET');
      assert.equal(notFound?.status, 404);
    });

    it('logs and counts a request the client dropped mid-body as 499', async () => {
      const id = `drop-${Math.random().toString(36).slice(2)}`;
      const start = await fetch(`${base}/v2/logs/dropped/blobs/uploads/`, { method: 'POST' });
      const location = start.headers.get('location') as string;
      const logged = () => server.logs.flatMap((chunk) => chunk.split('\n')).filter((l) => l.includes(id)).map((l) => JSON.parse(l) as Record<string, unknown>);
      await abortMidBody(base, `PATCH ${location} HTTP/1.1\r\nHost: x\r\nX-Request-Id: ${id}\r\nContent-Length: 100000`, randomBlob(1000));
      await waitUntil(() => logged().some((l) => l.status === 499), 'the aborted request to be logged');
      const line = logged().find((l) => l.status === 499);
      assert.equal(line?.method, 'PATCH');
      assert.equal(line?.url, location);
      const metrics = await (await fetch(`${base}/metrics`)).text();
      assert.match(metrics, /berth_http_requests_total\{method="PATCH",route="v2_upload",status="499"\} [1-9]/);
    });

    it('answers /api/v2.0/health with healthy', async () => {
      const res = await fetch(`${base}/api/v2.0/health`);
      assert.equal(res.status, 200);
      const body = (await res.json()) as { status: string; components: Array<{ name: string; status: string }> };
      assert.equal(body.status, 'healthy');
      assert.deepEqual(body.components.map((c) => [c.name, c.status]), [['core', 'healthy'], ['database', 'healthy']]);
    });
  });

  describe(`graceful shutdown (${backend})`, () => {
    let server: TestServer;
    before(async () => {
      server = await startTestServer(backend);
    });
    after(() => server.close());

    it('lets an upload in flight finish when the server stops', async () => {
      const body = randomBlob(256 * 1024);
      const digest = sha256(body);
      const request = new SlowRequest(server.url, `POST /v2/shutdown/app/blobs/uploads/?digest=${digest} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: ${body.length}\r\n\r\n`);
      let stopping: Promise<void> | undefined;
      try {
        await request.write(body.subarray(0, 16 * 1024));
        await until(async () => sample(await metrics(server.url), 'berth_uploads_in_progress') === 1, 'the upload to start streaming');
        stopping = server.stop();
        let stopped = false;
        void stopping.then(() => {
          stopped = true;
        });
        for (let offset = 16 * 1024; offset < body.length; offset += 48 * 1024) {
          await sleep(30);
          assert.equal(stopped, false, 'stop() must wait for the request in flight');
          await request.write(body.subarray(offset, offset + 48 * 1024));
        }
        const response = await request.response();
        assert.equal(response.status, 201);
        assert.equal(response.headers['docker-content-digest'], digest);
      } finally {
        request.close();
      }
      await stopping;
      // The blob was committed for real: it is there after a restart.
      server = await server.restart();
      const res = await fetch(`${server.url}/v2/shutdown/app/blobs/${digest}`);
      assert.equal(res.status, 200);
      assert.deepEqual(Buffer.from(await res.arrayBuffer()), body);
    });
  });
}
