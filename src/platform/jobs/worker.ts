import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { type ClaimedJob, errorText, type Job, type JobLogLevel, type JobQueue, type JobStatus } from './queue.ts';

/** What a handler gets besides its payload. */
export interface JobContext {
  readonly job: Job;
  /**
   * Fires when the job is cancelled (seen at a heartbeat), when the lease was lost to another
   * worker, or when the pool stops and gives the job back. Handlers pass it on to what they await.
   */
  readonly signal: AbortSignal;
  /** Appends a line to the job's log (kept in bounded size); written in order, in the background. */
  log(message: string, level?: JobLogLevel): void;
}

/** A job handler; each kind knows its own payload shape. */
export type JobHandler<P = any> = (payload: P, context: JobContext) => Promise<unknown> | unknown;

/** The part of a pino logger the pool uses. */
export interface WorkerLogger {
  debug(object: object, message: string): void;
  info(object: object, message: string): void;
  warn?(object: object, message: string): void;
  error(object: object, message: string): void;
}

export interface WorkerPoolOptions {
  readonly queue: JobQueue;
  /** Handlers running at once on this pool; 0 means the pool never claims. */
  readonly concurrency: number;
  /** How often to look for due jobs when nothing woke the pool up. */
  readonly pollIntervalMs: number;
  readonly leaseMs: number;
  /** How often a running job's lease is renewed (and cancellation checked); leaseMs / 3 by default. */
  readonly heartbeatMs?: number;
  /** How long stop() waits for running handlers before giving their jobs back. */
  readonly stopTimeoutMs: number;
  readonly logger?: WorkerLogger;
  /** Told when a job this pool ran reached its end (succeeded, failed for good, or cancelled); not for retries. */
  readonly onFinished?: (job: FinishedJob) => void;
}

export interface FinishedJob {
  readonly id: number;
  readonly kind: string;
  readonly status: JobStatus;
  readonly error?: string;
}

/** A job this pool runs now, as the job-service API shows it (read-only). */
export interface RunningJobInfo {
  readonly id: number;
  readonly kind: string;
  readonly attempt: number;
  /** Epoch ms of the claim. */
  readonly startedAt: number;
  /** Epoch ms of the last lease renewal. */
  readonly checkedInAt: number;
}

/** Why a handler's signal fired. */
export class JobAbortedError extends Error {
  readonly reason: 'cancelled' | 'lease-lost' | 'stopping';
  constructor(reason: 'cancelled' | 'lease-lost' | 'stopping') {
    super(reason === 'cancelled' ? 'the job was cancelled' : reason === 'lease-lost' ? 'the lease was lost to another worker' : 'the worker pool is stopping');
    this.name = 'JobAbortedError';
    this.reason = reason;
  }
}

interface Running {
  readonly job: ClaimedJob;
  readonly controller: AbortController;
  /** When this pool last renewed the lease (the claim, then each heartbeat that found the job still ours). */
  checkedInAt: number;
  done: Promise<void>;
  heartbeat: NodeJS.Timeout | undefined;
  /** Set when stop() gave the job back: the handler's outcome is then ignored. */
  released: boolean;
}

const silent: WorkerLogger = { debug() {}, info() {}, error() {} };

/** How often a pool tells the other nodes it is alive. */
export const POOL_BEAT_MS = 10_000;
/** A pool not heard of for this long is taken for gone (it stopped without leaving, or its node died). */
export const POOL_STALE_MS = 3 * POOL_BEAT_MS;

/**
 * Runs job handlers on this node: claims due jobs of the registered kinds up to a concurrency
 * limit, polls at an interval and wakes up at once when this process enqueues, renews leases
 * while handlers run, and stops gracefully.
 */
export class WorkerPool {
  readonly #queue: JobQueue;
  readonly #options: WorkerPoolOptions;
  readonly #heartbeatMs: number;
  readonly #logger: WorkerLogger;
  readonly #onFinished: ((job: FinishedJob) => void) | undefined;
  readonly #handlers = new Map<string, JobHandler>();
  readonly #running = new Map<number, Running>();
  readonly #beating = new WeakSet<Running>();
  #workerId = '';
  #startedAt: number | undefined;
  #started = false;
  #stopping = false;
  #loop: Promise<void> | undefined;
  #wakeRequested = false;
  #wake: (() => void) | undefined;
  #unsubscribe: (() => void) | undefined;
  #poolBeat: NodeJS.Timeout | undefined;
  /** Beats run one after the other; stop() waits for the last before removing the pool, so none re-adds it. */
  #beats: Promise<void> = Promise.resolve();

  constructor(options: WorkerPoolOptions) {
    this.#queue = options.queue;
    this.#options = options;
    this.#heartbeatMs = options.heartbeatMs ?? Math.max(10, Math.floor(options.leaseMs / 3));
    this.#logger = options.logger ?? silent;
    this.#onFinished = options.onFinished;
  }

  /** This pool's lease owner name while started (fresh at every start). */
  get workerId(): string {
    return this.#workerId;
  }

  /** The ids of the jobs this pool runs now. */
  get runningJobIds(): number[] {
    return [...this.#running.keys()];
  }

  /** Handlers this pool runs at once at most. */
  get concurrency(): number {
    return this.#options.concurrency;
  }

  /** Epoch ms of the last start(); undefined while stopped. */
  get startedAt(): number | undefined {
    return this.#started ? this.#startedAt : undefined;
  }

  /** The jobs this pool runs now, oldest claim first. */
  running(): RunningJobInfo[] {
    return [...this.#running.values()]
      .filter((r) => !r.released)
      .map((r) => ({ id: r.job.id, kind: r.job.kind, attempt: r.job.lease.attempt, startedAt: r.job.startedAt ?? r.checkedInAt, checkedInAt: r.checkedInAt }))
      .sort((a, b) => a.startedAt - b.startedAt || a.id - b.id);
  }

  register<P>(kind: string, handler: JobHandler<P>): void {
    if (this.#handlers.has(kind)) throw new Error(`a handler for job kind ${kind} is already registered`);
    this.#handlers.set(kind, handler as JobHandler);
    this.#signal();
    // The other nodes list the kinds a pool runs.
    if (this.#started) void this.#beatPool();
  }

  get kinds(): string[] {
    return [...this.#handlers.keys()];
  }

  /** Pauses a kind on every node (queued jobs wait; running ones go on). */
  pause(kind: string): Promise<void> {
    return this.#queue.pauseKind(kind);
  }

  resume(kind: string): Promise<void> {
    return this.#queue.resumeKind(kind);
  }

  start(): void {
    if (this.#started) return;
    this.#started = true;
    this.#startedAt = Date.now();
    this.#stopping = false;
    this.#workerId = `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
    this.#unsubscribe = this.#queue.subscribe({
      enqueued: (kind) => {
        if (this.#handlers.has(kind)) this.#signal();
      },
      cancelRequested: (id) => {
        const running = this.#running.get(id);
        if (running) void this.#beat(running);
      },
    });
    this.#loop = this.#claimLoop();
    // Announced to the other nodes now and every POOL_BEAT_MS (GET /jobservice/pools on any node lists it).
    void this.#beatPool();
    this.#poolBeat = setInterval(() => void this.#beatPool(), POOL_BEAT_MS);
    this.#poolBeat.unref();
  }

  #beatPool(): Promise<void> {
    this.#beats = this.#beats.then(async () => {
      if (!this.#started || this.#stopping) return;
      try {
        await this.#queue.beatPool({ id: this.#workerId, pid: process.pid, host: hostname(), startedAt: this.#startedAt ?? Date.now(), concurrency: this.#options.concurrency, kinds: this.kinds });
      } catch (err) {
        this.#logger.warn?.({ err }, 'could not announce the worker pool to the other nodes');
      }
    });
    return this.#beats;
  }

  /**
   * Stops claiming, waits up to `timeoutMs` for the running handlers, then aborts the ones still
   * running and gives their jobs back (queued, due now) so another worker takes them at once.
   */
  async stop(timeoutMs = this.#options.stopTimeoutMs): Promise<void> {
    if (!this.#started) return;
    this.#stopping = true;
    this.#unsubscribe?.();
    this.#signal();
    await this.#loop;
    const pending = [...this.#running.values()];
    if (pending.length > 0) {
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)));
      await Promise.race([Promise.allSettled(pending.map((r) => r.done)), deadline]);
      clearTimeout(timer);
    }
    for (const running of this.#running.values()) {
      running.released = true;
      clearInterval(running.heartbeat);
      running.controller.abort(new JobAbortedError('stopping'));
      try {
        const released = await this.#queue.release(running.job.lease);
        this.#logger.info({ job: running.job.id, kind: running.job.kind, released }, 'job given back at stop');
      } catch (err) {
        this.#logger.error({ job: running.job.id, err }, 'could not give the job back');
      }
    }
    this.#running.clear();
    clearInterval(this.#poolBeat);
    this.#poolBeat = undefined;
    await this.#beats;
    try {
      await this.#queue.removePool(this.#workerId, Date.now() - POOL_STALE_MS);
    } catch (err) {
      this.#logger.warn?.({ err }, 'could not remove the worker pool from the list of live pools');
    }
    this.#started = false;
  }

  #signal(): void {
    this.#wakeRequested = true;
    this.#wake?.();
  }

  async #sleep(): Promise<void> {
    if (this.#wakeRequested) {
      this.#wakeRequested = false;
      return;
    }
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, this.#options.pollIntervalMs);
      timer.unref();
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.#wake = done;
    });
    this.#wake = undefined;
    this.#wakeRequested = false;
  }

  async #claimLoop(): Promise<void> {
    while (!this.#stopping) {
      let claimedOne = false;
      const kinds = this.kinds;
      if (this.#running.size < this.#options.concurrency && kinds.length > 0) {
        try {
          const job = await this.#queue.claim(this.#workerId, kinds, this.#options.leaseMs);
          if (job && this.#stopping) {
            await this.#queue.release(job.lease);
          } else if (job) {
            claimedOne = true;
            this.#run(job);
          }
        } catch (err) {
          this.#logger.error({ err }, 'claiming a job failed');
        }
      }
      if (!claimedOne) await this.#sleep();
    }
  }

  #run(job: ClaimedJob): void {
    const controller = new AbortController();
    const handler = this.#handlers.get(job.kind) as JobHandler;
    let logChain: Promise<void> = Promise.resolve();
    const log = (message: string, level: JobLogLevel = 'info') => {
      logChain = logChain.then(
        () => this.#queue.appendLog(job.id, message, level),
      ).catch((err: unknown) => this.#logger.error({ job: job.id, err }, 'could not write the job log'));
    };
    const entry: Running = { job, controller, checkedInAt: Date.now(), done: Promise.resolve(), heartbeat: undefined, released: false };
    this.#running.set(job.id, entry);
    this.#logger.debug({ job: job.id, kind: job.kind, attempt: job.attempts }, 'job started');
    const execute = async () => {
      let outcome: JobStatus | undefined;
      let failure: string | undefined;
      try {
        await Promise.resolve().then(() => handler(job.payload, { job, signal: controller.signal, log }));
        await logChain;
        if (entry.released) return;
        outcome = await this.#queue.complete(job.lease);
      } catch (err) {
        if (entry.released) return;
        failure = errorText(err);
        log(`attempt ${job.attempts} failed: ${failure}`, 'error');
        await logChain;
        outcome = await this.#queue.fail(job.lease, err);
        this.#logger.info({ job: job.id, kind: job.kind, attempt: job.attempts, err, outcome }, 'job attempt failed');
      }
      this.#logger.debug({ job: job.id, kind: job.kind, outcome: outcome ?? 'lease lost' }, 'job finished');
      if (outcome === 'succeeded' || outcome === 'failed' || outcome === 'cancelled') {
        try {
          this.#onFinished?.({ id: job.id, kind: job.kind, status: outcome, ...(failure !== undefined ? { error: failure } : {}) });
        } catch (err) {
          this.#logger.error({ job: job.id, err }, 'a job-finished listener failed');
        }
      }
    };
    entry.heartbeat = setInterval(() => void this.#beat(entry), this.#heartbeatMs);
    entry.heartbeat.unref();
    entry.done = execute()
      .catch((err: unknown) => this.#logger.error({ job: job.id, err }, 'could not record the job outcome'))
      .finally(() => {
        clearInterval(entry.heartbeat);
        if (this.#running.get(job.id) === entry) this.#running.delete(job.id);
        this.#signal();
      });
  }

  /** Renews the lease; aborts the handler when the job was cancelled or the lease was lost. */
  async #beat(entry: Running): Promise<void> {
    if (this.#beating.has(entry) || entry.released) return;
    this.#beating.add(entry);
    try {
      const result = await this.#queue.heartbeat(entry.job.lease, this.#options.leaseMs);
      if (result !== 'lost') entry.checkedInAt = Date.now();
      if (result === 'cancel' && !entry.controller.signal.aborted) entry.controller.abort(new JobAbortedError('cancelled'));
      if (result === 'lost' && !entry.controller.signal.aborted && !entry.released) {
        this.#logger.info({ job: entry.job.id, kind: entry.job.kind }, 'lease lost; aborting the handler');
        entry.controller.abort(new JobAbortedError('lease-lost'));
      }
    } catch (err) {
      this.#logger.error({ job: entry.job.id, err }, 'heartbeat failed');
    } finally {
      this.#beating.delete(entry);
    }
  }
}
