import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { freePort } from '../helpers/e2e.ts';

/** The quick start as a user runs it: `npm start -- --addr … --data-dir …`, then a clean stop. */

async function waitForRegistry(url: string, exited: () => boolean): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (exited()) throw new Error('the server exited before it answered');
    try {
      // Auth is on by default: an anonymous /v2/ gets the token challenge.
      if ((await fetch(`${url}/v2/`)).status === 401) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('the server did not answer within 30 s');
}

// npm and npx die by the signal they relay (as with Ctrl-C in a terminal); the server's own exit
// code is checked where it is the direct child, and its last log line everywhere.
for (const launcher of [
  { label: 'npm start --', command: 'npm', args: ['start', '--silent', '--'], serverIsChild: false },
  { label: 'npx berth serve', command: 'npx', args: ['--no-install', 'berth', 'serve'], serverIsChild: false },
  { label: 'bin/berth.js serve', command: process.execPath, args: ['bin/berth.js', 'serve'], serverIsChild: true },
]) {
  describe(`${launcher.label} with --addr and --data-dir`, () => {
    let dataDir: string;
    before(async () => {
      dataDir = await mkdtemp(path.join(tmpdir(), 'berth-cli-'));
    });
    after(() => rm(dataDir, { recursive: true, force: true }));

    it('serves /v2/ on the given address with SQLite in the given folder, logs JSON lines, and stops cleanly on SIGTERM', async () => {
      const port = await freePort();
      const url = `http://127.0.0.1:${port}`;
      const child = spawn(launcher.command, [...launcher.args, '--addr', `127.0.0.1:${port}`, '--data-dir', dataDir], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d) => (stdout += d));
      child.stderr.on('data', (d) => (stderr += d));
      const exit = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
      try {
        await waitForRegistry(url, () => child.exitCode !== null);
        // The first start creates `admin` with a generated password and logs it, once.
        const created = stdout
          .split('\n')
          .filter((l) => l.startsWith('{'))
          .map((l) => JSON.parse(l) as Record<string, unknown>)
          .filter((l) => typeof l.password === 'string');
        assert.equal(created.length, 1, `one log line carries the generated admin password; stdout: ${stdout}`);
        const password = String(created[0]?.password);
        assert.ok(password.length >= 16);
        const res = await fetch(`${url}/v2/`, { headers: { 'x-request-id': 'cli-test-1', authorization: `Basic ${Buffer.from(`admin:${password}`).toString('base64')}` } });
        assert.equal(res.status, 200);
        assert.equal(res.headers.get('docker-distribution-api-version'), 'registry/2.0');
        assert.ok((await stat(path.join(dataDir, 'berth.db'))).size > 0, 'the SQLite database is in the data folder');
      } finally {
        // The whole process group, as a terminal's Ctrl-C or a service manager's stop does.
        process.kill(-(child.pid as number), 'SIGTERM');
      }
      const code = await exit;
      if (launcher.serverIsChild) assert.equal(code, 0, `exit code after SIGTERM; stderr: ${stderr}`);
      const lines = stdout.trim().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
      const access = lines.find((l) => l.reqId === 'cli-test-1');
      assert.ok(access, 'the request was logged with its request id');
      assert.equal(access.status, 200);
      assert.ok(lines.some((l) => l.msg === 'shutting down'), 'the shutdown was logged');
      assert.ok(lines.some((l) => l.msg === 'stopped'), `the server finished its graceful stop; stderr: ${stderr}`);
    });
  });
}
