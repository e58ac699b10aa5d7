import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { freePort } from '../helpers/e2e.ts';
import { BACKENDS, createTestDatabase, type TestDatabase } from '../helpers/backends.ts';

/**
 * The server process is killed with SIGKILL in the middle of writing blob data. After a restart,
 * no partial blob is visible, the upload session is where the last acknowledged chunk left it,
 * and the upload can be finished.
 */

async function startServer(dataDir: string, databaseUrl: string, port: number): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['src/main.ts', 'serve', '--addr', `127.0.0.1:${port}`, '--data-dir', dataDir, ...(databaseUrl ? ['--database-url', databaseUrl] : [])], {
    stdio: ['ignore', 'ignore', 'inherit'],
    env: { ...process.env, BERTH_LOG_LEVEL: 'warn', BERTH_AUTH_ENABLED: 'false', BERTH_ADMIN_PASSWORD: 'Admin12345' },
  });
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`server exited with ${child.exitCode}`);
    try {
      const res = await fetch(`http://127.0.0.1:${port}/v2/`);
      if (res.status === 200) return child;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error('server did not start');
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function kill9(child: ChildProcess): Promise<void> {
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGKILL');
  await exited;
}

/** Sends headers announcing `declared` bytes and `sent` bytes of body, then leaves the socket open. */
function partialRequest(port: number, requestLine: string, headers: Record<string, string>, body: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => {
      const head = [`${requestLine} HTTP/1.1`, `Host: 127.0.0.1:${port}`, ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`), '', ''].join('\r\n');
      socket.write(head);
      socket.write(body, () => resolve());
    });
    socket.on('error', () => {
      /* the server is killed under us: expected */
    });
    socket.once('error', reject);
  });
}

async function filesUnder(folder: string): Promise<string[]> {
  try {
    const entries = await readdir(folder, { recursive: true, withFileTypes: true });
    return entries.filter((e) => e.isFile()).map((e) => path.join(e.parentPath, e.name));
  } catch {
    return [];
  }
}

for (const backend of BACKENDS) {
  describe(`crash safety: SIGKILL during uploads (${backend})`, () => {
    let dataDir: string;
    let database: TestDatabase;
    let port: number;
    let child: ChildProcess | undefined;
    const base = () => `http://127.0.0.1:${port}`;

    before(async () => {
      dataDir = await mkdtemp(path.join(tmpdir(), 'berth-crash-'));
      database = await createTestDatabase(backend);
      port = await freePort();
      child = await startServer(dataDir, database.url, port);
    });

    after(async () => {
      if (child && child.exitCode === null) await kill9(child);
      await database.drop();
      await rm(dataDir, { recursive: true, force: true });
    });

    it('keeps no partial blob and resumes the session from its last acknowledged chunk', async () => {
      const first = randomBytes(256 * 1024);
      const second = randomBytes(3 * 1024 * 1024);
      const whole = Buffer.concat([first, second]);
      const digest = `sha256:${createHash('sha256').update(whole).digest('hex')}`;

      const start = await fetch(`${base()}/v2/crash/app/blobs/uploads/`, { method: 'POST' });
      assert.equal(start.status, 202);
      const location = start.headers.get('location') as string;
      const patched = await fetch(`${base()}${location}`, { method: 'PATCH', body: first, headers: { 'content-range': `0-${first.length - 1}` } });
      assert.equal(patched.status, 202);
      assert.equal(patched.headers.get('range'), `0-${first.length - 1}`);

      // A second chunk and a monolithic upload are both cut off by the kill, half sent.
      const monolithic = randomBytes(2 * 1024 * 1024);
      const monolithicDigest = `sha256:${createHash('sha256').update(monolithic).digest('hex')}`;
      await partialRequest(port, `PATCH ${location}`, { 'Content-Length': String(second.length), 'Content-Range': `${first.length}-${whole.length - 1}` }, second.subarray(0, second.length / 2));
      await partialRequest(port, `POST /v2/crash/app/blobs/uploads/?digest=${monolithicDigest}`, { 'Content-Length': String(monolithic.length) }, monolithic.subarray(0, monolithic.length / 2));
      // Let the server write part of the cut-off chunk to disk before it dies, so the restart
      // finds bytes beyond the acknowledged offset that it must discard.
      const sessionFile = path.join(dataDir, 'storage', 'uploads', location.split('/').at(-1) as string);
      const deadline = Date.now() + 10_000;
      let written = 0;
      while (Date.now() < deadline) {
        written = await stat(sessionFile).then((s) => s.size);
        if (written > first.length && (await filesUnder(path.join(dataDir, 'storage', 'uploads'))).length >= 2) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.ok(written > first.length, 'part of the cut-off chunk reached the disk');
      await kill9(child as ChildProcess);

      child = await startServer(dataDir, database.url, port);
      assert.deepEqual(await filesUnder(path.join(dataDir, 'storage', 'blobs')), [], 'no blob was published by the killed requests');
      assert.equal((await fetch(`${base()}/v2/crash/app/blobs/${monolithicDigest}`, { method: 'HEAD' })).status, 404);
      assert.equal((await fetch(`${base()}/v2/crash/app/blobs/${digest}`, { method: 'HEAD' })).status, 404);

      const status = await fetch(`${base()}${location}`);
      assert.equal(status.status, 204);
      assert.equal(status.headers.get('range'), `0-${first.length - 1}`, 'the session is where the last acknowledged chunk left it');

      const resumed = await fetch(`${base()}${location}`, { method: 'PATCH', body: second, headers: { 'content-range': `${first.length}-${whole.length - 1}` } });
      assert.equal(resumed.status, 202);
      const done = await fetch(`${base()}${location}?digest=${encodeURIComponent(digest)}`, { method: 'PUT' });
      assert.equal(done.status, 201, await done.text());
      const pulled = Buffer.from(await (await fetch(`${base()}/v2/crash/app/blobs/${digest}`)).arrayBuffer());
      assert.equal(pulled.length, whole.length);
      assert.ok(pulled.equals(whole), 'the resumed blob is byte-identical');
    });
  });
}
