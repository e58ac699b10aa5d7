/**
 * A second Berth node for job tests, run as a child process by spawnJobNode (jobs.ts): a
 * database handle, a job queue and a scheduler on the parent's database, driven over IPC.
 * Its clock is the time each request carries, or the real clock for a started service.
 */
import { createDatabase, type DatabaseHandle } from '../../src/platform/db/database.ts';
import { JobQueue } from '../../src/platform/jobs/queue.ts';
import { type ScheduleSpec, Scheduler } from '../../src/platform/jobs/scheduler.ts';
import { JobService } from '../../src/platform/jobs/service.ts';

let handle: DatabaseHandle | undefined;
let now = Date.now();
let queue: JobQueue | undefined;
let scheduler: Scheduler | undefined;
let service: JobService | undefined;

const ops: Record<string, (args: Record<string, any>) => Promise<unknown>> = {
  async open(args) {
    handle = createDatabase({ url: args.url, sqliteFile: args.sqliteFile, poolSize: 6 });
    queue = new JobQueue(handle.db, { now: () => now });
    scheduler = new Scheduler({ db: handle.db, queue, tickMs: 1000, now: () => now });
    return null;
  },
  async upsert(args) {
    now = args.now;
    return scheduler?.upsert(args.spec as ScheduleSpec);
  },
  async tick(args) {
    now = args.now;
    return scheduler?.tick();
  },
  /** Claims and completes jobs of `kind` until none is left; returns the ids, in claim order. */
  async drain(args) {
    now = args.now;
    const ids: number[] = [];
    const worker = `child-${process.pid}`;
    const loop = async () => {
      for (;;) {
        const job = await queue?.claim(worker, [args.kind], 60_000);
        if (!job) return;
        ids.push(job.id);
        await queue?.complete(job.lease);
      }
    };
    await Promise.all(Array.from({ length: args.loops ?? 4 }, loop));
    return ids;
  },
  /** Starts a whole job service (real clock) whose handler for `kind` logs which node ran it. */
  async startService(args) {
    service = new JobService({
      db: (handle as DatabaseHandle).db,
      concurrency: 2,
      pollIntervalMs: args.pollIntervalMs,
      leaseMs: 30_000,
      logLinesPerJob: 100,
      schedulerTickMs: args.tickMs,
      keepFinishedDays: 0,
      stopTimeoutMs: 5_000,
    });
    service.workers.register(args.kind, async (_payload, { log }) => log(`ran on ${args.node}`));
    service.schedule(args.spec as ScheduleSpec);
    await service.start();
    return null;
  },
  async stopScheduler() {
    await service?.scheduler.stop();
    return null;
  },
  async stopService() {
    await service?.stop();
    service = undefined;
    return null;
  },
  async close() {
    await service?.stop();
    await handle?.close();
    handle = undefined;
    return null;
  },
};

process.on('message', (message: { id: number; op: string; args: Record<string, unknown> }) => {
  const op = ops[message.op];
  const run = op ? op(message.args) : Promise.reject(new Error(`unknown op ${message.op}`));
  run.then(
    (result) => process.send?.({ id: message.id, result: result ?? null }),
    (err: unknown) => process.send?.({ id: message.id, error: err instanceof Error ? (err.stack ?? err.message) : String(err) }),
  );
});
