import { parseArgs } from 'node:util';

export interface CliFlags {
  readonly config: string | undefined;
  readonly addr: string | undefined;
  readonly dataDir: string | undefined;
  readonly databaseUrl: string | undefined;
  readonly positionals: string[];
}

export function parseFlags(args: string[]): CliFlags {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      config: { type: 'string', short: 'c' },
      addr: { type: 'string' },
      'data-dir': { type: 'string' },
      'database-url': { type: 'string' },
    },
  });
  return { config: values.config, addr: values.addr, dataDir: values['data-dir'], databaseUrl: values['database-url'], positionals };
}

/** CLI flags in the shape of the config file, so they go through the same validation. */
export function configOverrides(flags: CliFlags): Record<string, unknown> {
  return {
    ...(flags.dataDir !== undefined ? { dataDir: flags.dataDir } : {}),
    ...(flags.addr !== undefined ? { server: { addr: flags.addr } } : {}),
    ...(flags.databaseUrl !== undefined ? { database: { url: flags.databaseUrl } } : {}),
  };
}
