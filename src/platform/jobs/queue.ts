import { type Kysely, type Selectable, sql, type UpdateQueryBuilder } from 'kysely';
import { lockSkippingLocked } from '../db/dialect.ts';
import type { Database, JobStatus, JobTable } from '../db/schema.ts';

/**
 * The durable job queue: one table in the metadata database, shared by every node.
 *
 * A worker claims a job with one atomic statement and holds it under a lease that it renews by
 * heartbeats; a job whose lease expired (its worker died) is claimable again, by anyone. The
 * number of claims (`attempts`) is also the fencing token of a lease: complete, fail, heartbeat
 * and release act only while the job is still running under the same owner and attempt, so a
 * worker that lost its lease can no longer change the job.
 */

export type { JobStatus } from '../db/schema.ts';
export type JobLogLevel = 'debug' | 'info' | 'warn' | 'error';

export const UNFINISHED: readonly JobStatus[] = ['queued', 'running'];

export interface EnqueueSpec {
  readonly kind: string;
  /** Any JSON value; stored as text. */
  readonly payload?: unknown;
  /** While a queued or running job has this key, enqueueing it again returns that job. */
  readonly dedupeKey?: string;
  /** Lower runs first; 0 by default (negative numbers jump the queue). */
  readonly priority?: number;
  /** Epoch ms before which the job is not claimed; now by default. */
  readonly runAt?: number;
  readonly maxAttempts?: number;
}

export interface Job {
  readonly id: number;
  readonly kind: string;
  readonly payload: unknown;
  readonly status: JobStatus;
  readonly priority: number;
  readonly dedupeKey: string | null;
  readonly attempts: number;
  readonly maxAttempts: number;
  readonly runAt: number;
  readonly leaseOwner: string | null;
  readonly leaseExpiresAt: number | null;
  readonly lastError: string | null;
  readonly cancelRequested: boolean;
  readonly createdAt: number;
  readonly startedAt: number | null;
  readonly finishedAt: number | null;
}

/** Proof of a claim: which worker holds the job, for which attempt. */
export interface Lease {
  readonly id: number;
  readonly owner: string;
  readonly attempt: number;
}

export interface ClaimedJob extends Job {
  readonly lease: Lease;
}

/** What a heartbeat learnt: keep going, stop because cancellation was asked, or the lease is gone. */
export type HeartbeatResult = 'ok' | 'cancel' | 'lost';

export interface JobLogLine {
  readonly seq: number;
  readonly at: number;
  readonly level: JobLogLevel;
  readonly message: string;
}

export interface JobCount {
  readonly kind: string;
  readonly status: JobStatus;
  readonly count: number;
}

export interface JobListFilter {
  readonly kind?: string;
  readonly status?: JobStatus;
  /** Only jobs with a smaller id (the previous page's last id). */
  readonly beforeId?: number;
  /** Skips this many (page-numbered listings). */
  readonly offset?: number;
  readonly limit?: number;
}

/** A node's worker pool as it announced itself (GET /jobservice/pools). */
export interface AnnouncedPool {
  readonly id: string;
  readonly pid: number;
  readonly host: string;
  readonly startedAt: number;
  readonly concurrency: number;
  readonly kinds: readonly string[];
  readonly heartbeatAt: number;
}

/** A job running under a lease, as another node sees it. */
export interface LeasedJob {
  readonly id: number;
  readonly kind: string;
  readonly startedAt: number;
}

export interface JobQueueOptions {
  /** Epoch milliseconds; injectable for tests. */
  readonly now?: () => number;
  /** In [0, 1); injectable for tests. */
  readonly random?: () => number;
  readonly defaultMaxAttempts?: number;
  /** The first retry waits about this long; each further one twice as long, up to backoffMaxMs. */
  readonly backoffBaseMs?: number;
  readonly backoffMaxMs?: number;
  /** Log lines kept per job; older ones are dropped. */
  readonly logLinesPerJob?: number;
  /** How often claim() also closes expired jobs that have no attempt left. */
  readonly reapIntervalMs?: number;
}

/** In-process notifications, so that workers on this node react without waiting for a poll. */
export interface QueueListener {
  enqueued?(kind: string): void;
  cancelRequested?(id: number): void;
}

const MAX_ERROR_CHARS = 4000;
const MAX_LOG_MESSAGE_CHARS = 8000;

function truncate(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

export function errorText(error: unknown): string {
  if (error instanceof Error) return truncate(error.name && error.name !== 'Error' ? `${error.name}: ${error.message}` : error.message, MAX_ERROR_CHARS);
  return truncate(String(error), MAX_ERROR_CHARS);
}

function toJob(row: Selectable<JobTable>): Job {
  return {
    id: Number(row.id),
    kind: row.kind,
    payload: JSON.parse(row.payload) as unknown,
    status: row.status,
    priority: Number(row.priority),
    dedupeKey: row.dedupe_key,
    attempts: Number(row.attempts),
    maxAttempts: Number(row.max_attempts),
    runAt: Number(row.run_at),
    leaseOwner: row.lease_owner,
    leaseExpiresAt: row.lease_expires_at === null ? null : Number(row.lease_expires_at),
    lastError: row.last_error,
    cancelRequested: Number(row.cancel_requested) === 1,
    createdAt: Number(row.created_at),
    startedAt: row.started_at === null ? null : Number(row.started_at),
    finishedAt: row.finished_at === null ? null : Number(row.finished_at),
  };
}

/** The status a job ends in when its attempt stops: cancelled wins if cancellation was asked. */
const endStatus = (otherwise: JobStatus) => sql<JobStatus>`case when cancel_requested = 1 then 'cancelled' else ${sql.lit(otherwise)} end`;

export class JobQueue {
  readonly #db: Kysely<Database>;
  readonly #now: () => number;
  readonly #random: () => number;
  readonly #defaultMaxAttempts: number;
  readonly #backoffBaseMs: number;
  readonly #backoffMaxMs: number;
  readonly #logLinesPerJob: number;
  readonly #reapIntervalMs: number;
  readonly #listeners = new Set<QueueListener>();
  #lastReap = Number.NEGATIVE_INFINITY;

  constructor(db: Kysely<Database>, options: JobQueueOptions = {}) {
    this.#db = db;
    this.#now = options.now ?? Date.now;
    this.#random = options.random ?? Math.random;
    this.#defaultMaxAttempts = options.defaultMaxAttempts ?? 5;
    this.#backoffBaseMs = options.backoffBaseMs ?? 10_000;
    this.#backoffMaxMs = options.backoffMaxMs ?? 3_600_000;
    this.#logLinesPerJob = Math.max(1, options.logLinesPerJob ?? 1000);
    this.#reapIntervalMs = options.reapIntervalMs ?? 5_000;
  }

  subscribe(listener: QueueListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Tells this node's workers that a job of `kind` may be ready (enqueue does it by itself). */
  notifyEnqueued(kind: string): void {
    for (const listener of this.#listeners) listener.enqueued?.(kind);
  }

  /**
   * Adds a job and returns its id; with a dedupe key that a queued or running job holds, returns
   * that job's id instead. `executor` lets a caller enqueue inside its own transaction (it must
   * then call notifyEnqueued after the commit).
   */
  async enqueue(spec: EnqueueSpec, executor: Kysely<Database> = this.#db): Promise<number> {
    const now = this.#now();
    const maxAttempts = spec.maxAttempts ?? this.#defaultMaxAttempts;
    if (!Number.isInteger(maxAttempts) || maxAttempts < 1) throw new RangeError(`maxAttempts must be a positive integer, got ${maxAttempts}`);
    const row = {
      kind: spec.kind,
      payload: JSON.stringify(spec.payload ?? null),
      status: 'queued' as const,
      priority: spec.priority ?? 0,
      dedupe_key: spec.dedupeKey ?? null,
      attempts: 0,
      max_attempts: maxAttempts,
      run_at: spec.runAt ?? now,
      cancel_requested: 0,
      created_at: now,
    };
    // Three rounds: the unfinished job that held the key may finish between the insert and the read.
    for (let round = 0; round < 3; round++) {
      const inserted = await executor
        .insertInto('jobs')
        .values(row)
        .onConflict((oc) => oc.column('dedupe_key').where(sql<boolean>`status in ('queued', 'running')`).doNothing())
        .returning('id')
        .executeTakeFirst();
      if (inserted) {
        if (executor === this.#db) this.notifyEnqueued(spec.kind);
        return Number(inserted.id);
      }
      const existing = await executor
        .selectFrom('jobs')
        .select('id')
        .where('dedupe_key', '=', row.dedupe_key)
        .where('status', 'in', UNFINISHED)
        .executeTakeFirst();
      if (existing) return Number(existing.id);
    }
    throw new Error(`could not enqueue ${spec.kind} with dedupe key ${spec.dedupeKey}`);
  }

  /**
   * Atomically takes the next job of one of `kinds` for `owner`, under a lease of `leaseMs`:
   * a queued job that is due, or a running job whose lease expired (its worker died) and that
   * `owner` does not hold already. Lower
   * priority first, then earlier run_at. Paused kinds are skipped.
   */
  async claim(owner: string, kinds: readonly string[], leaseMs: number): Promise<ClaimedJob | undefined> {
    if (kinds.length === 0) return undefined;
    const now = this.#now();
    if (now - this.#lastReap >= this.#reapIntervalMs) {
      this.#lastReap = now;
      await this.reapExpired();
    }
    const db = this.#db;
    const next = lockSkippingLocked(
      db,
      db
        .selectFrom('jobs')
        .select('id')
        .where('kind', 'in', kinds)
        .where((eb) =>
          eb.or([
            eb.and([eb('status', '=', 'queued'), eb('run_at', '<=', now)]),
            eb.and([
              eb('status', '=', 'running'),
              eb('lease_expires_at', '<', now),
              eb('attempts', '<', eb.ref('max_attempts')),
              eb('cancel_requested', '=', 0),
              // A worker never takes over from itself: its handler still runs in its process.
              eb('lease_owner', '<>', owner),
            ]),
          ]),
        )
        .where('kind', 'not in', db.selectFrom('job_kind_pauses').select('kind'))
        .orderBy('priority')
        .orderBy('run_at')
        .orderBy('id')
        .limit(1),
    );
    const row = await db
      .updateTable('jobs')
      .set((eb) => ({
        status: 'running',
        lease_owner: owner,
        lease_expires_at: now + leaseMs,
        attempts: eb('attempts', '+', 1),
        started_at: now,
      }))
      .where('id', '=', next)
      .returningAll()
      .executeTakeFirst();
    if (!row) return undefined;
    const job = toJob(row);
    return { ...job, lease: { id: job.id, owner, attempt: job.attempts } };
  }

  /**
   * Closes running jobs whose lease expired and that may not be taken over: those without an
   * attempt left (failed) and those whose cancellation was asked (cancelled). Returns how many.
   */
  async reapExpired(): Promise<number> {
    const now = this.#now();
    const result = await this.#db
      .updateTable('jobs')
      .set({
        status: endStatus('failed'),
        last_error: sql<string>`case when cancel_requested = 1 then last_error else ${'lease expired: the worker of the last attempt stopped responding'} end`,
        finished_at: now,
        lease_owner: null,
        lease_expires_at: null,
      })
      .where('status', '=', 'running')
      .where('lease_expires_at', '<', now)
      .where((eb) => eb.or([eb('attempts', '>=', eb.ref('max_attempts')), eb('cancel_requested', '=', 1)]))
      .executeTakeFirst();
    return Number(result.numUpdatedRows);
  }

  /** Renews a lease. 'lost' means another worker took the job (or it ended): stop working on it. */
  async heartbeat(lease: Lease, leaseMs: number): Promise<HeartbeatResult> {
    const row = await this.#fenced(this.#db.updateTable('jobs').set({ lease_expires_at: this.#now() + leaseMs }), lease)
      .returning('cancel_requested')
      .executeTakeFirst();
    if (!row) return 'lost';
    return Number(row.cancel_requested) === 1 ? 'cancel' : 'ok';
  }

  /** Marks the job succeeded (cancelled if cancellation was asked). Undefined when the lease was lost. */
  async complete(lease: Lease): Promise<JobStatus | undefined> {
    const row = await this.#fenced(
      this.#db.updateTable('jobs').set({ status: endStatus('succeeded'), finished_at: this.#now(), lease_owner: null, lease_expires_at: null }),
      lease,
    )
      .returning('status')
      .executeTakeFirst();
    return row?.status;
  }

  /**
   * Records a failed attempt. With attempts left (and `retry` not false) the job is queued again
   * after an exponential backoff with jitter; otherwise it is failed (cancelled if cancellation was
   * asked). The error is kept in last_error. Undefined when the lease was lost.
   */
  async fail(lease: Lease, error: unknown, options: { retry?: boolean } = {}): Promise<JobStatus | undefined> {
    const now = this.#now();
    const retry = options.retry !== false;
    // Numbers go in as literals: a CASE of untyped parameters would be text on PostgreSQL.
    const exhausted = retry ? sql`attempts >= max_attempts` : sql`1 = 1`;
    const status = sql<JobStatus>`case when cancel_requested = 1 then 'cancelled' when ${exhausted} then 'failed' else 'queued' end`;
    const finishedAt = sql<number | null>`case when cancel_requested = 1 or ${exhausted} then ${sql.lit(now)} else null end`;
    const row = await this.#fenced(
      this.#db.updateTable('jobs').set({
        status,
        finished_at: finishedAt,
        run_at: now + this.backoffMs(lease.attempt),
        last_error: errorText(error),
        lease_owner: null,
        lease_expires_at: null,
      }),
      lease,
    )
      .returning('status')
      .executeTakeFirst();
    return row?.status;
  }

  /** The wait before retrying after failed attempt number `attempt`: exponential, capped, jittered in [½, 1]. */
  backoffMs(attempt: number): number {
    const full = Math.min(this.#backoffMaxMs, this.#backoffBaseMs * 2 ** Math.max(0, attempt - 1));
    return Math.round(full / 2 + (this.#random() * full) / 2);
  }

  /**
   * Gives a job back without counting the attempt (a worker that stops): queued again and due
   * now, so another worker takes it at once; cancelled if cancellation was asked.
   */
  async release(lease: Lease): Promise<boolean> {
    const now = this.#now();
    const result = await this.#fenced(
      this.#db.updateTable('jobs').set({
        status: endStatus('queued'),
        attempts: sql<number>`case when cancel_requested = 1 then attempts else attempts - 1 end`,
        finished_at: sql<number | null>`case when cancel_requested = 1 then ${sql.lit(now)} else null end`,
        run_at: now,
        lease_owner: null,
        lease_expires_at: null,
      }),
      lease,
    ).executeTakeFirst();
    return Number(result.numUpdatedRows) === 1;
  }

  /** Narrows an update to the job while it still runs under `lease`. */
  #fenced<O>(query: UpdateQueryBuilder<Database, 'jobs', 'jobs', O>, lease: Lease): UpdateQueryBuilder<Database, 'jobs', 'jobs', O> {
    return query.where('id', '=', lease.id).where('status', '=', 'running').where('lease_owner', '=', lease.owner).where('attempts', '=', lease.attempt);
  }

  /**
   * Cancels a job: a queued one at once; a running one is asked to stop (its handler sees its
   * AbortSignal fire at the next heartbeat). Returns the job as it is now.
   */
  async cancel(id: number): Promise<Job | undefined> {
    const now = this.#now();
    const queued = await this.#db
      .updateTable('jobs')
      .set({ status: 'cancelled', finished_at: now })
      .where('id', '=', id)
      .where('status', '=', 'queued')
      .executeTakeFirst();
    if (Number(queued.numUpdatedRows) === 0) {
      const running = await this.#db.updateTable('jobs').set({ cancel_requested: 1 }).where('id', '=', id).where('status', '=', 'running').executeTakeFirst();
      if (Number(running.numUpdatedRows) === 1) for (const listener of this.#listeners) listener.cancelRequested?.(id);
    }
    return this.get(id);
  }

  async get(id: number): Promise<Job | undefined> {
    const row = await this.#db.selectFrom('jobs').selectAll().where('id', '=', id).executeTakeFirst();
    return row ? toJob(row) : undefined;
  }

  /** Jobs, newest first. */
  async list(filter: JobListFilter = {}): Promise<Job[]> {
    let query = this.#db
      .selectFrom('jobs')
      .selectAll()
      .orderBy('id', 'desc')
      .limit(Math.min(1000, Math.max(1, filter.limit ?? 100)));
    if (filter.kind !== undefined) query = query.where('kind', '=', filter.kind);
    if (filter.status !== undefined) query = query.where('status', '=', filter.status);
    if (filter.beforeId !== undefined) query = query.where('id', '<', filter.beforeId);
    if (filter.offset !== undefined && filter.offset > 0) query = query.offset(filter.offset);
    return (await query.execute()).map(toJob);
  }

  /** How many jobs list() would return without a limit. */
  async count(filter: Pick<JobListFilter, 'kind' | 'status'> = {}): Promise<number> {
    let query = this.#db.selectFrom('jobs').select((eb) => eb.fn.countAll<number | string>().as('n'));
    if (filter.kind !== undefined) query = query.where('kind', '=', filter.kind);
    if (filter.status !== undefined) query = query.where('status', '=', filter.status);
    return Number((await query.executeTakeFirstOrThrow()).n);
  }

  /** Per kind, the run_at of the queued job that has waited longest among those due (how late the queue is). */
  async oldestDue(): Promise<Map<string, number>> {
    const rows = await this.#db
      .selectFrom('jobs')
      .select(['kind', (eb) => eb.fn.min<number | string>('run_at').as('oldest')])
      .where('status', '=', 'queued')
      .where('run_at', '<=', this.#now())
      .groupBy('kind')
      .execute();
    return new Map(rows.map((r) => [r.kind, Number(r.oldest)]));
  }

  /** Cancels every queued job of `kind` (of every kind when absent) at once; running jobs go on. Returns how many. */
  async cancelQueued(kind?: string): Promise<number> {
    let query = this.#db.updateTable('jobs').set({ status: 'cancelled', finished_at: this.#now() }).where('status', '=', 'queued');
    if (kind !== undefined) query = query.where('kind', '=', kind);
    return Number((await query.executeTakeFirst()).numUpdatedRows);
  }

  /** How many jobs there are of each kind in each status (only the pairs that occur). */
  async counts(): Promise<JobCount[]> {
    const rows = await this.#db
      .selectFrom('jobs')
      .select(['kind', 'status', (eb) => eb.fn.countAll<number | string>().as('n')])
      .groupBy(['kind', 'status'])
      .orderBy('kind')
      .orderBy('status')
      .execute();
    return rows.map((r) => ({ kind: r.kind, status: r.status, count: Number(r.n) }));
  }

  /** Appends a line to a job's log, then drops the oldest lines past the bound. */
  async appendLog(jobId: number, message: string, level: JobLogLevel = 'info'): Promise<void> {
    const db = this.#db;
    await db
      .insertInto('job_logs')
      .values({ job_id: jobId, at: this.#now(), level, message: truncate(message, MAX_LOG_MESSAGE_CHARS) })
      .execute();
    const oldestKept = db
      .selectFrom('job_logs')
      .select('seq')
      .where('job_id', '=', jobId)
      .orderBy('seq', 'desc')
      .limit(1)
      .offset(this.#logLinesPerJob - 1);
    await db.deleteFrom('job_logs').where('job_id', '=', jobId).where('seq', '<', oldestKept).execute();
  }

  /** A job's log, oldest line first. */
  async readLog(jobId: number): Promise<JobLogLine[]> {
    const rows = await this.#db.selectFrom('job_logs').select(['seq', 'at', 'level', 'message']).where('job_id', '=', jobId).orderBy('seq').execute();
    return rows.map((r) => ({ seq: Number(r.seq), at: Number(r.at), level: r.level as JobLogLevel, message: r.message }));
  }

  /** Stops every node's workers from claiming jobs of `kind` (running ones go on) until resumed. */
  async pauseKind(kind: string): Promise<void> {
    await this.#db
      .insertInto('job_kind_pauses')
      .values({ kind, paused_at: this.#now() })
      .onConflict((oc) => oc.column('kind').doNothing())
      .execute();
  }

  async resumeKind(kind: string): Promise<void> {
    await this.#db.deleteFrom('job_kind_pauses').where('kind', '=', kind).execute();
    this.notifyEnqueued(kind);
  }

  async pausedKinds(): Promise<string[]> {
    const rows = await this.#db.selectFrom('job_kind_pauses').select('kind').orderBy('kind').execute();
    return rows.map((r) => r.kind);
  }

  /** Deletes finished jobs (and their logs) that finished before `before`. Returns how many. */
  async pruneFinished(before: number): Promise<number> {
    let pruned = 0;
    for (;;) {
      const ids = await this.#db
        .selectFrom('jobs')
        .select('id')
        .where('status', 'in', ['succeeded', 'failed', 'cancelled'])
        .where('finished_at', '<', before)
        .limit(500)
        .execute();
      if (ids.length === 0) return pruned;
      const batch = ids.map((r) => Number(r.id));
      await this.#db.deleteFrom('job_logs').where('job_id', 'in', batch).execute();
      const result = await this.#db.deleteFrom('jobs').where('id', 'in', batch).executeTakeFirst();
      pruned += Number(result.numDeletedRows);
      if (ids.length < 500) return pruned;
    }
  }

  // ── worker pools of the nodes ────────────────────────────────────────────

  /** Announces (or refreshes) a node's pool: its kinds and concurrency may change between beats. */
  async beatPool(pool: Omit<AnnouncedPool, 'heartbeatAt'>): Promise<void> {
    const now = this.#now();
    const kinds = JSON.stringify([...pool.kinds].sort());
    await this.#db
      .insertInto('job_worker_pools')
      .values({ id: pool.id, pid: pool.pid, host: pool.host, started_at: pool.startedAt, concurrency: pool.concurrency, kinds, heartbeat_at: now })
      .onConflict((oc) => oc.column('id').doUpdateSet({ concurrency: pool.concurrency, kinds, heartbeat_at: now }))
      .execute();
  }

  /** A pool leaves at a graceful stop; pools that beat last before `staleBefore` are forgotten too. */
  async removePool(id: string, staleBefore: number): Promise<void> {
    await this.#db
      .deleteFrom('job_worker_pools')
      .where((eb) => eb.or([eb('id', '=', id), eb('heartbeat_at', '<', staleBefore)]))
      .execute();
  }

  /** The pools whose last beat is at or after `since`, oldest start first. */
  async livePools(since: number): Promise<AnnouncedPool[]> {
    const rows = await this.#db.selectFrom('job_worker_pools').selectAll().where('heartbeat_at', '>=', since).orderBy('started_at').orderBy('id').execute();
    return rows.map((r) => ({
      id: r.id,
      pid: Number(r.pid),
      host: r.host,
      startedAt: Number(r.started_at),
      concurrency: Number(r.concurrency),
      kinds: JSON.parse(r.kinds) as string[],
      heartbeatAt: Number(r.heartbeat_at),
    }));
  }

  /** The running jobs a lease owner (a pool's id) holds, oldest start first. */
  async leasedBy(owner: string): Promise<LeasedJob[]> {
    const rows = await this.#db
      .selectFrom('jobs')
      .select(['id', 'kind', 'started_at', 'created_at'])
      .where('status', '=', 'running')
      .where('lease_owner', '=', owner)
      .orderBy('started_at')
      .orderBy('id')
      .execute();
    return rows.map((r) => ({ id: Number(r.id), kind: r.kind, startedAt: Number(r.started_at ?? r.created_at) }));
  }
}
