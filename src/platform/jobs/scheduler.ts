import { Cron } from 'croner';
import type { Kysely, Selectable } from 'kysely';
import type { Database, ScheduleTable } from '../db/schema.ts';
import type { JobQueue } from './queue.ts';
import type { WorkerLogger } from './worker.ts';

/**
 * Cron schedules kept in the database, shared by every node. Croner only computes the next run
 * time; the timing is ours: every node ticks, and for a schedule that is due, each node tries to
 * advance its next_run_at with a compare-and-set UPDATE (… where name = ? and next_run_at = the
 * due time). One node's update succeeds, and only that node enqueues the job, in the same
 * transaction, with the dedupe key `schedule:<name>:<due time>`. So a schedule fires once per
 * due time however many nodes tick, and runs missed while every node was down fire once.
 */

/** A cron expression that does not parse, or that never fires. */
export class InvalidCronError extends Error {
  readonly code = 'INVALID_CRON';
  readonly expression: string;
  constructor(expression: string, reason: string, schedule?: string) {
    super(`invalid cron expression ${JSON.stringify(expression)}${schedule ? ` for schedule ${schedule}` : ''}: ${reason}`);
    this.name = 'InvalidCronError';
    this.expression = expression;
  }
}

export interface ScheduleSpec {
  readonly name: string;
  /** Five fields (minute first) or six (second first), or a nickname like @daily; in UTC. */
  readonly cron: string;
  readonly kind: string;
  readonly payload?: unknown;
  /** Only for a new schedule: an existing one keeps its paused flag (see pause/resume). */
  readonly paused?: boolean;
}

export interface Schedule {
  readonly name: string;
  readonly cron: string;
  readonly kind: string;
  readonly payload: unknown;
  readonly nextRunAt: number;
  readonly lastRunAt: number | null;
  readonly paused: boolean;
}

export interface Fired {
  readonly schedule: string;
  readonly runAt: number;
  readonly jobId: number;
}

export interface SchedulerOptions {
  readonly db: Kysely<Database>;
  readonly queue: JobQueue;
  /** How often due schedules are looked for. */
  readonly tickMs: number;
  readonly now?: () => number;
  readonly logger?: WorkerLogger;
}

/**
 * Pausing this pseudo job kind (JobQueue.pauseKind) pauses every schedule on every node, as
 * pausing Harbor's SCHEDULER queue stops its periodic triggers; on resume, each schedule that
 * fell due meanwhile fires once.
 */
export const SCHEDULER_KIND = 'SCHEDULER';

/** A next_run_at that is never due: for an expression with no time left. */
const NEVER = Number.MAX_SAFE_INTEGER;

function parseCron(expression: string, schedule?: string): Cron {
  if (typeof expression !== 'string' || expression.trim() === '') throw new InvalidCronError(String(expression), 'it is empty', schedule);
  try {
    // No callback: croner computes times and never starts a timer of its own.
    return new Cron(expression.trim(), { timezone: 'UTC', paused: true });
  } catch (err) {
    throw new InvalidCronError(expression, (err as Error).message.replace(/^CronPattern: /, ''), schedule);
  }
}

/** Checks a cron expression; throws InvalidCronError naming what is wrong. */
export function validateCron(expression: string, now = Date.now()): void {
  if (parseCron(expression).nextRun(new Date(now)) === null) throw new InvalidCronError(expression, 'it never fires after now');
}

/** The first time strictly after `after` at which `cron` fires (NEVER when none). */
function nextAfter(cron: Cron, after: number): number {
  return cron.nextRun(new Date(after))?.getTime() ?? NEVER;
}

/**
 * A cron expression for "every `seconds` seconds": a seconds step under a minute, else whole
 * minutes, hours or days (rounded), each step counted from the start of the enclosing unit.
 */
export function cronEvery(seconds: number): string {
  if (!Number.isInteger(seconds) || seconds < 1) throw new RangeError(`an interval in whole seconds ≥ 1 is needed, got ${seconds}`);
  if (seconds < 60) return `*/${seconds} * * * * *`;
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `0 */${minutes} * * * *`;
  const hours = Math.round(seconds / 3600);
  if (hours < 24) return `0 0 */${hours} * * *`;
  return `0 0 0 */${Math.min(31, Math.round(seconds / 86400))} * *`;
}

function toSchedule(row: Selectable<ScheduleTable>): Schedule {
  return {
    name: row.name,
    cron: row.cron,
    kind: row.job_kind,
    payload: JSON.parse(row.payload) as unknown,
    nextRunAt: Number(row.next_run_at),
    lastRunAt: row.last_run_at === null ? null : Number(row.last_run_at),
    paused: Number(row.paused) === 1,
  };
}

const silent: WorkerLogger = { debug() {}, info() {}, error() {} };

export class Scheduler {
  readonly #db: Kysely<Database>;
  readonly #queue: JobQueue;
  readonly #tickMs: number;
  readonly #now: () => number;
  readonly #logger: WorkerLogger;
  #timer: NodeJS.Timeout | undefined;
  #ticking: Promise<unknown> | undefined;
  #started = false;

  constructor(options: SchedulerOptions) {
    this.#db = options.db;
    this.#queue = options.queue;
    this.#tickMs = options.tickMs;
    this.#now = options.now ?? Date.now;
    this.#logger = options.logger ?? silent;
  }

  /**
   * Creates or updates a schedule (safe when every node does it at start). A changed cron
   * expression restarts the schedule from now; an unchanged one keeps its next run time.
   */
  async upsert(spec: ScheduleSpec): Promise<Schedule> {
    const now = this.#now();
    const next = nextAfter(parseCron(spec.cron, spec.name), now);
    if (next === NEVER) throw new InvalidCronError(spec.cron, 'it never fires after now', spec.name);
    const cron = spec.cron.trim();
    await this.#db
      .insertInto('schedules')
      .values({
        name: spec.name,
        cron,
        job_kind: spec.kind,
        payload: JSON.stringify(spec.payload ?? null),
        next_run_at: next,
        last_run_at: null,
        paused: spec.paused ? 1 : 0,
        created_at: now,
        updated_at: now,
      })
      .onConflict((oc) =>
        oc.column('name').doUpdateSet((eb) => ({
          cron: eb.ref('excluded.cron'),
          job_kind: eb.ref('excluded.job_kind'),
          payload: eb.ref('excluded.payload'),
          updated_at: eb.ref('excluded.updated_at'),
          next_run_at: eb.case().when('schedules.cron', '=', eb.ref('excluded.cron')).then(eb.ref('schedules.next_run_at')).else(eb.ref('excluded.next_run_at')).end(),
        })),
      )
      .execute();
    return (await this.get(spec.name)) as Schedule;
  }

  async get(name: string): Promise<Schedule | undefined> {
    const row = await this.#db.selectFrom('schedules').selectAll().where('name', '=', name).executeTakeFirst();
    return row ? toSchedule(row) : undefined;
  }

  async list(): Promise<Schedule[]> {
    return (await this.#db.selectFrom('schedules').selectAll().orderBy('name').execute()).map(toSchedule);
  }

  async remove(name: string): Promise<boolean> {
    const result = await this.#db.deleteFrom('schedules').where('name', '=', name).executeTakeFirst();
    return Number(result.numDeletedRows) === 1;
  }

  async pause(name: string): Promise<boolean> {
    const result = await this.#db.updateTable('schedules').set({ paused: 1, updated_at: this.#now() }).where('name', '=', name).executeTakeFirst();
    return Number(result.numUpdatedRows) === 1;
  }

  /** Resumes a schedule from now: the runs it missed while paused do not fire. */
  async resume(name: string): Promise<boolean> {
    const schedule = await this.get(name);
    if (!schedule) return false;
    const now = this.#now();
    const result = await this.#db
      .updateTable('schedules')
      .set({ paused: 0, next_run_at: nextAfter(parseCron(schedule.cron, name), now), updated_at: now })
      .where('name', '=', name)
      .where('paused', '=', 1)
      .executeTakeFirst();
    return Number(result.numUpdatedRows) === 1;
  }

  /** Fires every due schedule that this node wins (see the comment at the top). */
  async tick(): Promise<Fired[]> {
    const now = this.#now();
    const due = await this.#db
      .selectFrom('schedules')
      .selectAll()
      .where('paused', '=', 0)
      .where('next_run_at', '<=', now)
      .where((eb) => eb.not(eb.exists(eb.selectFrom('job_kind_pauses').select('kind').where('kind', '=', SCHEDULER_KIND))))
      .orderBy('next_run_at')
      .limit(100)
      .execute();
    const fired: Fired[] = [];
    for (const row of due) {
      const runAt = Number(row.next_run_at);
      let next: number;
      try {
        next = nextAfter(parseCron(row.cron, row.name), Math.max(now, runAt));
      } catch (err) {
        this.#logger.error({ schedule: row.name, err }, 'schedule has an invalid cron expression; skipped');
        continue;
      }
      const jobId = await this.#db.transaction().execute(async (trx) => {
        const advanced = await trx
          .updateTable('schedules')
          .set({ next_run_at: next, last_run_at: runAt, updated_at: now })
          .where('name', '=', row.name)
          .where('next_run_at', '=', runAt)
          .where('paused', '=', 0)
          .executeTakeFirst();
        if (Number(advanced.numUpdatedRows) !== 1) return undefined;
        const payload = JSON.parse(row.payload) as unknown;
        return this.#queue.enqueue({ kind: row.job_kind, payload, dedupeKey: `schedule:${row.name}:${new Date(runAt).toISOString()}` }, trx);
      });
      if (jobId === undefined) continue;
      this.#queue.notifyEnqueued(row.job_kind);
      this.#logger.debug({ schedule: row.name, runAt, jobId }, 'schedule fired');
      fired.push({ schedule: row.name, runAt, jobId });
    }
    return fired;
  }

  /** Ticks now and then every tickMs until stopped. */
  start(): void {
    if (this.#started) return;
    this.#started = true;
    const loop = () => {
      this.#ticking = this.tick()
        .catch((err: unknown) => this.#logger.error({ err }, 'scheduler tick failed'))
        .finally(() => {
          this.#ticking = undefined;
          if (!this.#started) return;
          this.#timer = setTimeout(loop, this.#tickMs);
          this.#timer.unref();
        });
    };
    loop();
  }

  async stop(): Promise<void> {
    this.#started = false;
    clearTimeout(this.#timer);
    await this.#ticking;
  }
}
