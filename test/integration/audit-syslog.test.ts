/**
 * Forwarding the audit log to a real syslog receiver the test runs, on every backend: over UDP
 * (a datagram per entry) and TCP (octet-counted frames), RFC 5424 headers and the entry as JSON,
 * the same entry the API shows (id and hash included); a receiver that is down at first gets the
 * entries once it comes up (retries); a dead receiver never slows requests, and what cannot be
 * sent is counted as dropped in /metrics.
 */
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { once } from 'node:events';
import net from 'node:net';
import { after, describe, it } from 'node:test';
import { type AuditDeps, buildAudit } from '../../src/audit/build.ts';
import { parseSyslogTarget, syslogMessage } from '../../src/audit/forward.ts';
import { ConfigError, loadConfig } from '../../src/config/load.ts';
import { EventBus } from '../../src/platform/events/bus.ts';
import { JobService } from '../../src/platform/jobs/service.ts';
import { apiJson } from '../helpers/harbor-api.ts';
import { waitUntil } from '../helpers/http.ts';
import { imageManifest, putManifest } from '../helpers/oci.ts';
import { BACKENDS } from '../helpers/backends.ts';
import { ADMIN_AUTH, startTestServer, type TestServer } from '../helpers/server.ts';

const RFC5424 = /^<(\d{1,3})>1 (\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z) (\S+) berth (\d+) audit - (\{.*\})$/s;

interface Forwarded {
  pri: number;
  timestamp: string;
  host: string;
  body: Record<string, unknown>;
}

function parse(message: string): Forwarded {
  const match = RFC5424.exec(message);
  assert.ok(match, `not an RFC 5424 audit message: ${message}`);
  return { pri: Number(match[1]), timestamp: match[2] as string, host: match[3] as string, body: JSON.parse(match[5] as string) as Record<string, unknown> };
}

/** A TCP syslog receiver: octet-counted frames ("LEN SP MSG"). */
async function tcpReceiver(port = 0): Promise<{ port: number; messages: string[]; close(): Promise<void> }> {
  const messages: string[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    let buffer = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      for (;;) {
        const space = buffer.indexOf(0x20);
        if (space < 0) return;
        const length = Number(buffer.subarray(0, space).toString('ascii'));
        assert.ok(Number.isInteger(length) && length > 0, `bad frame length ${buffer.subarray(0, space).toString('ascii')}`);
        if (buffer.length < space + 1 + length) return;
        messages.push(buffer.subarray(space + 1, space + 1 + length).toString('utf8'));
        buffer = buffer.subarray(space + 1 + length);
      }
    });
    socket.on('close', () => sockets.delete(socket));
  });
  server.listen(port, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as net.AddressInfo).port,
    messages,
    async close() {
      for (const socket of sockets) socket.destroy();
      server.close();
      await once(server, 'close');
    },
  };
}

async function freePort(): Promise<number> {
  const probe = net.createServer().listen(0, '127.0.0.1');
  await once(probe, 'listening');
  const port = (probe.address() as net.AddressInfo).port;
  probe.close();
  await once(probe, 'close');
  return port;
}

async function push(server: TestServer, tag: string, requestId: string): Promise<number> {
  const image = await imageManifest(server.url, 'library/fwd', { headers: { authorization: ADMIN_AUTH } });
  const started = performance.now();
  const res = await putManifest(server.url, 'library/fwd', tag, image.bytes, undefined, { authorization: ADMIN_AUTH, 'x-request-id': requestId });
  assert.equal(res.status, 201);
  return performance.now() - started;
}

async function apiEntry(server: TestServer, requestId: string): Promise<Record<string, unknown>> {
  let entry: Record<string, unknown> | undefined;
  await waitUntil(async () => {
    entry = (await apiJson<Array<Record<string, unknown>>>(server.url, `/audit-logs?q=request_id=${requestId}`, 200, { auth: ADMIN_AUTH })).body[0];
    return entry !== undefined;
  }, `entry ${requestId}`);
  return entry as Record<string, unknown>;
}

async function metric(server: TestServer, name: string): Promise<number> {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(name));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
}

describe('syslog target and message format', () => {
  it('parses udp:// and tcp:// targets and refuses anything else', () => {
    assert.deepEqual(parseSyslogTarget('udp://logs.example.com:514'), { protocol: 'udp', host: 'logs.example.com', port: 514 });
    assert.deepEqual(parseSyslogTarget('tcp://[::1]:601'), { protocol: 'tcp', host: '::1', port: 601 });
    assert.equal(parseSyslogTarget(''), undefined);
    for (const bad of ['logs:514', 'http://logs:514', 'udp://logs', 'tcp://logs:0', 'tcp://logs:70000', 'udp://lo gs:514']) assert.throws(() => parseSyslogTarget(bad), /udp:\/\/HOST:PORT/, bad);
  });

  it('writes RFC 5424 with facility log audit, notice for failures, and header fields without spaces', () => {
    const entry = {
      id: 7,
      at: Date.UTC(2026, 0, 2, 3, 4, 5, 678),
      principal: 'alice',
      principalKind: 'user',
      operation: 'delete',
      resourceType: 'tag',
      resource: 'team/app:v1',
      project: 'team',
      result: 'failure' as const,
      reason: 'DENIED: no',
      status: 403,
      clientAddress: '10.0.0.1',
      userAgent: 'curl/8',
      requestId: 'r1',
      description: 'delete tag',
      hash: 'ab'.repeat(32),
    };
    const message = syslogMessage(entry, 'my host', 42);
    assert.equal(message.slice(0, message.indexOf('{')), '<109>1 2026-01-02T03:04:05.678Z my_host berth 42 audit - ');
    assert.deepEqual(parse(message).body, {
      id: 7,
      op_time: '2026-01-02T03:04:05.678Z',
      username: 'alice',
      principal_kind: 'user',
      operation: 'delete',
      resource_type: 'tag',
      resource: 'team/app:v1',
      project: 'team',
      result: 'failure',
      reason: 'DENIED: no',
      status: 403,
      client_address: '10.0.0.1',
      user_agent: 'curl/8',
      request_id: 'r1',
      description: 'delete tag',
      hash: 'ab'.repeat(32),
    });
    assert.equal(parse(syslogMessage({ ...entry, result: 'success' }, 'h', 1)).pri, 110);
  });
});

describe('audit configuration', () => {
  it('refuses a bad audit.syslog or audit.purgeCron at start, naming the key', async () => {
    const deps = { db: undefined, events: undefined, jobs: undefined, log: { child: () => ({}) } } as unknown as AuditDeps;
    const config = (audit: Record<string, unknown>) => loadConfig({ env: {}, overrides: { audit } });
    await assert.rejects(buildAudit(config({ syslog: 'syslog.example.com:514' }), deps), (err: Error) => err instanceof ConfigError && err.message.startsWith('audit.syslog: expected udp://HOST:PORT'));
    // Nothing touches the database before the cron is judged.
    const jobs = new JobService({ db: undefined as never, concurrency: 0, pollIntervalMs: 1000, leaseMs: 1000, logLinesPerJob: 10, schedulerTickMs: 1000, keepFinishedDays: 0, stopTimeoutMs: 0 });
    const withJobs = { ...deps, jobs, events: new EventBus() } as AuditDeps;
    await assert.rejects(buildAudit(config({ enabled: false, retainDays: 7, purgeCron: 'every night' }), withJobs), (err: Error) => err instanceof ConfigError && err.message.startsWith('audit.purgeCron: invalid cron'));
  });
});

for (const backend of BACKENDS) {
  describe(`audit forwarding to syslog (${backend})`, () => {
    const servers: TestServer[] = [];
    const cleanups: Array<() => Promise<void>> = [];
    after(async () => {
      for (const server of servers) await server.close();
      for (const cleanup of cleanups) await cleanup();
    });
    const start = async (syslog: string, extra: Record<string, unknown> = {}) => {
      const server = await startTestServer(backend, { config: { auth: { enabled: true }, audit: { flushIntervalMs: 10, syslog, ...extra } } });
      servers.push(server);
      return server;
    };

    it('sends each entry over UDP as it is written, the same entry the API shows', async () => {
      const socket = dgram.createSocket('udp4');
      const messages: string[] = [];
      socket.on('message', (m) => messages.push(m.toString('utf8')));
      socket.bind(0, '127.0.0.1');
      await once(socket, 'listening');
      cleanups.push(async () => {
        socket.close();
      });
      const server = await start(`udp://127.0.0.1:${socket.address().port}`);
      await push(server, 'u1', `udp-${backend}`);
      const entry = await apiEntry(server, `udp-${backend}`);
      await waitUntil(() => messages.some((m) => m.includes(`"request_id":"udp-${backend}"`)), 'the UDP message');
      const forwarded = parse(messages.find((m) => m.includes(`"request_id":"udp-${backend}"`)) as string);
      assert.equal(forwarded.pri, 13 * 8 + 6);
      assert.equal(forwarded.timestamp, entry.op_time);
      for (const key of ['id', 'op_time', 'username', 'operation', 'resource_type', 'resource', 'project', 'result', 'client_address', 'request_id', 'hash']) {
        assert.deepEqual(forwarded.body[key], entry[key], key);
      }
      assert.equal(forwarded.body.resource, 'library/fwd:u1');
    });

    it('sends over TCP with octet-counted framing, and retries until a receiver that was down comes up', async () => {
      const port = await freePort();
      const server = await start(`tcp://127.0.0.1:${port}`);
      const elapsed = await push(server, 't1', `tcp-${backend}-1`);
      assert.ok(elapsed < 2000, `a push took ${elapsed} ms while the receiver was down`);
      await apiEntry(server, `tcp-${backend}-1`);
      await new Promise((resolve) => setTimeout(resolve, 150));
      const receiver = await tcpReceiver(port);
      cleanups.push(() => receiver.close());
      await waitUntil(() => receiver.messages.some((m) => m.includes(`"request_id":"tcp-${backend}-1"`)), 'the retried TCP message');
      await push(server, 't2', `tcp-${backend}-2`);
      await waitUntil(() => receiver.messages.some((m) => m.includes(`"request_id":"tcp-${backend}-2"`)), 'the next TCP message');
      const bodies = receiver.messages.map((m) => parse(m).body);
      const ids = bodies.map((b) => b.id as number);
      assert.deepEqual(
        ids,
        [...ids].sort((a, b) => a - b),
        'in chain order',
      );
      assert.ok(await metric(server, 'berth_audit_forwarded_total') >= 2);
    });

    it('never slows requests when the receiver is dead; drops and counts what it cannot send', async () => {
      const port = await freePort();
      const server = await start(`tcp://127.0.0.1:${port}`, { syslogQueueEntries: 2 });
      for (let i = 0; i < 5; i++) {
        const elapsed = await push(server, `d${i}`, `dead-${backend}-${i}`);
        assert.ok(elapsed < 2000, `push ${i} took ${elapsed} ms`);
      }
      await waitUntil(async () => (await metric(server, 'berth_audit_dropped_total{reason="forward-queue-full"}')) > 0, 'entries dropped on a full queue');
      await waitUntil(async () => (await metric(server, 'berth_audit_dropped_total{reason="forward-failed"}')) > 0, 'an entry dropped after its retries', 20_000);
      // The database has every entry all the same.
      const all = await apiJson<unknown[]>(server.url, `/audit-logs?q=${encodeURIComponent('operation=create,resource=~library/fwd:d')}`, 200, { auth: ADMIN_AUTH });
      assert.equal(all.res.headers.get('x-total-count'), '5');
    });

  });
}
