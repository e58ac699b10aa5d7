/**
 * Online garbage collection: deletes blobs no manifest references and, optionally, untagged
 * artifacts, while pushes and pulls go on.
 *
 * Correctness never rests on the time window. Each blob is deleted in a transaction that holds
 * its row lock and re-checks, with fresh statements, that no manifest references it and that no
 * repository linked it since the cutoff; its links, quota ledger entries, row and file go
 * together (the file into a trash bin before the commit, deleted after it). Pushes take the same
 * row lock (src/registry/store.ts): a blob upload claims the row and publishes its file inside
 * its transaction, a manifest PUT share-locks the rows it references and refuses if they are
 * gone. So a push either lands before the collector looks (and is seen) or after it deleted (and
 * brings its own file, or fails cleanly with MANIFEST_BLOB_UNKNOWN).
 *
 * The time window (cutoff = run start − window) only spares recent work from a pointless race:
 * with a window of 0, a blob uploaded before the run and not yet named by a manifest may be
 * collected, and the client's manifest PUT is then refused; its next push uploads the blob again.
 *
 * Cost grows with what changed: the registry notes in gc_candidates every digest that may have
 * become unreferenced (a new blob, an unlinked blob, the children of a deleted manifest or
 * repository), and a run examines those. A full run (`berth gc --full`) examines every blob and
 * also removes files no row names. A crash between a trash move and its commit leaves files in
 * the trash whose rows still exist: the next run (and every server start) puts them back; after
 * the commit they are simply dropped.
 */
import { type ParsedDigest, parseDigest } from '../platform/oci/digest.ts';
import { isTransientConflict } from '../platform/db/dialect.ts';
import type { BlobStore } from '../platform/storage/blob-store.ts';
import type { RegistryStore } from '../registry/store.ts';
import { type Candidate, FILE_CONCURRENCY, forEachLimited, type GcCounters, type GcStore, type UntaggedRow } from './store.ts';

export interface GcParameters {
  /** Also delete untagged artifacts (keeping those an index or a kept subject needs). */
  readonly deleteUntagged: boolean;
  /** Report what would be freed and change nothing. */
  readonly dryRun: boolean;
  /** Sweeps running at once (1–10). */
  readonly workers: number;
  /** Nothing created or linked in the last this many hours is collected. */
  readonly timeWindowHours: number;
  /** Examine every blob and every stored file, not only the candidates. */
  readonly full?: boolean;
}

export type GcLogLevel = 'info' | 'warn' | 'error';

export interface GcRunContext {
  /** Names the run's trash bin. */
  readonly runId: number;
  log(message: string, level?: GcLogLevel): void;
  /** Asked between batches: a stop leaves everything consistent and the next run goes on. */
  shouldStop(): boolean | Promise<boolean>;
  /** Told after each batch (awaited). */
  progress?(counters: GcCounters): void | Promise<void>;
}

export interface GcResult extends GcCounters {
  readonly dryRun: boolean;
  readonly stopped: boolean;
  /** Blobs kept because they or a link to them are newer than the cutoff. */
  readonly keptRecent: number;
  /** Blobs a push held while the run looked at them (left for the next run). */
  readonly keptBusy: number;
  /** Files that no row named (full runs). */
  readonly strayFiles: number;
  /** Trashed blobs of an interrupted run put back, and dropped. */
  readonly restored: number;
  readonly dropped: number;
  readonly cutoff: number;
  readonly durationMs: number;
}

export interface GcServiceOptions {
  readonly store: GcStore;
  readonly registry: RegistryStore;
  readonly blobs: BlobStore;
  /** Candidates per transaction; smaller batches shorten the pause a batch causes on SQLite. */
  readonly batchSize?: number;
  /**
   * After each batch, wait this many times as long as the batch took (0: sweep flat out). The
   * default 1 gives pushes half of the node: measured (BENCHMARKS.md), their median latency then
   * does not move during a collection, which takes about twice as long.
   */
  readonly pause?: number;
  readonly now?: () => number;
}

const HOUR_MS = 3_600_000;

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = n;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${n} B` : `${value.toFixed(2)} ${units[unit]}`;
}

const key = (repositoryId: number, digest: string) => `${repositoryId}\u0000${digest}`;

class Counters implements GcCounters {
  deletedArtifacts = 0;
  deletedBlobs = 0;
  freedBytes = 0;
  examinedBlobs = 0;
  keptRecent = 0;
  keptBusy = 0;
  strayFiles = 0;
  snapshot(): GcCounters {
    return { deletedArtifacts: this.deletedArtifacts, deletedBlobs: this.deletedBlobs, freedBytes: this.freedBytes, examinedBlobs: this.examinedBlobs };
  }
}

export class GcService {
  readonly #store: GcStore;
  readonly #registry: RegistryStore;
  readonly #blobs: BlobStore;
  readonly #batchSize: number;
  readonly #pause: number;
  readonly #now: () => number;

  constructor(options: GcServiceOptions) {
    this.#store = options.store;
    this.#registry = options.registry;
    this.#blobs = options.blobs;
    this.#batchSize = options.batchSize ?? 256;
    this.#pause = options.pause ?? 1;
    this.#now = options.now ?? Date.now;
  }

  /**
   * Settles what interrupted runs left in the trash: a blob whose row still exists goes back (the
   * run crashed before its commit), any other is dropped. Safe beside a running collection: each
   * blob is settled under its row lock. `exceptBin` is the caller's own bin.
   */
  async recoverTrash(exceptBin?: string): Promise<{ restored: number; dropped: number }> {
    let restored = 0;
    let dropped = 0;
    const bins = new Set<string>();
    for await (const trashed of this.#blobs.listTrash()) {
      if (trashed.bin === exceptBin) continue;
      bins.add(trashed.bin);
      let digest: ParsedDigest;
      try {
        digest = parseDigest(trashed.digest);
      } catch {
        continue;
      }
      await this.#store.settleTrashed(digest.value, async (rowExists) => {
        if (rowExists) {
          if (await this.#blobs.restoreTrashed(digest, trashed.bin)) restored++;
        } else {
          await this.#blobs.deleteTrashed(digest, trashed.bin);
          dropped++;
        }
      });
    }
    for (const bin of await this.#blobs.listTrashBins()) if (bin !== exceptBin) bins.add(bin);
    for (const bin of bins) await this.#blobs.removeTrashBin(bin);
    return { restored, dropped };
  }

  async run(parameters: GcParameters, context: GcRunContext): Promise<GcResult> {
    const started = this.#now();
    const cutoff = started - parameters.timeWindowHours * HOUR_MS;
    const bin = `run-${context.runId}`;
    const counters = new Counters();
    const { log } = context;
    const mode = [parameters.dryRun ? 'dry run' : '', parameters.full ? 'full' : '', parameters.deleteUntagged ? 'deleting untagged artifacts' : ''].filter(Boolean).join(', ');
    log(
      `garbage collection started${mode ? ` (${mode})` : ''}: time window ${parameters.timeWindowHours} h, so nothing created or linked after ${new Date(cutoff).toISOString()} is collected; ${parameters.workers} worker(s)`,
    );
    let recovered = { restored: 0, dropped: 0 };
    if (!parameters.dryRun) {
      recovered = await this.recoverTrash(bin);
      if (recovered.restored + recovered.dropped > 0) {
        log(`trash of interrupted runs: put back ${recovered.restored} blob(s) whose rows still exist, dropped ${recovered.dropped} already deleted`);
      }
    }
    let stopped = false;
    const stop = async () => {
      if (!stopped && (await context.shouldStop())) {
        stopped = true;
        log('stop requested: finishing the current batch; everything done so far is consistent, the next run goes on', 'warn');
      }
      return stopped;
    };

    let planned: UntaggedRow[] = [];
    if (parameters.deleteUntagged) {
      planned = await this.#planUntagged(cutoff);
      log(`${planned.length} untagged artifact(s) ${parameters.dryRun ? 'would be' : 'to be'} deleted (not referenced by a kept index, not a signature or SBOM of a kept artifact)`);
      if (parameters.dryRun) counters.deletedArtifacts = planned.length;
      else await this.#deleteUntagged(planned, cutoff, counters, log, stop);
    }

    if (!stopped) {
      if (parameters.dryRun) await this.#dryRunBlobs(parameters, planned, cutoff, counters, log);
      else await this.#sweep(parameters, cutoff, bin, counters, context, stop);
    }
    if (!stopped && parameters.full) await this.#strays(parameters.dryRun, bin, counters, log, stop);
    if (!parameters.dryRun) await this.#blobs.removeTrashBin(bin);

    const durationMs = this.#now() - started;
    const verb = parameters.dryRun ? 'would free' : 'freed';
    log(
      `garbage collection ${stopped ? 'stopped' : 'finished'} in ${(durationMs / 1000).toFixed(1)} s: ${verb} ${formatBytes(counters.freedBytes)} — ${counters.deletedBlobs} blob(s), ${counters.deletedArtifacts} artifact(s)${parameters.full ? `, ${counters.strayFiles} stray file(s)` : ''}; examined ${counters.examinedBlobs} blob(s), kept ${counters.keptRecent} newer than the window${counters.keptBusy > 0 ? ` and ${counters.keptBusy} held by pushes in flight` : ''}`,
    );
    return {
      ...counters.snapshot(),
      dryRun: parameters.dryRun,
      stopped,
      keptRecent: counters.keptRecent,
      keptBusy: counters.keptBusy,
      strayFiles: counters.strayFiles,
      restored: recovered.restored,
      dropped: recovered.dropped,
      cutoff,
      durationMs,
    };
  }

  // ── untagged artifacts ───────────────────────────────────────────────────

  /**
   * Untagged manifests older than the cutoff that may go, in an order where every manifest comes
   * after the indexes that name it and after its subject: a manifest goes when no remaining index
   * of its repository names it and its subject (if any) is absent or goes too. Signatures and
   * SBOMs of kept artifacts stay.
   */
  async #planUntagged(cutoff: number): Promise<UntaggedRow[]> {
    const untagged = await this.#store.untaggedManifests(cutoff);
    const candidates = new Map(untagged.map((m) => [key(m.repository_id, m.digest), m]));
    const parents = new Map<string, string[]>();
    for (const edge of await this.#store.manifestEdges()) {
      const child = key(edge.repository_id, edge.child_digest);
      if (candidates.has(child)) parents.set(child, [...(parents.get(child) ?? []), key(edge.repository_id, edge.parent_digest)]);
    }
    const subjects = new Set((await this.#store.subjectsWithReferrers()).map((s) => key(s.repository_id, s.digest)));
    const present = (repositoryId: number, digest: string) => subjects.has(key(repositoryId, digest));
    const gone = new Set<string>();
    const order: UntaggedRow[] = [];
    let pending = [...candidates.entries()];
    for (;;) {
      const next: typeof pending = [];
      for (const [k, m] of pending) {
        const parentsGone = (parents.get(k) ?? []).every((p) => gone.has(p));
        const subject = m.subject_digest === null ? undefined : key(m.repository_id, m.subject_digest);
        const subjectGone = subject === undefined || !present(m.repository_id, m.subject_digest as string) || gone.has(subject);
        if (parentsGone && subjectGone) {
          gone.add(k);
          order.push(m);
        } else {
          next.push([k, m]);
        }
      }
      if (next.length === pending.length) break;
      pending = next;
    }
    return order;
  }

  async #deleteUntagged(planned: readonly UntaggedRow[], cutoff: number, counters: Counters, log: GcRunContext['log'], stop: () => Promise<boolean>): Promise<void> {
    let lastLog = this.#now();
    for (const m of planned) {
      if (await stop()) return;
      if (await this.#retrying(() => this.#registry.deleteUntaggedManifest(m.repository_id, m.digest, { createdBefore: cutoff }))) counters.deletedArtifacts++;
      if (this.#now() - lastLog >= 5000) {
        lastLog = this.#now();
        log(`deleted ${counters.deletedArtifacts} of ${planned.length} untagged artifact(s)`);
      }
    }
    log(`deleted ${counters.deletedArtifacts} untagged artifact(s) (others were tagged, named or pushed again meanwhile)`);
  }

  // ── the sweep ────────────────────────────────────────────────────────────

  async #sweep(parameters: GcParameters, cutoff: number, bin: string, counters: Counters, context: GcRunContext, stop: () => Promise<boolean>): Promise<void> {
    const total = parameters.full ? await this.#store.blobCount() : await this.#store.candidateCount();
    context.log(`examining ${parameters.full ? `all ${total} blob(s)` : `${total} candidate(s): blobs that may have become unreferenced since the last run`}`);
    const next = this.#batches(parameters.full === true);
    let lastLog = this.#now();
    const worker = async () => {
      for (;;) {
        if (await stop()) return;
        const batch = await next();
        if (batch.length === 0) return;
        const batchStarted = this.#now();
        await this.#sweepBatch(batch, cutoff, bin, counters);
        await context.progress?.(counters.snapshot());
        // Leave the node room for the requests it serves meanwhile (on SQLite every statement runs on its one thread).
        if (this.#pause > 0) await new Promise((resolve) => setTimeout(resolve, (this.#now() - batchStarted) * this.#pause));
        if (this.#now() - lastLog >= 5000) {
          lastLog = this.#now();
          context.log(`examined ${counters.examinedBlobs} of ~${total}: deleted ${counters.deletedBlobs} blob(s), ${formatBytes(counters.freedBytes)}`);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, parameters.workers) }, worker));
  }

  /** Hands out batches of candidates (or of all blobs) in digest order, one caller at a time. */
  #batches(full: boolean): () => Promise<Candidate[]> {
    let cursor: string | undefined;
    let chain: Promise<unknown> = Promise.resolve();
    return () => {
      const batch = chain.then(async () => {
        const rows = full ? await this.#store.blobsAfter(cursor, this.#batchSize) : await this.#store.candidatesAfter(cursor, this.#batchSize);
        if (rows.length > 0) cursor = rows[rows.length - 1]?.digest;
        return rows;
      });
      chain = batch.catch(() => {});
      return batch;
    };
  }

  async #sweepBatch(batch: readonly Candidate[], cutoff: number, bin: string, counters: Counters): Promise<void> {
    const result = await this.#retrying(async () => {
      const moved: ParsedDigest[] = [];
      try {
        return {
          moved,
          result: await this.#store.sweep(batch, cutoff, async (digest) => {
            const parsed = parseDigest(digest);
            if (await this.#blobs.trashBlob(parsed, bin)) moved.push(parsed);
          }),
        };
      } catch (err) {
        // Rolled back: the rows are still there, so their files go back.
        await forEachLimited(moved, FILE_CONCURRENCY, (digest) => this.#blobs.restoreTrashed(digest, bin));
        throw err;
      }
    });
    await forEachLimited(result.moved, FILE_CONCURRENCY, (digest) => this.#blobs.deleteTrashed(digest, bin));
    counters.examinedBlobs += batch.length;
    counters.deletedBlobs += result.result.deleted.length;
    for (const blob of result.result.deleted) counters.freedBytes += blob.size;
    counters.keptRecent += result.result.recent;
    counters.keptBusy += result.result.busy;
  }

  /** Runs a transaction again when it only lost a deadlock or a lock wait. */
  async #retrying<T>(fn: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await fn();
      } catch (err) {
        if (attempt >= 5 || !isTransientConflict(err)) throw err;
        await new Promise((resolve) => setTimeout(resolve, 20 * attempt));
      }
    }
  }

  // ── dry runs ─────────────────────────────────────────────────────────────

  /**
   * What a run would free, without changing anything: the candidates (or all blobs) and the blob
   * children of the artifacts that would be deleted, counting a blob when no manifest outside
   * those artifacts references it and nothing about it is newer than the cutoff.
   */
  async #dryRunBlobs(parameters: GcParameters, planned: readonly UntaggedRow[], cutoff: number, counters: Counters, log: GcRunContext['log']): Promise<void> {
    const goingManifests = new Set(planned.map((m) => key(m.repository_id, m.digest)));
    const children = await this.#store.blobChildren(planned);
    const childSet = new Set(children);
    const examine = async (digests: readonly string[]) => {
      if (digests.length === 0) return;
      const rows = await this.#store.blobRows(digests);
      const names = rows.map((r) => r.digest);
      const stillReferenced = new Set<string>();
      for (const ref of await this.#store.referencesTo(names)) if (!goingManifests.has(key(ref.repository_id, ref.parent_digest))) stillReferenced.add(ref.child_digest);
      const recent = await this.#store.linkedSince(names, cutoff);
      counters.examinedBlobs += digests.length;
      for (const row of rows) {
        if (stillReferenced.has(row.digest)) continue;
        if (recent.has(row.digest) || row.created_at >= cutoff) {
          counters.keptRecent++;
          continue;
        }
        counters.deletedBlobs++;
        counters.freedBytes += row.size;
      }
    };
    for (let i = 0; i < children.length; i += this.#batchSize) await examine(children.slice(i, i + this.#batchSize));
    const next = this.#batches(parameters.full === true);
    for (;;) {
      const batch = await next();
      if (batch.length === 0) break;
      await examine(batch.map((c) => c.digest).filter((d) => !childSet.has(d)));
    }
    log(`dry run: ${counters.deletedBlobs} blob(s) (${formatBytes(counters.freedBytes)}) would be deleted`);
  }

  // ── stray files ──────────────────────────────────────────────────────────

  /** Full runs: files in storage that no blob row names (left by a crash between a publish and its commit). */
  async #strays(dryRun: boolean, bin: string, counters: Counters, log: GcRunContext['log'], stop: () => Promise<boolean>): Promise<void> {
    const handle = async (digests: string[]) => {
      const existing = await this.#store.existingBlobs(digests);
      const strays = digests.filter((d) => !existing.has(d));
      if (strays.length === 0) return;
      const sizes = new Map<string, number>();
      for (const d of strays) sizes.set(d, (await this.#blobs.stat(parseDigest(d)))?.size ?? 0);
      if (dryRun) {
        counters.strayFiles += strays.length;
        for (const size of sizes.values()) counters.freedBytes += size;
        return;
      }
      const moved = await this.#retrying(() =>
        this.#store.claimStrays(strays, async (digest) => this.#blobs.trashBlob(parseDigest(digest), bin)),
      );
      for (const digest of moved) {
        await this.#blobs.deleteTrashed(parseDigest(digest), bin);
        counters.strayFiles++;
        counters.freedBytes += sizes.get(digest) ?? 0;
      }
    };
    let batch: string[] = [];
    for await (const digest of this.#blobs.list()) {
      try {
        parseDigest(digest);
      } catch {
        continue;
      }
      batch.push(digest);
      if (batch.length >= this.#batchSize) {
        if (await stop()) return;
        await handle(batch);
        batch = [];
      }
    }
    await handle(batch);
    log(`stray files (no row names them): ${counters.strayFiles} ${dryRun ? 'would be removed' : 'removed'}`);
  }
}

