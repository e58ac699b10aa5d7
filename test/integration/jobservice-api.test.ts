/**
 * The job-service API (Harbor's `jobservice` and `schedule` groups, plus Berth's job listing)
 * over a real socket with authentication on, on every database backend, with real jobs run by
 * the app's own worker pool: the pool and its workers (busy with their job, idle), queues with
 * pending counts and latency, pausing a kind (its jobs wait) and resuming it (they run), stopping
 * a queue (pending jobs cancelled), stopping a running job and every running job, a job's log
 * as text, the job listing with filters, the schedules and pausing the scheduler (no schedule
 * fires until resumed); bad input and permissions (system admins; robots granted
 * jobservice-monitor list/stop; others 403, anonymous 401).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { JobContext } from '../../src/platform/jobs/worker.ts';
import { PURGE_UPLOADS_JOB } from '../../src/registry/jobs.ts';
import { BACKENDS } from '../helpers/backends.ts';
import { ADMIN, api, apiJson, assertApiError, basic, createUser } from '../helpers/harbor-api.ts';
import { assertNoServerErrors, waitUntil } from '../helpers/http.ts';
import type { WorkerJson } from '../helpers/jobs.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';

const CONCURRENCY = 3;
const DELIVERY_CONCURRENCY = 2;
const BLOCK = 'test.block';
const QUICK = 'test.quick';
const TICK = 'test.tick';

interface QueueJson {
  job_type: string;
  count: number;
  latency: number;
  paused: boolean;
  running: number;
  succeeded: number;
  failed: number;
  cancelled: number;
  handled: boolean;
}
interface JobJson {
  id: number;
  kind: string;
  status: string;
  cancel_requested: boolean;
  worker: string | null;
  start_time: string | null;
  end_time: string | null;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

for (const backend of BACKENDS) {
  describe(`job-service API (${backend})`, () => {
    let server: TestServer;
    let base: string;
    let user: string;
    /** Releases a running test.block job by id (it then succeeds). */
    const release = new Map<number, () => void>();
    const aborted = new Set<number>();
    let ticks = 0;

    const queue = () => server.app.jobs.queue;
    const enqueue = (kind: string) => queue().enqueue({ kind, maxAttempts: 1 });
    const status = async (id: number) => (await queue().get(id))?.status;
    const queues = async () => (await apiJson<QueueJson[]>(base, '/jobservice/queues', 200, { auth: ADMIN })).body;
    const queueOf = async (kind: string) => (await queues()).find((q) => q.job_type === kind);
    const act = (jobType: string, action: string) => apiJson<{ job_types: string[]; action: string; cancelled: number }>(base, `/jobservice/queues/${jobType}`, 200, { method: 'PUT', auth: ADMIN, body: { action } });

    before(async () => {
      server = await startTestServer(backend, {
        config: { auth: { enabled: true }, jobs: { concurrency: CONCURRENCY, pollIntervalMs: 50, schedulerTickMs: 50, leaseSeconds: 3 }, webhooks: { concurrency: DELIVERY_CONCURRENCY } },
      });
      base = server.url;
      user = await createUser(base, 'jobs-user');
      const workers = server.app.jobs.workers;
      workers.register(BLOCK, (_payload: unknown, context: JobContext) => {
        context.log('waiting to be released');
        return new Promise<void>((resolve, reject) => {
          release.set(context.job.id, resolve);
          context.signal.addEventListener('abort', () => {
            aborted.add(context.job.id);
            context.log('stopped', 'warn');
            reject(context.signal.reason);
          });
        });
      });
      workers.register(QUICK, (_payload: unknown, context: JobContext) => {
        context.log('first line');
        context.log('second line', 'warn');
      });
      workers.register(TICK, () => {
        ticks++;
      });
    });
    after(async () => {
      for (const done of release.values()) done();
      await server.close();
    });

    it("GET /jobservice/pools shows this node's pools (jobs, webhook deliveries); workers are busy with their job, then idle", async () => {
      type PoolJson = { worker_pool_id: string; pid: number; concurrency: number; start_at: string; heartbeat_at: string; job_kinds: string[]; host: string };
      const { body: pools } = await apiJson<PoolJson[]>(base, '/jobservice/pools', 200, { auth: ADMIN });
      assert.deepEqual(pools.map((p) => p.worker_pool_id).sort(), [server.app.jobs.workers.workerId, server.app.webhookDeliveries.workerId].sort());
      const deliveries = pools.find((p) => p.worker_pool_id === server.app.webhookDeliveries.workerId);
      assert.deepEqual([deliveries?.job_kinds, deliveries?.concurrency], [['webhook.deliver'], DELIVERY_CONCURRENCY]);
      const pool = pools.find((p) => p.worker_pool_id === server.app.jobs.workers.workerId) as PoolJson;
      assert.deepEqual([pool.worker_pool_id, pool.pid, pool.concurrency], [server.app.jobs.workers.workerId, process.pid, CONCURRENCY]);
      assert.ok(Date.parse(pool.start_at) <= Date.parse(pool.heartbeat_at));
      assert.ok(pool.job_kinds.includes(PURGE_UPLOADS_JOB) && pool.job_kinds.includes(BLOCK), pool.job_kinds.join());
      assert.ok(pool.host.length > 0);

      const id = await enqueue(BLOCK);
      await waitUntil(() => release.has(id), 'the blocking job to start');
      for (const poolId of [pool.worker_pool_id, 'all']) {
        const { body: workers } = await apiJson<WorkerJson[]>(base, `/jobservice/pools/${encodeURIComponent(poolId)}/workers`, 200, { auth: ADMIN });
        // 'all' counts the delivery pool's idle workers too.
        assert.equal(workers.length, poolId === 'all' ? CONCURRENCY + DELIVERY_CONCURRENCY : CONCURRENCY);
        const busy = workers.filter((w) => w.job_id !== undefined);
        assert.deepEqual(
          busy.map((w) => [w.job_id, w.job_name, w.pool_id]),
          [[String(id), BLOCK, pool.worker_pool_id]],
        );
        assert.ok(Date.parse(busy[0]?.start_at ?? '') <= Date.parse(busy[0]?.checkin_at ?? ''));
        assert.deepEqual(
          workers.filter((w) => w.job_id === undefined).map((w) => w.job_name),
          Array(workers.length - 1).fill(undefined),
        );
      }
      await assertApiError(await api(base, '/jobservice/pools/someone-else/workers', { auth: ADMIN }), 404, 'NOT_FOUND');
      release.get(id)?.();
      await waitUntil(async () => (await status(id)) === 'succeeded', 'the released job to succeed');
    });

    it('pausing a kind makes its jobs wait (count and latency show it); resuming runs them', async () => {
      const { body } = await act(QUICK, 'pause');
      assert.deepEqual(body, { job_types: [QUICK], action: 'pause', cancelled: 0 });
      const id = await enqueue(QUICK);
      await sleep(1200);
      assert.equal(await status(id), 'queued');
      const paused = await queueOf(QUICK);
      assert.deepEqual([paused?.paused, paused?.count, paused?.handled], [true, 1, true]);
      assert.ok((paused?.latency ?? -1) >= 1, `latency ${paused?.latency}`);
      await act(QUICK, 'resume');
      await waitUntil(async () => (await status(id)) === 'succeeded', 'the resumed job to run');
      const resumed = await queueOf(QUICK);
      assert.deepEqual([resumed?.paused, resumed?.count, resumed?.latency], [false, 0, 0]);
      assert.ok((resumed?.succeeded ?? 0) >= 1);
    });

    it('stopping a queue cancels its pending jobs and leaves running ones', async () => {
      const running = await enqueue(BLOCK);
      await waitUntil(() => release.has(running), 'a running job');
      await act(BLOCK, 'pause');
      const pending = [await enqueue(BLOCK), await enqueue(BLOCK), await enqueue(BLOCK)];
      const { body } = await act(BLOCK, 'stop');
      assert.equal(body.cancelled, pending.length);
      for (const id of pending) assert.equal(await status(id), 'cancelled');
      assert.equal(await status(running), 'running');
      await act(BLOCK, 'resume');
      release.get(running)?.();
      await waitUntil(async () => (await status(running)) === 'succeeded', 'the running job to finish');
    });

    it('PUT /jobservice/jobs/{id} stops a running job (its handler is aborted) and a pending one; a finished job stays', async () => {
      const id = await enqueue(BLOCK);
      await waitUntil(() => release.has(id), 'the job to start');
      const { body } = await apiJson<JobJson>(base, `/jobservice/jobs/${id}`, 200, { method: 'PUT', auth: ADMIN, body: { action: 'stop' } });
      assert.equal(body.id, id);
      assert.ok(body.cancel_requested);
      await waitUntil(async () => (await status(id)) === 'cancelled', 'the running job to be cancelled');
      assert.ok(aborted.has(id), 'the handler saw its signal fire');

      // Harbor's clients send no body at all.
      await act(QUICK, 'pause');
      const pending = await enqueue(QUICK);
      const { body: stopped } = await apiJson<JobJson>(base, `/jobservice/jobs/${pending}`, 200, { method: 'PUT', auth: ADMIN });
      assert.equal(stopped.status, 'cancelled');
      await act(QUICK, 'resume');
      const { body: again } = await apiJson<JobJson>(base, `/jobservice/jobs/${pending}`, 200, { method: 'PUT', auth: ADMIN, body: { action: 'stop' } });
      assert.equal(again.status, 'cancelled');
    });

    it("job_id 'all' stops every running job", async () => {
      const ids = [await enqueue(BLOCK), await enqueue(BLOCK)];
      await waitUntil(() => ids.every((id) => release.has(id)), 'both jobs to start');
      const { body } = await apiJson<{ stopped: number }>(base, '/jobservice/jobs/all', 200, { method: 'PUT', auth: ADMIN, body: { action: 'stop' } });
      assert.equal(body.stopped, ids.length);
      await waitUntil(async () => (await Promise.all(ids.map(status))).every((s) => s === 'cancelled'), 'both jobs to be cancelled');
    });

    it("GET /jobservice/jobs/{id}/log is the job's log as text", async () => {
      const id = await enqueue(QUICK);
      await waitUntil(async () => (await status(id)) === 'succeeded', 'the job to run');
      const res = await api(base, `/jobservice/jobs/${id}/log`, { auth: ADMIN });
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type') ?? '', /^text\/plain/);
      const lines = (await res.text()).trimEnd().split('\n');
      assert.equal(lines.length, 2);
      assert.match(lines[0] ?? '', /^\d{4}-\d\d-\d\dT\S+Z \[INFO\] first line$/);
      assert.match(lines[1] ?? '', /^\d{4}-\d\d-\d\dT\S+Z \[WARN\] second line$/);
      await assertApiError(await api(base, '/jobservice/jobs/99999999/log', { auth: ADMIN }), 404, 'NOT_FOUND');
      await assertApiError(await api(base, '/jobservice/jobs/abc/log', { auth: ADMIN }), 400, 'BAD_REQUEST');
    });

    it('GET /jobservice/jobs lists jobs newest first, by kind and status, with X-Total-Count; one job by id', async () => {
      const { body, res } = await apiJson<JobJson[]>(base, `/jobservice/jobs?kind=${QUICK}&status=succeeded&page_size=2`, 200, { auth: ADMIN });
      const total = Number(res.headers.get('x-total-count'));
      assert.equal(total, await queue().count({ kind: QUICK, status: 'succeeded' }));
      assert.ok(total >= 2);
      assert.equal(body.length, 2);
      assert.ok(body.every((j) => j.kind === QUICK && j.status === 'succeeded' && j.end_time !== null && j.worker === null));
      assert.ok((body[0]?.id ?? 0) > (body[1]?.id ?? 0));
      const { body: one } = await apiJson<JobJson>(base, `/jobservice/jobs/${body[0]?.id}`, 200, { auth: ADMIN });
      assert.deepEqual(one, body[0]);
      const { body: cancelled } = await apiJson<JobJson[]>(base, '/jobservice/jobs?status=cancelled&page_size=100', 200, { auth: ADMIN });
      assert.ok(cancelled.length >= 1 && cancelled.every((j) => j.status === 'cancelled'));
      await assertApiError(await api(base, '/jobservice/jobs?status=done', { auth: ADMIN }), 400, 'BAD_REQUEST');
      await assertApiError(await api(base, '/jobservice/jobs/99999999', { auth: ADMIN }), 404, 'NOT_FOUND');
    });

    it('GET /schedules lists the cron schedules; pausing SCHEDULER stops every schedule from firing until resumed', async () => {
      const { body: schedules, res } = await apiJson<Array<{ id: number; name: string; vendor_type: string; cron: string; paused: boolean; next_run_time: string }>>(base, '/schedules?page_size=100', 200, {
        auth: ADMIN,
      });
      assert.equal(Number(res.headers.get('x-total-count')), schedules.length);
      const purge = schedules.find((s) => s.name === PURGE_UPLOADS_JOB);
      assert.deepEqual([purge?.vendor_type, purge?.paused], [PURGE_UPLOADS_JOB, false]);
      assert.ok(Number.isInteger(purge?.id) && Date.parse(purge?.next_run_time ?? '') > 0);
      assert.deepEqual((await apiJson(base, '/schedules/all/paused', 200, { auth: ADMIN })).body, { paused: false });
      assert.deepEqual((await apiJson(base, `/schedules/${PURGE_UPLOADS_JOB}/paused`, 200, { auth: user })).body, { paused: false });

      await server.app.jobs.scheduler.upsert({ name: TICK, cron: '* * * * * *', kind: TICK });
      await waitUntil(() => ticks > 0, 'the every-second schedule to fire');
      await act('SCHEDULER', 'pause');
      assert.deepEqual((await apiJson(base, '/schedules/all/paused', 200, { auth: ADMIN })).body, { paused: true });
      assert.deepEqual((await apiJson(base, `/schedules/${TICK}/paused`, 200, { auth: ADMIN })).body, { paused: true });
      // A tick that was firing when the pause came may still finish; after that, nothing fires.
      await sleep(300);
      const firedBefore = (await queue().list({ kind: TICK, limit: 1000 })).length;
      await sleep(2200);
      assert.equal((await queue().list({ kind: TICK, limit: 1000 })).length, firedBefore, 'no schedule fired while the scheduler was paused');
      const scheduler = (await queues()).find((q) => q.job_type === 'SCHEDULER');
      assert.equal(scheduler?.paused, true);
      assert.ok((scheduler?.count ?? 0) >= 1, 'the due schedules show as pending');
      await act('scheduler', 'resume');
      await waitUntil(async () => (await queue().list({ kind: TICK, limit: 1000 })).length > firedBefore, 'the schedule to fire again');
      assert.equal(await server.app.jobs.scheduler.remove(TICK), true);
      await assertApiError(await api(base, '/schedules/no-such-schedule/paused', { auth: ADMIN }), 404, 'NOT_FOUND');
    });

    it("'all' pauses and resumes every queue, the scheduler included", async () => {
      const { body } = await act('all', 'pause');
      assert.deepEqual(body.job_types, ['all']);
      const paused = await queues();
      assert.ok(paused.length >= 5);
      assert.deepEqual(
        paused.filter((q) => !q.paused).map((q) => q.job_type),
        [],
      );
      await act('ALL', 'resume');
      assert.deepEqual(
        (await queues()).filter((q) => q.paused).map((q) => q.job_type),
        [],
      );
      const id = await enqueue(QUICK);
      await waitUntil(async () => (await status(id)) === 'succeeded', 'a job after resuming everything');
    });

    it('refuses bad input: unknown action, queue, job and fields', async () => {
      await assertApiError(await api(base, `/jobservice/queues/${QUICK}`, { method: 'PUT', auth: ADMIN, body: { action: 'explode' } }), 400, 'BAD_REQUEST');
      await assertApiError(await api(base, `/jobservice/queues/${QUICK}`, { method: 'PUT', auth: ADMIN, body: { action: 'pause', extra: 1 } }), 400, 'BAD_REQUEST');
      await assertApiError(await api(base, `/jobservice/queues/${QUICK}`, { method: 'PUT', auth: ADMIN }), 400, 'BAD_REQUEST');
      await assertApiError(await api(base, '/jobservice/queues/GARBAGE_COLLECTION_NEVER', { method: 'PUT', auth: ADMIN, body: { action: 'pause' } }), 404, 'NOT_FOUND');
      await assertApiError(await api(base, '/jobservice/jobs/99999999', { method: 'PUT', auth: ADMIN, body: { action: 'stop' } }), 404, 'NOT_FOUND');
      await assertApiError(await api(base, '/jobservice/jobs/1', { method: 'PUT', auth: ADMIN, body: { action: 'pause' } }), 400, 'BAD_REQUEST');
      await assertApiError(await api(base, '/jobservice/jobs/x1', { method: 'PUT', auth: ADMIN, body: { action: 'stop' } }), 400, 'BAD_REQUEST');
      await assertApiError(await api(base, '/jobservice/jobs/1', { method: 'PUT', auth: ADMIN, body: '{"action":' }), 400, 'BAD_REQUEST');
      assert.equal((await queueOf(QUICK))?.paused, false, 'nothing changed');
      assertNoServerErrors(server);
    });

    it('only system admins and robots granted jobservice-monitor may look (list) and act (stop); anonymous 401, others 403', async () => {
      const reads = ['/jobservice/pools', `/jobservice/pools/all/workers`, '/jobservice/queues', '/jobservice/jobs', '/schedules'];
      const writes: Array<[string, unknown]> = [
        [`/jobservice/queues/${QUICK}`, { action: 'pause' }],
        ['/jobservice/jobs/1', { action: 'stop' }],
      ];
      for (const path of reads) {
        await assertApiError(await api(base, path), 401, 'UNAUTHORIZED');
        await assertApiError(await api(base, path, { auth: user }), 403, 'FORBIDDEN');
      }
      for (const [path, body] of writes) {
        await assertApiError(await api(base, path, { method: 'PUT', body }), 401, 'UNAUTHORIZED');
        await assertApiError(await api(base, path, { method: 'PUT', auth: user, body }), 403, 'FORBIDDEN');
      }
      await assertApiError(await api(base, '/schedules/all/paused'), 401, 'UNAUTHORIZED');

      const robotWith = async (name: string, actions: string[]) => {
        const { body } = await apiJson<{ name: string; secret: string }>(base, '/robots', 201, {
          method: 'POST',
          auth: ADMIN,
          body: { name, level: 'system', duration: -1, permissions: [{ kind: 'system', namespace: '/', access: actions.map((action) => ({ resource: 'jobservice-monitor', action })) }] },
        });
        return basic(body.name, body.secret);
      };
      const watcher = await robotWith('jobs-watcher', ['list']);
      const operator = await robotWith('jobs-operator', ['list', 'stop']);
      for (const path of reads) await apiJson(base, path, 200, { auth: watcher });
      await assertApiError(await api(base, `/jobservice/queues/${QUICK}`, { method: 'PUT', auth: watcher, body: { action: 'pause' } }), 403, 'FORBIDDEN');
      await apiJson(base, `/jobservice/queues/${QUICK}`, 200, { method: 'PUT', auth: operator, body: { action: 'pause' } });
      await apiJson(base, `/jobservice/queues/${QUICK}`, 200, { method: 'PUT', auth: operator, body: { action: 'resume' } });
      assert.equal((await queueOf(QUICK))?.paused, false);
    });
  });
}
