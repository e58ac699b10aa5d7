/**
 * Garbage collection's queries. The collector deletes a blob in one transaction that locks the
 * blob's row (`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite's single writer otherwise),
 * re-checks with fresh statements that no manifest references it and that no link to it is newer
 * than the cutoff, then deletes its links, its quota ledger entries (giving each project back its
 * bytes), its row and its candidate entry, and moves its file into a trash bin before committing.
 * The registry's writers take the same row locks (src/registry/store.ts), so either they see the
 * collector's result or the collector sees theirs.
 */
import type { Kysely, Selectable } from 'kysely';
import { lockForUpdate, lockSkippingLocked, writeTransaction } from '../platform/db/dialect.ts';
import type { Database, GcRunTable } from '../platform/db/schema.ts';

/** A digest to examine; `version` is its candidate row's version, null when it has none (a full run). */
export interface Candidate {
  readonly digest: string;
  readonly version: number | null;
}

export interface SweptBlob {
  readonly digest: string;
  readonly size: number;
}

export interface SweepResult {
  /** Blobs deleted (their files are in the trash bin until the caller empties it). */
  readonly deleted: readonly SweptBlob[];
  /** Blobs kept because a link or the blob itself is newer than the cutoff (still candidates). */
  readonly recent: number;
  /** Blobs kept because a manifest references them. */
  readonly referenced: number;
  /** Blobs another transaction held (a push in flight): left for the next run. */
  readonly busy: number;
}

/** One edge from a manifest (repository_id, parent_digest) to a digest. */
export interface ReferenceRow {
  readonly repository_id: number;
  readonly parent_digest: string;
  readonly child_digest: string;
}

export interface UntaggedRow {
  readonly repository_id: number;
  readonly digest: string;
  readonly subject_digest: string | null;
}

export type GcRunRow = Selectable<GcRunTable>;

export interface GcCounters {
  readonly deletedArtifacts: number;
  readonly deletedBlobs: number;
  readonly freedBytes: number;
  readonly examinedBlobs: number;
}

const CHUNK = 500;
/** File operations in flight at once (libuv runs them on its thread pool). */
export const FILE_CONCURRENCY = 8;

/** Runs `fn` over `items`, at most `limit` at a time; rejects with the first failure once all settled. */
export async function forEachLimited<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<unknown>): Promise<void> {
  let next = 0;
  let failure: unknown;
  const worker = async () => {
    while (next < items.length) {
      const item = items[next++] as T;
      try {
        await fn(item);
      } catch (err) {
        failure ??= err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failure !== undefined) throw failure;
}

function chunks<T>(items: readonly T[], size = CHUNK): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

export class GcStore {
  readonly #db: Kysely<Database>;
  readonly #now: () => number;

  constructor(db: Kysely<Database>, now: () => number = Date.now) {
    this.#db = db;
    this.#now = now;
  }

  // ── what to examine ──────────────────────────────────────────────────────

  /** Candidates in digest order after `after`. */
  async candidatesAfter(after: string | undefined, limit: number): Promise<Candidate[]> {
    let query = this.#db.selectFrom('gc_candidates').select(['digest', 'version']).orderBy('digest').limit(limit);
    if (after !== undefined) query = query.where('digest', '>', after);
    return query.execute();
  }

  /** Every blob in digest order after `after` (a full run). */
  async blobsAfter(after: string | undefined, limit: number): Promise<Candidate[]> {
    let query = this.#db.selectFrom('blobs').select('digest').orderBy('digest').limit(limit);
    if (after !== undefined) query = query.where('digest', '>', after);
    return (await query.execute()).map((r) => ({ digest: r.digest, version: null }));
  }

  async candidateCount(): Promise<number> {
    const row = await this.#db
      .selectFrom('gc_candidates')
      .select((eb) => eb.fn.countAll<number | string>().as('n'))
      .executeTakeFirstOrThrow();
    return Number(row.n);
  }

  async blobCount(): Promise<number> {
    const row = await this.#db
      .selectFrom('blobs')
      .select((eb) => eb.fn.countAll<number | string>().as('n'))
      .executeTakeFirstOrThrow();
    return Number(row.n);
  }

  // ── the sweep ────────────────────────────────────────────────────────────

  /**
   * Examines a batch and deletes what is garbage, in one transaction (see the top of the file).
   * `moveToTrash` runs inside it, last, for each deleted blob; if it or the commit fails, the
   * caller puts back what was moved (the rows are still there).
   */
  async sweep(batch: readonly Candidate[], cutoff: number, moveToTrash: (digest: string) => Promise<void>): Promise<SweepResult> {
    const digests = batch.map((c) => c.digest).sort();
    return writeTransaction(this.#db, async (trx) => {
      const existing = new Set((await trx.selectFrom('blobs').select('digest').where('digest', 'in', digests).execute()).map((r) => r.digest));
      const locked = await lockSkippingLocked(
        trx,
        trx.selectFrom('blobs').select(['digest', 'size', 'created_at']).where('digest', 'in', digests).orderBy('digest'),
      ).execute();
      const examined = locked.map((r) => r.digest);
      const referenced = await this.#referenced(trx, examined);
      const recent = await this.#linkedSince(trx, examined, cutoff);
      for (const row of locked) if (row.created_at >= cutoff) recent.add(row.digest);
      const deleted = locked.filter((r) => !referenced.has(r.digest) && !recent.has(r.digest)).map((r) => ({ digest: r.digest, size: r.size }));
      const deletedSet = new Set(deleted.map((d) => d.digest));
      for (const part of chunks(deleted.map((d) => d.digest))) {
        await trx.deleteFrom('repository_blobs').where('digest', 'in', part).execute();
        await this.#releaseQuota(trx, part);
        await trx.deleteFrom('blobs').where('digest', 'in', part).execute();
      }
      // Settled candidates: gone, referenced (a later unreference notes them again) or deleted.
      const settled = batch.filter((c) => c.version !== null && (!existing.has(c.digest) || referenced.has(c.digest) || deletedSet.has(c.digest)));
      await this.#dropCandidates(trx, settled);
      // Last, after every statement: the files move only once nothing is left that could fail the transaction but the commit.
      await forEachLimited(deleted, FILE_CONCURRENCY, (blob) => moveToTrash(blob.digest));
      const lockedSet = new Set(examined);
      const busy = [...existing].filter((d) => !lockedSet.has(d)).length;
      return { deleted, recent: [...recent].filter((d) => !referenced.has(d)).length, referenced: referenced.size, busy };
    });
  }

  /**
   * Which of `digests` a manifest references. (A blob whose digest is also a manifest's, pushed
   * both ways, is not kept for that: the manifest lives in the database and is served from there.)
   */
  async #referenced(trx: Kysely<Database>, digests: readonly string[]): Promise<Set<string>> {
    const found = new Set<string>();
    for (const part of chunks(digests)) {
      for (const r of await trx.selectFrom('manifest_references').select('child_digest').distinct().where('child_digest', 'in', part).execute()) found.add(r.child_digest);
    }
    return found;
  }

  /** Which of `digests` some repository linked at or after `cutoff`. */
  async #linkedSince(trx: Kysely<Database>, digests: readonly string[], cutoff: number): Promise<Set<string>> {
    const found = new Set<string>();
    for (const part of chunks(digests)) {
      const rows = await trx.selectFrom('repository_blobs').select('digest').distinct().where('digest', 'in', part).where('created_at', '>=', cutoff).execute();
      for (const r of rows) found.add(r.digest);
    }
    return found;
  }

  /** Deletes the quota ledger's entries for deleted blobs and gives each project back their sizes. */
  async #releaseQuota(trx: Kysely<Database>, digests: readonly string[]): Promise<void> {
    const released = await trx.deleteFrom('project_blobs').where('digest', 'in', digests).returning(['project_id', 'size']).execute();
    const byProject = new Map<number, number>();
    for (const row of released) byProject.set(row.project_id, (byProject.get(row.project_id) ?? 0) + row.size);
    const now = this.#now();
    // In project order, so that concurrent transactions lock quota rows in one order.
    for (const [projectId, freed] of [...byProject].sort((a, b) => a[0] - b[0])) {
      await trx
        .updateTable('quotas')
        .set((eb) => ({ used: eb('used', '-', freed), updated_at: now }))
        .where('project_id', '=', projectId)
        .execute();
    }
  }

  /** Deletes candidate rows still at the version read (one mentioned again meanwhile stays). */
  async #dropCandidates(trx: Kysely<Database>, candidates: readonly Candidate[]): Promise<void> {
    for (const part of chunks(candidates, 200)) {
      await trx
        .deleteFrom('gc_candidates')
        .where((eb) => eb.or(part.map((c) => eb.and([eb('digest', '=', c.digest), eb('version', '=', c.version as number)]))))
        .execute();
    }
  }

  // ── dry runs ─────────────────────────────────────────────────────────────

  /** Blob rows (digest, size, created_at) of `digests`, without locks. */
  async blobRows(digests: readonly string[]): Promise<Array<{ digest: string; size: number; created_at: number }>> {
    const rows: Array<{ digest: string; size: number; created_at: number }> = [];
    for (const part of chunks(digests)) rows.push(...(await this.#db.selectFrom('blobs').select(['digest', 'size', 'created_at']).where('digest', 'in', part).execute()));
    return rows;
  }

  /** Every edge to one of `digests`. */
  async referencesTo(digests: readonly string[]): Promise<ReferenceRow[]> {
    const rows: ReferenceRow[] = [];
    for (const part of chunks(digests)) {
      rows.push(...(await this.#db.selectFrom('manifest_references').select(['repository_id', 'parent_digest', 'child_digest']).where('child_digest', 'in', part).execute()));
    }
    return rows;
  }

  /** Which of `digests` some repository linked at or after `cutoff`, without locks. */
  linkedSince(digests: readonly string[], cutoff: number): Promise<Set<string>> {
    return this.#linkedSince(this.#db, digests, cutoff);
  }

  // ── untagged artifacts ───────────────────────────────────────────────────

  /** Manifests without a tag created before `cutoff`. */
  untaggedManifests(cutoff: number): Promise<UntaggedRow[]> {
    return this.#db
      .selectFrom('manifests as m')
      .select(['m.repository_id', 'm.digest', 'm.subject_digest'])
      .where('m.created_at', '<', cutoff)
      .where((eb) => eb.not(eb.exists(eb.selectFrom('tags as t').select('t.name').whereRef('t.repository_id', '=', 'm.repository_id').whereRef('t.digest', '=', 'm.digest'))))
      .execute();
  }

  /** Index → child manifest edges. */
  manifestEdges(): Promise<ReferenceRow[]> {
    return this.#db.selectFrom('manifest_references').select(['repository_id', 'parent_digest', 'child_digest']).where('child_kind', '=', 'manifest').execute();
  }

  /** Manifests that some manifest of the same repository names as its subject. */
  subjectsWithReferrers(): Promise<Array<{ repository_id: number; digest: string }>> {
    return this.#db
      .selectFrom('manifests as s')
      .select(['s.repository_id', 's.digest'])
      .where((eb) =>
        eb.exists(eb.selectFrom('manifests as r').select('r.digest').whereRef('r.repository_id', '=', 's.repository_id').whereRef('r.subject_digest', '=', 's.digest')),
      )
      .execute();
  }

  /** Blob children of the given manifests (the blobs a dry run's deleted artifacts would free). */
  async blobChildren(manifests: readonly { repository_id: number; digest: string }[]): Promise<string[]> {
    const found = new Set<string>();
    const byRepository = new Map<number, string[]>();
    for (const m of manifests) byRepository.set(m.repository_id, [...(byRepository.get(m.repository_id) ?? []), m.digest]);
    for (const [repositoryId, digests] of byRepository) {
      for (const part of chunks(digests)) {
        const rows = await this.#db
          .selectFrom('manifest_references')
          .select('child_digest')
          .where('repository_id', '=', repositoryId)
          .where('parent_digest', 'in', part)
          .where('child_kind', '=', 'blob')
          .execute();
        for (const r of rows) found.add(r.child_digest);
      }
    }
    return [...found];
  }

  // ── stray files and the trash ────────────────────────────────────────────

  /** Which of `digests` have a blob row. */
  async existingBlobs(digests: readonly string[]): Promise<Set<string>> {
    const found = new Set<string>();
    for (const part of chunks(digests)) for (const r of await this.#db.selectFrom('blobs').select('digest').where('digest', 'in', part).execute()) found.add(r.digest);
    return found;
  }

  /**
   * Claims files that have no blob row (left by a crash between a publish and its commit) by
   * inserting placeholder rows, so that no push can publish the same digest meanwhile; those
   * claimed are moved to the trash and the placeholders removed, in one transaction. Returns the
   * digests moved.
   */
  async claimStrays(digests: readonly string[], moveToTrash: (digest: string) => Promise<boolean>): Promise<string[]> {
    if (digests.length === 0) return [];
    return writeTransaction(this.#db, async (trx) => {
      const claimed: string[] = [];
      for (const digest of [...digests].sort()) {
        const inserted = await trx
          .insertInto('blobs')
          .values({ digest, size: 0, created_at: 0 })
          .onConflict((oc) => oc.column('digest').doNothing())
          .returning('digest')
          .executeTakeFirst();
        if (inserted) claimed.push(digest);
      }
      const moved: string[] = [];
      for (const digest of claimed) if (await moveToTrash(digest)) moved.push(digest);
      for (const part of chunks(claimed)) await trx.deleteFrom('blobs').where('digest', 'in', part).execute();
      return moved;
    });
  }

  /**
   * Settles one trashed blob under its row's lock: `settle(rowExists)` puts it back when a row
   * still names it (a run that crashed before its commit) and drops it otherwise.
   */
  async settleTrashed(digest: string, settle: (rowExists: boolean) => Promise<void>): Promise<void> {
    await writeTransaction(this.#db, async (trx) => {
      const row = await lockForUpdate(trx, trx.selectFrom('blobs').select('digest').where('digest', '=', digest)).executeTakeFirst();
      await settle(row !== undefined);
    });
  }

  // ── runs (the history) ───────────────────────────────────────────────────

  async createRun(run: { trigger: string; parameters: unknown; status: string; jobId?: number | null }, executor: Kysely<Database> = this.#db): Promise<number> {
    const now = this.#now();
    const row = await executor
      .insertInto('gc_runs')
      .values({
        job_id: run.jobId ?? null,
        trigger: run.trigger,
        parameters: JSON.stringify(run.parameters),
        status: run.status,
        error: null,
        created_at: now,
        started_at: null,
        finished_at: null,
        updated_at: now,
        deleted_artifacts: 0,
        deleted_blobs: 0,
        freed_bytes: 0,
        examined_blobs: 0,
      })
      .returning('id')
      .executeTakeFirstOrThrow();
    return Number(row.id);
  }

  async setRunJob(id: number, jobId: number, executor: Kysely<Database> = this.#db): Promise<void> {
    await executor.updateTable('gc_runs').set({ job_id: jobId }).where('id', '=', id).execute();
  }

  async startRun(id: number): Promise<void> {
    const now = this.#now();
    await this.#db.updateTable('gc_runs').set({ status: 'Running', started_at: now, updated_at: now }).where('id', '=', id).execute();
  }

  /** Shows that a run without a job (the CLI) is still alive. */
  async touchRun(id: number): Promise<void> {
    await this.#db.updateTable('gc_runs').set({ updated_at: this.#now() }).where('id', '=', id).execute();
  }

  async recordProgress(id: number, counters: GcCounters): Promise<void> {
    await this.#db
      .updateTable('gc_runs')
      .set({
        deleted_artifacts: counters.deletedArtifacts,
        deleted_blobs: counters.deletedBlobs,
        freed_bytes: counters.freedBytes,
        examined_blobs: counters.examinedBlobs,
        updated_at: this.#now(),
      })
      .where('id', '=', id)
      .execute();
  }

  async finishRun(id: number, status: string, counters: GcCounters | undefined, error: string | null): Promise<void> {
    const now = this.#now();
    await this.#db
      .updateTable('gc_runs')
      .set({
        status,
        error,
        finished_at: now,
        updated_at: now,
        ...(counters
          ? { deleted_artifacts: counters.deletedArtifacts, deleted_blobs: counters.deletedBlobs, freed_bytes: counters.freedBytes, examined_blobs: counters.examinedBlobs }
          : {}),
      })
      .where('id', '=', id)
      .execute();
  }

  async getRun(id: number): Promise<GcRunRow | undefined> {
    return this.#db.selectFrom('gc_runs').selectAll().where('id', '=', id).executeTakeFirst();
  }

  async getRunByJob(jobId: number): Promise<GcRunRow | undefined> {
    return this.#db.selectFrom('gc_runs').selectAll().where('job_id', '=', jobId).executeTakeFirst();
  }

  /** Runs, newest first. */
  async listRuns(offset: number, limit: number): Promise<GcRunRow[]> {
    return this.#db.selectFrom('gc_runs').selectAll().orderBy('id', 'desc').offset(offset).limit(limit).execute();
  }

  async countRuns(): Promise<number> {
    const row = await this.#db
      .selectFrom('gc_runs')
      .select((eb) => eb.fn.countAll<number | string>().as('n'))
      .executeTakeFirstOrThrow();
    return Number(row.n);
  }

  /** Keeps the newest `keep` finished runs (Harbor keeps 50); unfinished ones always stay. */
  async pruneRuns(keep: number): Promise<void> {
    const oldestKept = await this.#db.selectFrom('gc_runs').select('id').orderBy('id', 'desc').offset(keep - 1).limit(1).executeTakeFirst();
    if (!oldestKept) return;
    await this.#db.deleteFrom('gc_runs').where('id', '<', oldestKept.id).where('status', 'in', ['Success', 'Error', 'Stopped']).execute();
  }
}
