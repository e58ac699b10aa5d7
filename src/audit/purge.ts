/**
 * Audit log retention: a purge job removes the oldest entries (those older than a number of hours,
 * and/or all but the newest N) behind a checkpoint, so the chain of what is kept still verifies.
 * Purges run through the job service, one at a time (a dedupe key), and their jobs are the
 * history Harbor's /system/purgeaudit shows (status, parameters, a log with what was removed).
 * Two schedules can start them: the one config's audit.retainDays / audit.maxEntries declare, and
 * the one set through the API (Harbor's purge schedule with its audit_retention_hour).
 */
import { ApiError, badRequest, notFound } from '../platform/http/api.ts';
import { errorText, type Job } from '../platform/jobs/queue.ts';
import { InvalidCronError, validateCron } from '../platform/jobs/scheduler.ts';
import type { JobService } from '../platform/jobs/service.ts';
import type { JobContext } from '../platform/jobs/worker.ts';
import type { AuditStore } from './store.ts';

/** One purge (payload PurgePayload). */
export const AUDIT_PURGE_JOB = 'audit.purge';
/** What the schedules fire: starts a purge unless one is pending or running. */
export const AUDIT_PURGE_SCHEDULED = 'audit.purge-scheduled';
/** The schedule set through the API. */
export const API_SCHEDULE_NAME = 'audit.purge';
/** The schedule of config's audit.retainDays / audit.maxEntries. */
export const CONFIG_SCHEDULE_NAME = 'audit.retention';
const DEDUPE_KEY = 'audit.purge';
const HOUR_MS = 3_600_000;
/** Longest retention the API takes, in hours (100 years). */
export const MAX_RETENTION_HOURS = 876_000;

export const SCHEDULE_TYPES = ['Hourly', 'Daily', 'Weekly', 'Custom', 'Manual', 'None'] as const;
export type ScheduleType = (typeof SCHEDULE_TYPES)[number];
const TYPE_CRON: Partial<Record<ScheduleType, string>> = { Hourly: '0 0 * * * *', Daily: '0 0 0 * * *', Weekly: '0 0 0 * * 0' };

/** Harbor's purge parameters (plus max_entries, ours). */
export interface PurgeApiParameters {
  readonly audit_retention_hour?: number;
  readonly include_event_types?: string;
  readonly dry_run?: boolean;
  readonly max_entries?: number;
}

export interface PurgePayload {
  readonly trigger: 'MANUAL' | 'SCHEDULE';
  readonly parameters: PurgeApiParameters;
}

interface SchedulePayload {
  readonly type: ScheduleType | 'Config';
  readonly parameters: PurgeApiParameters;
}

/** Whether config's audit.retainDays / audit.maxEntries ask for a scheduled purge (and so audit.purgeCron is used). */
export function hasConfigSchedule(options: { readonly retainDays: number; readonly maxEntries: number }): boolean {
  return options.retainDays > 0 || options.maxEntries > 0;
}

export type PurgeStatus = 'Pending' | 'Running' | 'Success' | 'Error' | 'Stopped';

export interface PurgeView {
  readonly id: number;
  readonly trigger: 'MANUAL' | 'SCHEDULE';
  readonly parameters: PurgeApiParameters;
  readonly status: PurgeStatus;
  readonly createdAt: number;
  readonly updatedAt: number;
  readonly error: string | null;
}

export interface PurgeScheduleView {
  readonly type: ScheduleType;
  readonly cron: string;
  readonly nextRunAt: number | null;
  readonly parameters: PurgeApiParameters;
  readonly createdAt: number | null;
  readonly updatedAt: number | null;
}

function statusOf(job: Job): PurgeStatus {
  switch (job.status) {
    case 'queued':
      return 'Pending';
    case 'running':
      return 'Running';
    case 'succeeded':
      return 'Success';
    case 'cancelled':
      return 'Stopped';
    default:
      return 'Error';
  }
}

/** Checks the parameters the API takes (types are the schema's business). */
export function checkParameters(parameters: PurgeApiParameters): PurgeApiParameters {
  const hours = parameters.audit_retention_hour;
  const max = parameters.max_entries;
  if (hours === undefined && max === undefined) throw badRequest('parameters.audit_retention_hour is required (entries older than this many hours are purged)');
  if (hours !== undefined && (!Number.isInteger(hours) || hours < 1 || hours > MAX_RETENTION_HOURS)) {
    throw badRequest(`parameters.audit_retention_hour must be a whole number of hours from 1 to ${MAX_RETENTION_HOURS}, got ${hours}`);
  }
  if (max !== undefined && (!Number.isInteger(max) || max < 1)) throw badRequest(`parameters.max_entries must be a whole number from 1, got ${max}`);
  return {
    ...(hours !== undefined ? { audit_retention_hour: hours } : {}),
    ...(max !== undefined ? { max_entries: max } : {}),
    ...(parameters.include_event_types !== undefined ? { include_event_types: parameters.include_event_types } : {}),
    dry_run: parameters.dry_run ?? false,
  };
}

export interface AuditPurgesOptions {
  readonly store: AuditStore;
  readonly jobs: JobService;
  readonly now?: () => number;
}

export class AuditPurges {
  readonly #store: AuditStore;
  readonly #jobs: JobService;
  readonly #now: () => number;

  constructor(options: AuditPurgesOptions) {
    this.#store = options.store;
    this.#jobs = options.jobs;
    this.#now = options.now ?? Date.now;
  }

  /** Registers the job handlers. */
  register(): void {
    this.#jobs.workers.register<PurgePayload>(AUDIT_PURGE_JOB, (payload, context) => this.execute(payload, context));
    this.#jobs.workers.register<SchedulePayload>(AUDIT_PURGE_SCHEDULED, async (payload, { log }) => {
      const busy = await this.#busy();
      if (busy) return log(`skipped: purge ${busy.id} is already ${busy.status === 'running' ? 'running' : 'pending'}`);
      log(`started audit log purge ${await this.#enqueue({ trigger: 'SCHEDULE', parameters: payload.parameters })}`);
    });
  }

  /**
   * Declares (or removes) the schedule of config's audit.retainDays and audit.maxEntries; the
   * job service writes it at start.
   */
  async configure(options: { readonly retainDays: number; readonly maxEntries: number; readonly cron: string }): Promise<void> {
    if (!hasConfigSchedule(options)) {
      await this.#jobs.scheduler.remove(CONFIG_SCHEDULE_NAME);
      return;
    }
    const parameters: PurgeApiParameters = {
      ...(options.retainDays > 0 ? { audit_retention_hour: options.retainDays * 24 } : {}),
      ...(options.maxEntries > 0 ? { max_entries: options.maxEntries } : {}),
      dry_run: false,
    };
    const payload: SchedulePayload = { type: 'Config', parameters };
    this.#jobs.schedule({ name: CONFIG_SCHEDULE_NAME, cron: options.cron, kind: AUDIT_PURGE_SCHEDULED, payload });
  }

  /** The purge pending or running, if any. */
  async #busy(): Promise<Job | undefined> {
    const [queued, running] = await Promise.all([
      this.#jobs.queue.list({ kind: AUDIT_PURGE_JOB, status: 'queued', limit: 1 }),
      this.#jobs.queue.list({ kind: AUDIT_PURGE_JOB, status: 'running', limit: 1 }),
    ]);
    return running[0] ?? queued[0];
  }

  async #enqueue(payload: PurgePayload): Promise<number> {
    return this.#jobs.queue.enqueue({ kind: AUDIT_PURGE_JOB, payload, dedupeKey: DEDUPE_KEY, maxAttempts: 1 });
  }

  /** Starts a purge now (Harbor's Manual schedule type); 409 while one is pending or running. */
  async start(parameters: PurgeApiParameters): Promise<number> {
    const checked = checkParameters(parameters);
    const busy = await this.#busy();
    if (busy) throw new ApiError('CONFLICT', `an audit log purge is already ${busy.status === 'running' ? 'running' : 'pending'} (${busy.id}); stop it or wait for it to finish`);
    return this.#enqueue({ trigger: 'MANUAL', parameters: checked });
  }

  /** The job handler: works out how far to purge, then purges (or, in a dry run, counts). */
  async execute(payload: PurgePayload, context: JobContext): Promise<void> {
    const { parameters } = payload;
    const head = await this.#store.head();
    let through = head.checkpointId;
    const reasons: string[] = [];
    if (parameters.audit_retention_hour !== undefined) {
      const cutoff = this.#now() - parameters.audit_retention_hour * HOUR_MS;
      const byAge = await this.#store.lastIdBefore(cutoff);
      reasons.push(`older than ${parameters.audit_retention_hour} hour(s) (before ${new Date(cutoff).toISOString()}): through entry ${byAge}`);
      through = Math.max(through, byAge);
    }
    if (parameters.max_entries !== undefined) {
      const byCount = head.lastId - parameters.max_entries;
      reasons.push(`beyond the newest ${parameters.max_entries}: through entry ${Math.max(byCount, 0)}`);
      through = Math.max(through, byCount);
    }
    if (parameters.include_event_types !== undefined) {
      context.log('include_event_types is not applied: a purge removes the oldest entries of every type, so that the entries kept still verify as one chain', 'warn');
    }
    context.log(`chain: entries ${head.checkpointId + 1} to ${head.lastId}; purge ${reasons.join('; ')}`);
    if (through <= head.checkpointId) {
      context.log('nothing to purge');
      return;
    }
    let cancelled = false;
    let lastPoll = 0;
    const shouldStop = async () => {
      if (context.signal.aborted || cancelled) return true;
      if (this.#now() - lastPoll >= 1000) {
        lastPoll = this.#now();
        cancelled = (await this.#jobs.queue.get(context.job.id))?.cancelRequested === true;
      }
      return cancelled;
    };
    try {
      const result = await this.#store.purge(through, { dryRun: parameters.dry_run === true, shouldStop });
      const verb = parameters.dry_run ? 'would purge' : 'purged';
      context.log(
        `${verb} ${result.purged} entr${result.purged === 1 ? 'y' : 'ies'} (through entry ${result.checkpointId})${result.stopped ? '; stopped before the end' : ''}${parameters.dry_run ? '' : `; checkpoint: entry ${result.checkpointId}, hash ${result.checkpointHash}`}`,
      );
      if (result.stopped) throw new Error('stopped');
    } catch (err) {
      context.log(`purge failed: ${errorText(err)}`, 'error');
      throw err;
    }
  }

  // ── history ──────────────────────────────────────────────────────────────

  async list(offset: number, limit: number): Promise<{ total: number; items: PurgeView[] }> {
    const [total, jobs] = await Promise.all([this.#jobs.queue.count({ kind: AUDIT_PURGE_JOB }), this.#jobs.queue.list({ kind: AUDIT_PURGE_JOB, offset, limit })]);
    return { total, items: jobs.map(viewOf) };
  }

  async #job(id: number): Promise<Job> {
    const job = await this.#jobs.queue.get(id);
    if (!job || job.kind !== AUDIT_PURGE_JOB) throw notFound(`audit log purge ${id} not found`);
    return job;
  }

  async get(id: number): Promise<PurgeView> {
    return viewOf(await this.#job(id));
  }

  async stop(id: number): Promise<void> {
    await this.#job(id);
    await this.#jobs.queue.cancel(id);
  }

  async log(id: number): Promise<string> {
    await this.#job(id);
    const lines = await this.#jobs.queue.readLog(id);
    return lines.map((l) => `${new Date(l.at).toISOString()} [${l.level.toUpperCase()}] ${l.message}\n`).join('');
  }

  // ── the schedule ─────────────────────────────────────────────────────────

  async getSchedule(): Promise<PurgeScheduleView> {
    const schedule = await this.#jobs.scheduler.get(API_SCHEDULE_NAME);
    if (!schedule) return { type: 'None', cron: '', nextRunAt: null, parameters: {}, createdAt: null, updatedAt: null };
    const row = await this.#store.db.selectFrom('schedules').select(['created_at', 'updated_at']).where('name', '=', API_SCHEDULE_NAME).executeTakeFirst();
    const payload = schedule.payload as SchedulePayload;
    return {
      type: payload.type === 'Config' ? 'Custom' : payload.type,
      cron: schedule.cron,
      nextRunAt: schedule.nextRunAt,
      parameters: payload.parameters,
      createdAt: row?.created_at ?? null,
      updatedAt: row?.updated_at ?? null,
    };
  }

  /** Manual starts a purge now (returns its id), None removes the schedule, the others set it. */
  async applySchedule(type: ScheduleType, cron: string | undefined, parameters: PurgeApiParameters | undefined): Promise<number | undefined> {
    if (type === 'None') {
      await this.#jobs.scheduler.remove(API_SCHEDULE_NAME);
      return undefined;
    }
    const checked = checkParameters(parameters ?? {});
    if (type === 'Manual') return this.start(checked);
    const expression = cron?.trim() ? cron.trim() : TYPE_CRON[type];
    if (expression === undefined) throw badRequest(`schedule.cron is required for a ${type} schedule`);
    try {
      validateCron(expression, this.#now());
    } catch (err) {
      if (err instanceof InvalidCronError) throw badRequest(err.message);
      throw err;
    }
    const payload: SchedulePayload = { type, parameters: checked };
    await this.#jobs.scheduler.upsert({ name: API_SCHEDULE_NAME, cron: expression, kind: AUDIT_PURGE_SCHEDULED, payload });
    return undefined;
  }
}

function viewOf(job: Job): PurgeView {
  const payload = (job.payload ?? {}) as Partial<PurgePayload>;
  return {
    id: job.id,
    trigger: payload.trigger ?? 'MANUAL',
    parameters: payload.parameters ?? {},
    status: statusOf(job),
    createdAt: job.createdAt,
    updatedAt: job.finishedAt ?? job.startedAt ?? job.createdAt,
    error: job.status === 'failed' ? job.lastError : null,
  };
}
