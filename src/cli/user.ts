/**
 * `berth user`: local users from the command line, on the database the configuration names
 * (the same one `serve` uses), for the first administrator, a locked-out admin or scripts.
 *
 *   berth user create NAME [--password P | --password-stdin] [--email E] [--admin]
 *   berth user password NAME [--password P | --password-stdin]
 *   berth user promote NAME
 *   berth user list
 *
 * Without --password or --password-stdin a password is generated and printed once; a password
 * that was given is never printed. Bad input exits 2 with the reason on stderr.
 */
import { loadConfig, resolveDataPath } from '../config/load.ts';
import { generateSecret } from '../iam/passwords.ts';
import { SessionService } from '../iam/sessions.ts';
import { UserService } from '../iam/users.ts';
import { createDatabase } from '../platform/db/database.ts';
import { ApiError } from '../platform/http/api.ts';
import { type CliFlags, configOverrides } from './flags.ts';

export const USER_USAGE = `usage: berth user <action> [flags]   (also --config FILE, --data-dir DIR, --database-url URL)

actions:
  create NAME [--password P | --password-stdin] [--email E] [--admin]
                   create a local user (a system administrator with --admin)
  password NAME [--password P | --password-stdin]
                   set a user's password and end their web sessions
  promote NAME     make a user a system administrator
  list             list the users

Without --password or --password-stdin a password is generated and printed once.
`;

/** Bad command-line input: printed to stderr with exit code 2. */
class UsageError extends Error {}

type Action = 'create' | 'password' | 'promote' | 'list';

interface Plan {
  readonly action: Action;
  readonly name: string | undefined;
}

function plan(flags: CliFlags): Plan {
  const [action = '', ...rest] = flags.positionals;
  if (action !== 'create' && action !== 'password' && action !== 'promote' && action !== 'list') throw new UsageError(`unknown action "${action}"`);
  const wantsName = action !== 'list';
  if (wantsName && rest.length === 0) throw new UsageError(`${action} needs a user name`);
  if (rest.length > (wantsName ? 1 : 0)) throw new UsageError(`unexpected argument "${rest[wantsName ? 1 : 0]}"`);
  const takesPassword = action === 'create' || action === 'password';
  if (!takesPassword && (flags.password !== undefined || flags.passwordStdin)) throw new UsageError(`--password and --password-stdin do not apply to ${action}`);
  if (flags.password !== undefined && flags.passwordStdin) throw new UsageError('give either --password or --password-stdin, not both');
  if (flags.password === '') throw new UsageError('--password must not be empty');
  if (action !== 'create' && flags.email !== undefined) throw new UsageError(`--email applies to create only`);
  if (action !== 'create' && flags.admin) throw new UsageError(`--admin applies to create only; use "berth user promote NAME"`);
  return { action, name: rest[0] };
}

/** The first line of standard input (without waiting for more once a line has come, as from a terminal). */
async function readStdinLine(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) {
    chunks.push(chunk as Buffer);
    if ((chunk as Buffer).includes(0x0a)) break;
  }
  const line = Buffer.concat(chunks).toString('utf8').split(/\r?\n/, 1)[0] ?? '';
  if (line === '') throw new UsageError('no password on standard input');
  return line;
}

/** The password to set and whether it was generated (and so may be printed). */
async function passwordOf(flags: CliFlags): Promise<{ password: string; generated: boolean }> {
  if (flags.password !== undefined) return { password: flags.password, generated: false };
  if (flags.passwordStdin) return { password: await readStdinLine(), generated: false };
  return { password: generateSecret(), generated: true };
}

function row(cells: readonly string[], widths: readonly number[]): string {
  return cells
    .map((cell, i) => (i === cells.length - 1 ? cell : cell.padEnd(widths[i] ?? 0)))
    .join('  ')
    .trimEnd();
}

export async function user(flags: CliFlags): Promise<number> {
  const first = flags.positionals[0];
  if (first === 'help') {
    process.stdout.write(USER_USAGE);
    return 0;
  }
  if (first === undefined) {
    process.stderr.write(`berth user: missing action\n${USER_USAGE}`);
    return 2;
  }
  let steps: Plan;
  try {
    steps = plan(flags);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`berth user: ${err.message}\n${USAGE_HINT}`);
    return 2;
  }
  const config = loadConfig({ file: flags.config, overrides: configOverrides(flags) });
  const database = createDatabase({ url: config.database.url, sqliteFile: resolveDataPath(config, 'berth.db') });
  try {
    await database.migrate();
    const users = new UserService({ db: database.db, passwordPolicy: { minLength: config.auth.passwordMinLength }, robotPrefix: config.auth.robotNamePrefix });
    const named = async () => {
      const found = await users.getByName(steps.name ?? '');
      if (!found) throw new UsageError(`no user named "${steps.name}"`);
      return found;
    };
    switch (steps.action) {
      case 'create': {
        const { password, generated } = await passwordOf(flags);
        const created = await users.create({ username: steps.name ?? '', password, email: flags.email, sysadmin: flags.admin });
        console.log(`created user ${created.username} (id ${created.id})${created.sysadmin ? ', a system administrator' : ''}`);
        if (generated) console.log(`password: ${password}`);
        return 0;
      }
      case 'password': {
        const target = await named();
        const { password, generated } = await passwordOf(flags);
        await users.setPassword(target.id, password);
        const ended = await new SessionService({ db: database.db, timeoutMinutes: config.auth.sessionTimeoutMinutes }).destroyAllOf(target.id);
        console.log(`changed the password of ${target.username}${ended > 0 ? ` and ended ${ended} web session${ended === 1 ? '' : 's'}` : ''}`);
        if (generated) console.log(`password: ${password}`);
        return 0;
      }
      case 'promote': {
        const target = await named();
        if (target.sysadmin) {
          console.log(`${target.username} is already a system administrator`);
          return 0;
        }
        await users.setSysadmin(target.id, true);
        console.log(`${target.username} is now a system administrator`);
        return 0;
      }
      case 'list': {
        const header = ['ID', 'USERNAME', 'EMAIL', 'ADMIN', 'CREATED'];
        const rows: string[][] = [];
        for (let offset = 0; ; offset += 100) {
          const { users: page } = await users.list({ offset, limit: 100 });
          for (const u of page) rows.push([String(u.id), u.username, u.email ?? '-', u.sysadmin ? 'yes' : 'no', new Date(u.createdAt).toISOString()]);
          if (page.length < 100) break;
        }
        const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
        console.log([header, ...rows].map((cells) => row(cells, widths)).join('\n'));
        return 0;
      }
    }
  } catch (err) {
    if (err instanceof UsageError || err instanceof ApiError) {
      process.stderr.write(`berth user: ${err.message}\n`);
      return 2;
    }
    throw err;
  } finally {
    await database.close();
  }
}

const USAGE_HINT = 'run "berth user help" for usage\n';
