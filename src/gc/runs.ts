/**
 * Garbage collection runs as Harbor shows them: manual runs and a cron schedule on the job
 * service (one collection at a time), a history with status and freed space, per-run logs, and
 * stop. `berth gc` runs the same collector directly and records its run here too.
 */
import type { Kysely } from 'kysely';
import { badRequest, conflict, notFound } from '../platform/http/api.ts';
import type { Database } from '../platform/db/schema.ts';
import { errorText, type Job } from '../platform/jobs/queue.ts';
import { InvalidCronError, validateCron } from '../platform/jobs/scheduler.ts';
import type { JobService } from '../platform/jobs/service.ts';
import { type JobContext, JobAbortedError } from '../platform/jobs/worker.ts';
import type { GcLogLevel, GcParameters, GcResult, GcService } from './service.ts';
import type { GcCounters, GcRunRow, GcStore } from './store.ts';

/** The job that runs one collection (payload { runId }). */
export const GC_RUN_JOB = 'gc.run';
/** The job the cron schedule fires: it starts a run unless one is pending or running. */
export const GC_SCHEDULED_JOB = 'gc.scheduled';
export const GC_SCHEDULE_NAME = 'gc';
/** One collection at a time: the dedupe key of every run's job. */
const GC_DEDUPE_KEY = 'gc';
/** Harbor keeps the last 50 executions. */
const HISTORY_KEPT = 50;
/** A run without a job (the CLI) that has not reported for this long was interrupted. */
const CLI_STALE_MS = 120_000;

export const SCHEDULE_TYPES = ['Hourly', 'Daily', 'Weekly', 'Custom', 'Manual', 'None'] as const;
export type ScheduleType = (typeof SCHEDULE_TYPES)[number];

/** Harbor's crons for the named types (six fields, seconds first; UTC). */
const TYPE_CRON: Partial<Record<ScheduleType, string>> = { Hourly: '0 0 * * * *', Daily: '0 0 0 * * *', Weekly: '0 0 0 * * 0' };

export type GcTrigger = 'MANUAL' | 'SCHEDULE' | 'CLI' | 'START';
export type GcStatus = 'Pending' | 'Running' | 'Success' | 'Error' | 'Stopped';

/** The parameters as Harbor's API spells them. */
export interface GcApiParameters {
  readonly delete_untagged?: boolean;
  readonly dry_run?: boolean;
  readonly workers?: number;
  readonly time_window?: number;
}

export interface GcRunView {
  readonly id: number;
  readonly trigger: GcTrigger;
  readonly status: GcStatus;
  readonly parameters: GcApiParameters;
  readonly error: string | null;
  readonly createdAt: number;
  readonly startedAt: number | null;
  readonly finishedAt: number | null;
  readonly updatedAt: number;
  readonly counters: GcCounters;
  readonly jobId: number | null;
}

export interface GcScheduleView {
  readonly type: ScheduleType;
  readonly cron: string;
  readonly nextRunAt: number | null;
  readonly parameters: GcApiParameters;
  readonly createdAt: number | null;
  readonly updatedAt: number | null;
}

interface SchedulePayload {
  readonly type: ScheduleType;
  readonly parameters: GcApiParameters;
}

export interface GcRunsOptions {
  readonly db: Kysely<Database>;
  readonly store: GcStore;
  readonly gc: GcService;
  readonly jobs: JobService;
  readonly defaultTimeWindowHours: number;
  readonly now?: () => number;
}

export const MAX_WORKERS = 10;

/** Checks API parameters (the route schema checks types; this checks ranges) and fills the defaults. */
export function resolveParameters(parameters: GcApiParameters, defaultTimeWindowHours: number): Required<GcApiParameters> {
  const workers = parameters.workers ?? 1;
  if (!Number.isInteger(workers) || workers < 1 || workers > MAX_WORKERS) throw badRequest(`parameters.workers must be a whole number from 1 to ${MAX_WORKERS}, got ${workers}`);
  const timeWindow = parameters.time_window ?? defaultTimeWindowHours;
  if (!Number.isInteger(timeWindow) || timeWindow < 0) throw badRequest(`parameters.time_window must be a whole number of hours, 0 or more, got ${timeWindow}`);
  return { delete_untagged: parameters.delete_untagged ?? false, dry_run: parameters.dry_run ?? false, workers, time_window: timeWindow };
}

export function toGcParameters(parameters: Required<GcApiParameters>, full = false): GcParameters {
  return { deleteUntagged: parameters.delete_untagged, dryRun: parameters.dry_run, workers: parameters.workers, timeWindowHours: parameters.time_window, full };
}

export class GcRuns {
  readonly #db: Kysely<Database>;
  readonly #store: GcStore;
  readonly #gc: GcService;
  readonly #jobs: JobService;
  readonly #defaultTimeWindowHours: number;
  readonly #now: () => number;

  constructor(options: GcRunsOptions) {
    this.#db = options.db;
    this.#store = options.store;
    this.#gc = options.gc;
    this.#jobs = options.jobs;
    this.#defaultTimeWindowHours = options.defaultTimeWindowHours;
    this.#now = options.now ?? Date.now;
  }

  /** Queues a run; 409 while another one is pending or running. Returns the run's id. */
  async start(parameters: GcApiParameters, trigger: GcTrigger): Promise<number> {
    const resolved = resolveParameters(parameters, this.#defaultTimeWindowHours);
    const busy = new Error('busy');
    let owner: number | undefined;
    let id: number;
    try {
      id = await this.#db.transaction().execute(async (trx) => {
        const runId = await this.#store.createRun({ trigger, parameters: resolved, status: 'Pending' }, trx);
        const jobId = await this.#jobs.queue.enqueue({ kind: GC_RUN_JOB, payload: { runId }, dedupeKey: GC_DEDUPE_KEY, maxAttempts: 2 }, trx);
        const job = await trx.selectFrom('jobs').select('payload').where('id', '=', jobId).executeTakeFirstOrThrow();
        owner = (JSON.parse(job.payload) as { runId?: number } | null)?.runId;
        // Another run holds the dedupe key: roll this one back.
        if (owner !== runId) throw busy;
        await this.#store.setRunJob(runId, jobId, trx);
        return runId;
      });
    } catch (err) {
      if (err !== busy) throw err;
      const other = owner === undefined ? undefined : await this.#store.getRun(owner);
      throw conflict(`a garbage collection is already ${other?.status === 'Running' ? 'running' : 'pending'} (run ${owner ?? '?'}); stop it or wait for it to finish`);
    }
    this.#jobs.queue.notifyEnqueued(GC_RUN_JOB);
    await this.#store.pruneRuns(HISTORY_KEPT);
    return id;
  }

  /** The job handler of GC_RUN_JOB: runs the collection of run `runId` and records its outcome. */
  async execute(runId: number, context: JobContext): Promise<void> {
    const run = await this.#store.getRun(runId);
    if (!run || (run.status !== 'Pending' && run.status !== 'Running')) return context.log(`run ${runId} is ${run ? run.status : 'gone'}; nothing to do`);
    const parameters = toGcParameters(resolveParameters(JSON.parse(run.parameters) as GcApiParameters, this.#defaultTimeWindowHours));
    let lastPoll = 0;
    let cancelled = false;
    const shouldStop = async () => {
      if (context.signal.aborted || cancelled) return true;
      // Another node's stop reaches this one at its next heartbeat; look sooner.
      if (this.#now() - lastPoll >= 1000) {
        lastPoll = this.#now();
        cancelled = (await this.#jobs.queue.get(context.job.id))?.cancelRequested === true;
      }
      return cancelled;
    };
    await this.#runRecorded(runId, parameters, { log: (message, level) => context.log(message, level), shouldStop }, () => {
      const reason = context.signal.reason;
      // The node is shutting down: the job goes back to the queue, and the run with it.
      return reason instanceof JobAbortedError && reason.reason === 'stopping' ? 'Pending' : 'Stopped';
    });
  }

  /** Runs a collection directly (berth gc), recorded in the history. */
  async runDirect(
    parameters: GcParameters,
    hooks: { log(message: string, level?: GcLogLevel): void; shouldStop(): boolean; progress?(counters: GcCounters): void },
  ): Promise<{ id: number; result: GcResult }> {
    const id = await this.#store.createRun(
      {
        trigger: 'CLI',
        parameters: { delete_untagged: parameters.deleteUntagged, dry_run: parameters.dryRun, workers: parameters.workers, time_window: parameters.timeWindowHours, ...(parameters.full ? { full: true } : {}) },
        status: 'Pending',
      },
      this.#db,
    );
    await this.#store.pruneRuns(HISTORY_KEPT);
    const heartbeat = setInterval(() => void this.#store.touchRun(id).catch(() => {}), 30_000);
    heartbeat.unref();
    try {
      const result = await this.#runRecorded(id, parameters, hooks, () => 'Stopped');
      return { id, result };
    } finally {
      clearInterval(heartbeat);
    }
  }

  async #runRecorded(
    runId: number,
    parameters: GcParameters,
    hooks: { log(message: string, level?: GcLogLevel): void; shouldStop(): boolean | Promise<boolean>; progress?(counters: GcCounters): void },
    stoppedStatus: () => GcStatus,
  ): Promise<GcResult> {
    await this.#store.startRun(runId);
    let lastProgress = this.#now();
    try {
      const result = await this.#gc.run(parameters, {
        runId,
        log: hooks.log,
        shouldStop: hooks.shouldStop,
        progress: async (counters) => {
          hooks.progress?.(counters);
          if (this.#now() - lastProgress < 1000) return;
          lastProgress = this.#now();
          await this.#store.recordProgress(runId, counters);
        },
      });
      await this.#store.finishRun(runId, result.stopped ? stoppedStatus() : 'Success', result, null);
      return result;
    } catch (err) {
      hooks.log(`garbage collection failed: ${errorText(err)}`, 'error');
      await this.#store.finishRun(runId, 'Error', undefined, errorText(err));
      throw err;
    }
  }

  // ── history ──────────────────────────────────────────────────────────────

  async get(id: number): Promise<GcRunView> {
    const run = await this.#store.getRun(id);
    if (!run) throw notFound(`garbage collection ${id} not found`);
    return this.#view(run);
  }

  async list(offset: number, limit: number): Promise<{ total: number; runs: GcRunView[] }> {
    const [total, rows] = await Promise.all([this.#store.countRuns(), this.#store.listRuns(offset, limit)]);
    return { total, runs: await Promise.all(rows.map((r) => this.#view(r))) };
  }

  /** Asks a pending or running collection to stop (between two batches); a finished one is left as it is. */
  async stop(id: number): Promise<GcRunView> {
    const run = await this.#store.getRun(id);
    if (!run) throw notFound(`garbage collection ${id} not found`);
    if (run.job_id === null) {
      if (run.status === 'Pending' || run.status === 'Running') throw conflict(`garbage collection ${id} runs from the command line (berth gc); stop it there`);
      return this.#view(run);
    }
    const job = await this.#jobs.queue.cancel(run.job_id);
    // Cancelled before a worker took it: the handler never runs, so the run is closed here.
    if (job?.status === 'cancelled' && run.status === 'Pending') await this.#store.finishRun(id, 'Stopped', undefined, null);
    return this.get(id);
  }

  /** The run's log as text, one line per entry. */
  async log(id: number): Promise<string> {
    const run = await this.#store.getRun(id);
    if (!run) throw notFound(`garbage collection ${id} not found`);
    if (run.job_id === null) {
      const view = await this.#view(run);
      return `${new Date(run.created_at).toISOString()} [INFO] run from the command line (berth gc); its progress went to that terminal\n${summaryLine(view)}\n`;
    }
    const lines = await this.#jobs.queue.readLog(run.job_id);
    return lines.map((l) => `${new Date(l.at).toISOString()} [${l.level.toUpperCase()}] ${l.message}\n`).join('');
  }

  async #view(run: GcRunRow): Promise<GcRunView> {
    const job = run.job_id === null ? undefined : await this.#jobs.queue.get(run.job_id);
    return {
      id: run.id,
      trigger: run.trigger as GcTrigger,
      status: effectiveStatus(run, job, this.#now()),
      parameters: JSON.parse(run.parameters) as GcApiParameters,
      error: run.error ?? (job?.status === 'failed' ? job.lastError : null),
      createdAt: run.created_at,
      startedAt: run.started_at,
      finishedAt: run.finished_at ?? (job?.finishedAt && (job.status === 'failed' || job.status === 'cancelled') ? job.finishedAt : null),
      updatedAt: run.updated_at,
      counters: { deletedArtifacts: run.deleted_artifacts, deletedBlobs: run.deleted_blobs, freedBytes: run.freed_bytes, examinedBlobs: run.examined_blobs },
      jobId: run.job_id,
    };
  }

  // ── the schedule ─────────────────────────────────────────────────────────

  async getSchedule(): Promise<GcScheduleView> {
    const schedule = await this.#jobs.scheduler.get(GC_SCHEDULE_NAME);
    if (!schedule) return { type: 'None', cron: '', nextRunAt: null, parameters: {}, createdAt: null, updatedAt: null };
    const row = await this.#db.selectFrom('schedules').select(['created_at', 'updated_at']).where('name', '=', GC_SCHEDULE_NAME).executeTakeFirst();
    const payload = schedule.payload as SchedulePayload;
    return { type: payload.type, cron: schedule.cron, nextRunAt: schedule.nextRunAt, parameters: payload.parameters, createdAt: row?.created_at ?? null, updatedAt: row?.updated_at ?? null };
  }

  /**
   * Harbor's POST/PUT /system/gc/schedule: Manual runs now (returns the run id), None removes the
   * schedule, the others set it (Hourly, Daily and Weekly default to Harbor's crons; Custom needs one).
   */
  async applySchedule(type: ScheduleType, cron: string | undefined, parameters: GcApiParameters): Promise<number | undefined> {
    if (type === 'Manual') return this.start(parameters, 'MANUAL');
    if (type === 'None') {
      await this.#jobs.scheduler.remove(GC_SCHEDULE_NAME);
      return undefined;
    }
    const expression = cron?.trim() ? cron.trim() : TYPE_CRON[type];
    if (expression === undefined) throw badRequest(`schedule.cron is required for a ${type} schedule`);
    try {
      validateCron(expression, this.#now());
    } catch (err) {
      if (err instanceof InvalidCronError) throw badRequest(err.message);
      throw err;
    }
    const resolved = resolveParameters(parameters, this.#defaultTimeWindowHours);
    const payload: SchedulePayload = { type, parameters: resolved };
    await this.#jobs.scheduler.upsert({ name: GC_SCHEDULE_NAME, cron: expression, kind: GC_SCHEDULED_JOB, payload });
    return undefined;
  }
}

/** The run's status, with what the job service knows about a run whose handler never finished it. */
function effectiveStatus(run: GcRunRow, job: Job | undefined, now: number): GcStatus {
  const recorded = run.status as GcStatus;
  if (recorded === 'Success' || recorded === 'Error' || recorded === 'Stopped') return recorded;
  if (run.job_id === null) return now - run.updated_at > CLI_STALE_MS ? 'Error' : recorded;
  if (!job) return 'Error';
  switch (job.status) {
    case 'queued':
      return 'Pending';
    case 'running':
      return 'Running';
    case 'cancelled':
      return 'Stopped';
    case 'failed':
      return 'Error';
    default:
      return recorded;
  }
}

function summaryLine(view: GcRunView): string {
  return `${new Date(view.updatedAt).toISOString()} [INFO] status ${view.status}: deleted ${view.counters.deletedBlobs} blob(s) and ${view.counters.deletedArtifacts} artifact(s), freed ${view.counters.freedBytes} bytes`;
}
