/**
 * Starts the two registries under test as child processes on loopback, each logging to its own
 * file, and stops them by PID. The reference is Debian's docker-registry (CNCF distribution
 * 2.8.2) with filesystem storage; Berth runs with its default configuration (SQLite + folder).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, openSync, closeSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';

export type TargetName = 'reference' | 'berth';

export interface Server {
  readonly name: TargetName;
  readonly pid: number;
  readonly baseUrl: string;
  readonly logFile: string;
  readonly dataDir: string;
  /** SIGTERM, then SIGKILL after the grace period; resolves once the process is gone. */
  stop(): Promise<void>;
}

export const REFERENCE_BINARY = '/usr/bin/docker-registry';
const REPO_ROOT = path.resolve(import.meta.dirname, '..');

/** A free loopback port (the kernel picks it; the socket is closed before the server binds it). */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  server.close();
  await once(server, 'close');
  return port;
}

async function waitReady(baseUrl: string, child: ChildProcess, logFile: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let exited = false;
  child.once('exit', () => {
    exited = true;
  });
  while (Date.now() < deadline) {
    if (exited) throw new Error(`server exited during start; see ${logFile}`);
    try {
      const res = await fetch(`${baseUrl}/v2/`, { signal: AbortSignal.timeout(1000) });
      await res.arrayBuffer();
      // 401 is a Berth with auth on, up and challenging.
      if (res.status === 200 || res.status === 401) return;
    } catch {
      /* not listening yet */
    }
    await sleep(100);
  }
  throw new Error(`server at ${baseUrl} not ready after ${timeoutMs} ms; see ${logFile}`);
}

function stopper(child: ChildProcess, graceMs = 20_000): () => Promise<void> {
  let stopping: Promise<void> | undefined;
  return () => {
    stopping ??= (async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    })();
    return stopping;
  };
}

/** The reference registry's whole config: the settings of clients.md section A, on our port and folder. */
export function referenceConfig(dataDir: string, port: number): string {
  return `version: 0.1
log: { level: info, formatter: text, accesslog: { disabled: false }, fields: { service: registry } }
storage:
  cache: { blobdescriptor: inmemory }
  filesystem: { rootdirectory: ${JSON.stringify(dataDir)} }
  delete: { enabled: true }
  redirect: { disable: true }
  maintenance: { uploadpurging: { enabled: false } }
http:
  addr: 127.0.0.1:${port}
  headers: { X-Content-Type-Options: [nosniff] }
`;
}

export async function startReference(workDir: string, options: { label?: string } = {}): Promise<Server> {
  const label = options.label ?? 'reference';
  const dataDir = path.join(workDir, `${label}-data`);
  mkdirSync(dataDir, { recursive: true });
  const port = await freePort();
  const configFile = path.join(workDir, `${label}-config.yml`);
  writeFileSync(configFile, referenceConfig(dataDir, port));
  const logFile = path.join(workDir, `${label}.log`);
  const fd = openSync(logFile, 'a');
  const child = spawn(REFERENCE_BINARY, ['serve', configFile], { stdio: ['ignore', fd, fd] });
  closeSync(fd);
  const baseUrl = `http://127.0.0.1:${port}`;
  const stop = stopper(child);
  try {
    await waitReady(baseUrl, child, logFile);
  } catch (err) {
    await stop();
    throw err;
  }
  return { name: 'reference', pid: child.pid as number, baseUrl, logFile, dataDir, stop };
}

/** The admin password of the Berth the benchmark starts (scenarios with auth log in with it). */
export const BENCH_ADMIN_PASSWORD = 'Admin12345';

/**
 * Berth on its defaults, except that auth is off unless `auth` is set: the comparisons against
 * the reference registry (which runs without auth) need the no-auth figure.
 */
export async function startBerth(workDir: string, options: { nodeArgs?: readonly string[]; label?: string; auth?: boolean } = {}): Promise<Server> {
  const label = options.label ?? 'berth';
  const dataDir = path.join(workDir, `${label}-data`);
  mkdirSync(dataDir, { recursive: true });
  const port = await freePort();
  const logFile = path.join(workDir, `${label}.log`);
  const fd = openSync(logFile, 'a');
  const child = spawn(
    process.execPath,
    [...(options.nodeArgs ?? []), '--max-semi-space-size=1', path.join(REPO_ROOT, 'bin/berth.js'), 'serve', '--addr', `127.0.0.1:${port}`, '--data-dir', dataDir],
    { cwd: REPO_ROOT, stdio: ['ignore', fd, fd], env: { ...cleanEnv(), BERTH_AUTH_ENABLED: options.auth ? 'true' : 'false', BERTH_ADMIN_PASSWORD: BENCH_ADMIN_PASSWORD } },
  );
  closeSync(fd);
  const baseUrl = `http://127.0.0.1:${port}`;
  const stop = stopper(child);
  try {
    await waitReady(baseUrl, child, logFile);
  } catch (err) {
    await stop();
    throw err;
  }
  return { name: 'berth', pid: child.pid as number, baseUrl, logFile, dataDir, stop };
}

/** Berth's default configuration: no BERTH_* overrides leak in from the caller's environment. */
function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) if (!key.startsWith('BERTH_') && !key.startsWith('NODE_OPTIONS')) env[key] = value;
  return env;
}
