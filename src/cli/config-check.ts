import { checkAuditConfig } from '../audit/build.ts';
import { loadConfig } from '../config/load.ts';
import type { CliFlags } from './flags.ts';

/** `berth config-check FILE`: validates a config file (with the BERTH_* environment) and names a bad key. */
export async function configCheck(flags: CliFlags): Promise<number> {
  const file = flags.positionals[0] ?? flags.config;
  if (!file) {
    console.error('usage: berth config-check FILE');
    return 2;
  }
  const config = loadConfig({ file });
  // What the server checks at start beyond the schema (it throws a ConfigError naming the key).
  checkAuditConfig(config);
  console.log(`${file}: ok`);
  return 0;
}
