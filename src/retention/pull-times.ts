/**
 * Last pull times of manifests, for the "most recently pulled" retention templates and the
 * artifact API's pull_time. A pull must not wait for this: `record()` only writes the time into an
 * in-memory map (repository → digest → time; no allocation for a manifest pulled again), and a
 * timer flushes the map every few seconds in one UPDATE per batch of a few hundred manifests.
 * A flush never moves a pull time backwards, so nodes flushing in any order agree.
 *
 * The flush timer is this node's own memory being written out, not shared periodic work, so it is
 * a timer rather than a scheduled job. stop() flushes what is left. Pulls recorded in the seconds
 * before a crash are lost, which only makes those artifacts look pulled a little earlier.
 */
import { type Kysely, sql } from 'kysely';
import type { Database } from '../platform/db/schema.ts';

export interface PullRecorderOptions {
  readonly db: Kysely<Database>;
  readonly now?: () => number;
  /** How often the pending pulls are written; 5 s by default. */
  readonly flushIntervalMs?: number;
  /** A flush starts early when this many manifests are pending. */
  readonly maxPending?: number;
  /** Told when a flush fails (the pulls stay pending and are tried again). */
  readonly onError?: (error: unknown) => void;
}

/** Manifests per UPDATE statement (3 parameters each). */
const BATCH = 300;

export class PullRecorder {
  readonly #db: Kysely<Database>;
  readonly #now: () => number;
  readonly #flushIntervalMs: number;
  readonly #maxPending: number;
  readonly #onError: (error: unknown) => void;
  #pending = new Map<string, Map<string, number>>();
  #count = 0;
  #timer: NodeJS.Timeout | undefined;
  #flushing: Promise<number> | undefined;

  constructor(options: PullRecorderOptions) {
    this.#db = options.db;
    this.#now = options.now ?? Date.now;
    this.#flushIntervalMs = options.flushIntervalMs ?? 5000;
    this.#maxPending = options.maxPending ?? 10_000;
    this.#onError = options.onError ?? (() => {});
  }

  /** Notes that `digest` of `repository` was pulled now. Synchronous and cheap: the /v2 GET path calls it. */
  readonly record = (repository: string, digest: string): void => {
    let digests = this.#pending.get(repository);
    if (digests === undefined) {
      digests = new Map();
      this.#pending.set(repository, digests);
    }
    const size = digests.size;
    digests.set(digest, this.#now());
    if (digests.size !== size && ++this.#count >= this.#maxPending && this.#flushing === undefined) void this.flush().catch(this.#onError);
  };

  /** How many manifests wait to be written. */
  get pending(): number {
    return this.#count;
  }

  /** Starts the periodic flush (an unref'd timer: it never keeps the process alive). */
  start(): void {
    if (this.#timer !== undefined) return;
    this.#timer = setInterval(() => {
      if (this.#count > 0 && this.#flushing === undefined) void this.flush().catch(this.#onError);
    }, this.#flushIntervalMs);
    this.#timer.unref();
  }

  /** Stops the timer and writes what is pending. */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#flushing?.catch(() => {});
    await this.flush();
  }

  /** Writes the pending pull times now; returns how many manifests were written. One flush at a time. */
  async flush(): Promise<number> {
    while (this.#flushing !== undefined) await this.#flushing.catch(() => {});
    if (this.#count === 0) return 0;
    const batch = this.#pending;
    this.#pending = new Map();
    this.#count = 0;
    this.#flushing = this.#write(batch).finally(() => {
      this.#flushing = undefined;
    });
    return this.#flushing;
  }

  async #write(batch: Map<string, Map<string, number>>): Promise<number> {
    const rows: Array<[string, string, number]> = [];
    for (const [repository, digests] of batch) for (const [digest, at] of digests) rows.push([repository, digest, at]);
    let written = 0;
    try {
      for (; written < rows.length; written += BATCH) await this.#update(rows.slice(written, written + BATCH));
    } catch (err) {
      // Put back what was not written (newer pulls recorded meanwhile win).
      for (const [repository, digest, at] of rows.slice(written)) {
        let digests = this.#pending.get(repository);
        if (digests === undefined) {
          digests = new Map();
          this.#pending.set(repository, digests);
        }
        if (!digests.has(digest)) {
          digests.set(digest, at);
          this.#count++;
        }
      }
      throw err;
    }
    return rows.length;
  }

  /** One UPDATE … FROM (a derived table of the batch) on both databases; pull times only move forward. */
  async #update(rows: ReadonlyArray<[string, string, number]>): Promise<void> {
    const values = sql.join(
      rows.map(([repository, digest, at], i) =>
        i === 0 ? sql`select cast(${repository} as text) as name, cast(${digest} as text) as digest, cast(${at} as bigint) as at` : sql`select ${repository}, ${digest}, cast(${at} as bigint)`,
      ),
      sql` union all `,
    );
    await sql`
      update manifests set pulled_at = v.at
      from (${values}) as v, repositories as r
      where r.name = v.name and manifests.repository_id = r.id and manifests.digest = v.digest
        and (manifests.pulled_at is null or manifests.pulled_at < v.at)`.execute(this.#db);
  }
}
