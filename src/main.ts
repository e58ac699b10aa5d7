import { audit } from './cli/audit.ts';
import { configCheck } from './cli/config-check.ts';
import { gc } from './cli/gc.ts';
import { parseFlags } from './cli/flags.ts';
import { migrate } from './cli/migrate.ts';
import { serve } from './cli/serve.ts';
import { user } from './cli/user.ts';
import { ConfigError } from './config/load.ts';

const USAGE = `usage: berth <command> [flags]

commands:
  serve          run the registry        [--addr HOST:PORT] [--data-dir DIR] [--config FILE] [--database-url URL]
  migrate        bring the database schema up to date   [--config FILE] [--data-dir DIR] [--database-url URL]
  config-check   validate a config file  FILE
  user           manage local users: create NAME, password NAME, promote NAME, list   (berth user help)
  gc             collect garbage now   [--dry-run] [--delete-untagged] [--time-window HOURS] [--full] [--workers N]
  audit          verify the audit log's hash chain: audit verify   [--data-dir DIR | --config FILE]
`;

const COMMANDS: Record<string, typeof serve> = { serve, migrate, 'config-check': configCheck, user, gc, audit };

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === 'help' || command === '--help' || command === '-h') {
    process.stdout.write(USAGE);
    return command === undefined ? 2 : 0;
  }
  const run = COMMANDS[command];
  if (!run) {
    process.stderr.write(`berth: unknown command "${command}"\n${USAGE}`);
    return 2;
  }
  try {
    return await run(parseFlags(rest, command));
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`berth: invalid configuration: ${err.message}\n`);
      return 2;
    }
    if ((err as NodeJS.ErrnoException).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' || (err as NodeJS.ErrnoException).code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
      process.stderr.write(`berth: ${(err as Error).message}\n${USAGE}`);
      return 2;
    }
    process.stderr.write(`berth: ${(err as Error).stack ?? String(err)}\n`);
    return 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
