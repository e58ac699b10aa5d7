/**
 * Garbage collection test and benchmark helpers: a collector bound to a test server's database
 * and storage, a whole-registry integrity check (what a pull needs is there and hashes right;
 * nothing unreferenced is left; quotas equal the ledger recomputed from scratch), and a fast
 * seeder that writes rows and small files directly.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Insertable, Kysely } from 'kysely';
import { GcRuns } from '../../src/gc/runs.ts';
import { type GcParameters, type GcResult, GcService } from '../../src/gc/service.ts';
import { GcStore } from '../../src/gc/store.ts';
import type { Database, ManifestTable } from '../../src/platform/db/schema.ts';
import { parseDigest } from '../../src/platform/oci/digest.ts';
import { FilesystemBlobStore } from '../../src/platform/storage/filesystem.ts';
import { blobKey } from '../../src/platform/storage/layout.ts';
import { QuotaLedger } from '../../src/projects/quota-ledger.ts';
import { RegistryStore } from '../../src/registry/store.ts';
import type { TestServer } from './server.ts';

export interface Collector {
  readonly service: GcService;
  readonly store: GcStore;
  readonly blobs: FilesystemBlobStore;
  readonly registry: RegistryStore;
  /** Runs one collection; log lines go to `lines`. */
  run(parameters: Partial<GcParameters>, hooks?: { shouldStop?: () => boolean | Promise<boolean>; progress?: () => void | Promise<void> }): Promise<GcResult>;
  readonly lines: string[];
}

let nextRunId = 1_000_000;

export function storageRoot(server: TestServer): string {
  return server.app.config.storage.filesystemRoot || path.join(server.dataDir, 'storage');
}

/** A collector on the server's database and storage, as `berth gc` builds one. */
export function collectorFor(server: TestServer, options: { batchSize?: number; pause?: number } = {}): Collector {
  const db = server.app.database.db;
  const blobs = new FilesystemBlobStore(storageRoot(server));
  const registry = new RegistryStore(db, Date.now, server.app.config.auth.enabled ? new QuotaLedger() : undefined);
  registry.requireReferencesAtCommit(true);
  const store = new GcStore(db);
  const service = new GcService({ store, registry, blobs, ...(options.batchSize ? { batchSize: options.batchSize } : {}), ...(options.pause !== undefined ? { pause: options.pause } : {}) });
  const lines: string[] = [];
  return {
    service,
    store,
    blobs,
    registry,
    lines,
    run: (parameters, hooks = {}) =>
      service.run(
        { deleteUntagged: false, dryRun: false, workers: 1, timeWindowHours: 0, ...parameters },
        {
          runId: nextRunId++,
          log: (message) => lines.push(message),
          shouldStop: hooks.shouldStop ?? (() => false),
          ...(hooks.progress ? { progress: hooks.progress } : {}),
        },
      ),
  };
}

/** The run bookkeeping (GcRuns) on a test server, for CLI-style direct runs. */
export function runsFor(server: TestServer, collector: Collector): GcRuns {
  return new GcRuns({ db: server.app.database.db, store: collector.store, gc: collector.service, jobs: server.app.jobs, defaultTimeWindowHours: 2 });
}

export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

export interface IntegrityReport {
  readonly manifests: number;
  readonly blobs: number;
  readonly files: number;
  /** Blob rows no manifest references. */
  readonly unreferenced: string[];
  /** Files in storage without a row. */
  readonly strayFiles: string[];
  readonly trashed: number;
}

/**
 * Checks every manifest: each referenced blob has a row, a link in the manifest's repository and
 * a file whose bytes hash to its digest; each child manifest exists. Returns what else it found.
 */
export async function checkIntegrity(db: Kysely<Database>, root: string): Promise<IntegrityReport> {
  const manifests = await db.selectFrom('manifests').select(['repository_id', 'digest']).execute();
  const refs = await db.selectFrom('manifest_references').select(['repository_id', 'parent_digest', 'child_digest', 'child_kind']).execute();
  const blobs = new Map((await db.selectFrom('blobs').select(['digest', 'size']).execute()).map((b) => [b.digest, b.size]));
  const links = new Set((await db.selectFrom('repository_blobs').select(['repository_id', 'digest']).execute()).map((l) => `${l.repository_id} ${l.digest}`));
  const manifestKeys = new Set(manifests.map((m) => `${m.repository_id} ${m.digest}`));
  const verified = new Set<string>();
  for (const ref of refs) {
    if (ref.child_kind === 'manifest') {
      assert.ok(manifestKeys.has(`${ref.repository_id} ${ref.child_digest}`), `index ${ref.parent_digest} names a missing manifest ${ref.child_digest}`);
      continue;
    }
    assert.ok(blobs.has(ref.child_digest), `manifest ${ref.parent_digest} references ${ref.child_digest}, which has no blob row`);
    assert.ok(links.has(`${ref.repository_id} ${ref.child_digest}`), `repository ${ref.repository_id} does not link ${ref.child_digest}, which its manifest ${ref.parent_digest} references`);
    if (verified.has(ref.child_digest)) continue;
    const bytes = await readFile(path.join(root, blobKey(parseDigest(ref.child_digest)))).catch(() => undefined);
    assert.ok(bytes, `the file of ${ref.child_digest} (referenced by ${ref.parent_digest}) is missing`);
    assert.equal(`sha256:${sha256Hex(bytes)}`, ref.child_digest, `the file of ${ref.child_digest} does not hash to its digest`);
    assert.equal(bytes.length, blobs.get(ref.child_digest), `the file of ${ref.child_digest} has the wrong size`);
    verified.add(ref.child_digest);
  }
  const referenced = new Set([...refs.map((r) => r.child_digest), ...manifests.map((m) => m.digest)]);
  const store = new FilesystemBlobStore(root);
  const files: string[] = [];
  for await (const digest of store.list()) files.push(digest);
  let trashed = 0;
  for await (const _ of store.listTrash()) trashed++;
  return {
    manifests: manifests.length,
    blobs: blobs.size,
    files: files.length,
    unreferenced: [...blobs.keys()].filter((d) => !referenced.has(d)),
    strayFiles: files.filter((d) => !blobs.has(d)),
    trashed,
  };
}

/**
 * Quotas equal the ledger, and the ledger is what each project holds, recomputed from scratch:
 * it holds every manifest of the project's repositories and every blob they reference, and
 * nothing but those and blobs the repositories link (a blob pushed but not yet referenced is
 * charged; one whose last manifest went is released though its link stays until collected). Once
 * a collection has removed every unreferenced blob, the two bounds meet: the ledger is exact.
 */
export async function checkQuotas(db: Kysely<Database>): Promise<void> {
  const projects = await db.selectFrom('projects as p').innerJoin('quotas as q', 'q.project_id', 'p.id').select(['p.id', 'p.name', 'q.used']).execute();
  const blobSizes = new Map((await db.selectFrom('blobs').select(['digest', 'size']).execute()).map((b) => [b.digest, b.size]));
  for (const project of projects) {
    const ledger = await db.selectFrom('project_blobs').select(['digest', 'size']).where('project_id', '=', project.id).execute();
    const ledgerSum = ledger.reduce((sum, row) => sum + row.size, 0);
    assert.equal(project.used, ledgerSum, `project ${project.name}: quota used ${project.used} is not the ledger's sum ${ledgerSum}`);
    const low = `${project.name}/`;
    const high = `${project.name}0`;
    const repositories = (await db.selectFrom('repositories').select('id').where('name', '>=', low).where('name', '<', high).execute()).map((r) => r.id);
    const required = new Map<string, number>();
    const allowed = new Map<string, number>();
    if (repositories.length > 0) {
      for (const m of await db.selectFrom('manifests').select(['digest', 'size']).where('repository_id', 'in', repositories).execute()) required.set(m.digest, m.size);
      const children = await db.selectFrom('manifest_references').select(['child_digest', 'child_kind']).where('repository_id', 'in', repositories).execute();
      for (const c of children) {
        if (c.child_kind === 'blob' && blobSizes.has(c.child_digest)) required.set(c.child_digest, blobSizes.get(c.child_digest) as number);
      }
      for (const [digest, size] of required) allowed.set(digest, size);
      for (const l of await db.selectFrom('repository_blobs').select('digest').where('repository_id', 'in', repositories).execute()) allowed.set(l.digest, blobSizes.get(l.digest) as number);
    }
    const actual = new Map(ledger.map((r) => [r.digest, r.size]));
    for (const [digest, size] of required) assert.equal(actual.get(digest), size, `project ${project.name}: the ledger lacks ${digest} (${size} bytes), which the project's manifests hold`);
    for (const [digest, size] of actual) assert.equal(allowed.get(digest), size, `project ${project.name}: the ledger charges ${digest} (${size} bytes), which the project neither references nor links`);
  }
}

// ── seeding ─────────────────────────────────────────────────────────────────

export interface SeedOptions {
  readonly repositories: number;
  readonly manifests: number;
  readonly layersPerManifest: number;
  /** Bytes of each layer (random; the config is a little JSON). */
  readonly layerBytes: number;
  /** Epoch ms stamped on every row (before the runs' cutoff). */
  readonly createdAt: number;
  /** Name prefix of the repositories (a project name + "/" to count in its quota). */
  readonly prefix: string;
}

export interface Seeded {
  readonly repositoryIds: number[];
  /** The manifests, by repository id. */
  readonly manifests: Array<{ repositoryId: number; digest: string; blobs: string[] }>;
  readonly blobs: number;
  readonly bytes: number;
}

/**
 * Writes a registry straight into the database and storage: manifests with a unique config and
 * unique layers each, every manifest tagged, every blob linked. Rows go in in large batches and
 * files are written a few hundred at a time, so 100,000 blobs take seconds.
 */
export async function seedRegistry(db: Kysely<Database>, root: string, options: SeedOptions): Promise<Seeded> {
  const { createdAt: now } = options;
  const repositoryIds: number[] = [];
  for (let r = 0; r < options.repositories; r++) {
    const row = await db
      .insertInto('repositories')
      .values({ name: `${options.prefix}repo-${r}`, created_at: now, updated_at: now, description: null })
      .returning('id')
      .executeTakeFirstOrThrow();
    repositoryIds.push(Number(row.id));
  }
  const made = new Set<string>();
  const manifests: Seeded['manifests'] = [];
  let totalBlobs = 0;
  let totalBytes = 0;
  const batch = 500;
  for (let start = 0; start < options.manifests; start += batch) {
    const blobRows: Array<{ digest: string; size: number; created_at: number }> = [];
    const links: Array<{ repository_id: number; digest: string; created_at: number }> = [];
    const manifestRows: Array<Insertable<ManifestTable>> = [];
    const refRows: Array<{ repository_id: number; parent_digest: string; child_digest: string; child_kind: 'blob' | 'manifest' }> = [];
    const tagRows: Array<{ repository_id: number; name: string; digest: string; updated_at: number }> = [];
    const files: Array<{ file: string; bytes: Buffer }> = [];
    for (let i = start; i < Math.min(options.manifests, start + batch); i++) {
      const repositoryId = repositoryIds[i % repositoryIds.length] as number;
      const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] }, n: i, r: randomBytes(4).toString('hex') }));
      const layers = Array.from({ length: options.layersPerManifest }, () => randomBytes(options.layerBytes));
      const described = [config, ...layers].map((bytes) => ({ bytes, digest: `sha256:${sha256Hex(bytes)}` }));
      for (const blob of described) {
        blobRows.push({ digest: blob.digest, size: blob.bytes.length, created_at: now });
        links.push({ repository_id: repositoryId, digest: blob.digest, created_at: now });
        files.push({ file: path.join(root, blobKey(parseDigest(blob.digest))), bytes: blob.bytes });
        totalBytes += blob.bytes.length;
      }
      totalBlobs += described.length;
      const content = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: described[0]?.digest, size: config.length },
          layers: described.slice(1).map((l) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: l.digest, size: l.bytes.length })),
        }),
      );
      const digest = `sha256:${sha256Hex(content)}`;
      manifestRows.push({
        repository_id: repositoryId,
        digest,
        media_type: 'application/vnd.oci.image.manifest.v1+json',
        artifact_type: null,
        subject_digest: null,
        annotations: null,
        size: content.length,
        content,
        created_at: now,
      });
      for (const blob of described) refRows.push({ repository_id: repositoryId, parent_digest: digest, child_digest: blob.digest, child_kind: 'blob' });
      tagRows.push({ repository_id: repositoryId, name: `t${i}`, digest, updated_at: now });
      manifests.push({ repositoryId, digest, blobs: described.map((b) => b.digest) });
    }
    for (let i = 0; i < files.length; i += 200) {
      await Promise.all(
        files.slice(i, i + 200).map(async ({ file, bytes }) => {
          const folder = path.dirname(file);
          if (!made.has(folder)) {
            await mkdir(folder, { recursive: true });
            made.add(folder);
          }
          await writeFile(file, bytes);
        }),
      );
    }
    await db.transaction().execute(async (trx) => {
      for (let i = 0; i < blobRows.length; i += 200) await trx.insertInto('blobs').values(blobRows.slice(i, i + 200)).execute();
      for (let i = 0; i < links.length; i += 200) await trx.insertInto('repository_blobs').values(links.slice(i, i + 200)).execute();
      for (let i = 0; i < manifestRows.length; i += 100) await trx.insertInto('manifests').values(manifestRows.slice(i, i + 100)).execute();
      for (let i = 0; i < refRows.length; i += 200) await trx.insertInto('manifest_references').values(refRows.slice(i, i + 200)).execute();
      for (let i = 0; i < tagRows.length; i += 200) await trx.insertInto('tags').values(tagRows.slice(i, i + 200)).execute();
    });
  }
  return { repositoryIds, manifests, blobs: totalBlobs, bytes: totalBytes };
}
