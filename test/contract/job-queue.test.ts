/**
 * JobQueue (src/platform/jobs/queue.ts) against every database backend: claim order, dedupe,
 * exactly-once claims under concurrency (two queues on separate pools or connections, plus a
 * second process), lease expiry and takeover, retries with backoff, cancellation, bounded logs.
 * Time is a fake clock wherever leases or backoff matter.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { DatabaseHandle } from '../../src/platform/db/database.ts';
import { type ClaimedJob, JobQueue } from '../../src/platform/jobs/queue.ts';
import { BACKENDS } from '../helpers/backends.ts';
import { type FakeClock, fakeClock, openSharedDatabase, type SharedDatabase, spawnJobNode } from '../helpers/jobs.ts';

let kindCounter = 0;
/** A job kind no other test uses, so tests sharing a database do not see each other's jobs. */
const freshKind = (label: string) => `test.${label}.${++kindCounter}`;

for (const backend of BACKENDS) {
  describe(`JobQueue on ${backend}`, () => {
    let shared: SharedDatabase;
    let a: DatabaseHandle;
    let b: DatabaseHandle;
    let clock: FakeClock;
    /** Two nodes' queues on one database, on one clock. */
    let queueA: JobQueue;
    let queueB: JobQueue;

    before(async () => {
      shared = await openSharedDatabase(backend, 2);
      [a, b] = shared.handles as [DatabaseHandle, DatabaseHandle];
      clock = fakeClock();
      queueA = new JobQueue(a.db, { now: clock.now, backoffBaseMs: 1000, backoffMaxMs: 60_000 });
      queueB = new JobQueue(b.db, { now: clock.now, backoffBaseMs: 1000, backoffMaxMs: 60_000 });
    });
    after(() => shared?.close());

    it('migration 0002 creates the job tables, empty', async () => {
      for (const table of ['jobs', 'job_logs', 'job_kind_pauses', 'schedules'] as const) {
        const row = await a.db
          .selectFrom(table)
          .select((eb) => eb.fn.countAll<number | string>().as('n'))
          .executeTakeFirstOrThrow();
        assert.equal(Number(row.n), 0, table);
      }
    });

    it('enqueue stores the job as queued with its fields; get reads it back', async () => {
      const kind = freshKind('fields');
      const id = await queueA.enqueue({ kind, payload: { repo: 'a/b', n: [1, 2] }, priority: 3, maxAttempts: 7, runAt: clock.t + 5 });
      const job = await queueB.get(id);
      assert.ok(job);
      assert.deepEqual(
        { kind: job.kind, payload: job.payload, status: job.status, priority: job.priority, attempts: job.attempts, maxAttempts: job.maxAttempts, runAt: job.runAt },
        { kind, payload: { repo: 'a/b', n: [1, 2] }, status: 'queued', priority: 3, attempts: 0, maxAttempts: 7, runAt: clock.t + 5 },
      );
      assert.equal(job.createdAt, clock.t);
      assert.equal(job.leaseOwner, null);
      assert.equal(await queueA.get(999_999), undefined);
      await assert.rejects(queueA.enqueue({ kind, maxAttempts: 0 }), RangeError);
    });

    it('claims by priority (lower first), then run_at, then enqueue order; only due jobs of the asked kinds', async () => {
      const kind = freshKind('order');
      const other = freshKind('other');
      const t = clock.t;
      const late = await queueA.enqueue({ kind, payload: 'late', runAt: t - 10 });
      const early = await queueA.enqueue({ kind, payload: 'early', runAt: t - 20 });
      const urgent = await queueA.enqueue({ kind, payload: 'urgent', priority: -5, runAt: t });
      const low = await queueA.enqueue({ kind, payload: 'low', priority: 10, runAt: t - 1000 });
      const sameTime1 = await queueA.enqueue({ kind, payload: 's1', runAt: t - 10 });
      const future = await queueA.enqueue({ kind, payload: 'future', priority: -100, runAt: t + 60_000 });
      await queueA.enqueue({ kind: other, payload: 'elsewhere', priority: -100 });

      const order: number[] = [];
      for (;;) {
        const job = await queueB.claim('w', [kind], 30_000);
        if (!job) break;
        assert.equal(job.status, 'running');
        assert.equal(job.leaseOwner, 'w');
        assert.equal(job.leaseExpiresAt, t + 30_000);
        assert.equal(job.attempts, 1);
        assert.deepEqual(job.lease, { id: job.id, owner: 'w', attempt: 1 });
        order.push(job.id);
      }
      assert.deepEqual(order, [urgent, early, late, sameTime1, low]);
      assert.equal((await queueA.get(future))?.status, 'queued', 'a job is not claimed before its run_at');
      clock.advance(60_000);
      assert.equal((await queueA.claim('w', [kind], 30_000))?.id, future);
      assert.equal(await queueA.claim('w', [], 30_000), undefined, 'no kinds, no claim');
      assert.equal((await queueA.claim('w', [other], 30_000))?.payload, 'elsewhere');
    });

    it('a dedupe key held by a queued or running job returns that job; once it finished, a new job', async () => {
      const kind = freshKind('dedupe');
      const first = await queueA.enqueue({ kind, dedupeKey: 'scan:sha256:1', payload: 1 });
      assert.equal(await queueB.enqueue({ kind, dedupeKey: 'scan:sha256:1', payload: 2 }), first);
      const other = await queueA.enqueue({ kind, dedupeKey: 'scan:sha256:2' });
      assert.notEqual(other, first);
      const job = (await queueA.claim('w', [kind], 30_000)) as ClaimedJob;
      assert.equal(job.id, first);
      assert.equal(job.payload, 1, 'the second enqueue did not change the job');
      assert.equal(await queueB.enqueue({ kind, dedupeKey: 'scan:sha256:1' }), first, 'running still holds the key');
      assert.equal(await queueA.complete(job.lease), 'succeeded');
      const next = await queueB.enqueue({ kind, dedupeKey: 'scan:sha256:1', payload: 3 });
      assert.notEqual(next, first);
      assert.equal((await queueA.get(next))?.payload, 3);
      assert.equal((await queueA.get(first))?.status, 'succeeded');
    });

    it('20 concurrent enqueues with one dedupe key, from two nodes, make one job', async () => {
      const kind = freshKind('dedupe-race');
      const ids = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 ? queueA : queueB).enqueue({ kind, dedupeKey: 'race' })));
      assert.equal(new Set(ids).size, 1);
      const rows = await a.db.selectFrom('jobs').select('id').where('kind', '=', kind).execute();
      assert.equal(rows.length, 1);
    });

    it('200 jobs claimed concurrently by two queues and a second process: each exactly once', async () => {
      const kind = freshKind('exactly-once');
      const ids = new Set<number>();
      for (let i = 0; i < 200; i++) ids.add(await queueA.enqueue({ kind, payload: i, priority: i % 3 }));
      const claims = new Map<number, string[]>();
      const loop = async (queue: JobQueue, worker: string) => {
        for (;;) {
          const job = await queue.claim(worker, [kind], 60_000);
          if (!job) return;
          claims.set(job.id, [...(claims.get(job.id) ?? []), worker]);
          assert.equal(await queue.complete(job.lease), 'succeeded', `job ${job.id} completed by its claimer ${worker}`);
        }
      };
      const child = await spawnJobNode(shared);
      let childIds: number[];
      try {
        const drained = child.request<number[]>('drain', { kind, now: clock.t, loops: 4 });
        await Promise.all([0, 1, 2, 3].flatMap((n) => [loop(queueA, `a${n}`), loop(queueB, `b${n}`)]));
        childIds = await drained;
      } finally {
        await child.close();
      }
      for (const id of childIds) claims.set(id, [...(claims.get(id) ?? []), 'child']);
      const twice = [...claims].filter(([, workers]) => workers.length > 1);
      assert.deepEqual(twice, [], 'no job was claimed twice');
      assert.deepEqual([...claims.keys()].sort((x, y) => x - y), [...ids].sort((x, y) => x - y), 'every job was claimed');
      const counts = (await queueA.counts()).filter((c) => c.kind === kind);
      assert.deepEqual(counts, [{ kind, status: 'succeeded', count: 200 }]);
      const byClaimer = new Set([...claims.values()].map((w) => (w[0] as string).slice(0, 1)));
      assert.ok(byClaimer.size >= 2, `the work was shared (claimers: ${[...byClaimer]})`);
    });

    it('an expired lease is taken over by another worker; the old owner can no longer touch the job', async () => {
      const kind = freshKind('takeover');
      const id = await queueA.enqueue({ kind, maxAttempts: 3 });
      const first = (await queueA.claim('node-a', [kind], 1000)) as ClaimedJob;
      assert.equal(first.id, id);
      clock.advance(500);
      assert.equal(await queueB.claim('node-b', [kind], 1000), undefined, 'a live lease is not taken');
      assert.equal(await queueA.heartbeat(first.lease, 1000), 'ok');
      clock.advance(999);
      assert.equal(await queueB.claim('node-b', [kind], 1000), undefined, 'the heartbeat extended the lease');
      clock.advance(2);
      assert.equal(await queueA.claim('node-a', [kind], 1000), undefined, 'a worker does not take over from itself');
      const second = (await queueB.claim('node-b', [kind], 1000)) as ClaimedJob;
      assert.equal(second?.id, id, 'taken over after expiry');
      assert.equal(second.attempts, 2);
      assert.equal(second.leaseOwner, 'node-b');
      assert.equal(await queueA.heartbeat(first.lease, 1000), 'lost');
      assert.equal(await queueA.complete(first.lease), undefined);
      assert.equal(await queueA.fail(first.lease, new Error('late')), undefined);
      assert.equal(await queueA.release(first.lease), false);
      assert.equal((await queueB.get(id))?.status, 'running');
      assert.equal(await queueB.complete(second.lease), 'succeeded');
      const done = await queueA.get(id);
      assert.equal(done?.status, 'succeeded');
      assert.equal(done?.leaseOwner, null);
      assert.equal(done?.finishedAt, clock.t);
    });

    it('an expired job with no attempt left is failed by the reaper, not taken over', async () => {
      const kind = freshKind('reap');
      const id = await queueA.enqueue({ kind, maxAttempts: 1 });
      assert.equal((await queueA.claim('node-a', [kind], 1000))?.id, id);
      clock.advance(1001);
      assert.equal(await queueB.claim('node-b', [kind], 1000), undefined);
      await queueB.reapExpired();
      const job = await queueA.get(id);
      assert.equal(job?.status, 'failed');
      assert.match(job?.lastError ?? '', /lease expired/);
      assert.equal(job?.finishedAt, clock.t);
    });

    it('a failed attempt is retried after an exponential backoff with jitter, then failed after max_attempts', async () => {
      const kind = freshKind('retry');
      const id = await queueA.enqueue({ kind, maxAttempts: 4 });
      const delays: number[] = [];
      for (let attempt = 1; attempt <= 4; attempt++) {
        const job = (await queueB.claim('w', [kind], 30_000)) as ClaimedJob;
        assert.equal(job?.id, id, `attempt ${attempt} claimed`);
        assert.equal(job.attempts, attempt);
        const status = await queueB.fail(job.lease, new TypeError(`broken ${attempt}`));
        const after = (await queueA.get(id))!;
        assert.equal(after.lastError, `TypeError: broken ${attempt}`);
        assert.equal(after.attempts, attempt);
        assert.equal(after.leaseOwner, null);
        if (attempt < 4) {
          assert.equal(status, 'queued');
          assert.equal(after.finishedAt, null);
          const delay = after.runAt - clock.t;
          const full = 1000 * 2 ** (attempt - 1);
          assert.ok(delay >= full / 2 && delay <= full, `attempt ${attempt}: delay ${delay} within [${full / 2}, ${full}]`);
          delays.push(delay);
          assert.equal(await queueB.claim('w', [kind], 30_000), undefined, 'not claimable during the backoff');
          clock.t = after.runAt;
        } else {
          assert.equal(status, 'failed');
          assert.equal(after.status, 'failed');
          assert.equal(after.finishedAt, clock.t);
        }
      }
      assert.deepEqual([...delays].sort((x, y) => x - y), delays, `backoff never shrinks: ${delays}`);
      assert.ok((delays.at(-1) as number) > (delays[0] as number), 'and grows');
      assert.equal(await queueB.claim('w', [kind], 30_000), undefined, 'a failed job is never claimed again');
    });

    it('backoff is capped and fail({ retry: false }) fails at once', async () => {
      assert.ok(queueA.backoffMs(40) <= 60_000);
      assert.ok(queueA.backoffMs(40) >= 30_000);
      const kind = freshKind('permanent');
      const id = await queueA.enqueue({ kind, maxAttempts: 5 });
      const job = (await queueA.claim('w', [kind], 30_000)) as ClaimedJob;
      assert.equal(await queueA.fail(job.lease, 'bad payload', { retry: false }), 'failed');
      assert.equal((await queueA.get(id))?.lastError, 'bad payload');
    });

    it('cancel: a queued job at once; a running job is asked, sees it at its heartbeat, and ends cancelled', async () => {
      const kind = freshKind('cancel');
      const queued = await queueA.enqueue({ kind, priority: 1 });
      const cancelled = await queueB.cancel(queued);
      assert.equal(cancelled?.status, 'cancelled');
      assert.equal(cancelled?.finishedAt, clock.t);

      const runningId = await queueA.enqueue({ kind });
      const job = (await queueA.claim('w', [kind], 30_000)) as ClaimedJob;
      assert.equal(job.id, runningId, 'the cancelled job is not claimed');
      const asked = await queueB.cancel(runningId);
      assert.equal(asked?.status, 'running');
      assert.equal(asked?.cancelRequested, true);
      assert.equal(await queueA.heartbeat(job.lease, 30_000), 'cancel');
      assert.equal(await queueA.complete(job.lease), 'cancelled');
      assert.equal((await queueB.get(runningId))?.status, 'cancelled');

      const failing = await queueA.enqueue({ kind });
      const failingJob = (await queueA.claim('w', [kind], 30_000)) as ClaimedJob;
      await queueA.cancel(failing);
      assert.equal(await queueA.fail(failingJob.lease, new Error('aborted')), 'cancelled', 'a cancelled job is not retried');

      assert.equal((await queueA.cancel(queued))?.status, 'cancelled', 'cancelling a finished job changes nothing');
      assert.equal(await queueA.cancel(987_654), undefined);
    });

    it('release gives the job back, due now, without counting the attempt', async () => {
      const kind = freshKind('release');
      const id = await queueA.enqueue({ kind });
      const job = (await queueA.claim('node-a', [kind], 30_000)) as ClaimedJob;
      assert.equal(await queueA.release(job.lease), true);
      const released = await queueB.get(id);
      assert.deepEqual([released?.status, released?.attempts, released?.leaseOwner, released?.runAt], ['queued', 0, null, clock.t]);
      const again = (await queueB.claim('node-b', [kind], 30_000)) as ClaimedJob;
      assert.equal(again.id, id);
      assert.equal(again.attempts, 1);
      assert.equal(await queueA.complete(job.lease), undefined, 'the old lease is void');
      assert.equal(await queueB.complete(again.lease), 'succeeded');
    });

    it('keeps each job log bounded: the newest lines, in order', async () => {
      const bounded = new JobQueue(a.db, { now: clock.now, logLinesPerJob: 5 });
      const kind = freshKind('logs');
      const one = await bounded.enqueue({ kind });
      const two = await bounded.enqueue({ kind });
      for (let i = 1; i <= 12; i++) await bounded.appendLog(one, `line ${i}`, i % 4 === 0 ? 'warn' : 'info');
      await bounded.appendLog(two, 'only line', 'error');
      const lines = await bounded.readLog(one);
      assert.deepEqual(
        lines.map((l) => l.message),
        ['line 8', 'line 9', 'line 10', 'line 11', 'line 12'],
      );
      assert.deepEqual(
        lines.map((l) => l.level),
        ['warn', 'info', 'info', 'info', 'warn'],
      );
      assert.ok(lines.every((l, i) => i === 0 || l.seq > (lines[i - 1] as { seq: number }).seq));
      assert.deepEqual(
        (await bounded.readLog(two)).map((l) => [l.level, l.message]),
        [['error', 'only line']],
      );
      await bounded.appendLog(one, 'x'.repeat(20_000));
      assert.ok(((await bounded.readLog(one)).at(-1)?.message.length as number) <= 8000, 'a long line is cut');
    });

    it('list filters and pages; counts group by kind and status', async () => {
      const kind = freshKind('list');
      const ids: number[] = [];
      for (let i = 0; i < 5; i++) ids.push(await queueA.enqueue({ kind, payload: i }));
      await queueA.cancel(ids[1] as number);
      const all = await queueB.list({ kind });
      assert.deepEqual(
        all.map((j) => j.id),
        [...ids].reverse(),
      );
      const page = await queueB.list({ kind, limit: 2, beforeId: ids[3] });
      assert.deepEqual(
        page.map((j) => j.id),
        [ids[2], ids[1]],
      );
      assert.deepEqual(
        (await queueB.list({ kind, status: 'cancelled' })).map((j) => j.id),
        [ids[1]],
      );
      assert.deepEqual(
        (await queueB.counts()).filter((c) => c.kind === kind),
        [
          { kind, status: 'cancelled', count: 1 },
          { kind, status: 'queued', count: 4 },
        ],
      );
    });

    it('a paused kind is not claimed on any node until resumed', async () => {
      const kind = freshKind('paused');
      const other = freshKind('unpaused');
      await queueA.pauseKind(kind);
      await queueA.pauseKind(kind);
      assert.deepEqual((await queueB.pausedKinds()).includes(kind), true);
      const id = await queueA.enqueue({ kind, priority: -1 });
      const otherId = await queueA.enqueue({ kind: other });
      assert.equal((await queueB.claim('w', [kind, other], 30_000))?.id, otherId);
      assert.equal(await queueB.claim('w', [kind, other], 30_000), undefined);
      await queueB.resumeKind(kind);
      assert.equal((await queueA.claim('w', [kind, other], 30_000))?.id, id);
      assert.equal((await queueA.pausedKinds()).includes(kind), false);
    });

    it('pruneFinished deletes finished jobs and their logs older than the cut, and nothing else', async () => {
      const kind = freshKind('prune');
      const oldDone = await queueA.enqueue({ kind });
      await queueA.appendLog(oldDone, 'old');
      await queueA.cancel(oldDone);
      const waiting = await queueA.enqueue({ kind });
      clock.advance(10_000);
      const recent = await queueA.enqueue({ kind });
      await queueA.cancel(recent);
      assert.ok((await queueB.pruneFinished(clock.t - 5_000)) >= 1);
      assert.equal(await queueA.get(oldDone), undefined);
      assert.deepEqual(await queueA.readLog(oldDone), []);
      assert.equal((await queueA.get(waiting))?.status, 'queued');
      assert.equal((await queueA.get(recent))?.status, 'cancelled');
    });
  });
}
