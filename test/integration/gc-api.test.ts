import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { GC_RUN_JOB } from '../../src/gc/runs.ts';
import { BACKENDS } from '../helpers/backends.ts';
import { ADMIN, ADMIN_PASSWORD, api, apiJson, assertApiError, createUser, pushImage, startAuthServer } from '../helpers/harbor-api.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';

interface GcHistory {
  id: number;
  job_name: string;
  job_kind: string;
  job_parameters: string;
  job_status: string;
  trigger: string;
  dry_run: boolean;
  deleted: boolean;
  creation_time: string;
  update_time: string;
  start_time: string | null;
  end_time: string | null;
  deleted_blobs: number;
  deleted_artifacts: number;
  freed_space: number;
}

interface GcSchedule {
  schedule: { type: string; cron: string; next_scheduled_time?: string };
  parameters: Record<string, unknown>;
  job_parameters: string;
}

async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function finished(base: string, id: number): Promise<GcHistory> {
  return waitFor(`run ${id} to finish`, async () => {
    const { body } = await apiJson<GcHistory>(base, `/system/gc/${id}`, 200, { auth: ADMIN });
    return ['Success', 'Error', 'Stopped'].includes(body.job_status) ? body : undefined;
  });
}

async function runNow(base: string, parameters: Record<string, unknown>): Promise<number> {
  const { res } = await apiJson(base, '/system/gc/schedule', 201, { method: 'POST', auth: ADMIN, body: { schedule: { type: 'Manual' }, parameters } });
  const location = res.headers.get('location');
  assert.match(location ?? '', /^\/api\/v2\.0\/system\/gc\/\d+$/);
  return Number(location?.split('/').pop());
}

for (const backend of BACKENDS) {
  describe(`garbage collection API (${backend})`, () => {
    let server: TestServer;
    let userAuth: string;
    before(async () => {
      server = await startAuthServer(backend);
      userAuth = await createUser(server.url, 'gcuser');
    });
    after(() => server.close());

    it('runs a collection on demand, with history, status, freed space and a log', async () => {
      const image = await pushImage(server.url, 'library/gcapi', { tags: ['v1'], layers: 2 });
      const del = await fetch(`${server.url}/v2/library/gcapi/manifests/${image.digest}`, { method: 'DELETE', headers: { authorization: ADMIN } });
      assert.equal(del.status, 202);
      const dryId = await runNow(server.url, { dry_run: true, time_window: 0 });
      const dry = await finished(server.url, dryId);
      assert.equal(dry.job_status, 'Success');
      assert.equal(dry.dry_run, true);
      const freed = image.size - image.bytes.length;
      assert.equal(dry.freed_space, freed);
      assert.equal(dry.deleted_blobs, 3);

      const id = await runNow(server.url, { delete_untagged: false, workers: 2, time_window: 0 });
      const run = await finished(server.url, id);
      assert.equal(run.job_status, 'Success');
      assert.equal(run.job_name, 'GARBAGE_COLLECTION');
      assert.equal(run.job_kind, 'MANUAL');
      assert.equal(run.trigger, 'MANUAL');
      assert.equal(run.deleted, false);
      assert.deepEqual(JSON.parse(run.job_parameters), { delete_untagged: false, dry_run: false, workers: 2, time_window: 0 });
      assert.equal(run.deleted_blobs, 3);
      assert.equal(run.freed_space, freed);
      assert.ok(run.start_time && run.end_time && run.end_time >= run.start_time);

      const history = await api(server.url, '/system/gc?page=1&page_size=1', { auth: ADMIN });
      assert.equal(history.status, 200);
      assert.ok(Number(history.headers.get('x-total-count')) >= 2);
      assert.match(history.headers.get('link') ?? '', /rel="next"/);
      const [newest] = (await history.json()) as GcHistory[];
      assert.equal(newest?.id, id);

      const log = await api(server.url, `/system/gc/${id}/log`, { auth: ADMIN });
      assert.equal(log.status, 200);
      assert.match(log.headers.get('content-type') ?? '', /^text\/plain/);
      const text = await log.text();
      assert.match(text, /garbage collection started/);
      assert.match(text, /garbage collection finished .* freed/);
    });

    it('sets, shows and removes the schedule', async () => {
      const none = await apiJson<GcSchedule>(server.url, '/system/gc/schedule', 200, { auth: ADMIN });
      assert.equal(none.body.schedule.type, 'None');
      await apiJson(server.url, '/system/gc/schedule', 200, { method: 'PUT', auth: ADMIN, body: { schedule: { type: 'Daily' }, parameters: { delete_untagged: true, workers: 3 } } });
      const daily = await apiJson<GcSchedule>(server.url, '/system/gc/schedule', 200, { auth: ADMIN });
      assert.equal(daily.body.schedule.type, 'Daily');
      assert.equal(daily.body.schedule.cron, '0 0 0 * * *');
      assert.ok(Date.parse(daily.body.schedule.next_scheduled_time ?? '') > Date.now());
      assert.deepEqual(daily.body.parameters, { delete_untagged: true, dry_run: false, workers: 3, time_window: 2 });
      await apiJson(server.url, '/system/gc/schedule', 200, { method: 'PUT', auth: ADMIN, body: { schedule: { type: 'Custom', cron: '0 30 2 * * 1' } } });
      assert.equal((await apiJson<GcSchedule>(server.url, '/system/gc/schedule', 200, { auth: ADMIN })).body.schedule.cron, '0 30 2 * * 1');
      await apiJson(server.url, '/system/gc/schedule', 200, { method: 'PUT', auth: ADMIN, body: { schedule: { type: 'None' } } });
      assert.equal((await apiJson<GcSchedule>(server.url, '/system/gc/schedule', 200, { auth: ADMIN })).body.schedule.type, 'None');
    });

    it('a schedule fires runs of kind SCHEDULE', async () => {
      const before = (await apiJson<GcHistory[]>(server.url, '/system/gc?page_size=100', 200, { auth: ADMIN })).body.length;
      await apiJson(server.url, '/system/gc/schedule', 201, { method: 'POST', auth: ADMIN, body: { schedule: { type: 'Custom', cron: '* * * * * *' }, parameters: { dry_run: true } } });
      try {
        const scheduled = await waitFor('a scheduled run', async () => {
          const { body } = await apiJson<GcHistory[]>(server.url, '/system/gc?page_size=100', 200, { auth: ADMIN });
          return body.length > before ? body.find((r) => r.job_kind === 'SCHEDULE') : undefined;
        });
        assert.equal(scheduled.trigger, 'SCHEDULE');
        assert.equal((await finished(server.url, scheduled.id)).job_status, 'Success');
      } finally {
        await apiJson(server.url, '/system/gc/schedule', 200, { method: 'PUT', auth: ADMIN, body: { schedule: { type: 'None' } } });
      }
    });

    it('refuses bad input with clear 4xx and changes nothing', async () => {
      await apiJson(server.url, '/system/gc/schedule', 200, { method: 'PUT', auth: ADMIN, body: { schedule: { type: 'Weekly' } } });
      const bad: Array<[unknown, string]> = [
        [{ schedule: { type: 'Custom', cron: 'every tuesday' } }, 'invalid cron'],
        [{ schedule: { type: 'Custom', cron: '61 * * * *' } }, 'out-of-range cron'],
        [{ schedule: { type: 'Custom' } }, 'Custom without cron'],
        [{ schedule: { type: 'Fortnightly' } }, 'unknown schedule type'],
        [{ schedule: { type: 'Daily' }, parameters: { time_window: -1 } }, 'negative time_window'],
        [{ schedule: { type: 'Daily' }, parameters: { workers: 0 } }, 'workers 0'],
        [{ schedule: { type: 'Daily' }, parameters: { workers: 11 } }, 'workers 11'],
        [{ schedule: { type: 'Daily' }, parameters: { dry_run: 'yes' } }, 'dry_run not a boolean'],
        [{ schedule: { type: 'Daily' }, parameters: { delete_tags: true } }, 'unknown parameter'],
        [{ parameters: {} }, 'no schedule'],
        ['{"schedule":', 'malformed JSON'],
      ];
      for (const [body, label] of bad) {
        for (const method of ['PUT', 'POST']) {
          const res = await api(server.url, '/system/gc/schedule', { method, auth: ADMIN, body });
          await assertApiError(res, 400, 'BAD_REQUEST').catch((err: Error) => assert.fail(`${method} ${label}: ${err.message}`));
        }
      }
      const { body } = await apiJson<GcSchedule>(server.url, '/system/gc/schedule', 200, { auth: ADMIN });
      assert.equal(body.schedule.type, 'Weekly');
      await assertApiError(await api(server.url, '/system/gc/999999', { auth: ADMIN }), 404, 'NOT_FOUND');
      await assertApiError(await api(server.url, '/system/gc/999999/log', { auth: ADMIN }), 404, 'NOT_FOUND');
      await assertApiError(await api(server.url, '/system/gc/abc', { auth: ADMIN }), 400, 'BAD_REQUEST');
      await assertApiError(await api(server.url, '/system/gc?page_size=1000', { auth: ADMIN }), 400, 'BAD_REQUEST');
      await apiJson(server.url, '/system/gc/schedule', 200, { method: 'PUT', auth: ADMIN, body: { schedule: { type: 'None' } } });
    });

    it('is for system admins only', async () => {
      const calls: Array<[string, string, unknown?]> = [
        ['GET', '/system/gc/schedule'],
        ['PUT', '/system/gc/schedule', { schedule: { type: 'Manual' } }],
        ['POST', '/system/gc/schedule', { schedule: { type: 'Manual' } }],
        // Bad input from a non-admin is still a 403: nothing about the request is judged first.
        ['POST', '/system/gc/schedule', { schedule: { type: 'Nope' } }],
        ['GET', '/system/gc'],
        ['GET', '/system/gc/1'],
        ['PUT', '/system/gc/1'],
        ['GET', '/system/gc/1/log'],
      ];
      for (const [method, path, body] of calls) {
        await assertApiError(await api(server.url, path, { method, auth: userAuth, ...(body ? { body } : {}) }), 403, 'FORBIDDEN');
        await assertApiError(await api(server.url, path, { method, ...(body ? { body } : {}) }), 401, 'UNAUTHORIZED');
      }
      const { body } = await apiJson<GcHistory[]>(server.url, '/system/gc?page_size=100', 200, { auth: ADMIN });
      assert.ok(body.every((run) => run.trigger !== 'MANUAL' || run.job_status !== 'Pending'));
    });

    it('runs one collection at a time, and stops a pending one', async () => {
      await server.app.jobs.queue.pauseKind(GC_RUN_JOB);
      try {
        const id = await runNow(server.url, { time_window: 0 });
        const pending = await apiJson<GcHistory>(server.url, `/system/gc/${id}`, 200, { auth: ADMIN });
        assert.equal(pending.body.job_status, 'Pending');
        const second = await api(server.url, '/system/gc/schedule', { method: 'POST', auth: ADMIN, body: { schedule: { type: 'Manual' } } });
        await assertApiError(second, 409, 'CONFLICT');
        await apiJson(server.url, `/system/gc/${id}`, 200, { method: 'PUT', auth: ADMIN });
        assert.equal((await apiJson<GcHistory>(server.url, `/system/gc/${id}`, 200, { auth: ADMIN })).body.job_status, 'Stopped');
        // Stopping a finished run changes nothing.
        await apiJson(server.url, `/system/gc/${id}`, 200, { method: 'PUT', auth: ADMIN });
      } finally {
        await server.app.jobs.queue.resumeKind(GC_RUN_JOB);
      }
      const next = await runNow(server.url, { time_window: 0 });
      assert.equal((await finished(server.url, next)).job_status, 'Success');
    });
  });

  describe(`garbage collection at server start (${backend})`, () => {
    let server: TestServer;
    before(async () => {
      server = await startTestServer(backend, { config: { auth: { enabled: true }, adminPassword: ADMIN_PASSWORD, gc: { runAtStart: true } } });
    });
    after(() => server.close());

    it('queues a run when gc.runAtStart is set', async () => {
      const run = await waitFor('the start-up run', async () => {
        const { body } = await apiJson<GcHistory[]>(server.url, '/system/gc', 200, { auth: ADMIN });
        return body.find((r) => r.trigger === 'START');
      });
      assert.equal((await finished(server.url, run.id)).job_status, 'Success');
      assert.equal(JSON.parse(run.job_parameters).time_window, 2);
    });
  });
}
