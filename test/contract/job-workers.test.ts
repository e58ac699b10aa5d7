/**
 * WorkerPool (src/platform/jobs/worker.ts) against every database backend: handlers run with
 * their payload and log, two pools share 200 jobs exactly once, the concurrency limit holds,
 * retries, cancellation through the handler's AbortSignal, takeover of a dead worker's job,
 * lost leases, pause/resume, and a graceful stop that gives unfinished jobs back.
 * Waits are for states, with deadlines; nothing asserts how long something took.
 */
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import type { DatabaseHandle } from '../../src/platform/db/database.ts';
import { type JobStatus, JobQueue } from '../../src/platform/jobs/queue.ts';
import { JobAbortedError, type JobContext, WorkerPool, type WorkerPoolOptions } from '../../src/platform/jobs/worker.ts';
import { BACKENDS } from '../helpers/backends.ts';
import { openSharedDatabase, type SharedDatabase, waitUntil } from '../helpers/jobs.ts';

let kindCounter = 0;
const freshKind = (label: string) => `test.${label}.${++kindCounter}`;

/** A promise with its resolve function, for handlers that wait for the test. */
function gate(): { promise: Promise<void>; open(): void } {
  let open = () => {};
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

/** Resolves when the signal fires, with its reason. */
function aborted(signal: AbortSignal): Promise<unknown> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve(signal.reason);
    else signal.addEventListener('abort', () => resolve(signal.reason), { once: true });
  });
}

for (const backend of BACKENDS) {
  describe(`WorkerPool on ${backend}`, () => {
    let shared: SharedDatabase;
    let queueA: JobQueue;
    let queueB: JobQueue;
    const pools: WorkerPool[] = [];

    before(async () => {
      shared = await openSharedDatabase(backend, 2);
      const [a, b] = shared.handles as [DatabaseHandle, DatabaseHandle];
      queueA = new JobQueue(a.db, { backoffBaseMs: 20, backoffMaxMs: 40, reapIntervalMs: 0 });
      queueB = new JobQueue(b.db, { backoffBaseMs: 20, backoffMaxMs: 40, reapIntervalMs: 0 });
    });
    afterEach(async () => {
      await Promise.all(pools.splice(0).map((p) => p.stop(1000)));
    });
    after(() => shared?.close());

    function pool(queue: JobQueue, options: Partial<WorkerPoolOptions> = {}): WorkerPool {
      const created = new WorkerPool({ queue, concurrency: 4, pollIntervalMs: 20, leaseMs: 5_000, stopTimeoutMs: 1000, ...options });
      pools.push(created);
      return created;
    }

    async function statusOf(id: number): Promise<JobStatus | undefined> {
      return (await queueA.get(id))?.status;
    }

    const waitForStatus = (id: number, status: JobStatus) => waitUntil(async () => (await statusOf(id)) === status, `job ${id} to be ${status}`);

    it('runs a handler with its payload and job log; the job succeeds', async () => {
      const kind = freshKind('basic');
      const seen: unknown[] = [];
      const workers = pool(queueA);
      workers.register(kind, async (payload: { repo: string }, context: JobContext) => {
        seen.push(payload, context.job.kind, context.signal.aborted);
        context.log('starting');
        context.log('done', 'warn');
      });
      workers.start();
      const id = await queueA.enqueue({ kind, payload: { repo: 'library/alpine' } });
      await waitForStatus(id, 'succeeded');
      assert.deepEqual(seen, [{ repo: 'library/alpine' }, kind, false]);
      assert.deepEqual(
        (await queueA.readLog(id)).map((l) => [l.level, l.message]),
        [
          ['info', 'starting'],
          ['warn', 'done'],
        ],
      );
      assert.throws(() => workers.register(kind, () => {}), /already registered/);
    });

    it('a pool is listed while started (with kinds registered later) and not after stop, even with a beat in flight', async () => {
      const kind = freshKind('listed');
      const workers = pool(queueA);
      workers.start();
      workers.register(kind, async () => {});
      await waitUntil(async () => (await queueB.livePools(0)).find((p) => p.id === workers.workerId)?.kinds.includes(kind) === true, 'the pool listed with its kind');
      const listed = (await queueB.livePools(0)).find((p) => p.id === workers.workerId);
      assert.deepEqual([listed?.pid, listed?.concurrency], [process.pid, 4]);
      // A beat started just before the stop (slow to reach the database here) must not put the
      // pool back after stop() removed it.
      const beat = queueA.beatPool.bind(queueA);
      queueA.beatPool = async (announced) => {
        await new Promise((resolve) => setTimeout(resolve, 150));
        return beat(announced);
      };
      try {
        workers.register(freshKind('late'), async () => {});
        await workers.stop(1000);
        await new Promise((resolve) => setTimeout(resolve, 300));
      } finally {
        queueA.beatPool = beat;
      }
      assert.equal((await queueB.livePools(0)).find((p) => p.id === workers.workerId), undefined);
    });

    it('an enqueue in this process wakes the pool up without waiting for a poll', async () => {
      const kind = freshKind('wake');
      const workers = pool(queueA, { pollIntervalMs: 600_000 });
      workers.register(kind, () => {});
      workers.start();
      const id = await queueA.enqueue({ kind });
      await waitForStatus(id, 'succeeded');
    });

    it('two pools on two connections run 200 jobs, each exactly once', async () => {
      const kind = freshKind('share');
      const runs = new Map<number, string[]>();
      for (const [queue, name] of [
        [queueA, 'A'],
        [queueB, 'B'],
      ] as const) {
        const workers = pool(queue, { concurrency: 4 });
        workers.register(kind, async (_payload, { job }) => {
          runs.set(job.id, [...(runs.get(job.id) ?? []), name]);
          await new Promise((resolve) => setImmediate(resolve));
        });
        workers.start();
      }
      const ids: number[] = [];
      for (let i = 0; i < 200; i++) ids.push(await queueA.enqueue({ kind, payload: i }));
      await waitUntil(async () => (await queueA.counts()).some((c) => c.kind === kind && c.status === 'succeeded' && c.count === 200), '200 jobs to succeed', 60_000);
      assert.deepEqual(
        [...runs].filter(([, by]) => by.length !== 1),
        [],
        'no job ran twice',
      );
      assert.deepEqual([...runs.keys()].sort((x, y) => x - y), ids);
    });

    it('never runs more handlers at once than its concurrency', async () => {
      const kind = freshKind('limit');
      const release = gate();
      let running = 0;
      let most = 0;
      const workers = pool(queueA, { concurrency: 2 });
      workers.register(kind, async () => {
        most = Math.max(most, ++running);
        await release.promise;
        running--;
      });
      workers.start();
      const ids: number[] = [];
      for (let i = 0; i < 6; i++) ids.push(await queueA.enqueue({ kind }));
      await waitUntil(() => running === 2, 'two handlers to run');
      assert.equal((await queueA.counts()).find((c) => c.kind === kind && c.status === 'queued')?.count, 4);
      release.open();
      for (const id of ids) await waitForStatus(id, 'succeeded');
      assert.equal(most, 2);
    });

    it('retries a failing handler with backoff until it succeeds; the failures are in the log', async () => {
      const kind = freshKind('flaky');
      let calls = 0;
      const workers = pool(queueA);
      workers.register(kind, () => {
        if (++calls < 3) throw new Error(`flake ${calls}`);
      });
      workers.start();
      const id = await queueA.enqueue({ kind, maxAttempts: 5 });
      await waitForStatus(id, 'succeeded');
      const job = await queueA.get(id);
      assert.equal(job?.attempts, 3);
      assert.equal(job?.lastError, 'flake 2');
      const log = (await queueA.readLog(id)).map((l) => [l.level, l.message]);
      assert.deepEqual(log, [
        ['error', 'attempt 1 failed: flake 1'],
        ['error', 'attempt 2 failed: flake 2'],
      ]);
    });

    it('a handler that always fails ends failed after max_attempts, with the last error', async () => {
      const kind = freshKind('broken');
      const workers = pool(queueA);
      workers.register(kind, async () => {
        throw new RangeError('never works');
      });
      workers.start();
      const id = await queueA.enqueue({ kind, maxAttempts: 3 });
      await waitForStatus(id, 'failed');
      const job = await queueA.get(id);
      assert.equal(job?.attempts, 3);
      assert.equal(job?.lastError, 'RangeError: never works');
    });

    it('cancelling a running job from another node fires the handler signal at its heartbeat; the job ends cancelled', async () => {
      const kind = freshKind('cancel');
      let reason: unknown;
      const workers = pool(queueA, { leaseMs: 600, heartbeatMs: 50 });
      workers.register(kind, async (_payload, { signal }) => {
        reason = await aborted(signal);
        throw reason;
      });
      workers.start();
      const id = await queueA.enqueue({ kind });
      await waitForStatus(id, 'running');
      const asked = await queueB.cancel(id);
      assert.equal(asked?.cancelRequested, true);
      await waitForStatus(id, 'cancelled');
      assert.ok(reason instanceof JobAbortedError);
      assert.equal(reason.reason, 'cancelled');
      const job = await queueA.get(id);
      assert.equal(job?.attempts, 1, 'a cancelled job is not retried');
      assert.notEqual(job?.finishedAt, null);
    });

    it("takes over the job of a worker that died once its lease expired", async () => {
      const kind = freshKind('takeover');
      const id = await queueA.enqueue({ kind, maxAttempts: 3 });
      // A worker that claims and then dies: no heartbeat, no outcome.
      const dead = await queueB.claim('dead-node', [kind], 300);
      assert.equal(dead?.id, id);
      const ranBy: string[] = [];
      const workers = pool(queueA);
      workers.register(kind, (_payload, { job }) => {
        ranBy.push(`${job.leaseOwner}#${job.attempts}`);
      });
      workers.start();
      await waitForStatus(id, 'succeeded');
      assert.deepEqual(ranBy, [`${workers.workerId}#2`]);
      assert.equal(await queueB.complete(dead!.lease), undefined, "the dead worker's lease is void");
    });

    it('a handler whose lease was lost is aborted, and its outcome does not count', async () => {
      const kind = freshKind('lost');
      let reason: unknown;
      const handlerDone = gate();
      // Heartbeats far apart: the lease lapses while the handler runs, and another node takes the job.
      const workers = pool(queueA, { leaseMs: 200, heartbeatMs: 100_000 });
      workers.register(kind, async (_payload, { signal }) => {
        reason = await aborted(signal);
        handlerDone.open();
      });
      workers.start();
      const id = await queueA.enqueue({ kind, maxAttempts: 5 });
      await waitForStatus(id, 'running');
      let thief: Awaited<ReturnType<JobQueue['claim']>>;
      await waitUntil(async () => (thief = await queueB.claim('thief', [kind], 60_000)) !== undefined, 'the lease to lapse and the job to be taken');
      assert.equal(thief?.id, id);
      // The cancellation hook triggers an immediate heartbeat, which finds the lease gone.
      await queueA.cancel(id);
      await handlerDone.promise;
      assert.ok(reason instanceof JobAbortedError);
      assert.equal(reason.reason, 'lease-lost');
      await waitUntil(() => workers.runningJobIds.length === 0, 'the pool to drop the job');
      const job = await queueA.get(id);
      assert.equal(job?.status, 'running', 'the returning handler did not complete a job it lost');
      assert.equal(job?.leaseOwner, 'thief');
      assert.equal(await queueB.complete(thief!.lease), 'cancelled');
    });

    it('pausing a kind stops every pool from claiming it until resumed', async () => {
      const kind = freshKind('paused');
      const other = freshKind('free');
      const workers = pool(queueA);
      workers.register(kind, () => {});
      workers.register(other, () => {});
      await workers.pause(kind);
      workers.start();
      const held = await queueA.enqueue({ kind, priority: -1 });
      const free = await queueA.enqueue({ kind: other, priority: 1 });
      await waitForStatus(free, 'succeeded');
      assert.equal(await statusOf(held), 'queued', 'the paused kind waited although it was first in line');
      await workers.resume(kind);
      await waitForStatus(held, 'succeeded');
    });

    it('graceful stop: a handler that finishes in time completes; a stuck one is aborted and its job given back', async () => {
      const kind = freshKind('stop');
      const quick = gate();
      let stuckReason: unknown;
      const stuckStarted = gate();
      const workers = pool(queueA, { concurrency: 2 });
      workers.register(kind, async (payload: string, { signal }) => {
        if (payload === 'quick') return quick.promise;
        stuckStarted.open();
        stuckReason = await aborted(signal);
        // Ignores the abort and keeps going, as a badly written handler would.
        await new Promise(() => {});
      });
      workers.start();
      const quickId = await queueA.enqueue({ kind, payload: 'quick' });
      const stuckId = await queueA.enqueue({ kind, payload: 'stuck' });
      await stuckStarted.promise;
      await waitForStatus(quickId, 'running');
      const stopping = workers.stop(300);
      quick.open();
      await stopping;
      assert.equal(await statusOf(quickId), 'succeeded');
      const stuck = await queueA.get(stuckId);
      assert.deepEqual([stuck?.status, stuck?.leaseOwner, stuck?.attempts], ['queued', null, 0], 'given back, attempt not counted');
      assert.ok(stuckReason instanceof JobAbortedError);
      assert.equal(stuckReason.reason, 'stopping');
      assert.ok(((await queueB.get(stuckId))?.runAt as number) <= Date.now(), 'due at once');

      const next = pool(queueB);
      const ranBy: string[] = [];
      next.register(kind, (_payload, { job }) => {
        ranBy.push(job.leaseOwner as string);
      });
      next.start();
      await waitForStatus(stuckId, 'succeeded');
      assert.deepEqual(ranBy, [next.workerId]);
    });
  });
}
