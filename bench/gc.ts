/**
 * Garbage collection benchmark: `node bench/gc.ts [--backend sqlite|postgres|both] [--manifests N]`.
 *
 * Seeds a registry straight into the database and storage (rows in large batches, small files):
 * N manifests (22,300 by default) of a config and four layers each, so 111,500 blobs, every blob
 * linked and charged to project `bench`. Deletes 10% of the manifests through the registry (their
 * blobs become garbage and candidates, as in real use), starts Berth on that data as a child
 * process, measures image pushes (two blobs and a manifest, one pusher) for a while, then asks for
 * a collection through the API (time window 0) while the pusher goes on, and reports the run's
 * time, the time per deleted blob, and push latency before and during the collection. Then a full
 * run (`berth gc --full`, every blob and every file examined) for comparison, and a check that
 * every remaining manifest is whole. Prints a Markdown section for BENCHMARKS.md.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, tmpdir, totalmem } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { sql } from 'kysely';
import { createDatabase } from '../src/platform/db/database.ts';
import { QuotaLedger } from '../src/projects/quota-ledger.ts';
import { RegistryStore } from '../src/registry/store.ts';
import { type Backend, createTestDatabase } from '../test/helpers/backends.ts';
import { checkIntegrity, seedRegistry } from '../test/helpers/gc.ts';
import { freePort } from './servers.ts';

const ROOT = path.resolve(import.meta.dirname, '..');
const ADMIN_PASSWORD = 'Bench12345';
const AUTH = `Basic ${Buffer.from(`admin:${ADMIN_PASSWORD}`).toString('base64')}`;
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

const { values } = parseArgs({
  options: {
    backend: { type: 'string', default: 'both' },
    manifests: { type: 'string', default: '22300' },
    'baseline-seconds': { type: 'string', default: '6' },
  },
});
const backends: Backend[] = values.backend === 'both' ? ['sqlite', 'postgres'] : [values.backend as Backend];
const MANIFESTS = Number(values.manifests);
const LAYERS = 4;
const BASELINE_MS = Number(values['baseline-seconds']) * 1000;

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] as number;
}

function sha256(bytes: Buffer): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

async function pushImage(base: string, repository: string): Promise<void> {
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', nonce: randomBytes(8).toString('hex') }));
  const layer = randomBytes(1024);
  const descriptors = [];
  for (const bytes of [config, layer]) {
    const digest = sha256(bytes);
    const res = await fetch(`${base}/v2/${repository}/blobs/uploads/?digest=${encodeURIComponent(digest)}`, {
      method: 'POST',
      body: bytes,
      headers: { authorization: AUTH, 'content-type': 'application/octet-stream' },
    });
    await res.arrayBuffer();
    if (res.status !== 201) throw new Error(`blob push: ${res.status}`);
    descriptors.push({ digest, size: bytes.length });
  }
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...descriptors[0] },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', ...descriptors[1] }],
    }),
  );
  const res = await fetch(`${base}/v2/${repository}/manifests/latest`, { method: 'PUT', body: manifest, headers: { authorization: AUTH, 'content-type': OCI_MANIFEST } });
  await res.arrayBuffer();
  if (res.status !== 201) throw new Error(`manifest push: ${res.status}`);
}

interface Phase {
  readonly latencies: number[];
}

/** Pushes images one after another until `stop()` returns true; records each image's push latency in the current phase. */
async function pusher(base: string, phases: { current: Phase }, stop: () => boolean): Promise<void> {
  while (!stop()) {
    const started = performance.now();
    await pushImage(base, 'bench/live');
    phases.current.latencies.push(performance.now() - started);
  }
}

async function api<T>(base: string, pathname: string, init: RequestInit = {}): Promise<{ status: number; body: T; headers: Headers }> {
  const res = await fetch(`${base}/api/v2.0${pathname}`, { ...init, headers: { authorization: AUTH, 'content-type': 'application/json', ...(init.headers ?? {}) } });
  const text = await res.text();
  return { status: res.status, body: (text && res.headers.get('content-type')?.includes('json') ? JSON.parse(text) : text) as T, headers: res.headers };
}

function startBerth(dataDir: string, databaseUrl: string, port: number): ChildProcess {
  const args = [path.join(ROOT, 'bin/berth.js'), 'serve', '--addr', `127.0.0.1:${port}`, '--data-dir', dataDir, ...(databaseUrl ? ['--database-url', databaseUrl] : [])];
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) if (!key.startsWith('BERTH_')) env[key] = value;
  env.BERTH_ADMIN_PASSWORD = ADMIN_PASSWORD;
  env.BERTH_LOG_LEVEL = 'warn';
  return spawn(process.execPath, ['--max-semi-space-size=1', ...args], { cwd: ROOT, env, stdio: ['ignore', 'ignore', 'inherit'] });
}

async function waitReady(base: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    try {
      const res = await fetch(`${base}/v2/`, { signal: AbortSignal.timeout(1000) });
      await res.arrayBuffer();
      if (res.status === 401 || res.status === 200) return;
    } catch {
      /* not yet */
    }
    await sleep(100);
  }
  throw new Error('Berth did not start');
}

function runCli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const env: NodeJS.ProcessEnv = {};
    for (const [key, value] of Object.entries(process.env)) if (!key.startsWith('BERTH_')) env[key] = value;
    const child = spawn(process.execPath, [path.join(ROOT, 'bin/berth.js'), ...args], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

interface Result {
  readonly backend: Backend;
  readonly blobs: number;
  readonly manifests: number;
  readonly garbageBlobs: number;
  readonly seedSeconds: number;
  readonly deleteSeconds: number;
  readonly gcSeconds: number;
  readonly deletedBlobs: number;
  readonly freedBytes: number;
  readonly before: { n: number; p50: number; p99: number };
  readonly during: { n: number; p50: number; p99: number; max: number };
  readonly fullSeconds: number;
  readonly fullExamined: number;
  readonly integrity: string;
}

async function benchOne(backend: Backend): Promise<Result> {
  const dataDir = await mkdtemp(path.join(tmpdir(), `berth-gc-bench-${backend}-`));
  const database = await createTestDatabase(backend);
  let server: ChildProcess | undefined;
  try {
    // Migrate and seed, with the server not yet running.
    const handle = createDatabase({ url: database.url, sqliteFile: path.join(dataDir, 'berth.db') });
    await handle.migrate();
    const db = handle.db;
    const now = Date.now();
    const project = await db
      .insertInto('projects')
      .values({ name: 'bench', owner_id: null, public: 0, metadata: '{"public":"false"}', created_at: now, updated_at: now })
      .returning('id')
      .executeTakeFirstOrThrow();
    await db.insertInto('quotas').values({ project_id: project.id, hard: -1, used: 0, created_at: now, updated_at: now }).execute();
    const seedStart = performance.now();
    const seeded = await seedRegistry(db, path.join(dataDir, 'storage'), {
      repositories: 200,
      manifests: MANIFESTS,
      layersPerManifest: LAYERS,
      layerBytes: 48,
      createdAt: now - 3_600_000,
      prefix: 'bench/',
    });
    // The quota ledger, as the pushes would have charged it.
    let used = 0;
    const ledger = seeded.manifests.flatMap((m) => m.blobs.map((digest) => ({ project_id: project.id, digest, size: 0, created_at: now })));
    const sizes = new Map((await db.selectFrom('blobs').select(['digest', 'size']).execute()).map((b) => [b.digest, b.size]));
    for (const row of ledger) {
      row.size = sizes.get(row.digest) ?? 0;
      used += row.size;
    }
    const manifestRows = await db.selectFrom('manifests').select(['digest', 'size']).execute();
    for (const m of manifestRows) {
      ledger.push({ project_id: project.id, digest: m.digest, size: m.size, created_at: now });
      used += m.size;
    }
    for (let i = 0; i < ledger.length; i += 1000) await db.insertInto('project_blobs').values(ledger.slice(i, i + 1000)).execute();
    await db.updateTable('quotas').set({ used }).where('project_id', '=', project.id).execute();
    // The blobs were examined by an earlier run: no candidates yet.
    await db.deleteFrom('gc_candidates').execute();
    // Bulk-loaded tables have no planner statistics yet; on a live PostgreSQL autovacuum gathers them.
    if (handle.dialect === 'postgres') await sql`analyze`.execute(db);
    const seedSeconds = (performance.now() - seedStart) / 1000;

    const deleteStart = performance.now();
    const registry = new RegistryStore(db, Date.now, new QuotaLedger());
    let garbageBlobs = 0;
    for (const [i, m] of seeded.manifests.entries()) {
      if (i % 10 !== 0) continue;
      await registry.deleteManifest(m.repositoryId, m.digest);
      garbageBlobs += m.blobs.length;
    }
    const deleteSeconds = (performance.now() - deleteStart) / 1000;
    await handle.close();
    process.stderr.write(`${backend}: seeded ${seeded.blobs} blobs / ${MANIFESTS} manifests in ${seedSeconds.toFixed(1)} s; deleted 10% of manifests (${garbageBlobs} blobs now garbage) in ${deleteSeconds.toFixed(1)} s\n`);

    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    server = startBerth(dataDir, database.url, port);
    await waitReady(base);
    await pushImage(base, 'bench/live');

    // Push latency alone, then during the collection.
    const before: Phase = { latencies: [] };
    const during: Phase = { latencies: [] };
    const phases = { current: before };
    let stopPushing = false;
    const pushing = pusher(base, phases, () => stopPushing);
    await sleep(BASELINE_MS);
    phases.current = during;
    const created = await api(base, '/system/gc/schedule', { method: 'POST', body: JSON.stringify({ schedule: { type: 'Manual' }, parameters: { time_window: 0, workers: 1 } }) });
    if (created.status !== 201) throw new Error(`starting gc: ${created.status} ${JSON.stringify(created.body)}`);
    const id = Number(created.headers.get('location')?.split('/').pop());
    let run: { job_status: string; start_time: string; end_time: string; deleted_blobs: number; freed_space: number };
    for (;;) {
      run = (await api<typeof run>(base, `/system/gc/${id}`)).body;
      if (['Success', 'Error', 'Stopped'].includes(run.job_status)) break;
      await sleep(20);
    }
    stopPushing = true;
    await pushing;
    if (run.job_status !== 'Success') throw new Error(`gc ended ${run.job_status}: ${(await api<string>(base, `/system/gc/${id}/log`)).body}`);
    const gcSeconds = (Date.parse(run.end_time) - Date.parse(run.start_time)) / 1000;
    // Only the pushes that overlapped the run count as "during".
    const sortedBefore = [...before.latencies].sort((a, b) => a - b);
    const sortedDuring = [...during.latencies].sort((a, b) => a - b);

    // A full run for comparison: every blob and every stored file examined (nothing left to delete).
    const fullStart = performance.now();
    const full = await runCli(['gc', '--full', '--time-window', '0', '--data-dir', dataDir, ...(database.url ? ['--database-url', database.url] : [])]);
    const fullSeconds = (performance.now() - fullStart) / 1000;
    if (full.code !== 0) throw new Error(`berth gc --full: ${full.stderr}`);
    const examined = /examined (\d+) blob\(s\), kept/.exec(full.stderr)?.[1];

    // Everything that remains is whole.
    const check = createDatabase({ url: database.url, sqliteFile: path.join(dataDir, 'berth.db') });
    const report = await checkIntegrity(check.db, path.join(dataDir, 'storage'));
    await check.close();
    const integrity = `${report.manifests} manifests whole, ${report.unreferenced.length} unreferenced blobs, ${report.strayFiles.length} stray files, ${report.trashed} in trash`;
    process.stderr.write(`${backend}: gc ${gcSeconds.toFixed(2)} s for ${run.deleted_blobs} blobs; full run ${fullSeconds.toFixed(1)} s; ${integrity}\n`);
    return {
      backend,
      blobs: seeded.blobs,
      manifests: MANIFESTS,
      garbageBlobs,
      seedSeconds,
      deleteSeconds,
      gcSeconds,
      deletedBlobs: run.deleted_blobs,
      freedBytes: run.freed_space,
      before: { n: sortedBefore.length, p50: percentile(sortedBefore, 50), p99: percentile(sortedBefore, 99) },
      during: { n: sortedDuring.length, p50: percentile(sortedDuring, 50), p99: percentile(sortedDuring, 99), max: sortedDuring.at(-1) ?? Number.NaN },
      fullSeconds,
      fullExamined: Number(examined ?? Number.NaN),
      integrity,
    };
  } finally {
    if (server && server.exitCode === null) {
      const exited = once(server, 'exit');
      server.kill('SIGTERM');
      await exited;
    }
    await database.drop();
    await rm(dataDir, { recursive: true, force: true });
  }
}

const results: Result[] = [];
for (const backend of backends) results.push(await benchOne(backend));

const ms = (n: number) => `${n.toFixed(1)} ms`;
const lines = [
  '## Garbage collection',
  '',
  `\`node bench/gc.ts\` on this machine (${cpus().length} cores, ${Math.round(totalmem() / 2 ** 30)} GiB), ${new Date().toISOString().slice(0, 10)}. A registry seeded straight into the database and storage: ${MANIFESTS.toLocaleString('en')} manifests of a config and ${LAYERS} layers each (small files), every blob linked and charged to one project; 10% of the manifests deleted through the registry, so 10% of the blobs became garbage (and candidates). Berth then runs as its own process; a collection is asked for through \`POST /api/v2.0/system/gc/schedule\` (Manual, time window 0, 1 worker) while one client pushes images (two blobs and a manifest, one after another) the whole time. "Before" is ${BASELINE_MS / 1000} s of the same pushes just before the run. The full run is \`berth gc --full\` afterwards (every blob row and every stored file examined; nothing left to delete).`,
  '',
  '| | ' + results.map((r) => r.backend).join(' | ') + ' |',
  '|---|' + results.map(() => '---:').join('|') + '|',
  `| blobs / manifests in the registry | ${results.map((r) => `${r.blobs.toLocaleString('en')} / ${r.manifests.toLocaleString('en')}`).join(' | ')} |`,
  `| garbage blobs (10%) | ${results.map((r) => r.garbageBlobs.toLocaleString('en')).join(' | ')} |`,
  `| **collection, total** | ${results.map((r) => `**${r.gcSeconds.toFixed(2)} s**`).join(' | ')} |`,
  `| blobs deleted | ${results.map((r) => r.deletedBlobs.toLocaleString('en')).join(' | ')} |`,
  `| time per deleted blob | ${results.map((r) => `${((r.gcSeconds * 1000) / r.deletedBlobs).toFixed(3)} ms`).join(' | ')} |`,
  `| image push p50 / p99, before (n) | ${results.map((r) => `${ms(r.before.p50)} / ${ms(r.before.p99)} (${r.before.n})`).join(' | ')} |`,
  `| image push p50 / p99, during the collection (n) | ${results.map((r) => `${ms(r.during.p50)} / ${ms(r.during.p99)} (${r.during.n})`).join(' | ')} |`,
  `| slowest push during the collection | ${results.map((r) => ms(r.during.max)).join(' | ')} |`,
  `| full run (\`--full\`): blobs examined, time | ${results.map((r) => `${r.fullExamined.toLocaleString('en')}, ${r.fullSeconds.toFixed(1)} s`).join(' | ')} |`,
  `| afterwards | ${results.map((r) => r.integrity).join(' | ')} |`,
  `| (setup: seeding; deleting 10% of manifests through the registry) | ${results.map((r) => `${r.seedSeconds.toFixed(1)} s; ${r.deleteSeconds.toFixed(1)} s`).join(' | ')} |`,
  '',
];
process.stdout.write(`${lines.join('\n')}\n`);
