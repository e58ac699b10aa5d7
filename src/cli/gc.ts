/**
 * `berth gc`: one garbage collection, run in this process on the database and storage the
 * configuration names (not through a server), recorded in the history like the API's runs. Safe
 * beside running servers: the collector takes the same row locks as their pushes.
 *
 *   berth gc [--dry-run] [--delete-untagged] [--time-window HOURS] [--full] [--workers N]
 *
 * Progress goes to stderr, the summary to stdout. Ctrl-C stops after the current batch (what was
 * done stays consistent; the next run goes on); a second Ctrl-C quits at once, which is safe too.
 */
import { loadConfig, resolveDataPath } from '../config/load.ts';
import { formatBytes, GcService } from '../gc/service.ts';
import { GcRuns, MAX_WORKERS } from '../gc/runs.ts';
import { GcStore } from '../gc/store.ts';
import { createDatabase } from '../platform/db/database.ts';
import { JobService } from '../platform/jobs/service.ts';
import { FilesystemBlobStore } from '../platform/storage/filesystem.ts';
import { QuotaLedger } from '../projects/quota-ledger.ts';
import { RegistryStore } from '../registry/store.ts';
import { type CliFlags, configOverrides } from './flags.ts';

export const GC_USAGE = `usage: berth gc [--dry-run] [--delete-untagged] [--time-window HOURS] [--full] [--workers N]
                (also --config FILE, --data-dir DIR, --database-url URL)

  --dry-run            report what would be freed; change nothing
  --delete-untagged    also delete untagged artifacts (not those an index or a kept artifact's
                       signature or SBOM needs)
  --time-window HOURS  keep what was created or linked in the last HOURS hours (default: the
                       config's gc.timeWindowHours); 0 is safe
  --full               examine every blob and every stored file, not only what changed since
                       the last run (recovery after trouble)
  --workers N          sweeps running at once, 1 to ${MAX_WORKERS} (default 1)
`;

function wholeNumber(text: string | undefined, flag: string, min: number, max: number): number | undefined {
  if (text === undefined) return undefined;
  if (!/^[0-9]{1,9}$/.test(text) || Number(text) < min || Number(text) > max) throw new UsageError(`${flag} must be a whole number from ${min} to ${max}, got "${text}"`);
  return Number(text);
}

class UsageError extends Error {}

export async function gc(flags: CliFlags): Promise<number> {
  let timeWindow: number | undefined;
  let workers: number | undefined;
  try {
    if (flags.positionals.length > 0) throw new UsageError(`unexpected argument "${flags.positionals[0]}"`);
    timeWindow = wholeNumber(flags.timeWindow, '--time-window', 0, 876_000);
    workers = wholeNumber(flags.workers, '--workers', 1, MAX_WORKERS);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`berth gc: ${err.message}\n${GC_USAGE}`);
    return 2;
  }
  const config = loadConfig({ file: flags.config, overrides: configOverrides(flags) });
  const database = createDatabase({ url: config.database.url, sqliteFile: resolveDataPath(config, 'berth.db'), poolSize: Math.max(2, Math.min(config.database.poolSize, 11)) });
  let interrupted = 0;
  const onSignal = () => {
    interrupted++;
    if (interrupted > 1) process.exit(130);
    process.stderr.write('berth gc: stopping after the current batch (Ctrl-C again to quit now; that is safe too)\n');
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    await database.migrate();
    const blobs = new FilesystemBlobStore(config.storage.filesystemRoot || resolveDataPath(config, 'storage'));
    await blobs.init();
    const registry = new RegistryStore(database.db, Date.now, config.auth.enabled ? new QuotaLedger() : undefined);
    const store = new GcStore(database.db);
    const service = new GcService({ store, registry, blobs });
    // The job service is only there for the runs' bookkeeping; nothing is started.
    const jobs = new JobService({
      db: database.db,
      concurrency: 0,
      pollIntervalMs: config.jobs.pollIntervalMs,
      leaseMs: config.jobs.leaseSeconds * 1000,
      logLinesPerJob: config.jobs.logLinesPerJob,
      schedulerTickMs: config.jobs.schedulerTickMs,
      keepFinishedDays: 0,
      stopTimeoutMs: 0,
    });
    const runs = new GcRuns({ db: database.db, store, gc: service, jobs, defaultTimeWindowHours: config.gc.timeWindowHours });
    let lastProgress = 0;
    const { id, result } = await runs.runDirect(
      {
        deleteUntagged: flags.deleteUntagged,
        dryRun: flags.dryRun,
        workers: workers ?? 1,
        timeWindowHours: timeWindow ?? config.gc.timeWindowHours,
        full: flags.full,
      },
      {
        log: (message, level = 'info') => process.stderr.write(`${new Date().toISOString()} ${level.toUpperCase()} ${message}\n`),
        shouldStop: () => interrupted > 0,
        progress: (counters) => {
          if (Date.now() - lastProgress < 1000) return;
          lastProgress = Date.now();
          process.stderr.write(`  … examined ${counters.examinedBlobs} blob(s), deleted ${counters.deletedBlobs} (${formatBytes(counters.freedBytes)})\n`);
        },
      },
    );
    const verb = result.dryRun ? 'would free' : 'freed';
    process.stdout.write(
      `gc run ${id} ${result.stopped ? 'stopped' : 'done'}${result.dryRun ? ' (dry run)' : ''}: ${verb} ${formatBytes(result.freedBytes)} (${result.freedBytes} bytes): ${result.deletedBlobs} blob(s), ${result.deletedArtifacts} artifact(s)${result.strayFiles > 0 ? `, ${result.strayFiles} stray file(s)` : ''} in ${(result.durationMs / 1000).toFixed(1)} s\n`,
    );
    return result.stopped ? 130 : 0;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await database.close();
  }
}
