import { parseArgs } from 'node:util';

export interface CliFlags {
  readonly config: string | undefined;
  readonly addr: string | undefined;
  readonly dataDir: string | undefined;
  readonly databaseUrl: string | undefined;
  /** `berth user`: the password to set (prefer --password-stdin: arguments show in `ps`). */
  readonly password: string | undefined;
  /** `berth user`: read the password from the first line of standard input. */
  readonly passwordStdin: boolean;
  /** `berth user create`: the user's email. */
  readonly email: string | undefined;
  /** `berth user create`: make the user a system administrator. */
  readonly admin: boolean;
  /** `berth gc`: report what would be freed, change nothing. */
  readonly dryRun: boolean;
  /** `berth gc`: also delete untagged artifacts. */
  readonly deleteUntagged: boolean;
  /** `berth gc`: time window in hours (text; checked by the command). */
  readonly timeWindow: string | undefined;
  /** `berth gc`: examine every blob and stored file, not only what changed. */
  readonly full: boolean;
  /** `berth gc`: sweeps running at once (text; checked by the command). */
  readonly workers: string | undefined;
  readonly positionals: string[];
}

/** The flags each command reads; any other is refused, so a flag given to the wrong command is not silently ignored. */
const CONNECTION_FLAGS = ['config', 'data-dir', 'database-url'] as const;
export const COMMAND_FLAGS: Readonly<Record<string, readonly string[]>> = {
  serve: [...CONNECTION_FLAGS, 'addr'],
  migrate: CONNECTION_FLAGS,
  'config-check': ['config'],
  user: [...CONNECTION_FLAGS, 'password', 'password-stdin', 'email', 'admin'],
  gc: [...CONNECTION_FLAGS, 'dry-run', 'delete-untagged', 'time-window', 'full', 'workers'],
  audit: CONNECTION_FLAGS,
};

/**
 * Parses the flags of `command` (every known flag when none is named). A flag another command
 * takes is an error of the same kind as an unknown one (ERR_PARSE_ARGS_UNKNOWN_OPTION).
 */
export function parseFlags(args: string[], command?: string): CliFlags {
  const { values, positionals, tokens } = parseArgs({
    args,
    allowPositionals: true,
    tokens: true,
    options: {
      config: { type: 'string', short: 'c' },
      addr: { type: 'string' },
      'data-dir': { type: 'string' },
      'database-url': { type: 'string' },
      password: { type: 'string' },
      'password-stdin': { type: 'boolean' },
      email: { type: 'string' },
      admin: { type: 'boolean' },
      'dry-run': { type: 'boolean' },
      'delete-untagged': { type: 'boolean' },
      'time-window': { type: 'string' },
      full: { type: 'boolean' },
      workers: { type: 'string' },
    },
  });
  const allowed = command === undefined ? undefined : COMMAND_FLAGS[command];
  if (allowed !== undefined) {
    for (const token of tokens) {
      if (token.kind !== 'option' || allowed.includes(token.name)) continue;
      const takes = Object.entries(COMMAND_FLAGS)
        .filter(([, flags]) => flags.includes(token.name))
        .map(([name]) => `berth ${name}`);
      throw Object.assign(new TypeError(`option --${token.name} is not a flag of berth ${command}${takes.length > 0 ? ` (it belongs to ${takes.join(', ')})` : ''}`), {
        code: 'ERR_PARSE_ARGS_UNKNOWN_OPTION',
      });
    }
  }
  return {
    config: values.config,
    addr: values.addr,
    dataDir: values['data-dir'],
    databaseUrl: values['database-url'],
    password: values.password,
    passwordStdin: values['password-stdin'] ?? false,
    email: values.email,
    admin: values.admin ?? false,
    dryRun: values['dry-run'] ?? false,
    deleteUntagged: values['delete-untagged'] ?? false,
    timeWindow: values['time-window'],
    full: values.full ?? false,
    workers: values.workers,
    positionals,
  };
}

/** CLI flags in the shape of the config file, so they go through the same validation. */
export function configOverrides(flags: CliFlags): Record<string, unknown> {
  return {
    ...(flags.dataDir !== undefined ? { dataDir: flags.dataDir } : {}),
    ...(flags.addr !== undefined ? { server: { addr: flags.addr } } : {}),
    ...(flags.databaseUrl !== undefined ? { database: { url: flags.databaseUrl } } : {}),
  };
}
