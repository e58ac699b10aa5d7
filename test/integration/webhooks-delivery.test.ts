/**
 * Webhooks end to end, with authentication on and a receiver this test runs on 127.0.0.1: pushes,
 * pulls and deletes through /v2 (and an artifact deleted through the API, and a push refused by
 * the quota) reach the receiver with Harbor's Default payload and as CloudEvents, with the auth
 * header and a verifiable HMAC signature; a failing receiver is retried with backoff until it
 * answers, or given up, with every attempt in the history; a slow receiver neither slows a push
 * nor holds up another project's deliveries; a disabled policy and other projects' policies stay
 * quiet; the test endpoints report what the receiver answered.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { BACKENDS } from '../helpers/backends.ts';
import { ADMIN, api, apiJson } from '../helpers/harbor-api.ts';
import { assertNoServerErrors, waitUntil } from '../helpers/http.ts';
import { createProject } from '../helpers/iam.ts';
import { imageManifest, putManifest, sha256 } from '../helpers/oci.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';
import { QUOTA_WARNING_RATIO } from '../../src/projects/quota-ledger.ts';
import { PRUNE_HISTORY_JOB } from '../../src/webhooks/service.ts';
import { expectedSignature, type Receiver, type ReceivedRequest, startReceiver } from '../helpers/webhooks.ts';

const SLOW_MS = 2_000;
const MAX_ATTEMPTS = 3;
const FLAKY_FAILURES = 2;
const SECRET = 'receiver-shared-secret';

interface DefaultPayload {
  type: string;
  occur_at: number;
  operator: string;
  event_data: {
    resources?: Array<{ digest?: string; tag?: string; resource_url?: string }>;
    repository?: { date_created?: number; name: string; namespace: string; repo_full_name: string; repo_type: string };
    custom_attributes?: Record<string, string>;
  };
}
interface ExecutionJson {
  id: number;
  vendor_id: number;
  status: string;
  trigger: string;
  metrics: { task_count: number; success_task_count: number; error_task_count: number };
  extra_attrs: { event_type: string; operator: string; payload: string };
}
interface TaskJson {
  id: number;
  status: string;
  status_message: string;
  run_count: number;
  extra_attrs: { address: string; payload_format: string; attempts: Array<{ attempt: number; latency_ms: number; status_code?: number; error?: string }> };
}

for (const backend of BACKENDS) {
  describe(`webhook deliveries (${backend})`, () => {
    let server: TestServer;
    let receiver: Receiver;
    let deadAddress: string;
    const projectIds = new Map<string, number>();

    before(async () => {
      receiver = await startReceiver((request, nth) => {
        if (request.path.startsWith('/flaky')) return nth <= FLAKY_FAILURES ? { status: 500, body: `failure ${nth}` } : { status: 200 };
        if (request.path.startsWith('/dead')) return { status: 503, body: 'down for maintenance' };
        if (request.path.startsWith('/slow')) return { delayMs: SLOW_MS };
        return { status: 200 };
      });
      const closed = await startReceiver();
      deadAddress = `${closed.url}/nobody-home`;
      await closed.close();
      server = await startTestServer(backend, {
        config: {
          auth: { enabled: true },
          jobs: { pollIntervalMs: 100 },
          // Three delivery workers, two per target: the slow receiver can hold two, never the third.
          webhooks: { retryBackoffMs: 50, maxAttempts: MAX_ATTEMPTS, timeoutMs: 5_000, concurrency: 3, perTargetConcurrency: 2 },
        },
      });
      for (const name of ['hooks', 'retry', 'slow', 'fast', 'quiet', 'bystander', 'tiny']) projectIds.set(name, await createProject(server, name));
    });
    after(async () => {
      await server.close();
      await receiver.close();
    });

    const createPolicy = async (project: string, body: Record<string, unknown>): Promise<number> => {
      const { res } = await apiJson(server.url, `/projects/${project}/webhook/policies`, 201, { method: 'POST', auth: ADMIN, body: { enabled: true, ...body } });
      return Number(res.headers.get('location')?.split('/').pop());
    };
    const target = (path: string, extra: Record<string, unknown> = {}) => ({ type: 'http', address: `${receiver.url}${path}`, ...extra });
    const executions = async (project: string, policyId: number) =>
      (await apiJson<ExecutionJson[]>(server.url, `/projects/${project}/webhook/policies/${policyId}/executions?page_size=100`, 200, { auth: ADMIN })).body;
    const tasks = async (project: string, policyId: number, executionId: number) =>
      (await apiJson<TaskJson[]>(server.url, `/projects/${project}/webhook/policies/${policyId}/executions/${executionId}/tasks`, 200, { auth: ADMIN })).body;
    /** Waits until the policy has `count` executions, all finished; returns them oldest first. */
    const settled = async (project: string, policyId: number, count: number): Promise<ExecutionJson[]> => {
      let list: ExecutionJson[] = [];
      await waitUntil(
        async () => {
          list = await executions(project, policyId);
          return list.length >= count && list.every((e) => e.status !== 'Running');
        },
        `${count} finished executions of policy ${policyId}`,
      );
      return list.reverse();
    };
    /** Pushes a fresh image; returns its digest and how long the manifest PUT took. */
    const push = async (repository: string, tag: string): Promise<{ digest: string; putMs: number }> => {
      const image = await imageManifest(server.url, repository, { headers: { authorization: ADMIN } });
      const started = performance.now();
      const res = await putManifest(server.url, repository, tag, image.bytes, undefined, { authorization: ADMIN });
      const putMs = performance.now() - started;
      assert.equal(res.status, 201, await res.text());
      return { digest: sha256(image.bytes), putMs };
    };
    const registry = () => new URL(server.url).host;
    const payloadOf = (r: ReceivedRequest | undefined) => JSON.parse(r?.body ?? 'null') as DefaultPayload;

    it('delivers pushes, pulls and deletes through /v2 as Default and CloudEvents, with the auth header and a valid signature', async () => {
      const policyId = await createPolicy('hooks', {
        name: 'both-formats',
        targets: [target('/hooks/default', { auth_header: 'Bearer receiver-token' }), target('/hooks/ce', { payload_format: 'CloudEvents' })],
        event_types: ['PUSH_ARTIFACT', 'PULL_ARTIFACT', 'DELETE_ARTIFACT'],
        secret: SECRET,
      });
      const pushedAt = Math.floor(Date.now() / 1000);
      const { digest } = await push('hooks/app', 'v1');
      const [pushed] = await receiver.waitFor('/hooks/default', 1);
      const [pushedCe] = await receiver.waitFor('/hooks/ce', 1);

      const payload = payloadOf(pushed);
      assert.equal(payload.type, 'PUSH_ARTIFACT');
      assert.equal(payload.operator, 'admin');
      assert.ok(Math.abs(payload.occur_at - pushedAt) <= 5, `occur_at ${payload.occur_at}`);
      assert.deepEqual(payload.event_data.resources, [{ digest, tag: 'v1', resource_url: `${registry()}/hooks/app:v1` }]);
      const repository = payload.event_data.repository;
      assert.deepEqual({ ...repository, date_created: undefined }, { date_created: undefined, name: 'app', namespace: 'hooks', repo_full_name: 'hooks/app', repo_type: 'private' });
      assert.ok(Math.abs((repository?.date_created ?? 0) - pushedAt) <= 60, 'date_created in unix seconds');
      assert.equal(pushed?.method, 'POST');
      assert.equal(pushed?.headers['content-type'], 'application/json');
      assert.equal(pushed?.headers.authorization, 'Bearer receiver-token');
      assert.equal(pushed?.headers['x-berth-event'], 'PUSH_ARTIFACT');
      assert.equal(pushed?.headers['x-berth-attempt'], '1');
      assert.match(String(pushed?.headers['x-berth-delivery']), /^\d+$/);
      assert.equal(pushed?.headers['x-berth-signature'], expectedSignature(SECRET, pushed?.body ?? ''));
      assert.notEqual(pushed?.headers['x-berth-signature'], expectedSignature('wrong-secret', pushed?.body ?? ''));

      const ce = JSON.parse(pushedCe?.body ?? 'null') as Record<string, unknown>;
      assert.equal(pushedCe?.headers['content-type'], 'application/cloudevents+json');
      assert.equal(pushedCe?.headers.authorization, undefined, 'only the target with an auth header sends one');
      assert.equal(pushedCe?.headers['x-berth-signature'], expectedSignature(SECRET, pushedCe?.body ?? ''));
      assert.deepEqual(
        { specversion: ce.specversion, type: ce.type, source: ce.source, datacontenttype: ce.datacontenttype, operator: ce.operator, data: ce.data },
        {
          specversion: '1.0',
          type: 'harbor.artifact.pushed',
          source: `/projects/${projectIds.get('hooks')}/webhook/policies/${policyId}`,
          datacontenttype: 'application/json',
          operator: 'admin',
          data: payload.event_data,
        },
      );
      assert.match(String(ce.id), /^[0-9a-f-]{36}$/);
      assert.equal(ce.time, new Date(payload.occur_at * 1000).toISOString().replace('.000Z', 'Z'));

      const pull = await fetch(`${server.url}/v2/hooks/app/manifests/v1`, { headers: { authorization: ADMIN } });
      assert.equal(pull.status, 200);
      await pull.arrayBuffer();
      const pulled = payloadOf((await receiver.waitFor('/hooks/default', 2))[1]);
      assert.equal(pulled.type, 'PULL_ARTIFACT');
      assert.deepEqual(pulled.event_data.resources, [{ digest, tag: 'v1', resource_url: `${registry()}/hooks/app:v1` }]);
      assert.equal(JSON.parse((await receiver.waitFor('/hooks/ce', 2))[1]?.body ?? '{}').type, 'harbor.artifact.pulled');

      const untag = await fetch(`${server.url}/v2/hooks/app/manifests/v1`, { method: 'DELETE', headers: { authorization: ADMIN } });
      assert.equal(untag.status, 202);
      const deletedTag = payloadOf((await receiver.waitFor('/hooks/default', 3))[2]);
      assert.equal(deletedTag.type, 'DELETE_ARTIFACT');
      assert.deepEqual(deletedTag.event_data.resources, [{ tag: 'v1', resource_url: `${registry()}/hooks/app:v1` }]);
      const remove = await fetch(`${server.url}/v2/hooks/app/manifests/${digest}`, { method: 'DELETE', headers: { authorization: ADMIN } });
      assert.equal(remove.status, 202);
      const deleted = payloadOf((await receiver.waitFor('/hooks/default', 4))[3]);
      assert.equal(deleted.type, 'DELETE_ARTIFACT');
      assert.deepEqual(deleted.event_data.resources, [{ digest, resource_url: `${registry()}/hooks/app@${digest}` }]);
      assert.equal(JSON.parse((await receiver.waitFor('/hooks/ce', 4))[3]?.body ?? '{}').type, 'harbor.artifact.deleted');

      // The history: an execution per event, a task per target, each with its one attempt.
      const history = await settled('hooks', policyId, 4);
      assert.deepEqual(
        history.map((e) => [e.extra_attrs.event_type, e.status, e.trigger, e.vendor_id, e.metrics.task_count, e.metrics.success_task_count]),
        [
          ['PUSH_ARTIFACT', 'Success', 'EVENT', policyId, 2, 2],
          ['PULL_ARTIFACT', 'Success', 'EVENT', policyId, 2, 2],
          ['DELETE_ARTIFACT', 'Success', 'EVENT', policyId, 2, 2],
          ['DELETE_ARTIFACT', 'Success', 'EVENT', policyId, 2, 2],
        ],
      );
      assert.deepEqual(JSON.parse(history[0]?.extra_attrs.payload ?? '{}'), payload, 'the execution keeps the event');
      const [first, second] = await tasks('hooks', policyId, history[0]?.id as number);
      assert.deepEqual(
        [first, second].map((t) => [t?.status, t?.run_count, t?.extra_attrs.payload_format, t?.extra_attrs.address, t?.extra_attrs.attempts.map((a) => [a.attempt, a.status_code])]),
        [
          ['Success', 1, 'Default', `${receiver.url}/hooks/default`, [[1, 200]]],
          ['Success', 1, 'CloudEvents', `${receiver.url}/hooks/ce`, [[1, 200]]],
        ],
      );
      assert.equal(String(first?.id), pushed?.headers['x-berth-delivery'], 'the delivery id is the task id');
      const log = await api(server.url, `/projects/hooks/webhook/policies/${policyId}/executions/${history[0]?.id}/tasks/${first?.id}/log`, { auth: ADMIN });
      assert.equal(log.status, 200);
      assert.match(log.headers.get('content-type') ?? '', /text\/plain/);
      assert.match(await log.text(), /attempt 1: HTTP 200 in \d+ ms\n.*Success\n$/);

      const { body: last } = await apiJson<Array<{ policy_name: string; event_type: string; last_trigger_time?: string }>>(server.url, '/projects/hooks/webhook/lasttrigger', 200, { auth: ADMIN });
      assert.deepEqual(
        last.map((l) => [l.policy_name, l.event_type, typeof l.last_trigger_time]),
        [
          ['both-formats', 'PUSH_ARTIFACT', 'string'],
          ['both-formats', 'PULL_ARTIFACT', 'string'],
          ['both-formats', 'DELETE_ARTIFACT', 'string'],
        ],
      );
    });

    it('announces an artifact deleted through the API, and a push the quota refused', async () => {
      const hooksPolicy = await createPolicy('hooks', { name: 'api-deletes', targets: [target('/hooks/api')], event_types: ['DELETE_ARTIFACT'] });
      const { digest } = await push('hooks/team/svc', 'v2');
      const res = await api(server.url, `/projects/hooks/repositories/${encodeURIComponent(encodeURIComponent('team/svc'))}/artifacts/${digest}`, { method: 'DELETE', auth: ADMIN });
      assert.equal(res.status, 200, await res.text());
      const deleted = payloadOf((await receiver.waitFor('/hooks/api', 1))[0]);
      assert.equal(deleted.type, 'DELETE_ARTIFACT');
      assert.deepEqual(deleted.event_data.resources, [{ digest, resource_url: `${registry()}/hooks/team/svc@${digest}` }]);
      assert.equal(deleted.event_data.repository?.name, 'team/svc');
      await settled('hooks', hooksPolicy, 1);

      await createPolicy('tiny', { name: 'quota', targets: [target('/tiny/quota')], event_types: ['QUOTA_EXCEED'] });
      const image = await imageManifest(server.url, 'tiny/app', { headers: { authorization: ADMIN } });
      const tinyId = projectIds.get('tiny') as number;
      const used = (await server.app.database.db.selectFrom('quotas').select('used').where('project_id', '=', tinyId).executeTakeFirstOrThrow()).used;
      await server.app.database.db.updateTable('quotas').set({ hard: used }).where('project_id', '=', tinyId).execute();
      const refused = await putManifest(server.url, 'tiny/app', 'v1', image.bytes, undefined, { authorization: ADMIN });
      assert.equal(refused.status, 403);
      const quota = payloadOf((await receiver.waitFor('/tiny/quota', 1))[0]);
      assert.equal(quota.type, 'QUOTA_EXCEED');
      assert.equal(quota.operator, 'admin');
      assert.equal(quota.event_data.repository?.repo_full_name, 'tiny/app');
      assert.match(quota.event_data.custom_attributes?.Details ?? '', /^quota exceeded: project tiny/);
      assert.equal(receiver.to('/tiny/quota').length, 1, 'one refusal, one event');
    });

    it('announces a push that crosses the quota warning line', async () => {
      await createPolicy('tiny', { name: 'warn', targets: [target('/tiny/warning')], event_types: ['QUOTA_WARNING'] });
      const tinyId = projectIds.get('tiny') as number;
      const db = server.app.database.db;
      await db.updateTable('quotas').set({ hard: -1 }).where('project_id', '=', tinyId).execute();
      const image = await imageManifest(server.url, 'tiny/warned', { headers: { authorization: ADMIN } });
      const used = Number((await db.selectFrom('quotas').select('used').where('project_id', '=', tinyId).executeTakeFirstOrThrow()).used);
      // The manifest's own bytes take the project across the warning line, and not past the limit.
      await db.updateTable('quotas').set({ hard: Math.floor((used + image.bytes.length) / QUOTA_WARNING_RATIO) }).where('project_id', '=', tinyId).execute();
      const res = await putManifest(server.url, 'tiny/warned', 'v1', image.bytes, undefined, { authorization: ADMIN });
      assert.equal(res.status, 201, await res.text());
      const warning = payloadOf((await receiver.waitFor('/tiny/warning', 1))[0]);
      assert.equal(warning.type, 'QUOTA_WARNING');
      assert.match(warning.event_data.custom_attributes?.Details ?? '', /project tiny uses .* of its .* storage quota/);
    });

    it('retries a failing receiver with backoff until it answers, recording every attempt', async () => {
      const policyId = await createPolicy('retry', { name: 'flaky', targets: [target('/flaky/retry')], event_types: ['PUSH_ARTIFACT'], secret: SECRET });
      await push('retry/app', 'v1');
      const seen = await receiver.waitFor('/flaky/retry', FLAKY_FAILURES + 1);
      assert.equal(new Set(seen.map((r) => r.body)).size, 1, 'every attempt sends the same body');
      assert.equal(new Set(seen.map((r) => r.headers['x-berth-delivery'])).size, 1, 'and the same delivery id');
      assert.deepEqual(
        seen.map((r) => r.headers['x-berth-attempt']),
        ['1', '2', '3'],
      );
      for (const r of seen) assert.equal(r.headers['x-berth-signature'], expectedSignature(SECRET, r.body));
      assert.ok((seen[2]?.at ?? 0) - (seen[1]?.at ?? 0) >= 50, 'the second retry waited its backoff');

      const [execution] = await settled('retry', policyId, 1);
      assert.equal(execution?.status, 'Success');
      const [task] = await tasks('retry', policyId, execution?.id as number);
      assert.equal(task?.status, 'Success');
      assert.equal(task?.run_count, FLAKY_FAILURES + 1);
      assert.deepEqual(
        task?.extra_attrs.attempts.map((a) => [a.attempt, a.status_code, a.error ?? null]),
        [
          [1, 500, 'HTTP 500: failure 1'],
          [2, 500, 'HTTP 500: failure 2'],
          [3, 200, null],
        ],
      );
      for (const a of task?.extra_attrs.attempts ?? []) assert.ok(Number.isInteger(a.latency_ms) && a.latency_ms >= 0);
      const log = await (await api(server.url, `/projects/retry/webhook/policies/${policyId}/executions/${execution?.id}/tasks/${task?.id}/log`, { auth: ADMIN })).text();
      assert.equal(log.match(/attempt \d: /g)?.length, FLAKY_FAILURES + 1, log);
    });

    it('gives up after the last attempt, on a failing answer and on no answer at all', async () => {
      const policyId = await createPolicy('retry', { name: 'hopeless', targets: [target('/dead/retry'), { type: 'http', address: deadAddress }], event_types: ['PULL_ARTIFACT'] });
      const pull = await fetch(`${server.url}/v2/retry/app/manifests/v1`, { headers: { authorization: ADMIN } });
      assert.equal(pull.status, 200);
      await pull.arrayBuffer();
      const [execution] = await settled('retry', policyId, 1);
      assert.equal(execution?.status, 'Error');
      assert.equal(execution?.metrics.error_task_count, 2);
      const [failing, silent] = await tasks('retry', policyId, execution?.id as number);
      assert.equal(receiver.to('/dead/retry').length, MAX_ATTEMPTS);
      assert.equal(failing?.status, 'Error');
      assert.equal(failing?.run_count, MAX_ATTEMPTS);
      assert.match(failing?.status_message ?? '', new RegExp(`gave up after ${MAX_ATTEMPTS} attempts: HTTP 503: down for maintenance`));
      assert.deepEqual(
        failing?.extra_attrs.attempts.map((a) => a.status_code),
        Array(MAX_ATTEMPTS).fill(503),
      );
      assert.equal(silent?.status, 'Error');
      assert.equal(silent?.extra_attrs.attempts.length, MAX_ATTEMPTS);
      for (const a of silent?.extra_attrs.attempts ?? []) {
        assert.equal(a.status_code, undefined, 'no answer, no status code');
        assert.match(a.error ?? '', /connection refused/);
      }
    });

    it("neither slows a push nor holds up another project's deliveries when a receiver is slow", async () => {
      const slowPolicy = await createPolicy('slow', { name: 'slow', targets: [target('/slow/hook')], event_types: ['PUSH_ARTIFACT'] });
      await createPolicy('fast', { name: 'fast', targets: [target('/fast/hook')], event_types: ['PUSH_ARTIFACT'] });
      const slowPushes = 3;
      const putTimes: number[] = [];
      for (let i = 0; i < slowPushes; i++) putTimes.push((await push('slow/app', `v${i}`)).putMs);
      for (const ms of putTimes) assert.ok(ms < SLOW_MS / 2, `a push took ${Math.round(ms)} ms with a receiver answering in ${SLOW_MS} ms`);
      await receiver.waitFor('/slow/hook', 2);

      // Both slow deliveries the target may have at once are in flight; the third delivery worker stays free.
      const { putMs } = await push('fast/app', 'v1');
      const pushedAt = performance.now();
      assert.ok(putMs < SLOW_MS / 2, `the fast push took ${Math.round(putMs)} ms`);
      const [fast] = await receiver.waitFor('/fast/hook', 1);
      const waited = (fast?.at ?? 0) - pushedAt;
      assert.ok(waited < SLOW_MS / 2, `the other project's delivery waited ${Math.round(waited)} ms behind a receiver answering in ${SLOW_MS} ms`);
      assert.ok(receiver.to('/slow/hook').length < slowPushes, 'the slow receiver was still busy');

      // The slow deliveries all arrive in the end, none having spent an attempt on waiting for the target.
      const history = await settled('slow', slowPolicy, slowPushes);
      assert.deepEqual(
        history.map((e) => e.status),
        Array(slowPushes).fill('Success'),
      );
      for (const e of history) assert.deepEqual((await tasks('slow', slowPolicy, e.id)).map((t) => t.run_count), [1]);
      assert.equal(receiver.to('/slow/hook').length, slowPushes);
    });

    it("delivers nothing for a disabled policy, nor for other projects' policies", async () => {
      const disabled = await createPolicy('quiet', { name: 'off', enabled: false, targets: [target('/quiet/disabled')], event_types: ['PUSH_ARTIFACT'] });
      const enabled = await createPolicy('quiet', { name: 'on', targets: [target('/quiet/enabled')], event_types: ['PUSH_ARTIFACT'] });
      const other = await createPolicy('bystander', { name: 'all', targets: [target('/bystander/hook')], event_types: ['PUSH_ARTIFACT', 'PULL_ARTIFACT', 'DELETE_ARTIFACT'] });
      const pullOnly = await createPolicy('quiet', { name: 'pulls', targets: [target('/quiet/pulls')], event_types: ['PULL_ARTIFACT'] });
      await push('quiet/app', 'v1');
      await receiver.waitFor('/quiet/enabled', 1);
      // The same dispatch wrote every matching policy's execution: once the enabled one finished, nothing else is on its way.
      await settled('quiet', enabled, 1);
      assert.deepEqual(await executions('quiet', disabled), []);
      assert.deepEqual(await executions('quiet', pullOnly), []);
      assert.deepEqual(await executions('bystander', other), []);
      assert.equal(receiver.to('/quiet/disabled').length + receiver.to('/quiet/pulls').length + receiver.to('/bystander/hook').length, 0);
    });

    it('sends test requests to a saved policy and to one in the body, saying what the receiver answered', async () => {
      const policyId = await createPolicy('hooks', { name: 'testable', targets: [target('/test/saved', { payload_format: 'CloudEvents' })], event_types: ['PUSH_ARTIFACT'], secret: SECRET });
      const { body: saved } = await apiJson<{ results: Array<{ address: string; ok: boolean; status_code: number; latency_ms: number }> }>(
        server.url,
        `/projects/hooks/webhook/policies/${policyId}/test`,
        200,
        { method: 'POST', auth: ADMIN },
      );
      assert.deepEqual(
        saved.results.map((r) => [r.address, r.ok, r.status_code]),
        [[`${receiver.url}/test/saved`, true, 200]],
      );
      const [request] = await receiver.waitFor('/test/saved', 1);
      assert.equal(JSON.parse(request?.body ?? '{}').type, 'berth.webhook.test');
      assert.equal(request?.headers['x-berth-event'], 'TEST_ENDPOINT');
      assert.equal(request?.headers['x-berth-signature'], expectedSignature(SECRET, request?.body ?? ''));

      const adHoc = await apiJson<{ results: unknown[] }>(server.url, '/projects/hooks/webhook/policies/test', 200, {
        method: 'POST',
        auth: ADMIN,
        body: { targets: [target('/test/adhoc', { auth_header: 'Token t' })], event_types: ['PUSH_ARTIFACT'] },
      });
      assert.equal(adHoc.body.results.length, 1);
      const [adHocRequest] = await receiver.waitFor('/test/adhoc', 1);
      assert.equal(payloadOf(adHocRequest).type, 'TEST_ENDPOINT');
      assert.equal(adHocRequest?.headers.authorization, 'Token t');

      const failed = await api(server.url, '/projects/hooks/webhook/policies/test', { method: 'POST', auth: ADMIN, body: { targets: [{ address: deadAddress }], event_types: ['PUSH_ARTIFACT'] } });
      assert.equal(failed.status, 400);
      assert.match(((await failed.json()) as { errors: Array<{ message: string }> }).errors[0]?.message ?? '', /connection refused/);
      assert.deepEqual(await executions('hooks', policyId), [], 'tests leave no history');
    });

    it('prunes delivery history older than webhooks.historyDays with the daily job', async () => {
      const db = server.app.database.db;
      const all = await db.selectFrom('webhook_executions').select(['id', 'policy_id']).orderBy('id').execute();
      assert.ok(all.length >= 2);
      const old = all.slice(0, Math.floor(all.length / 2)).map((e) => Number(e.id));
      const days = server.app.config.webhooks.historyDays;
      const longAgo = Date.now() - (days + 1) * 86_400_000;
      await db.updateTable('webhook_executions').set({ created_at: longAgo }).where('id', 'in', old).execute();
      const oldTasks = (await db.selectFrom('webhook_tasks').select('id').where('execution_id', 'in', old).execute()).map((t) => Number(t.id));
      assert.ok(oldTasks.length > 0);

      const jobId = await server.app.jobs.queue.enqueue({ kind: PRUNE_HISTORY_JOB });
      await waitUntil(async () => (await server.app.jobs.queue.get(jobId))?.status === 'succeeded', 'the prune job');
      const left = (await db.selectFrom('webhook_executions').select('id').execute()).map((e) => Number(e.id));
      assert.deepEqual(
        left.sort((a, b) => a - b),
        all.map((e) => Number(e.id)).filter((id) => !old.includes(id)),
      );
      assert.deepEqual(await db.selectFrom('webhook_tasks').select('id').where('id', 'in', oldTasks).execute(), [], 'their tasks went with them');
      assert.deepEqual(await db.selectFrom('webhook_attempts').select('task_id').where('task_id', 'in', oldTasks).execute(), [], 'and their attempts');
      assert.match((await server.app.jobs.queue.readLog(jobId)).map((l) => l.message).join('\n'), new RegExp(`deleted ${old.length} webhook executions older than ${days} days`));
    });

    it('logged no server error', () => assertNoServerErrors(server));
  });
}
