/**
 * `berth user` as a child process (`node bin/berth.js user …`) against the database of a running
 * test server, on every backend: what it creates and changes is what the server then accepts.
 * Bad input exits 2 with the reason on stderr; a given password is never printed.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { BACKENDS } from '../helpers/backends.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const ADMIN = 'Admin12345';
const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

interface Run {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** The environment without BERTH_* variables, so the machine's settings cannot leak in. */
function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) if (!key.startsWith('BERTH_')) env[key] = value;
  return env;
}

function berth(args: string[], stdin = ''): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(ROOT, 'bin/berth.js'), ...args], { cwd: ROOT, env: cleanEnv(), stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (status) => resolve({ status, stdout, stderr }));
    child.stdin.end(stdin);
  });
}

describe('berth user: bad command lines (no database touched)', () => {
  let scratch: string;
  before(async () => {
    scratch = await mkdtemp(path.join(tmpdir(), 'berth-cli-user-'));
  });
  after(() => rm(scratch, { recursive: true, force: true }));

  it('exits 2 with a reason for each mistake, 0 for help', async () => {
    const d = ['--data-dir', scratch];
    const cases: Array<[string[], RegExp]> = [
      [['user', ...d], /missing action/],
      [['user', 'delete', 'x', ...d], /unknown action "delete"/],
      [['user', 'create', ...d], /create needs a user name/],
      [['user', 'create', 'a', 'b', ...d], /unexpected argument "b"/],
      [['user', 'list', 'extra', ...d], /unexpected argument "extra"/],
      [['user', 'promote', 'a', '--password', 'Secret123', ...d], /do not apply to promote/],
      [['user', 'create', 'a', '--password', 'Secret123', '--password-stdin', ...d], /either --password or --password-stdin/],
      [['user', 'create', 'a', '--password', '', ...d], /must not be empty/],
      [['user', 'password', 'a', '--email', 'a@b.io', ...d], /--email applies to create only/],
      [['user', 'password', 'a', '--admin', ...d], /--admin applies to create only/],
      [['user', 'list', '--nope', ...d], /Unknown option/i],
      [['user', 'list', '--database-url', 'mysql://x'], /database\.url/],
    ];
    // Independent runs that write nothing: in parallel, to spend less time on process start-up.
    const runs = await Promise.all(cases.map(([args]) => berth(args)));
    for (const [i, [args, message]] of cases.entries()) {
      const run = runs[i] as Run;
      assert.equal(run.status, 2, `${args.join(' ')}: ${run.stderr}`);
      assert.match(run.stderr, message, args.join(' '));
      assert.doesNotMatch(run.stderr, /Secret123/, 'a given password is never echoed');
    }
    const help = await berth(['user', 'help']);
    assert.equal(help.status, 0);
    assert.match(help.stdout, /create NAME/);
    assert.match((await berth(['help'])).stdout, /user +manage local users/);
  });
});

for (const backend of BACKENDS) {
  describe(`berth user on ${backend}`, () => {
    let server: TestServer;
    let target: string[];

    before(async () => {
      server = await startTestServer(backend, { config: { auth: { enabled: true }, adminPassword: ADMIN } });
      target = backend === 'sqlite' ? ['--data-dir', server.dataDir] : ['--database-url', server.app.config.database.url];
    });
    after(() => server.close());

    const me = async (user: string, password: string) => {
      const res = await fetch(`${server.url}/api/v2.0/users/current`, { headers: { authorization: basic(user, password) } });
      return { status: res.status, body: res.status === 200 ? ((await res.json()) as { username: string; sysadmin_flag: boolean; email: string }) : undefined };
    };
    const asAdmin = async (userId: number) => {
      const res = await fetch(`${server.url}/api/v2.0/users/${userId}`, { headers: { authorization: basic('admin', ADMIN) } });
      assert.equal(res.status, 200);
      return (await res.json()) as { username: string; sysadmin_flag: boolean; email: string };
    };
    const idIn = (stdout: string) => Number(/\(id (\d+)\)/.exec(stdout)?.[1]);

    it('create --password-stdin: the server accepts the user; the password is not printed', async () => {
      const run = await berth(['user', 'create', 'alice', '--password-stdin', '--email', 'alice@example.com', ...target], 'Alice1234\n');
      assert.equal(run.status, 0, run.stderr);
      assert.match(run.stdout, /^created user alice \(id \d+\)$/m);
      assert.doesNotMatch(run.stdout + run.stderr, /Alice1234/);
      const alice = await me('alice', 'Alice1234');
      assert.equal(alice.status, 200);
      assert.equal(alice.body?.email, 'alice@example.com');
      assert.equal(alice.body?.sysadmin_flag, false);
    });

    it('create without a password generates one and prints it once; --admin makes a system admin', async () => {
      const run = await berth(['user', 'create', 'root2', '--admin', ...target]);
      assert.equal(run.status, 0, run.stderr);
      assert.match(run.stdout, /created user root2 \(id \d+\), a system administrator/);
      const password = /^password: (\S+)$/m.exec(run.stdout)?.[1];
      assert.ok(password && password.length >= 32, run.stdout);
      const root2 = await me('root2', password);
      assert.equal(root2.status, 200);
      assert.equal(root2.body?.sysadmin_flag, true);
    });

    it('create --password works, and bad users are refused with exit 2 and nothing created', async () => {
      const run = await berth(['user', 'create', 'bob', '--password', 'Bobpass12', ...target]);
      assert.equal(run.status, 0, run.stderr);
      assert.doesNotMatch(run.stdout, /Bobpass12/);
      const bobId = idIn(run.stdout);
      assert.ok(bobId > 0);
      const refusals: Array<[string[], string, RegExp]> = [
        [['user', 'create', 'bob', '--password', 'Bobpass12'], '', /already exists/],
        [['user', 'create', 'BOB', '--password', 'Bobpass12'], '', /already exists/],
        [['user', 'create', 'c#d', '--password', 'Bobpass12'], '', /must not contain/],
        [['user', 'create', 'carl', '--password', 'weakpass'], '', /uppercase/],
        [['user', 'create', 'carl', '--password', 'Carlpass1', '--email', 'nope'], '', /email/],
        [['user', 'create', 'carl', '--password', 'Carlpass1', '--email', 'alice@example.com'], '', /email/],
        [['user', 'create', 'carl', '--password-stdin'], '', /no password on standard input/],
        [['user', 'create', 'carl', '--password-stdin'], '\n', /no password on standard input/],
      ];
      // Each is refused, so none changes what the others see: run them in parallel.
      const results = await Promise.all(refusals.map(([args, stdin]) => berth([...args, ...target], stdin)));
      for (const [i, [args, , message]] of refusals.entries()) {
        const refused = results[i] as Run;
        assert.equal(refused.status, 2, `${args.join(' ')}: ${refused.stderr}`);
        assert.match(refused.stderr, message, args.join(' '));
        assert.equal(refused.stdout, '');
      }
      assert.equal((await me('carl', 'Carlpass1')).status, 401, 'carl was never created');
      const list = await berth(['user', 'list', ...target]);
      assert.doesNotMatch(list.stdout, /carl|BOB|c#d/);
    });

    it('password resets the password and ends the user’s web sessions', async () => {
      // dave has never logged in, so no server cache holds his old password.
      assert.equal((await berth(['user', 'create', 'dave', '--password', 'Davepass1', ...target])).status, 0);
      const login = await fetch(`${server.url}/c/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ principal: 'dave', password: 'Davepass1' }) });
      assert.equal(login.status, 200);
      const cookie = /sid=([^;]+)/.exec(login.headers.get('set-cookie') ?? '')?.[1];
      const session = () => fetch(`${server.url}/api/v2.0/users/current`, { headers: { cookie: `sid=${cookie}` } });
      assert.equal((await session()).status, 200);

      const run = await berth(['user', 'password', 'dave', '--password-stdin', ...target], 'Newdave12\r\n');
      assert.equal(run.status, 0, run.stderr);
      assert.match(run.stdout, /changed the password of dave and ended 1 web session/);
      assert.doesNotMatch(run.stdout, /Newdave12/);
      assert.equal((await session()).status, 401);
      assert.equal((await me('dave', 'Newdave12')).status, 200);

      const generated = await berth(['user', 'password', 'dave', ...target]);
      assert.equal(generated.status, 0, generated.stderr);
      const password = /^password: (\S+)$/m.exec(generated.stdout)?.[1];
      assert.ok(password);
      assert.equal((await me('dave', password)).status, 200);

      for (const [args, stdin, message] of [
        [['user', 'password', 'nobody', '--password', 'Whatever1'], '', /no user named "nobody"/],
        [['user', 'password', 'dave', '--password', 'short'], '', /at least 8/],
        [['user', 'password', 'dave', '--password', password], '', /identical/],
      ] as Array<[string[], string, RegExp]>) {
        const refused = await berth([...args, ...target], stdin);
        assert.equal(refused.status, 2, refused.stderr);
        assert.match(refused.stderr, message);
      }
      assert.equal((await me('dave', password)).status, 200, 'refused resets changed nothing');
    });

    it('promote makes a system administrator; twice is fine; unknown names exit 2', async () => {
      const created = await berth(['user', 'create', 'erin', '--password', 'Erinpass1', ...target]);
      const erinId = idIn(created.stdout);
      assert.equal((await asAdmin(erinId)).sysadmin_flag, false);
      const run = await berth(['user', 'promote', 'erin', ...target]);
      assert.equal(run.status, 0, run.stderr);
      assert.match(run.stdout, /erin is now a system administrator/);
      assert.equal((await asAdmin(erinId)).sysadmin_flag, true);
      const again = await berth(['user', 'promote', 'erin', ...target]);
      assert.equal(again.status, 0);
      assert.match(again.stdout, /already a system administrator/);
      const unknown = await berth(['user', 'promote', 'nobody', ...target]);
      assert.equal(unknown.status, 2);
      assert.match(unknown.stderr, /no user named "nobody"/);
    });

    it('list shows every user with id, email and admin flag, never a password', async () => {
      const run = await berth(['user', 'list', ...target]);
      assert.equal(run.status, 0, run.stderr);
      const lines = run.stdout.trim().split('\n');
      assert.match(lines[0] ?? '', /^ID\s+USERNAME\s+EMAIL\s+ADMIN\s+CREATED$/);
      const rows = lines.slice(1).map((l) => l.split(/\s{2,}/));
      assert.deepEqual(
        rows.map((r) => r[1]),
        ['admin', 'alice', 'root2', 'bob', 'dave', 'erin'],
      );
      assert.deepEqual(rows.find((r) => r[1] === 'alice')?.slice(2, 4), ['alice@example.com', 'no']);
      assert.deepEqual(rows.find((r) => r[1] === 'admin')?.slice(2, 4), ['-', 'yes']);
      assert.doesNotMatch(run.stdout, /argon2|Alice1234/);
    });
  });
}
