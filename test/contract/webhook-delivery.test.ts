/**
 * The pieces a webhook delivery is made of, against real sockets: which addresses a target may
 * have (and the check at connection time), the HTTP client (answers, failures, deadline,
 * interruption, redirects, TLS with and without verification), the payload formats and the HMAC
 * signature, the sealed secrets and their key file, and the per-target limit.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { blockedAddressReason, checkTargetAddress, guardedLookup } from '../../src/webhooks/address.ts';
import { postWebhook, TargetLimiter, USER_AGENT } from '../../src/webhooks/delivery.ts';
import { CLOUD_EVENT_TYPES, CLOUDEVENTS_CONTENT_TYPE, encodeEvent, type HookEvent, signBody } from '../../src/webhooks/payload.ts';
import { EVENT_TYPES, normalizePolicy, WebhookPolicyError } from '../../src/webhooks/policy.ts';
import { SecretBox, SecretKeyError } from '../../src/webhooks/secrets.ts';
import { expectedSignature, type Receiver, startReceiver } from '../helpers/webhooks.ts';

const scratch = mkdtempSync(path.join(tmpdir(), 'berth-webhook-test-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

describe('webhook target addresses', () => {
  it('accepts http and https URLs, loopback and private networks included', () => {
    for (const address of ['http://127.0.0.1:8080/hook', 'https://hooks.example.com/x?y=1', 'http://10.1.2.3/', 'http://192.168.0.10:9000/a', 'http://[::1]:8080/', 'http://localhost/hook']) {
      assert.equal(checkTargetAddress(address), new URL(address).toString(), address);
    }
  });

  it('refuses what is not an absolute http(s) URL, or carries credentials', () => {
    for (const [address, says] of [
      ['not a url', /not a valid URL/],
      ['/relative/path', /not a valid URL/],
      ['ftp://example.com/', /http or https/],
      ['file:///etc/passwd', /http or https/],
      ['javascript:alert(1)', /http or https/],
      ['http://user:pass@example.com/', /credentials/],
      [' http://example.com/', /spaces/],
      ['', /absolute/],
    ] as const) {
      assert.throws(() => checkTargetAddress(address), says, address);
    }
  });

  it('refuses link-local and cloud metadata addresses in every spelling', () => {
    for (const address of [
      'http://169.254.169.254/latest/meta-data/',
      'http://169.254.0.1/',
      'http://0xA9.254.169.254/',
      'http://2852039166/',
      'http://[fe80::1]/',
      'http://[FE80::ABCD]/',
      'http://[febf:ffff::1]/',
      'http://[::ffff:169.254.169.254]/',
      'http://[64:ff9b::a9fe:a9fe]/',
      'http://[fd00:ec2::254]/',
      'http://100.100.100.200/',
      'http://metadata.google.internal/computeMetadata/v1/',
      'http://METADATA.GOOGLE.INTERNAL./',
      'http://metadata/',
      'http://0.0.0.0:80/',
      'http://[::]/',
      'http://224.0.0.1/',
    ]) {
      assert.throws(() => checkTargetAddress(address), /may not be sent there/, address);
    }
  });

  it('classifies IP addresses', () => {
    assert.match(blockedAddressReason('169.254.169.254') ?? '', /link-local/);
    assert.match(blockedAddressReason('fe80::1') ?? '', /link-local/);
    assert.match(blockedAddressReason('::ffff:169.254.1.1') ?? '', /link-local/);
    for (const ip of ['127.0.0.1', '10.0.0.1', '172.16.5.4', '192.168.1.1', '8.8.8.8', '::1', 'fd12::1', '2001:db8::1', '::ffff:10.0.0.1']) {
      assert.equal(blockedAddressReason(ip), undefined, ip);
    }
  });

  it('checks again at connection time: a name resolving to a blocked address is refused', async () => {
    const lookup = (host: string) =>
      new Promise<{ err: NodeJS.ErrnoException | null; address: unknown }>((resolve) => guardedLookup(host, { all: true }, (err, address) => resolve({ err, address })));
    const refused = await lookup('169.254.169.254');
    assert.equal(refused.err?.code, 'EWEBHOOKBLOCKED');
    assert.match(refused.err?.message ?? '', /link-local/);
    const allowed = await lookup('127.0.0.1');
    assert.equal(allowed.err, null);
    assert.deepEqual(allowed.address, [{ address: '127.0.0.1', family: 4 }]);
  });
});

describe('webhook policies as the API gives them', () => {
  const base = { name: 'p', targets: [{ address: 'http://127.0.0.1:1/x' }], event_types: ['PUSH_ARTIFACT'] };

  it('normalises defaults: http, Default format, enabled, no secret; deduplicates event types', () => {
    const policy = normalizePolicy({ ...base, event_types: ['PUSH_ARTIFACT', 'PULL_ARTIFACT', 'PUSH_ARTIFACT'] }, true);
    assert.deepEqual(policy.targets, [{ type: 'http', address: 'http://127.0.0.1:1/x', authHeader: '', skipCertVerify: false, payloadFormat: 'Default' }]);
    assert.deepEqual(policy.eventTypes, ['PUSH_ARTIFACT', 'PULL_ARTIFACT']);
    assert.equal(policy.enabled, true);
    assert.equal(policy.secret, null);
    assert.equal(normalizePolicy(base, false).secret, undefined, 'an update without secret keeps it');
    assert.equal(normalizePolicy({ ...base, secret: '' }, false).secret, null, '"" removes it');
  });

  it('refuses unknown event types, other notify types, unknown formats, header injection and short secrets', () => {
    for (const [input, says] of [
      [{ ...base, event_types: ['PUSH_IMAGE'] }, /unknown event type "PUSH_IMAGE"/],
      [{ ...base, event_types: [] }, /at least one event type/],
      [{ ...base, targets: [] }, /at least one target/],
      [{ ...base, targets: [{ type: 'slack', address: 'https://hooks.slack.com/x' }] }, /only notify type is http/],
      [{ ...base, targets: [{ address: 'http://127.0.0.1/', payload_format: 'XML' }] }, /payload_format "XML"/],
      [{ ...base, targets: [{ address: 'http://127.0.0.1/', auth_header: 'Bearer x\r\nX-Evil: 1' }] }, /line breaks/],
      [{ ...base, targets: [{ address: 'http://169.254.169.254/' }] }, /targets\[0\]\.address 169\.254\.169\.254 is a link-local/],
      [{ ...base, secret: 'short' }, /secret must have/],
      [{ ...base, name: '   ' }, /name must not be empty/],
    ] as const) {
      assert.throws(() => normalizePolicy(input as never, true), (err: unknown) => err instanceof WebhookPolicyError && says.test(err.message), JSON.stringify(input));
    }
  });
});

describe('webhook payloads', () => {
  const event: HookEvent = {
    type: 'PUSH_ARTIFACT',
    occurAt: Date.UTC(2024, 0, 2, 3, 4, 5, 678),
    operator: 'admin',
    requestId: 'req-1',
    data: { resources: [{ digest: 'sha256:abc', tag: 'v1', resource_url: 'reg.example/p/app:v1' }], repository: { name: 'app', namespace: 'p', repo_full_name: 'p/app', repo_type: 'private' } },
  };

  it("Default is Harbor's JSON: type, occur_at in seconds, operator, event_data", () => {
    const { body, contentType } = encodeEvent('Default', event, { projectId: 3, policyId: 7 });
    assert.equal(contentType, 'application/json');
    assert.deepEqual(JSON.parse(body), { type: 'PUSH_ARTIFACT', occur_at: Math.floor(event.occurAt / 1000), operator: 'admin', event_data: event.data });
  });

  it('CloudEvents is a 1.0 structured event with Harbor\u2019s type names and extensions', () => {
    const { body, contentType } = encodeEvent('CloudEvents', event, { projectId: 3, policyId: 7 });
    assert.equal(contentType, CLOUDEVENTS_CONTENT_TYPE);
    const ce = JSON.parse(body) as Record<string, unknown>;
    assert.equal(ce.specversion, '1.0');
    assert.match(String(ce.id), /^[0-9a-f-]{36}$/);
    assert.equal(ce.source, '/projects/3/webhook/policies/7');
    assert.equal(ce.type, 'harbor.artifact.pushed');
    assert.equal(ce.time, new Date(Math.floor(event.occurAt / 1000) * 1000).toISOString().replace('.000Z', 'Z'));
    assert.equal(ce.datacontenttype, 'application/json');
    assert.equal(ce.requestid, 'req-1');
    assert.equal(ce.operator, 'admin');
    assert.deepEqual(ce.data, event.data);
    for (const type of EVENT_TYPES) assert.match(CLOUD_EVENT_TYPES[type], /^harbor\.[a-z_]+\.[a-z_.]+$/, type);
  });

  it('signs the exact body with HMAC-SHA256 of the secret', () => {
    const body = '{"a":"é"}';
    assert.equal(signBody('s3cret-key', body), `sha256=${createHmac('sha256', 's3cret-key').update(Buffer.from(body)).digest('hex')}`);
    assert.equal(signBody('s3cret-key', body), expectedSignature('s3cret-key', body));
    assert.notEqual(signBody('other-key', body), signBody('s3cret-key', body));
  });
});

describe('sealed webhook secrets', () => {
  it('creates the key file 0600, seals and opens; a value sealed under another key does not open', async () => {
    const keyFile = path.join(scratch, 'a', 'secret', 'webhook.key');
    const box = new SecretBox(keyFile);
    await box.init();
    assert.equal(statSync(keyFile).mode & 0o777, 0o600);
    const sealed = box.seal('my-webhook-secret');
    assert.ok(!sealed.includes('my-webhook-secret'));
    assert.notEqual(box.seal('my-webhook-secret'), sealed, 'a fresh IV each time');
    assert.equal(box.open(sealed), 'my-webhook-secret');

    const again = new SecretBox(keyFile);
    await again.init();
    assert.equal(again.open(sealed), 'my-webhook-secret', 'the key file is reused');

    const other = new SecretBox(path.join(scratch, 'b', 'webhook.key'));
    await other.init();
    assert.throws(() => other.open(sealed), SecretKeyError);
    const tampered = `${sealed.slice(0, -2)}${sealed.endsWith('AA') ? 'BB' : 'AA'}`;
    assert.throws(() => box.open(tampered), SecretKeyError);
  });

  it('refuses a corrupt key file at start', async () => {
    const keyFile = path.join(scratch, 'corrupt.key');
    writeFileSync(keyFile, 'not a key\n');
    await assert.rejects(new SecretBox(keyFile).init(), /expected 32 bytes/);
  });
});

describe('webhook HTTP requests', () => {
  let receiver: Receiver;
  before(async () => {
    receiver = await startReceiver((r) => {
      if (r.path === '/fail') return { status: 503, body: 'try\nlater' };
      if (r.path === '/slow') return { delayMs: 2_000 };
      if (r.path === '/moved') return { status: 302, headers: { location: 'http://127.0.0.1:1/elsewhere' } };
      return { status: 204 };
    });
  });
  after(() => receiver.close());

  const post = (p: string, extra: { timeoutMs?: number; signal?: AbortSignal } = {}) =>
    postWebhook({ address: `${receiver.url}${p}`, body: '{"x":1}', headers: { 'content-type': 'application/json', authorization: 'Bearer t' }, skipCertVerify: false, timeoutMs: extra.timeoutMs ?? 5_000, signal: extra.signal });

  it('POSTs the body with its headers; a 2xx is a success with its latency', async () => {
    const outcome = await post('/ok');
    assert.equal(outcome.ok, true);
    assert.equal(outcome.statusCode, 204);
    assert.ok(Number.isInteger(outcome.latencyMs) && outcome.latencyMs >= 0);
    const [seen] = receiver.to('/ok');
    assert.equal(seen?.method, 'POST');
    assert.equal(seen?.body, '{"x":1}');
    assert.equal(seen?.headers['content-type'], 'application/json');
    assert.equal(seen?.headers.authorization, 'Bearer t');
    assert.equal(seen?.headers['user-agent'], USER_AGENT);
    assert.equal(seen?.headers['content-length'], String(Buffer.byteLength('{"x":1}')));
  });

  it('reports a non-2xx answer with its status and what the receiver said', async () => {
    const outcome = await post('/fail');
    assert.deepEqual({ ok: outcome.ok, statusCode: outcome.statusCode, error: outcome.error }, { ok: false, statusCode: 503, error: 'HTTP 503: try later' });
  });

  it('does not follow redirects', async () => {
    const outcome = await post('/moved');
    assert.equal(outcome.ok, false);
    assert.equal(outcome.statusCode, 302);
    assert.match(outcome.error ?? '', /redirects are not followed/);
  });

  it('gives up at the deadline, and when interrupted', async () => {
    const timeoutMs = 200;
    const late = await post('/slow', { timeoutMs });
    assert.equal(late.ok, false);
    assert.equal(late.statusCode, undefined);
    assert.equal(late.error, `no complete answer within ${timeoutMs} ms`);
    assert.ok(late.latencyMs >= timeoutMs && late.latencyMs < 2_000, `latency ${late.latencyMs}`);

    const controller = new AbortController();
    const pending = post('/slow', { signal: controller.signal });
    setTimeout(() => controller.abort(), 50);
    const interrupted = await pending;
    assert.equal(interrupted.ok, false);
    assert.match(interrupted.error ?? '', /interrupted/);
  });

  it('reports a refused connection and a refused address without throwing', async () => {
    const closed = await startReceiver();
    const address = `${closed.url}/gone`;
    await closed.close();
    const refused = await postWebhook({ address, body: '{}', headers: {}, skipCertVerify: false, timeoutMs: 2_000 });
    assert.equal(refused.ok, false);
    assert.match(refused.error ?? '', /connection refused/);
    const blocked = await postWebhook({ address: 'http://169.254.169.254/', body: '{}', headers: {}, skipCertVerify: false, timeoutMs: 2_000 });
    assert.equal(blocked.ok, false);
    assert.match(blocked.error ?? '', /link-local/);
  });

  it('verifies TLS certificates unless the target skips verification', async () => {
    const key = path.join(scratch, 'tls.key');
    const cert = path.join(scratch, 'tls.crt');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1'], { stdio: 'ignore' });
    const server = createHttpsServer({ key: readFileSync(key), cert: readFileSync(cert) }, (_req, res) => res.writeHead(200).end('ok'));
    await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0 }, resolve));
    try {
      const address = `https://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
      const verified = await postWebhook({ address, body: '{}', headers: {}, skipCertVerify: false, timeoutMs: 5_000 });
      assert.equal(verified.ok, false);
      assert.match(verified.error ?? '', /certificate/i);
      const skipped = await postWebhook({ address, body: '{}', headers: {}, skipCertVerify: true, timeoutMs: 5_000 });
      assert.equal(skipped.ok, true);
      assert.equal(skipped.statusCode, 200);
    } finally {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});

describe('the per-target limit', () => {
  it('hands out at most `limit` slots per target and takes them back', () => {
    const limiter = new TargetLimiter(2);
    const a = TargetLimiter.keyOf('http://127.0.0.1:9000/one');
    assert.equal(a, TargetLimiter.keyOf('HTTP://127.0.0.1:9000/one'), 'the address as the URL parser normalises it');
    assert.notEqual(a, TargetLimiter.keyOf('http://127.0.0.1:9000/two'), 'another path is another target');
    assert.notEqual(a, TargetLimiter.keyOf('http://127.0.0.1:9001/one'));
    assert.equal(limiter.tryAcquire(a), true);
    assert.equal(limiter.tryAcquire(a), true);
    assert.equal(limiter.tryAcquire(a), false);
    assert.equal(limiter.tryAcquire(TargetLimiter.keyOf('http://127.0.0.1:9000/two')), true, 'other targets are not held up');
    limiter.release(a);
    assert.equal(limiter.inFlight(a), 1);
    assert.equal(limiter.tryAcquire(a), true);
  });
});
