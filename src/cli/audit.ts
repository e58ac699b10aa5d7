/**
 * `berth audit verify`: recomputes the audit log's hash chain on the database the configuration
 * names (not through a server; safe beside running servers) and reports the first entry where it
 * breaks. Exit status 0 when the chain verifies, 1 when it breaks, 2 for a usage error.
 *
 *   berth audit verify [--data-dir DIR | --config FILE] [--database-url URL]
 */
import { AuditStore } from '../audit/store.ts';
import { loadConfig, resolveDataPath } from '../config/load.ts';
import { createDatabase } from '../platform/db/database.ts';
import { type CliFlags, configOverrides } from './flags.ts';

export const AUDIT_USAGE = `usage: berth audit verify [--data-dir DIR | --config FILE] [--database-url URL]

  verify   recompute the audit log's hash chain from the last purge checkpoint to the newest
           entry; report the first entry that was deleted, edited or added outside the log.
           Exit status 0: the chain verifies; 1: it breaks.
`;

export async function audit(flags: CliFlags): Promise<number> {
  const [sub, ...rest] = flags.positionals;
  if (sub === 'help' || sub === '--help') {
    process.stdout.write(AUDIT_USAGE);
    return 0;
  }
  if (sub !== 'verify' || rest.length > 0) {
    process.stderr.write(`berth audit: ${sub === undefined ? 'missing subcommand' : rest.length > 0 ? `unexpected argument "${rest[0]}"` : `unknown subcommand "${sub}"`}\n${AUDIT_USAGE}`);
    return 2;
  }
  const config = loadConfig({ file: flags.config, overrides: configOverrides(flags) });
  const database = createDatabase({ url: config.database.url, sqliteFile: resolveDataPath(config, 'berth.db'), poolSize: 2 });
  try {
    await database.migrate();
    const store = new AuditStore(database.db);
    const started = Date.now();
    let lastProgress = 0;
    const result = await store.verify({
      onProgress: (checked, total) => {
        if (Date.now() - lastProgress < 1000) return;
        lastProgress = Date.now();
        process.stderr.write(`  … ${checked} of ${total} entries verified\n`);
      },
    });
    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    const range = result.head.id > result.checkpoint.id ? `entries ${result.checkpoint.id + 1} to ${result.head.id}` : 'no entries';
    if (result.valid) {
      process.stdout.write(
        `audit log verified: ${range} (${result.checked} checked in ${seconds} s); head hash ${result.head.hash}${result.checkpoint.id > 0 ? `; purged through entry ${result.checkpoint.id} (checkpoint hash ${result.checkpoint.hash})` : ''}\n`,
      );
      return 0;
    }
    const broken = result.firstBreak;
    process.stdout.write(`audit log BROKEN at entry ${broken?.id}: ${broken?.message} (${range}; ${result.checked} verified before the break)\n`);
    return 1;
  } finally {
    await database.close();
  }
}
