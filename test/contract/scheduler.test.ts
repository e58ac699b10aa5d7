/**
 * Scheduler (src/platform/jobs/scheduler.ts) against every database backend. The main claim: a
 * schedule fires once per due time however many nodes tick it — checked with schedulers racing
 * in this process, with a second node in a child process on the same database (a PostgreSQL
 * database, or one SQLite file), and with two whole job services on real timers.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { DatabaseHandle } from '../../src/platform/db/database.ts';
import { JobQueue } from '../../src/platform/jobs/queue.ts';
import { cronEvery, type Fired, InvalidCronError, Scheduler, validateCron } from '../../src/platform/jobs/scheduler.ts';
import { JobService } from '../../src/platform/jobs/service.ts';
import { BACKENDS } from '../helpers/backends.ts';
import { type FakeClock, fakeClock, type JobNode, openSharedDatabase, type SharedDatabase, spawnJobNode, waitUntil } from '../helpers/jobs.ts';

let counter = 0;
const fresh = (label: string) => `test.${label}.${++counter}`;

/** Asserts that `promise` rejects with an InvalidCronError whose message says `says`. */
async function assertInvalidCron(promise: Promise<unknown>, expression: string, says: RegExp): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof InvalidCronError, `expected InvalidCronError, got ${String(err)}`);
    assert.equal(err.code, 'INVALID_CRON');
    assert.equal(err.expression, expression);
    assert.ok(err.message.startsWith(`invalid cron expression ${JSON.stringify(expression)}`), err.message);
    assert.match(err.message, says);
    return true;
  });
}

describe('cron helpers', () => {
  it('cronEvery turns an interval into a cron step', () => {
    const cases: Array<[number, string]> = [
      [1, '*/1 * * * * *'],
      [30, '*/30 * * * * *'],
      [59, '*/59 * * * * *'],
      [60, '0 */1 * * * *'],
      [600, '0 */10 * * * *'],
      [5400, '0 0 */2 * * *'],
      [86_400, '0 0 0 */1 * *'],
    ];
    for (const [seconds, cron] of cases) {
      assert.equal(cronEvery(seconds), cron, `${seconds}s`);
      validateCron(cron);
    }
    assert.throws(() => cronEvery(0), RangeError);
    assert.throws(() => cronEvery(1.5), RangeError);
  });

  it('validateCron throws a typed error naming the expression and the problem', () => {
    assert.throws(() => validateCron('61 * * * *'), (err: unknown) => err instanceof InvalidCronError && /minute/.test(err.message));
    assert.throws(() => validateCron('0 0 0 31 2 *'), (err: unknown) => err instanceof InvalidCronError && /never fires/.test(err.message));
    validateCron('@daily');
  });
});

for (const backend of BACKENDS) {
  describe(`Scheduler on ${backend}`, () => {
    let shared: SharedDatabase;
    let a: DatabaseHandle;
    let b: DatabaseHandle;
    let clock: FakeClock;
    let queue: JobQueue;
    let schedulerA: Scheduler;
    let schedulerB: Scheduler;

    before(async () => {
      shared = await openSharedDatabase(backend, 2);
      [a, b] = shared.handles as [DatabaseHandle, DatabaseHandle];
      clock = fakeClock();
      queue = new JobQueue(a.db, { now: clock.now });
      schedulerA = new Scheduler({ db: a.db, queue, tickMs: 1000, now: clock.now });
      // node:sqlite is synchronous: two SQLite connections in one process cannot wait for each
      // other's write locks, so in-process racers share one connection there (the child process
      // below is the second SQLite connection). On PostgreSQL they use separate pools.
      const other = backend === 'postgres' ? b : a;
      schedulerB = new Scheduler({ db: other.db, queue: new JobQueue(other.db, { now: clock.now }), tickMs: 1000, now: clock.now });
    });
    after(() => shared?.close());

    /** Jobs a schedule enqueued, oldest first: [dedupe key, payload]. */
    /** What a tick fired for one schedule (other tests' schedules may share the database). */
    async function tickFor(scheduler: Scheduler, name: string): Promise<Fired[]> {
      return (await scheduler.tick()).filter((f) => f.schedule === name);
    }

    async function jobsOf(kind: string): Promise<Array<[string | null, unknown]>> {
      return (await queue.list({ kind, limit: 1000 })).reverse().map((j) => [j.dedupeKey, j.payload]);
    }

    it('an invalid cron expression is refused with a clear typed error, and nothing is stored', async () => {
      const name = fresh('invalid');
      await assertInvalidCron(schedulerA.upsert({ name, cron: '61 * * * *', kind: 'k' }), '61 * * * *', /for schedule test\.invalid\.\d+: .*minute: 61/);
      await assertInvalidCron(schedulerA.upsert({ name, cron: 'every day', kind: 'k' }), 'every day', /five, six, or seven/);
      await assertInvalidCron(schedulerA.upsert({ name, cron: '', kind: 'k' }), '', /empty/);
      await assertInvalidCron(schedulerA.upsert({ name, cron: '0 0 0 1 1 * 2001', kind: 'k' }), '0 0 0 1 1 * 2001', /never fires/);
      assert.equal(await schedulerA.get(name), undefined);
    });

    it('upsert stores the next run; again with the same cron keeps it; a new cron restarts from now; pause survives', async () => {
      const name = fresh('upsert');
      const t0 = clock.t;
      const created = await schedulerA.upsert({ name, cron: '0 */5 * * * *', kind: 'k', payload: { a: 1 } });
      assert.deepEqual(created, { name, cron: '0 */5 * * * *', kind: 'k', payload: { a: 1 }, nextRunAt: t0 + 300_000, lastRunAt: null, paused: false });
      clock.advance(120_000);
      const same = await schedulerB.upsert({ name, cron: '0 */5 * * * *', kind: 'k2', payload: { a: 2 } });
      assert.equal(same.nextRunAt, t0 + 300_000, 'an unchanged cron keeps its next run time');
      assert.deepEqual([same.kind, same.payload], ['k2', { a: 2 }]);
      const changed = await schedulerA.upsert({ name, cron: '*/7 * * * * *', kind: 'k2' });
      assert.equal(changed.nextRunAt, t0 + 127_000, 'the first */7 second after now (00:02:07)');
      assert.equal(await schedulerA.pause(name), true);
      assert.equal((await schedulerB.upsert({ name, cron: '*/7 * * * * *', kind: 'k2' })).paused, true);
      assert.ok((await schedulerB.list()).some((s) => s.name === name));
      assert.equal(await schedulerA.remove(name), true);
      assert.equal(await schedulerA.get(name), undefined);
    });

    it('fires at each due time, enqueuing the job with its payload and a per-run dedupe key', async () => {
      const name = fresh('fires');
      const kind = fresh('fires-kind');
      await schedulerA.upsert({ name, cron: '*/10 * * * * *', kind, payload: { scope: 'all' } });
      assert.deepEqual(await tickFor(schedulerA, name), [], 'nothing is due yet');
      const due = clock.t + 10_000;
      clock.t = due;
      const fired = await tickFor(schedulerA, name);
      assert.equal(fired.length, 1);
      assert.equal(fired[0]?.runAt, due);
      const job = await queue.get(fired[0]?.jobId as number);
      assert.deepEqual([job?.kind, job?.payload, job?.dedupeKey], [kind, { scope: 'all' }, `schedule:${name}:${new Date(due).toISOString()}`]);
      const after = await schedulerA.get(name);
      assert.deepEqual([after?.lastRunAt, after?.nextRunAt], [due, due + 10_000]);
      assert.deepEqual(await tickFor(schedulerA, name), [], 'a due time fires once');
      await schedulerA.remove(name);
    });

    it('runs missed while no node ticked fire once, and the schedule continues from now', async () => {
      const name = fresh('missed');
      const kind = fresh('missed-kind');
      await schedulerA.upsert({ name, cron: '0 * * * * *', kind });
      const firstDue = (await schedulerA.get(name))?.nextRunAt as number;
      clock.advance(3_600_000);
      const fired = await tickFor(schedulerA, name);
      assert.deepEqual(
        fired.map((f) => f.runAt),
        [firstDue],
      );
      const next = (await schedulerA.get(name))?.nextRunAt as number;
      assert.ok(next > clock.t && next <= clock.t + 60_000, 'the next run is the first one after now');
      assert.equal((await jobsOf(kind)).length, 1);
      await schedulerA.remove(name);
    });

    it('a paused schedule does not fire; resumed, it skips what it missed', async () => {
      const name = fresh('paused');
      const kind = fresh('paused-kind');
      await schedulerA.upsert({ name, cron: '*/10 * * * * *', kind, paused: true });
      clock.advance(60_000);
      assert.deepEqual(await tickFor(schedulerA, name), []);
      assert.equal(await schedulerB.resume(name), true);
      assert.equal(await schedulerB.resume(name), false, 'already running');
      assert.ok(((await schedulerA.get(name))?.nextRunAt as number) > clock.t);
      assert.deepEqual(await tickFor(schedulerA, name), []);
      clock.advance(10_000);
      assert.equal((await tickFor(schedulerB, name)).length, 1);
      assert.equal((await jobsOf(kind)).length, 1);
      await schedulerA.remove(name);
    });

    it('two schedulers ticking concurrently, five times each per step: one job per due time', async () => {
      const name = fresh('race');
      const kind = fresh('race-kind');
      await Promise.all([schedulerA.upsert({ name, cron: '*/10 * * * * *', kind }), schedulerB.upsert({ name, cron: '*/10 * * * * *', kind })]);
      const fired: Fired[] = [];
      for (let step = 0; step < 20; step++) {
        clock.advance(10_000);
        const ticks = await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 ? schedulerA : schedulerB).tick()));
        fired.push(...ticks.flat().filter((f) => f.schedule === name));
      }
      const runTimes = fired.map((f) => f.runAt);
      assert.equal(new Set(runTimes).size, 20, 'every due time fired');
      assert.equal(runTimes.length, 20, 'and only once');
      const jobs = await jobsOf(kind);
      assert.equal(jobs.length, 20);
      assert.deepEqual(
        jobs.map(([key]) => key),
        [...runTimes].sort((x, y) => x - y).map((t) => `schedule:${name}:${new Date(t).toISOString()}`),
      );
      await schedulerA.remove(name);
    });

    describe('with a second node in a child process', () => {
      let node: JobNode;
      before(async () => {
        node = await spawnJobNode(shared);
      });
      after(() => node?.close());

      it('both nodes tick every due time at once: each fires once, on one node or the other', async () => {
        const name = fresh('two-nodes');
        const kind = fresh('two-nodes-kind');
        const spec = { name, cron: '*/5 * * * * *', kind };
        await Promise.all([schedulerA.upsert(spec), node.request('upsert', { spec, now: clock.t })]);
        const fired: Array<Fired & { node: string }> = [];
        for (let step = 0; step < 30; step++) {
          clock.advance(5_000);
          const [here, there] = await Promise.all([schedulerA.tick(), node.request<Fired[]>('tick', { now: clock.t })]);
          fired.push(...here.filter((f) => f.schedule === name).map((f) => ({ ...f, node: 'parent' })));
          fired.push(...there.filter((f) => f.schedule === name).map((f) => ({ ...f, node: 'child' })));
        }
        const runTimes = fired.map((f) => f.runAt).sort((x, y) => x - y);
        assert.equal(runTimes.length, 30, `30 due times, 30 fires (${fired.length})`);
        assert.equal(new Set(runTimes).size, 30);
        assert.deepEqual(
          (await jobsOf(kind)).map(([key]) => key),
          runTimes.map((t) => `schedule:${name}:${new Date(t).toISOString()}`),
        );
        await schedulerA.remove(name);
      });

      it('two job services on real timers: each scheduled run is enqueued and run exactly once', async () => {
        const name = fresh('services');
        const kind = fresh('services-kind');
        const spec = { name, cron: '* * * * * *', kind };
        const service = new JobService({
          db: a.db,
          concurrency: 2,
          pollIntervalMs: 25,
          leaseMs: 30_000,
          logLinesPerJob: 100,
          schedulerTickMs: 25,
          keepFinishedDays: 0,
          stopTimeoutMs: 5_000,
        });
        service.workers.register(kind, async (_payload, { log }) => log('ran on parent'));
        service.schedule(spec);
        await service.start();
        try {
          await node.request('startService', { spec, kind, node: 'child', tickMs: 25, pollIntervalMs: 25 });
          await waitUntil(
            async () => (await service.queue.counts()).some((c) => c.kind === kind && c.status === 'succeeded' && c.count >= 3),
            'three scheduled runs to succeed',
          );
          // Schedulers first, then let the workers finish what was fired.
          await Promise.all([node.request('stopScheduler'), service.scheduler.stop()]);
          await waitUntil(
            async () => (await service.queue.counts()).every((c) => c.kind !== kind || c.status === 'succeeded'),
            'every fired run to finish',
          );
        } finally {
          await node.request('stopService');
          await service.stop();
        }
        const jobs = await service.queue.list({ kind, limit: 1000 });
        const keys = jobs.map((j) => j.dedupeKey);
        assert.equal(new Set(keys).size, jobs.length, `one job per run time: ${keys}`);
        for (const job of jobs) {
          assert.equal(job.status, 'succeeded', `job ${job.id}`);
          const lines = await service.queue.readLog(job.id);
          assert.equal(lines.length, 1, `job ${job.id} ran once`);
          assert.match(lines[0]?.message as string, /^ran on (parent|child)$/);
        }
        const schedule = await service.scheduler.get(name);
        assert.equal(`schedule:${name}:${new Date(schedule?.lastRunAt as number).toISOString()}`, jobs[0]?.dedupeKey, 'the newest job is the last run');
      });
    });
  });
}
