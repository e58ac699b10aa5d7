/**
 * `berth gc` as a child process on the database and storage of a running test server, on every
 * backend: bad flags exit 2; a dry run changes nothing; and the crash proof: SIGKILL the collector
 * in the middle of a run, run it again, and it completes with nothing referenced lost, nothing
 * unreferenced left and the trash empty.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { RegistryStore } from '../../src/registry/store.ts';
import { QuotaLedger } from '../../src/projects/quota-ledger.ts';
import { BACKENDS } from '../helpers/backends.ts';
import { checkIntegrity, checkQuotas, seedRegistry, storageRoot } from '../helpers/gc.ts';
import { ADMIN_PASSWORD } from '../helpers/harbor-api.ts';
import { createProject } from '../helpers/iam.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');

interface Run {
  readonly status: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) if (!key.startsWith('BERTH_')) env[key] = value;
  return env;
}

/** Runs `berth gc …`; `onStderr` may kill the child. */
function berthGc(server: TestServer, args: string[], onStderr?: (text: string, child: ChildProcess) => void): Promise<Run> {
  const database = server.app.config.database.url;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(ROOT, 'bin/berth.js'), 'gc', '--data-dir', server.dataDir, ...(database ? ['--database-url', database] : []), ...args], {
      cwd: ROOT,
      env: cleanEnv(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => {
      stderr += d;
      onStderr?.(stderr, child);
    });
    child.on('error', reject);
    child.on('close', (status, signal) => resolve({ status, signal, stdout, stderr }));
  });
}

for (const backend of BACKENDS) {
  describe(`berth gc (${backend})`, () => {
    let server: TestServer;
    let garbage = 0;
    before(async () => {
      server = await startTestServer(backend, { config: { auth: { enabled: true }, adminPassword: ADMIN_PASSWORD } });
      await createProject(server, 'seed');
      const db = server.app.database.db;
      const seeded = await seedRegistry(db, storageRoot(server), { repositories: 20, manifests: 3000, layersPerManifest: 3, layerBytes: 64, createdAt: Date.now() - 60_000, prefix: 'seed/' });
      // A third of the images are deleted through the registry: their blobs become candidates and leave the quota.
      const registry = new RegistryStore(db, Date.now, new QuotaLedger());
      for (const [i, m] of seeded.manifests.entries()) {
        if (i % 3 !== 0) continue;
        await registry.deleteManifest(m.repositoryId, m.digest);
        garbage += m.blobs.length;
      }
      // The seed charged nothing: recompute the quota from the ledger's rule, as pushes would have.
      await db.deleteFrom('project_blobs').execute();
      const project = await db.selectFrom('projects').select('id').where('name', '=', 'seed').executeTakeFirstOrThrow();
      const held = await db
        .selectFrom('repository_blobs as rb')
        .innerJoin('blobs as b', 'b.digest', 'rb.digest')
        .innerJoin('manifest_references as mr', (join) => join.onRef('mr.child_digest', '=', 'rb.digest').onRef('mr.repository_id', '=', 'rb.repository_id'))
        .select(['b.digest', 'b.size'])
        .distinct()
        .execute();
      const manifests = await db.selectFrom('manifests').select(['digest', 'size']).execute();
      const rows = [...held, ...manifests].map((r) => ({ project_id: project.id, digest: r.digest, size: r.size, created_at: Date.now() }));
      for (let i = 0; i < rows.length; i += 500) await db.insertInto('project_blobs').values(rows.slice(i, i + 500)).execute();
      await db
        .updateTable('quotas')
        .set({ used: rows.reduce((sum, r) => sum + r.size, 0) })
        .where('project_id', '=', project.id)
        .execute();
    });
    after(() => server.close());

    it('refuses bad flags with exit code 2', async () => {
      for (const args of [['--time-window', '-1'], ['--time-window', 'soon'], ['--workers', '0'], ['--workers', '11'], ['extra'], ['--unknown']]) {
        const run = await berthGc(server, args);
        assert.equal(run.status, 2, `${args.join(' ')}: ${run.stderr}`);
        assert.match(run.stderr, /berth/);
      }
    });

    it('a dry run reports what would be freed and changes nothing', async () => {
      const before = await server.app.database.db.selectFrom('blobs').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
      const run = await berthGc(server, ['--dry-run', '--time-window', '0']);
      assert.equal(run.status, 0, run.stderr);
      assert.match(run.stdout, new RegExp(`\\(dry run\\): would free .*: ${garbage} blob\\(s\\)`));
      const after = await server.app.database.db.selectFrom('blobs').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
      assert.equal(Number(after.n), Number(before.n));
    });

    it('killed mid-run, runs again to completion and loses nothing', async (t) => {
      // Batches of 256, each followed by a pause as long as the batch: kill at several delays after
      // the first progress line, so that some kills land inside a batch's transaction (files
      // moving to the trash) and others between two.
      const db = server.app.database.db;
      let trashedAtKill = 0;
      for (const delayMs of [5, 25, 50, 80]) {
        const killed = await berthGc(server, ['--time-window', '0'], (text, child) => {
          if (/… examined/.test(text) && child.exitCode === null && !child.killed) setTimeout(() => child.kill('SIGKILL'), delayMs);
        });
        assert.equal(killed.signal, 'SIGKILL', `the collector was not killed mid-run: ${killed.stdout}${killed.stderr}`);
        const midway = await checkIntegrity(db, storageRoot(server));
        assert.ok(midway.unreferenced.length > 0, 'the run was over before the kill');
        trashedAtKill += midway.trashed;
        t.diagnostic(`killed ${delayMs} ms after a batch: ${garbage - midway.unreferenced.length} of ${garbage} garbage blobs deleted so far, ${midway.trashed} blob(s) in the trash`);
      }
      t.diagnostic(`${trashedAtKill} blob(s) were in the trash after the kills`);

      const again = await berthGc(server, ['--time-window', '0']);
      assert.equal(again.status, 0, again.stderr);
      assert.match(again.stdout, /done/);
      const report = await checkIntegrity(db, storageRoot(server));
      assert.deepEqual(report.unreferenced, []);
      assert.deepEqual(report.strayFiles, []);
      assert.equal(report.trashed, 0);
      assert.equal(report.blobs, 3000 * 4 - garbage);
      await checkQuotas(db);
      // Both runs are in the history; the killed one never claimed success.
      const runs = await db.selectFrom('gc_runs').select(['trigger', 'status']).where('trigger', '=', 'CLI').orderBy('id').execute();
      assert.equal(runs.at(-1)?.status, 'Success');
      assert.deepEqual(
        runs.slice(-5, -1).map((r) => r.status),
        ['Running', 'Running', 'Running', 'Running'],
      );
    });
  });
}
