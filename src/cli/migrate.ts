import { loadConfig, resolveDataPath } from '../config/load.ts';
import { createDatabase } from '../platform/db/database.ts';
import { type CliFlags, configOverrides } from './flags.ts';

/** `berth migrate`: brings the database schema up to date and says what it applied. */
export async function migrate(flags: CliFlags): Promise<number> {
  const config = loadConfig({ file: flags.config, overrides: configOverrides(flags) });
  const database = createDatabase({ url: config.database.url, sqliteFile: resolveDataPath(config, 'berth.db') });
  try {
    const applied = await database.migrate();
    console.log(applied.length === 0 ? `${database.dialect}: schema is up to date` : `${database.dialect}: applied ${applied.join(', ')}`);
    return 0;
  } finally {
    await database.close();
  }
}
