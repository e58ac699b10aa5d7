/**
 * Cluster-wide invalidation of what a node caches in memory. Each cache has a row in
 * cache_generations; a node that changes the cached state bumps the row's generation, and every
 * node reads the generations every `pollMs` and calls the cache's `onChange` when one moved since
 * it last looked. With one node this only costs the poll; with several, a password change or a
 * deleted robot on one node ends their cached logins on the others within one poll, instead of
 * when each cache entry expires.
 *
 * The poll is this node's own cache being kept honest, not shared periodic work, so it is a
 * timer rather than a scheduled job (as the audit recorder's and the pull-time recorder's flushes).
 */
import type { Kysely } from 'kysely';
import type { Database } from '../db/schema.ts';

export type CacheName = 'credentials';

export interface CacheGenerationsOptions {
  readonly db: Kysely<Database>;
  readonly pollMs?: number;
  /** Told when a bump or a poll fails (the next poll tries again). */
  readonly onError?: (error: unknown) => void;
}

export class CacheGenerations {
  readonly #db: Kysely<Database>;
  readonly #pollMs: number;
  readonly #onError: (error: unknown) => void;
  readonly #seen = new Map<CacheName, number>();
  readonly #listeners = new Map<CacheName, Array<() => void>>();
  #timer: NodeJS.Timeout | undefined;
  #polling: Promise<void> | undefined;

  constructor(options: CacheGenerationsOptions) {
    this.#db = options.db;
    this.#pollMs = options.pollMs ?? 1000;
    this.#onError = options.onError ?? (() => {});
  }

  /** Calls `onChange` whenever another node (or this one) bumped `name`. */
  watch(name: CacheName, onChange: () => void): void {
    const listeners = this.#listeners.get(name) ?? [];
    listeners.push(onChange);
    this.#listeners.set(name, listeners);
  }

  /** Records that `name`'s cached state changed; other nodes drop their caches at their next poll. */
  async bump(name: CacheName): Promise<void> {
    await this.#db
      .updateTable('cache_generations')
      .set((eb) => ({ generation: eb('generation', '+', 1) }))
      .where('name', '=', name)
      .execute();
  }

  /** Reads the generations once and tells the watchers of those that moved. The first read only remembers them. */
  poll(): Promise<void> {
    this.#polling ??= (async () => {
      try {
        const rows = await this.#db.selectFrom('cache_generations').select(['name', 'generation']).execute();
        for (const row of rows) {
          const name = row.name as CacheName;
          const generation = Number(row.generation);
          const seen = this.#seen.get(name);
          this.#seen.set(name, generation);
          if (seen !== undefined && seen !== generation) for (const listener of this.#listeners.get(name) ?? []) listener();
        }
      } finally {
        this.#polling = undefined;
      }
    })();
    return this.#polling;
  }

  async start(): Promise<void> {
    if (this.#timer !== undefined) return;
    await this.poll();
    this.#timer = setInterval(() => void this.poll().catch(this.#onError), this.#pollMs);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }
}
