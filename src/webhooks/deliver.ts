/**
 * The `webhook.deliver` job: one attempt of one task. A failed attempt schedules the next one as
 * a new job after an exponential backoff (webhooks.retryBackoffMs, doubling, jittered, at most an
 * hour) until webhooks.maxAttempts, and every attempt is recorded (status code, latency, error)
 * in the task's history. A target with webhooks.perTargetConcurrency requests in flight on this
 * node has its further deliveries put back for about as long as it takes to answer, without
 * using up an attempt, so one slow endpoint cannot hold every worker. A job's own failures (the
 * database) are retried by the queue. Delivery is at least once: after a crash or a stop in the
 * middle of a request, the attempt is made again, with the same X-Berth-Delivery id and body.
 */
import type { Kysely } from 'kysely';
import type { Database } from '../platform/db/schema.ts';
import type { JobQueue } from '../platform/jobs/queue.ts';
import type { JobContext } from '../platform/jobs/worker.ts';
import { type DeliveryOutcome, postWebhook, TargetLimiter } from './delivery.ts';
import { contentTypeOf, deliveryHeaders } from './payload.ts';
import type { SecretBox } from './secrets.ts';
import { FINAL_TASK_STATUSES, type TaskRecord, type WebhookStore } from './store.ts';

export const DELIVER_JOB = 'webhook.deliver';
/** Job-level attempts of one delivery attempt: only for failures of our own (the database), not of the receiver. */
export const JOB_ATTEMPTS = 3;
const MAX_BACKOFF_MS = 3_600_000;
const MAX_DEFER_MS = 60_000;
const MIN_DEFER_MS = 100;

export interface DeliverPayload {
  readonly task: number;
  readonly attempt: number;
  /** Put back because its target was busy. */
  readonly deferred?: boolean;
}

export interface DeliverySettings {
  readonly timeoutMs: number;
  readonly maxAttempts: number;
  readonly retryBackoffMs: number;
  readonly perTargetConcurrency: number;
}

export interface DelivererDeps {
  readonly db: Kysely<Database>;
  readonly store: WebhookStore;
  readonly queue: JobQueue;
  readonly secrets: SecretBox;
  readonly settings: DeliverySettings;
  readonly now?: () => number;
  readonly random?: () => number;
}

export class WebhookDeliverer {
  readonly #db: Kysely<Database>;
  readonly #store: WebhookStore;
  readonly #queue: JobQueue;
  readonly #deps: DelivererDeps;
  readonly #settings: DeliverySettings;
  readonly #now: () => number;
  readonly #random: () => number;
  readonly #limiter: TargetLimiter;
  readonly #timers = new Set<NodeJS.Timeout>();
  /** Per target: smoothed latency (ms) and deliveries put back and not yet picked up again. */
  readonly #targets = new Map<string, { latencyMs: number; deferred: number }>();

  constructor(deps: DelivererDeps) {
    this.#deps = deps;
    this.#db = deps.db;
    this.#store = deps.store;
    this.#queue = deps.queue;
    this.#settings = deps.settings;
    this.#now = deps.now ?? Date.now;
    this.#random = deps.random ?? Math.random;
    this.#limiter = new TargetLimiter(deps.settings.perTargetConcurrency);
  }

  /** Runs one attempt of one task (the job handler). */
  async deliver(payload: DeliverPayload, context: JobContext): Promise<void> {
    const taskId = Number(payload?.task);
    const attempt = Number(payload?.attempt);
    if (!Number.isInteger(taskId) || !Number.isInteger(attempt) || attempt < 1) {
      context.log(`not a delivery: ${JSON.stringify(payload)}`, 'error');
      return;
    }
    const task = await this.#store.task(taskId);
    if (payload.deferred) this.#undefer(task?.address);
    if (!task) return context.log(`task ${taskId} is gone (its policy or project was deleted)`);
    if (FINAL_TASK_STATUSES.includes(task.status)) return;
    // A job older than the task's current attempt: another job has it.
    if (attempt < task.runCount || (attempt === task.runCount && task.jobId !== context.job.id)) return;

    const policy = await this.#store.policy(task.policyId);
    if (!policy?.enabled) {
      await this.#db.transaction().execute(async (trx) => {
        const now = this.#now();
        if (await this.#store.stopTask(trx, task.id, 'Stopped', policy ? 'the policy was disabled before the delivery' : 'the policy was deleted', now)) await this.#store.settleExecution(trx, task.executionId, now);
      });
      return context.log('the policy was disabled: not delivered');
    }

    const target = TargetLimiter.keyOf(task.address);
    if (!this.#limiter.tryAcquire(target)) return this.#defer(task, attempt, target, context);
    try {
      const startedAt = this.#now();
      if (!(await this.#store.startAttempt(task.id, attempt, context.job.id, startedAt))) return;
      let outcome: DeliveryOutcome;
      let secret: string | null = null;
      try {
        if (policy.sealedSecret !== null) secret = this.#deps.secrets.open(policy.sealedSecret);
        outcome = await postWebhook({
          address: task.address,
          body: task.body,
          headers: deliveryHeaders({ contentType: contentTypeOf(task.payloadFormat), authHeader: task.authHeader, eventType: task.eventType, delivery: String(task.id), attempt }, secret, task.body),
          skipCertVerify: task.skipCertVerify,
          timeoutMs: this.#settings.timeoutMs,
          signal: context.signal,
        });
      } catch (err) {
        outcome = { ok: false, latencyMs: 0, error: (err as Error).message };
      }
      // Stopping or lost: the job goes back to the queue and this attempt is made again.
      if (context.signal.aborted) return;
      this.#observeLatency(target, outcome.latencyMs);
      await this.#record(task, attempt, startedAt, outcome, context);
    } finally {
      this.#limiter.release(target);
    }
  }

  async #record(task: TaskRecord, attempt: number, startedAt: number, outcome: DeliveryOutcome, context: JobContext): Promise<void> {
    const now = this.#now();
    const answer = outcome.statusCode !== undefined ? `HTTP ${outcome.statusCode}` : 'no answer';
    const retry = !outcome.ok && attempt < this.#settings.maxAttempts;
    const runAt = now + this.#backoffMs(attempt);
    const recorded = await this.#db.transaction().execute(async (trx) => {
      let nextJob: number | undefined;
      if (retry) {
        const next: DeliverPayload = { task: task.id, attempt: attempt + 1 };
        nextJob = await this.#queue.enqueue({ kind: DELIVER_JOB, payload: next, runAt, priority: 1, maxAttempts: JOB_ATTEMPTS }, trx);
      }
      const status = outcome.ok ? 'Success' : retry ? 'Pending' : 'Error';
      const message = outcome.ok
        ? ''
        : retry
          ? `attempt ${attempt} of ${this.#settings.maxAttempts} failed (${outcome.error ?? answer}); next at ${new Date(runAt).toISOString()}`
          : `gave up after ${attempt} attempt${attempt === 1 ? '' : 's'}: ${outcome.error ?? answer}`;
      const ok = await this.#store.finishAttempt(
        trx,
        { taskId: task.id, attempt, startedAt, latencyMs: outcome.latencyMs, statusCode: outcome.statusCode ?? null, error: outcome.ok ? null : (outcome.error ?? answer) },
        { status, message, jobId: nextJob, now },
      );
      if (!ok) throw new AttemptTakenOver();
      if (!retry) await this.#store.settleExecution(trx, task.executionId, now);
      return true;
    }).catch((err: unknown) => {
      if (err instanceof AttemptTakenOver) return false;
      throw err;
    });
    if (!recorded) return context.log(`attempt ${attempt} was taken over by another worker`);
    context.log(`attempt ${attempt}: POST ${task.address} → ${answer} in ${outcome.latencyMs} ms${outcome.ok ? '' : ` (${outcome.error ?? answer})`}`, outcome.ok ? 'info' : 'warn');
    if (retry) this.#wakeAt(runAt);
  }

  /** Puts a delivery to a busy target back for about as long as the target takes, longer the more wait. */
  async #defer(task: TaskRecord, attempt: number, target: string, context: JobContext): Promise<void> {
    const stats = this.#targets.get(target) ?? { latencyMs: 1000, deferred: 0 };
    const base = Math.min(MAX_DEFER_MS, Math.max(MIN_DEFER_MS, stats.latencyMs * (1 + stats.deferred / this.#settings.perTargetConcurrency)));
    const runAt = this.#now() + Math.round(base / 2 + (this.#random() * base) / 2);
    const next: DeliverPayload = { task: task.id, attempt, deferred: true };
    const deferred = await this.#db
      .transaction()
      .execute(async (trx) => {
        const jobId = await this.#queue.enqueue({ kind: DELIVER_JOB, payload: next, runAt, priority: 1, maxAttempts: JOB_ATTEMPTS }, trx);
        const message = `waiting: ${this.#limiter.inFlight(target)} deliveries to ${target} in flight`;
        if (!(await this.#store.deferTask(trx, task.id, attempt, context.job.id, jobId, message, this.#now()))) throw new AttemptTakenOver();
        return true;
      })
      .catch((err: unknown) => {
        if (err instanceof AttemptTakenOver) return false;
        throw err;
      });
    if (!deferred) return;
    this.#targets.set(target, { ...stats, deferred: stats.deferred + 1 });
    context.log(`${target} is busy; attempt ${attempt} put back until ${new Date(runAt).toISOString()}`);
    this.#wakeAt(runAt);
  }

  #undefer(address: string | undefined): void {
    if (address === undefined) return;
    const key = TargetLimiter.keyOf(address);
    const stats = this.#targets.get(key);
    if (stats) this.#targets.set(key, { ...stats, deferred: Math.max(0, stats.deferred - 1) });
  }

  #observeLatency(target: string, latencyMs: number): void {
    const stats = this.#targets.get(target);
    if (this.#targets.size >= 10_000 && !stats) this.#targets.clear();
    this.#targets.set(target, { latencyMs: stats ? Math.round(stats.latencyMs * 0.7 + latencyMs * 0.3) : latencyMs, deferred: stats?.deferred ?? 0 });
  }

  /** Exponential, capped, jittered in [½, 1]. */
  #backoffMs(attempt: number): number {
    const full = Math.min(MAX_BACKOFF_MS, this.#settings.retryBackoffMs * 2 ** Math.max(0, attempt - 1));
    return Math.round(full / 2 + (this.#random() * full) / 2);
  }

  /** Wakes this node's delivery workers when a delayed job falls due (rather than at the next poll). */
  #wakeAt(runAt: number): void {
    const timer = setTimeout(
      () => {
        this.#timers.delete(timer);
        this.#queue.notifyEnqueued(DELIVER_JOB);
      },
      Math.max(0, runAt - this.#now()) + 5,
    );
    timer.unref();
    this.#timers.add(timer);
  }

  /** Stops the wake-up timers (the workers stop on their own). */
  stop(): void {
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
  }
}

class AttemptTakenOver extends Error {}
