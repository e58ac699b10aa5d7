/**
 * The job-service dashboard's use cases (Harbor's `jobservice` and `schedule` API groups) over
 * the platform's JobService: the worker pools of every live node and their workers, the queues
 * (one per job kind, plus Harbor's SCHEDULER pseudo-queue for the cron schedules), pausing,
 * resuming and stopping them, stopping one job, its log, the schedules, and a plain job listing.
 *
 * A queue is any job kind this node has a handler for, that has jobs in the table, or that is
 * paused. `all` stands for every queue, as in Harbor. Pausing a queue stops every node from
 * claiming its jobs (running ones finish); pausing SCHEDULER stops every schedule from firing;
 * stopping a queue cancels its pending jobs.
 */
import { createHash } from 'node:crypto';
import { hostname } from 'node:os';
import { badRequest, notFound } from '../platform/http/api.ts';
import type { Job, JobLogLine, JobStatus } from '../platform/jobs/queue.ts';
import { SCHEDULER_KIND, type Schedule } from '../platform/jobs/scheduler.ts';
import type { JobService } from '../platform/jobs/service.ts';
import { POOL_STALE_MS } from '../platform/jobs/worker.ts';

export const ALL = 'all';
export const QUEUE_ACTIONS = ['stop', 'pause', 'resume'] as const;
export type QueueAction = (typeof QUEUE_ACTIONS)[number];
export const JOB_STATUSES: readonly JobStatus[] = ['queued', 'running', 'succeeded', 'failed', 'cancelled'];

export interface WorkerPoolInfo {
  readonly id: string;
  readonly pid: number;
  readonly host: string;
  readonly startedAt: number | undefined;
  /** When the pool last said it was alive (now, for this node's). */
  readonly heartbeatAt: number;
  readonly concurrency: number;
  readonly kinds: readonly string[];
}

export interface WorkerInfo {
  readonly id: string;
  readonly poolId: string;
  /** checkedInAt: the last lease renewal, known for this node's jobs only. */
  readonly job: { readonly id: number; readonly kind: string; readonly startedAt: number; readonly checkedInAt: number | undefined } | undefined;
}

export interface QueueInfo {
  readonly jobType: string;
  /** Pending (queued) jobs; for SCHEDULER, the schedules due but not fired. */
  readonly count: number;
  /** Seconds the oldest due pending job has waited. */
  readonly latencySeconds: number;
  readonly paused: boolean;
  readonly running: number;
  readonly succeeded: number;
  readonly failed: number;
  readonly cancelled: number;
  /** Whether this node has a handler for the kind. */
  readonly handled: boolean;
}

export interface QueueActionResult {
  readonly jobTypes: readonly string[];
  readonly action: QueueAction;
  /** Pending jobs cancelled by `stop`. */
  readonly cancelled: number;
}

/** A stable positive id for a schedule (schedules are keyed by name). */
export function scheduleId(name: string): number {
  return Number.parseInt(createHash('sha256').update(`schedule\0${name}`).digest('hex').slice(0, 13), 16) || 1;
}

export class JobMonitor {
  readonly #jobs: JobService;
  readonly #now: () => number;

  constructor(deps: { jobs: JobService; now?: () => number }) {
    this.#jobs = deps.jobs;
    this.#now = deps.now ?? Date.now;
  }

  // ── pools and workers ────────────────────────────────────────────────────

  /**
   * Every live pool: this node's (as it is now) and those the other nodes announced and beat
   * within POOL_STALE_MS (src/platform/jobs/worker.ts), oldest start first.
   */
  async pools(): Promise<WorkerPoolInfo[]> {
    const workers = this.#jobs.workers;
    const now = this.#now();
    const own: WorkerPoolInfo = { id: workers.workerId, pid: process.pid, host: hostname(), startedAt: workers.startedAt, heartbeatAt: now, concurrency: workers.concurrency, kinds: [...workers.kinds].sort() };
    const others = (await this.#jobs.queue.livePools(now - POOL_STALE_MS)).filter((p) => p.id !== workers.workerId);
    const all = [...(workers.workerId === '' ? [] : [own]), ...others.map((p) => ({ ...p, kinds: [...p.kinds] }))];
    return all.sort((a, b) => (a.startedAt ?? 0) - (b.startedAt ?? 0) || a.id.localeCompare(b.id));
  }

  /**
   * A pool's worker slots (`all`: every live pool's): busy ones with their job first, then the
   * idle ones. This node's come from its own pool; another node's from the jobs it holds leases on.
   */
  async workers(poolId: string): Promise<WorkerInfo[]> {
    const local = this.#jobs.workers;
    const pools = await this.pools();
    const wanted = poolId === ALL ? pools : pools.filter((p) => p.id === poolId && poolId !== '');
    if (wanted.length === 0) throw notFound(`worker pool ${poolId} not found (live pools: ${pools.map((p) => p.id).join(', ') || 'none'})`);
    const out: WorkerInfo[] = [];
    for (const pool of wanted) {
      const jobs: Array<WorkerInfo['job']> =
        pool.id === local.workerId
          ? local.running().map((j) => ({ id: j.id, kind: j.kind, startedAt: j.startedAt, checkedInAt: j.checkedInAt }))
          : (await this.#jobs.queue.leasedBy(pool.id)).map((j) => ({ id: j.id, kind: j.kind, startedAt: j.startedAt, checkedInAt: undefined }));
      const slots = Math.max(pool.concurrency, jobs.length);
      for (let i = 0; i < slots; i++) out.push({ id: `${pool.id}#${i}`, poolId: pool.id, job: jobs[i] });
    }
    return out;
  }

  // ── queues ───────────────────────────────────────────────────────────────

  async queues(): Promise<QueueInfo[]> {
    const { queue, workers, scheduler } = this.#jobs;
    const [counts, oldest, paused, schedules] = await Promise.all([queue.counts(), queue.oldestDue(), queue.pausedKinds(), scheduler.list()]);
    const now = this.#now();
    const kinds = new Set<string>([...workers.kinds, ...counts.map((c) => c.kind), ...paused]);
    kinds.delete(SCHEDULER_KIND);
    const countOf = (kind: string, status: JobStatus) => counts.find((c) => c.kind === kind && c.status === status)?.count ?? 0;
    const handled = new Set(workers.kinds);
    const out: QueueInfo[] = [...kinds].sort().map((kind) => {
      const oldestRunAt = oldest.get(kind);
      return {
        jobType: kind,
        count: countOf(kind, 'queued'),
        latencySeconds: oldestRunAt === undefined ? 0 : Math.max(0, Math.floor((now - oldestRunAt) / 1000)),
        paused: paused.includes(kind),
        running: countOf(kind, 'running'),
        succeeded: countOf(kind, 'succeeded'),
        failed: countOf(kind, 'failed'),
        cancelled: countOf(kind, 'cancelled'),
        handled: handled.has(kind),
      };
    });
    const due = schedules.filter((s) => !s.paused && s.nextRunAt <= now);
    const oldestDue = due.reduce((min, s) => Math.min(min, s.nextRunAt), now);
    out.push({
      jobType: SCHEDULER_KIND,
      count: due.length,
      latencySeconds: Math.max(0, Math.floor((now - oldestDue) / 1000)),
      paused: paused.includes(SCHEDULER_KIND),
      running: 0,
      succeeded: 0,
      failed: 0,
      cancelled: 0,
      handled: true,
    });
    return out;
  }

  /** Harbor's PUT /jobservice/queues/{job_type}: stop (cancel pending jobs), pause or resume one queue or `all`. */
  async actOnQueue(jobType: string, actionText: string): Promise<QueueActionResult> {
    const action = actionText.trim().toLowerCase();
    if (!(QUEUE_ACTIONS as readonly string[]).includes(action)) throw badRequest(`action must be one of ${QUEUE_ACTIONS.join(', ')}, got ${JSON.stringify(actionText)}`);
    const { queue } = this.#jobs;
    const kinds = await this.#queueKinds(jobType);
    let cancelled = 0;
    if (action === 'stop') {
      if (kinds === ALL) cancelled = await queue.cancelQueued();
      else for (const kind of kinds) if (kind !== SCHEDULER_KIND) cancelled += await queue.cancelQueued(kind);
    } else {
      const targets = kinds === ALL ? (action === 'pause' ? [...(await this.queues()).map((q) => q.jobType)] : await queue.pausedKinds()) : kinds;
      for (const kind of targets) await (action === 'pause' ? queue.pauseKind(kind) : queue.resumeKind(kind));
    }
    return { jobTypes: kinds === ALL ? [ALL] : kinds, action: action as QueueAction, cancelled };
  }

  /** The kinds a job_type names: `all`, SCHEDULER (any case), or a known kind (exactly); 404 otherwise. */
  async #queueKinds(jobType: string): Promise<string[] | typeof ALL> {
    if (jobType.toLowerCase() === ALL) return ALL;
    if (jobType.toUpperCase() === SCHEDULER_KIND) return [SCHEDULER_KIND];
    if ((await this.queues()).some((q) => q.jobType === jobType)) return [jobType];
    throw notFound(`no job queue ${JSON.stringify(jobType)}: job types are the kinds GET /jobservice/queues lists, SCHEDULER or all`);
  }

  // ── jobs ─────────────────────────────────────────────────────────────────

  async job(id: number): Promise<Job> {
    const job = await this.#jobs.queue.get(id);
    if (!job) throw notFound(`job ${id} not found`);
    return job;
  }

  /** Stops a job: a pending one is cancelled at once, a running one is asked to stop (its handler's signal fires). A finished job stays as it is. */
  async stopJob(id: number): Promise<Job> {
    await this.job(id);
    return (await this.#jobs.queue.cancel(id)) as Job;
  }

  /** Stops every running job (Harbor's job_id `all`); returns how many were asked to stop. */
  async stopRunningJobs(): Promise<number> {
    const { queue } = this.#jobs;
    let stopped = 0;
    for (let page = await queue.list({ status: 'running', limit: 1000 }); page.length > 0; page = await queue.list({ status: 'running', limit: 1000, beforeId: (page.at(-1) as Job).id })) {
      for (const job of page) if ((await queue.cancel(job.id))?.cancelRequested) stopped++;
    }
    return stopped;
  }

  async log(id: number): Promise<JobLogLine[]> {
    await this.job(id);
    return this.#jobs.queue.readLog(id);
  }

  async list(filter: { kind?: string; status?: JobStatus }, offset: number, limit: number): Promise<{ total: number; items: Job[] }> {
    const { queue } = this.#jobs;
    const [total, items] = await Promise.all([queue.count(filter), queue.list({ ...filter, offset, limit })]);
    return { total, items };
  }

  // ── schedules ────────────────────────────────────────────────────────────

  async schedules(): Promise<Schedule[]> {
    return this.#jobs.scheduler.list();
  }

  /** Harbor's GET /schedules/{job_type}/paused: `all` asks whether the scheduler is paused; Berth also takes a schedule name. */
  async schedulePaused(jobType: string): Promise<boolean> {
    const schedulerPaused = (await this.#jobs.queue.pausedKinds()).includes(SCHEDULER_KIND);
    if (jobType.toLowerCase() === ALL) return schedulerPaused;
    const schedule = await this.#jobs.scheduler.get(jobType);
    if (!schedule) throw notFound(`no schedule ${JSON.stringify(jobType)}: ask for "all" or a schedule name from GET /schedules`);
    return schedulerPaused || schedule.paused;
  }
}
