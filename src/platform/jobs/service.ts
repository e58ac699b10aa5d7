import type { Kysely } from 'kysely';
import type { Database } from '../db/schema.ts';
import { JobQueue } from './queue.ts';
import { type ScheduleSpec, Scheduler, validateCron } from './scheduler.ts';
import { type FinishedJob, WorkerPool, type WorkerLogger } from './worker.ts';

export const PRUNE_FINISHED_JOBS = 'jobs.prune-finished';
const DAY_MS = 86_400_000;

export interface JobServiceOptions {
  readonly db: Kysely<Database>;
  readonly concurrency: number;
  readonly pollIntervalMs: number;
  readonly leaseMs: number;
  readonly logLinesPerJob: number;
  readonly schedulerTickMs: number;
  /** Finished jobs older than this are pruned daily; 0 keeps them. */
  readonly keepFinishedDays: number;
  readonly stopTimeoutMs: number;
  readonly logger?: WorkerLogger;
  readonly now?: () => number;
  /** Told when a job run by this node's workers ends (see WorkerPoolOptions.onFinished). */
  readonly onJobFinished?: (job: FinishedJob) => void;
}

/**
 * The job service of one node: the queue, this node's worker pool and the cron scheduler.
 * Capabilities register their handlers on `workers` and declare their schedules with
 * `schedule()`; start() writes the schedules (idempotently, as every node does) and starts.
 */
export class JobService {
  readonly queue: JobQueue;
  readonly workers: WorkerPool;
  readonly scheduler: Scheduler;
  readonly #schedules = new Map<string, ScheduleSpec>();
  readonly #keepFinishedDays: number;
  readonly #now: () => number;

  constructor(options: JobServiceOptions) {
    this.#now = options.now ?? Date.now;
    this.#keepFinishedDays = options.keepFinishedDays;
    this.queue = new JobQueue(options.db, { now: this.#now, logLinesPerJob: options.logLinesPerJob });
    this.workers = new WorkerPool({
      queue: this.queue,
      concurrency: options.concurrency,
      pollIntervalMs: options.pollIntervalMs,
      leaseMs: options.leaseMs,
      stopTimeoutMs: options.stopTimeoutMs,
      ...(options.logger ? { logger: options.logger } : {}),
      ...(options.onJobFinished ? { onFinished: options.onJobFinished } : {}),
    });
    this.scheduler = new Scheduler({
      db: options.db,
      queue: this.queue,
      tickMs: options.schedulerTickMs,
      now: this.#now,
      ...(options.logger ? { logger: options.logger } : {}),
    });
    this.workers.register(PRUNE_FINISHED_JOBS, async (_payload, { log }) => {
      if (this.#keepFinishedDays === 0) return log('finished jobs are kept (jobs.keepFinishedDays is 0)');
      const pruned = await this.queue.pruneFinished(this.#now() - this.#keepFinishedDays * DAY_MS);
      log(`deleted ${pruned} jobs finished more than ${this.#keepFinishedDays} days ago`);
    });
    if (this.#keepFinishedDays > 0) this.schedule({ name: PRUNE_FINISHED_JOBS, cron: '0 17 3 * * *', kind: PRUNE_FINISHED_JOBS });
  }

  /** Declares a schedule that start() creates or updates; its cron expression is checked now. */
  schedule(spec: ScheduleSpec): void {
    validateCron(spec.cron, this.#now());
    this.#schedules.set(spec.name, spec);
  }

  async start(): Promise<void> {
    for (const spec of this.#schedules.values()) await this.scheduler.upsert(spec);
    if (!this.#schedules.has(PRUNE_FINISHED_JOBS)) await this.scheduler.remove(PRUNE_FINISHED_JOBS);
    this.workers.start();
    this.scheduler.start();
  }

  /** Stops firing schedules, then stops the workers gracefully (see WorkerPool.stop). */
  async stop(): Promise<void> {
    await this.scheduler.stop();
    await this.workers.stop();
  }
}
