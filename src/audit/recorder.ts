/**
 * Records domain events in the audit log without slowing the requests that cause them: a
 * subscriber turns each event into an entry and pushes it onto an in-memory buffer (no I/O, no
 * await), and a timer writes the buffer in batches, one transaction per batch, every
 * `flushIntervalMs` or as soon as `batchEntries` are waiting. When the database is down the
 * buffer is kept and written again with backoff; past `maxBuffered` entries, new ones are dropped
 * and counted (metric berth_audit_dropped_total, and a warning in the log). stop() writes what is
 * left, so a graceful shutdown loses nothing.
 *
 * The writer is normally a worker thread (writer.ts), which writes on another core when the
 * machine has one. A server kept busy long enough can starve it; rather than let the
 * backlog reach the bound and drop entries, batches then go to `urgentWriter` (the request thread
 * itself) while more than `urgentAbove` entries wait, or once a batch's first entry has waited
 * `urgentAfterMs` (a busy server with few pulls would otherwise keep entries out of the log for long).
 *
 * The timer is this node's memory being written out, not shared periodic work, so it is a timer
 * rather than a scheduled job (as the pull-time recorder of retention).
 */
import type { DomainEvent, EventBus } from '../platform/events/bus.ts';
import { BatchEncoder, decodeBatch, type EncodedBatch, encodeBatch } from './batch.ts';
import { type AuditEntry, type AuditRecord, recordOf } from './entry.ts';
import type { AuditWriter } from './writer.ts';

export interface RecorderLogger {
  warn(object: object, message: string): void;
  error(object: object, message: string): void;
}

export interface RecorderCounters {
  /** Entries written. */
  written(count: number): void;
  /** Entries written by the urgent writer (the backlog was above urgentAbove). */
  writtenUrgently?(count: number): void;
  /** Entries dropped because the buffer was full (or could not be written at all). */
  dropped(count: number, why: 'buffer-full' | 'unwritable'): void;
}

export interface AuditRecorderOptions {
  /** Where batches are written (the store on this thread, or a writer thread). */
  readonly writer: AuditWriter;
  /** Where batches are written while more than `urgentAbove` entries wait (none: always `writer`). */
  readonly urgentWriter?: AuditWriter;
  readonly urgentAbove?: number;
  /** ...or while the batch's first entry has waited longer than this (a starved writer must not hold entries back for long at a low rate either). */
  readonly urgentAfterMs?: number;
  readonly flushIntervalMs: number;
  readonly batchEntries: number;
  /** Most entries one batch (one transaction) holds; more waiting are written as several, one after the other. */
  readonly transactionEntries?: number;
  readonly maxBuffered: number;
  /** Pulls are the high-rate events; Harbor lets them be left out (pull_audit_log_disable). */
  readonly recordPulls: boolean;
  readonly log?: RecorderLogger;
  readonly counters?: RecorderCounters;
  /** Told about every entry once it is written (forwarding). */
  readonly onWritten?: (entries: readonly AuditEntry[]) => void;
  /** Longest wait between two tries while the database fails. */
  readonly maxBackoffMs?: number;
}

export class AuditRecorder {
  readonly #writer: AuditWriter;
  readonly #options: AuditRecorderOptions;
  /** Entries not yet handed to the writer, as bytes off the JavaScript heap (see batch.ts). */
  #encoder: BatchEncoder;
  /** Sealed batches waiting, in order (a batch that failed goes back to the front). */
  #queue: EncodedBatch[] = [];
  #queued = 0;
  /** Entries of the batch being written. */
  #inFlight = 0;
  #timer: NodeJS.Timeout | undefined;
  #flushing: Promise<void> | undefined;
  #failures = 0;
  #retryAt = 0;
  #droppedSinceWarning = 0;
  #lastDropWarning = 0;
  #unsubscribe: Array<() => void> = [];
  #stopped = false;

  constructor(options: AuditRecorderOptions) {
    this.#writer = options.writer;
    this.#options = options;
    this.#encoder = new BatchEncoder(options.transactionEntries);
  }

  /** Subscribes to the events the audit log keeps. */
  subscribe(events: EventBus): void {
    const handler = (event: DomainEvent) => this.recordEvent(event);
    for (const type of ['registry.operation', 'api.operation', 'login', 'quota.warning', 'quota.exceeded', 'job.finished'] as const) {
      this.#unsubscribe.push(events.on(type, handler));
    }
  }

  /** The subscriber: cheap and synchronous. */
  recordEvent(event: DomainEvent): void {
    if (event.type === 'registry.operation' && event.operation === 'pull' && !this.#options.recordPulls) return;
    const record = recordOf(event);
    if (record !== undefined) this.record(record);
  }

  record(record: AuditRecord): void {
    if (this.pending >= this.#options.maxBuffered) {
      this.#drop(1, 'buffer-full');
      return;
    }
    this.#encoder.push(record);
    if (this.#encoder.count >= this.#options.batchEntries && this.#flushing === undefined && Date.now() >= this.#retryAt) this.#flushSoon();
  }

  /** Entries waiting to be written. */
  get pending(): number {
    return this.#encoder.count + this.#queued + this.#inFlight;
  }

  start(): void {
    if (this.#timer !== undefined || this.#stopped) return;
    this.#timer = setInterval(() => {
      if (this.pending > 0 && this.#flushing === undefined && Date.now() >= this.#retryAt) this.#flushSoon();
    }, this.#options.flushIntervalMs);
    this.#timer.unref();
  }

  #flushSoon(): void {
    void this.flush().catch(() => {
      // Logged and counted in #write; the entries stay buffered for the next try.
    });
  }

  /** Writes everything buffered now, batch after batch; one flush at a time. Throws if a batch cannot be written. */
  async flush(): Promise<void> {
    for (;;) {
      // Checked and set in one synchronous step: two callers never drain at once.
      if (this.#flushing !== undefined) {
        await this.#flushing.catch(() => {});
        continue;
      }
      if (this.pending === 0) return;
      this.#flushing = this.#drain().finally(() => {
        this.#flushing = undefined;
      });
      return this.#flushing;
    }
  }

  async #drain(): Promise<void> {
    // What was recorded when the flush began is written now; what comes in while it runs waits for
    // the timer unless it fills a batch. Sealing whatever arrived after every write made batches of
    // a few entries once a writer thread answered within milliseconds: a message, a transaction
    // and a commit per handful of pulls, several times the cost of a full batch.
    let sealAll = true;
    for (;;) {
      if (sealAll || this.#encoder.count >= this.#options.batchEntries) {
        for (const sealed of this.#encoder.seal()) {
          this.#queue.push(sealed);
          this.#queued += sealed.count;
        }
      }
      sealAll = false;
      const batch = this.#queue.shift();
      if (batch === undefined) return;
      this.#queued -= batch.count;
      const urgent = this.#options.urgentWriter !== undefined && (this.pending + batch.count > (this.#options.urgentAbove ?? Number.POSITIVE_INFINITY) || Date.now() - (batch.firstAt ?? Date.now()) > (this.#options.urgentAfterMs ?? Number.POSITIVE_INFINITY));
      this.#inFlight = batch.count;
      try {
        const written = await (urgent ? (this.#options.urgentWriter as AuditWriter) : this.#writer).append(batch);
        this.#failures = 0;
        this.#retryAt = 0;
        this.#options.counters?.written(written.count);
        if (urgent) this.#options.counters?.writtenUrgently?.(written.count);
        if (written.entries) this.#options.onWritten?.(written.entries);
        // The urgent writer is the request thread: let the requests waiting run between two of its batches.
        if (urgent) await new Promise((resolve) => setImmediate(resolve));
      } catch (err) {
        if (isDataError(err) && batch.count > 1) {
          // One bad entry must not hold back the others: write them one by one, dropping only what the database refuses.
          await this.#writeOneByOne(decodeBatch(batch));
          continue;
        }
        if (isDataError(err)) {
          this.#drop(1, 'unwritable');
          this.#options.log?.error({ component: 'audit', err }, 'the database refused an audit entry; it is dropped');
          continue;
        }
        // Put the batch back in front, in order, and try again later.
        this.#queue.unshift(batch);
        this.#queued += batch.count;
        this.#failures++;
        const backoff = Math.min(this.#options.maxBackoffMs ?? 5000, this.#options.flushIntervalMs * 2 ** Math.min(this.#failures, 10));
        this.#retryAt = Date.now() + backoff;
        this.#options.log?.warn({ component: 'audit', err, pending: this.pending, retryInMs: backoff }, 'could not write audit entries; they stay buffered and are retried');
        throw err;
      } finally {
        this.#inFlight = 0;
      }
    }
  }

  async #writeOneByOne(batch: readonly AuditRecord[]): Promise<void> {
    for (const record of batch) {
      try {
        const written = await this.#writer.append(encodeBatch([record]));
        this.#options.counters?.written(written.count);
        if (written.entries) this.#options.onWritten?.(written.entries);
      } catch (err) {
        if (!isDataError(err)) throw err;
        this.#drop(1, 'unwritable');
        this.#options.log?.error({ component: 'audit', err, operation: record.operation, resource: record.resource }, 'the database refused an audit entry; it is dropped');
      }
    }
  }

  #drop(count: number, why: 'buffer-full' | 'unwritable'): void {
    this.#options.counters?.dropped(count, why);
    if (why !== 'buffer-full') return;
    this.#droppedSinceWarning += count;
    const now = Date.now();
    if (now - this.#lastDropWarning >= 10_000) {
      this.#options.log?.error(
        { component: 'audit', dropped: this.#droppedSinceWarning, buffered: this.pending },
        'the audit buffer is full (the database has not taken entries for a while); new entries are dropped',
      );
      this.#lastDropWarning = now;
      this.#droppedSinceWarning = 0;
    }
  }

  /**
   * Stops recording and writes what is buffered, trying again until `timeoutMs` has passed (the
   * database may be restarting). Entries still unwritten then are counted as dropped.
   */
  async stop(timeoutMs = 10_000): Promise<void> {
    this.#stopped = true;
    for (const off of this.#unsubscribe) off();
    this.#unsubscribe = [];
    clearInterval(this.#timer);
    this.#timer = undefined;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        await this.flush();
        return;
      } catch (err) {
        if (Date.now() >= deadline) {
          const lost = this.pending;
          this.#encoder.seal();
          this.#queue = [];
          this.#queued = 0;
          this.#drop(lost, 'unwritable');
          this.#options.log?.error({ component: 'audit', err, lost }, 'could not write the last audit entries before stopping; they are lost');
          return;
        }
        await new Promise((resolve) => setTimeout(resolve, Math.min(500, Math.max(10, deadline - Date.now()))));
      }
    }
  }
}

/**
 * Whether the database refused the data itself (PostgreSQL classes 22 data exception and 23
 * integrity violation, SQLite constraint errors), as opposed to being unreachable: retrying the
 * same entries would fail forever.
 */
function isDataError(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown } | null;
  if (typeof e?.code === 'string' && /^(22|23)[0-9A-Z]{3}$/.test(e.code)) return true;
  return typeof e?.message === 'string' && /constraint failed|datatype mismatch|too big/i.test(e.message);
}
