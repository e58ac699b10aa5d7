/**
 * The berth CLI as a child process: exit codes and what it prints. These tests spawn
 * `node src/main.ts` and touch a temp folder; they need no database server.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';

const ROOT = path.resolve(import.meta.dirname, '../..');
const scratch = mkdtempSync(path.join(tmpdir(), 'berth-cli-test-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

/** The environment without BERTH_* variables, so the machine's settings cannot leak in. */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) if (!key.startsWith('BERTH_')) env[key] = value;
  return { ...env, ...extra };
}

function berth(args: string[], env: Record<string, string> = {}): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [path.join(ROOT, 'src/main.ts'), ...args], { cwd: scratch, env: cleanEnv(env), encoding: 'utf8', timeout: 60_000 });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

let fileCount = 0;
function yamlFile(text: string): string {
  const file = path.join(scratch, `cli-${++fileCount}.yaml`);
  writeFileSync(file, text);
  return file;
}

describe('berth config-check', () => {
  it('says ok and exits 0 for a good file', () => {
    const file = yamlFile('server:\n  addr: "127.0.0.1:5000"\nlog:\n  level: warn\n');
    const { status, stdout } = berth(['config-check', file]);
    assert.equal(status, 0);
    assert.match(stdout, /: ok$/m);
    assert.ok(stdout.includes(file));
  });

  it('accepts config/example.yaml', () => {
    const { status, stdout } = berth(['config-check', path.join(ROOT, 'config/example.yaml')]);
    assert.equal(status, 0);
    assert.match(stdout, /ok/);
  });

  it('exits 2 naming an unknown key', () => {
    const { status, stderr } = berth(['config-check', yamlFile('registry:\n  manifestMaxByte: 10\n')]);
    assert.equal(status, 2);
    assert.match(stderr, /registry\.manifestMaxByte: unknown key/);
  });

  it('exits 2 naming a key of the wrong type', () => {
    const { status, stderr } = berth(['config-check', yamlFile('uploads:\n  maxBlobBytes: lots\n')]);
    assert.equal(status, 2);
    assert.match(stderr, /uploads\.maxBlobBytes: expected an integer/);
  });

  it('exits 2 naming the file and the line of invalid YAML', () => {
    const file = yamlFile('server:\n  addr: "unterminated\n');
    const { status, stderr } = berth(['config-check', file]);
    assert.equal(status, 2);
    assert.ok(stderr.includes(file), stderr);
    assert.match(stderr, /invalid YAML/);
    assert.match(stderr, /line \d+/);
    assert.doesNotMatch(stderr, /\n\s+at /, 'no stack trace for a user mistake');
  });

  it('checks the BERTH_* environment too', () => {
    const { status, stderr } = berth(['config-check', yamlFile('{}\n')], { BERTH_SERVER_ADDR: 'nowhere' });
    assert.equal(status, 2);
    assert.match(stderr, /server\.addr/);
  });

  it('exits 2 naming a bad audit.syslog endpoint, as the server would at start', () => {
    for (const syslog of ['syslog.example:514', 'http://syslog.example:514', 'tcp://syslog.example:70000']) {
      const { status, stderr } = berth(['config-check', yamlFile(`audit:\n  syslog: "${syslog}"\n`)]);
      assert.equal(status, 2, syslog);
      assert.match(stderr, /invalid configuration: audit\.syslog: expected udp:\/\/HOST:PORT or tcp:\/\/HOST:PORT/, stderr);
      assert.ok(stderr.includes(syslog), stderr);
      assert.doesNotMatch(stderr, /\n\s+at /, 'no stack trace for a user mistake');
    }
    for (const syslog of ['tcp://syslog.example:6514', 'udp://[::1]:514']) {
      const { status, stdout, stderr } = berth(['config-check', yamlFile(`audit:\n  syslog: "${syslog}"\n`)]);
      assert.equal(status, 0, `${syslog}: ${stderr}`);
      assert.match(stdout, /: ok$/m);
    }
  });

  it('exits 2 naming a bad audit.purgeCron when a purge is scheduled, as the server would at start', () => {
    for (const cron of ['every night', '0 61 2 * * *', '0 0 0 30 2 *']) {
      const { status, stderr } = berth(['config-check', yamlFile(`audit:\n  retainDays: 30\n  purgeCron: "${cron}"\n`)]);
      assert.equal(status, 2, cron);
      assert.match(stderr, /invalid configuration: audit\.purgeCron: /, stderr);
      assert.doesNotMatch(stderr, /\n\s+at /, 'no stack trace for a user mistake');
    }
    const viaEnv = berth(['config-check', yamlFile('audit:\n  maxEntries: 1000\n')], { BERTH_AUDIT_PURGE_CRON: 'nonsense' });
    assert.equal(viaEnv.status, 2);
    assert.match(viaEnv.stderr, /audit\.purgeCron/);
    // Without retainDays or maxEntries nothing is scheduled and the server ignores the expression.
    assert.equal(berth(['config-check', yamlFile('audit:\n  purgeCron: "every night"\n')]).status, 0);
    assert.equal(berth(['config-check', yamlFile('audit:\n  retainDays: 30\n  purgeCron: "0 15 3 * * *"\n')]).status, 0);
  });

  it('exits 2 with usage when no file is given', () => {
    const { status, stderr } = berth(['config-check']);
    assert.equal(status, 2);
    assert.match(stderr, /usage: berth config-check FILE/);
  });
});

describe('berth commands', () => {
  it('exits 2 with usage for an unknown command', () => {
    const { status, stderr } = berth(['nosuchcommand']);
    assert.equal(status, 2);
    assert.match(stderr, /unknown command "nosuchcommand"/);
    assert.match(stderr, /usage: berth <command>/);
    assert.match(stderr, /config-check/);
  });

  it('exits 2 with usage for an unknown flag', () => {
    const { status, stderr } = berth(['migrate', '--bogus']);
    assert.equal(status, 2);
    assert.match(stderr, /--bogus/);
    assert.match(stderr, /usage: berth/);
  });

  it("exits 2 for another command's flag instead of ignoring it, naming the commands that take it", () => {
    for (const [args, flag, owner] of [
      [['migrate', '--dry-run'], '--dry-run', 'berth gc'],
      [['audit', 'verify', '--workers', '2'], '--workers', 'berth gc'],
      [['gc', '--addr', '127.0.0.1:1'], '--addr', 'berth serve'],
      [['serve', '--password', 'x'], '--password', 'berth user'],
    ] as const) {
      const { status, stderr } = berth([...args]);
      assert.equal(status, 2, args.join(' '));
      assert.match(stderr, new RegExp(`${flag} is not a flag of berth ${args[0]} \\(it belongs to ${owner}\\)`));
      assert.match(stderr, /usage: berth/);
    }
  });

  it('prints usage and exits 0 for --help', () => {
    const { status, stdout } = berth(['--help']);
    assert.equal(status, 0);
    assert.match(stdout, /usage: berth <command>/);
  });

  it('migrate creates the SQLite database, and a second run finds it up to date', () => {
    const dataDir = path.join(scratch, 'data-migrate');
    const first = berth(['migrate', '--data-dir', dataDir]);
    assert.equal(first.status, 0, first.stderr);
    assert.match(first.stdout, /sqlite: applied 0001_registry_core\b/);
    assert.ok(existsSync(path.join(dataDir, 'berth.db')));
    const second = berth(['migrate', '--data-dir', dataDir]);
    assert.equal(second.status, 0, second.stderr);
    assert.match(second.stdout, /sqlite: schema is up to date/);
  });

  it('migrate refuses a bad config before touching anything', () => {
    const dataDir = path.join(scratch, 'data-bad');
    const { status, stderr } = berth(['migrate', '--data-dir', dataDir, '--database-url', 'mysql://x/y']);
    assert.equal(status, 2);
    assert.match(stderr, /database\.url/);
    assert.equal(existsSync(dataDir), false);
  });
});
