/**
 * Process helpers for the end-to-end tests: the real Berth server as a child process, real
 * clients, and the daemons they need, all on 127.0.0.1 with everything under temp folders.
 *
 * Debian packages the e2e tier needs (a missing one FAILS the tests, naming the package):
 *   skopeo umoci buildah podman containerd docker-registry
 *   apache2-utils (htpasswd, only for a reference registry with users)
 * plus tar (essential, always present) and PostgreSQL on 127.0.0.1:5432 (as for the other tiers).
 * CI: apt-get install -y --no-install-recommends skopeo umoci buildah podman containerd docker-registry apache2-utils
 *
 * Client notes (Debian 12 versions):
 * - skopeo 1.9.3 ignores CONTAINERS_REGISTRIES_CONF, so skopeo calls pass --tls-verify=false
 *   explicitly; buildah and podman read it (but `buildah manifest push` still needs the flag).
 * - skopeo, buildah and podman running as root share the blob-info cache in
 *   /var/lib/containers/cache; it only makes them try cross-repository mounts, which Berth must
 *   answer correctly anyway, so tests do not depend on whether a blob was mounted or uploaded.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { access, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type Backend, createTestDatabase } from './backends.ts';

export const REPO_ROOT = path.resolve(import.meta.dirname, '../..');
const MAIN = path.join(REPO_ROOT, 'src/main.ts');

/** Every external command the e2e tests run, and the Debian package that provides it. */
export const TOOL_PACKAGES = {
  skopeo: 'skopeo',
  umoci: 'umoci',
  buildah: 'buildah',
  podman: 'podman',
  containerd: 'containerd',
  ctr: 'containerd',
  'docker-registry': 'docker-registry',
  htpasswd: 'apache2-utils',
  tar: 'tar',
} as const;
export type Tool = keyof typeof TOOL_PACKAGES;

/** BERTH_E2E_TRACE=1 prints every command and clean-up step with its duration on stderr. */
const TRACE = process.env.BERTH_E2E_TRACE === '1';
function trace(what: string, started: number): void {
  if (TRACE) process.stderr.write(`[e2e ${new Date().toISOString()}] ${Date.now() - started} ms  ${what}\n`);
}

/** Default time limit of one client command. */
export const COMMAND_TIMEOUT_MS = 120_000;

// ---------------------------------------------------------------------------------------------
// Children that must not outlive this process, even if the test runner kills it mid-way.
const children = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
});

async function findExecutable(name: string): Promise<string | undefined> {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, name);
    try {
      await access(candidate, fsConstants.X_OK);
      return candidate;
    } catch {
      /* next */
    }
  }
  return undefined;
}

/** Fails (never skips) when a client is missing, naming the Debian package to install. */
export async function requireTools(...tools: Tool[]): Promise<void> {
  // vfs storage, chroot isolation, umoci unpack and containerd all need root here.
  if (process.getuid?.() !== 0) throw new Error('the e2e tests must run as root (buildah/podman vfs storage, umoci unpack, containerd)');
  const missing: Tool[] = [];
  for (const tool of tools) if (!(await findExecutable(tool))) missing.push(tool);
  if (missing.length > 0) {
    const packages = [...new Set(missing.map((t) => TOOL_PACKAGES[t]))];
    throw new Error(
      `e2e test needs ${missing.map((t) => `\`${t}\` (Debian package ${TOOL_PACKAGES[t]})`).join(', ')} on PATH; install with: apt-get install -y ${packages.join(' ')}`,
    );
  }
}

export interface RunOptions {
  readonly env?: NodeJS.ProcessEnv;
  readonly cwd?: string;
  readonly timeoutMs?: number;
}

export interface RunResult {
  readonly stdout: Buffer;
  readonly stderr: string;
  /** stdout as UTF-8 text. */
  readonly text: string;
}

/** Runs a command (argument array, no shell) with a time limit; rejects with its output on failure. */
export function run(command: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  const timeout = options.timeoutMs ?? COMMAND_TIMEOUT_MS;
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = execFile(
      command,
      args,
      { env: options.env ?? process.env, cwd: options.cwd, timeout, killSignal: 'SIGKILL', maxBuffer: 256 * 1024 * 1024, encoding: 'buffer' },
      (error, stdout, stderr) => {
        children.delete(child);
        trace(`${command} ${args.join(' ')}${error ? ' (failed)' : ''}`, started);
        const err = stderr.toString('utf8');
        if (error) {
          const code = (error as { code?: unknown }).code;
          const why = (error as { killed?: boolean }).killed ? `timed out after ${timeout} ms` : typeof code === 'number' ? `exited with code ${code}` : `failed (${String(code ?? error.message)})`;
          const hint = (error as NodeJS.ErrnoException).code === 'ENOENT' ? ` — is the Debian package ${TOOL_PACKAGES[command as Tool] ?? '?'} installed?` : '';
          reject(new Error(`${command} ${args.join(' ')} ${why}${hint}\n--- stderr ---\n${err}\n--- stdout ---\n${stdout.toString('utf8').slice(0, 4000)}`));
          return;
        }
        resolve({ stdout, stderr: err, text: stdout.toString('utf8') });
      },
    );
    children.add(child);
  });
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: 0 }, () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

export function sha256(bytes: Uint8Array | string): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Polls until `check` resolves true, or throws after `timeoutMs` with `describe()` in the message. */
async function waitUntil(check: () => Promise<boolean>, timeoutMs: number, describe: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${describe()}`);
    await sleep(100);
  }
}

async function answers(url: string, headers: Record<string, string> = {}): Promise<boolean> {
  try {
    const res = await fetch(url, { headers, signal: AbortSignal.timeout(2000) });
    await res.arrayBuffer();
    return res.status === 200;
  } catch {
    return false;
  }
}

/** A clean-up stack: every step runs (last registered first) even when an earlier one fails. */
export class Cleanup {
  readonly #steps: Array<{ name: string; fn: () => Promise<unknown> | unknown }> = [];

  add(name: string, fn: () => Promise<unknown> | unknown): void {
    this.#steps.push({ name, fn });
  }

  /** A new temp folder that is removed at clean-up. */
  async tempDir(prefix = 'berth-e2e-'): Promise<string> {
    const dir = await mkdtemp(path.join(tmpdir(), prefix));
    this.add(`remove ${dir}`, () => rm(dir, { recursive: true, force: true, maxRetries: 3 }));
    return dir;
  }

  async run(): Promise<void> {
    const errors: Error[] = [];
    while (this.#steps.length > 0) {
      const step = this.#steps.pop() as { name: string; fn: () => unknown };
      try {
        const started = Date.now();
        await step.fn();
        trace(`clean-up ${step.name}`, started);
      } catch (err) {
        errors.push(new Error(`clean-up "${step.name}" failed: ${(err as Error).message}`, { cause: err }));
      }
    }
    if (errors.length === 1) throw errors[0];
    if (errors.length > 1) throw new AggregateError(errors, errors.map((e) => e.message).join('\n'));
  }
}

/** A daemon child process with its output kept for error messages. */
class Daemon {
  readonly name: string;
  readonly child: ChildProcess;
  readonly output: string[] = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(name: string, command: string, args: readonly string[], options: { env?: NodeJS.ProcessEnv; cwd?: string }) {
    this.name = name;
    this.child = spawn(command, args, { env: options.env ?? process.env, cwd: options.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(this.child);
    // 'close' (not 'exit'): it comes after the output pipes are drained, so no log line is lost.
    this.exited = new Promise((resolve) => {
      this.child.once('close', (code, signal) => {
        children.delete(this.child);
        resolve({ code, signal });
      });
    });
    this.child.once('error', (err) => this.output.push(`spawn error: ${err.message}${(err as NodeJS.ErrnoException).code === 'ENOENT' ? ` — is the Debian package ${TOOL_PACKAGES[command as Tool] ?? '?'} installed?` : ''}`));
    let partial = { stdout: '', stderr: '' };
    for (const stream of ['stdout', 'stderr'] as const) {
      this.child[stream]?.setEncoding('utf8');
      this.child[stream]?.on('data', (chunk: string) => {
        const lines = (partial[stream] + chunk).split('\n');
        partial = { ...partial, [stream]: lines.pop() ?? '' };
        this.output.push(...lines);
      });
    }
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  tail(lines = 40): string {
    return this.output.slice(-lines).join('\n');
  }

  /** Waits for readiness; rejects early (with the output) if the daemon exits first. */
  async ready(check: () => Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
    let exited = false;
    void this.exited.then(() => {
      exited = true;
    });
    await waitUntil(
      async () => {
        if (exited) throw new Error(`${this.name} exited before it was ready (${what}):\n${this.tail()}`);
        return check();
      },
      timeoutMs,
      () => `${this.name} to be ready (${what}):\n${this.tail()}`,
    );
  }

  /** SIGTERM, then wait; SIGKILL after `graceMs`. Resolves to how it ended. */
  async terminate(graceMs = 20_000): Promise<{ code: number | null; signal: NodeJS.Signals | null; forced: boolean }> {
    if (!this.running) return { ...(await this.exited), forced: false };
    this.child.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), graceMs);
    });
    const first = await Promise.race([this.exited, timeout]);
    clearTimeout(timer);
    if (first !== 'timeout') return { ...first, forced: false };
    this.child.kill('SIGKILL');
    return { ...(await this.exited), forced: true };
  }
}

// ---------------------------------------------------------------------------------------------
// Berth

export interface BerthOptions {
  readonly dataDir: string;
  /** PostgreSQL URL; SQLite in dataDir when absent. */
  readonly databaseUrl?: string;
  /** Listen on this port (a restart reuses the previous one); a free port when absent. */
  readonly port?: number;
  /** A YAML config file (`--config`). */
  readonly configFile?: string;
  /** Token auth and projects on /v2 (config auth.enabled). Off by default: the registry-core suites run like a bare registry. */
  readonly auth?: boolean;
}

/** The admin password of every Berth the end-to-end tests start. */
export const E2E_ADMIN_PASSWORD = 'Admin12345';

export interface RequestLog {
  readonly method: string;
  readonly url: string;
  readonly status: number;
  readonly ua?: string;
}

export interface BerthProcess {
  /** http://127.0.0.1:PORT */
  readonly url: string;
  /** 127.0.0.1:PORT, the registry part of image references. */
  readonly host: string;
  readonly port: number;
  readonly options: BerthOptions;
  /** The JSON log lines the server wrote on stdout, parsed. */
  logs(): Array<Record<string, unknown>>;
  /**
   * The access log: one entry per request completed so far. It first sends a marker request and
   * waits for its log line, so every line Berth wrote before (in the same stdout stream) is in.
   */
  requests(): Promise<RequestLog[]>;
  /** SIGTERM; asserts a graceful exit with code 0. */
  stop(): Promise<void>;
}

/** Spawns `node src/main.ts serve` and waits until it logged "berth is serving" and GET /v2/ answers 200. */
export async function startBerth(options: BerthOptions): Promise<BerthProcess> {
  // A free port can be taken between the probe and the listen: then try another one.
  for (let attempt = 1; ; attempt++) {
    try {
      return await spawnBerth(options, options.port ?? (await freePort()));
    } catch (err) {
      if (options.port !== undefined || attempt >= 3 || !/EADDRINUSE/.test((err as Error).message)) throw err;
    }
  }
}

/**
 * Berth in `dir` (made here) on a fresh test database of `backend`, which `cleanup` drops. The
 * caller stops the process (a restart test replaces it).
 */
export async function startBerthOn(backend: Backend, dir: string, cleanup: Cleanup, extra: { auth?: boolean } = {}): Promise<BerthProcess> {
  await mkdir(dir);
  const database = await createTestDatabase(backend);
  cleanup.add('drop the test database', () => database.drop());
  return startBerth({ dataDir: path.join(dir, 'data'), ...(database.url ? { databaseUrl: database.url } : {}), ...extra });
}

async function spawnBerth(options: BerthOptions, port: number): Promise<BerthProcess> {
  const host = `127.0.0.1:${port}`;
  const args = [MAIN, 'serve', '--addr', host, '--data-dir', options.dataDir];
  if (options.databaseUrl) args.push('--database-url', options.databaseUrl);
  if (options.configFile) args.push('--config', options.configFile);
  // No BERTH_* settings leak in from the environment of whoever runs the tests.
  const env: NodeJS.ProcessEnv = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('BERTH_')));
  env.BERTH_AUTH_ENABLED = options.auth ? 'true' : 'false';
  env.BERTH_ADMIN_PASSWORD = E2E_ADMIN_PASSWORD;
  const daemon = new Daemon('berth', process.execPath, args, { env, cwd: REPO_ROOT });
  const url = `http://${host}`;
  try {
    const probe: Record<string, string> = options.auth ? { authorization: `Basic ${Buffer.from(`admin:${E2E_ADMIN_PASSWORD}`).toString('base64')}` } : {};
    await daemon.ready(async () => daemon.output.some((line) => line.includes('"berth is serving"')) && answers(`${url}/v2/`, probe), `GET ${url}/v2/`);
  } catch (err) {
    await daemon.terminate(2000);
    throw err;
  }
  const logs = () =>
    daemon.output.flatMap((line) => {
      if (!line.startsWith('{')) return [];
      try {
        return [JSON.parse(line) as Record<string, unknown>];
      } catch {
        return [];
      }
    });
  return {
    url,
    host,
    port,
    options: { ...options, port },
    logs,
    async requests() {
      const marker = `/v2/?berth-e2e-log-sync=${randomBytes(8).toString('hex')}`;
      const res = await fetch(`${url}${marker}`, { signal: AbortSignal.timeout(10_000) });
      await res.arrayBuffer();
      await waitUntil(async () => daemon.output.some((line) => line.includes(marker)), 10_000, () => `berth to log the request ${marker}`);
      return logs()
        .filter((l) => l.msg === 'request completed' && l.url !== marker)
        .map((l) => ({ method: String(l.method), url: String(l.url), status: Number(l.status), ...(typeof l.ua === 'string' ? { ua: l.ua } : {}) }));
    },
    async stop() {
      const end = await daemon.terminate();
      assert.equal(end.forced, false, `berth did not stop within 20 s of SIGTERM:\n${daemon.tail()}`);
      assert.deepEqual({ code: end.code, signal: end.signal }, { code: 0, signal: null }, `berth did not exit cleanly after SIGTERM:\n${daemon.tail()}`);
      const errors = logs().filter((l) => typeof l.level === 'number' && l.level >= 50);
      assert.deepEqual(errors, [], 'berth logged errors');
    },
  };
}

/** Stops a Berth process and starts a new one on the same port, data folder and database. */
export async function restartBerth(berth: BerthProcess): Promise<BerthProcess> {
  await berth.stop();
  return startBerth(berth.options);
}

// ---------------------------------------------------------------------------------------------
// Private containers environment for skopeo, buildah and podman

export interface ContainersEnv {
  readonly root: string;
  readonly env: NodeJS.ProcessEnv;
  readonly policy: string;
  skopeo(args: readonly string[], options?: RunOptions): Promise<RunResult>;
  buildah(args: readonly string[], options?: RunOptions): Promise<RunResult>;
  podman(args: readonly string[], options?: RunOptions): Promise<RunResult>;
}

/**
 * registries.conf (the given registries insecure, no short-name search), storage.conf (vfs,
 * roots under `root`), containers.conf (tmp dir under `root`), an auth.json that exists and a
 * permissive policy.json, passed through CONTAINERS_* / REGISTRY_AUTH_FILE / TMPDIR.
 */
export async function containersEnv(root: string, insecureRegistries: readonly string[]): Promise<ContainersEnv> {
  const conf = path.join(root, 'conf');
  const tmp = path.join(root, 'tmp');
  await mkdir(conf, { recursive: true });
  await mkdir(tmp, { recursive: true });
  const q = (s: string) => JSON.stringify(s);
  await writeFile(
    path.join(conf, 'registries.conf'),
    `unqualified-search-registries = []\n${insecureRegistries.map((r) => `\n[[registry]]\nlocation = ${q(r)}\ninsecure = true\n`).join('')}`,
  );
  await writeFile(
    path.join(conf, 'storage.conf'),
    `[storage]\ndriver = "vfs"\nrunroot = ${q(path.join(root, 'storage/run'))}\ngraphroot = ${q(path.join(root, 'storage/graph'))}\n`,
  );
  await writeFile(path.join(conf, 'containers.conf'), `[engine]\ntmp_dir = ${q(path.join(root, 'engine-tmp'))}\n[network]\nnetwork_config_dir = ${q(path.join(root, 'networks'))}\n`);
  await writeFile(path.join(conf, 'auth.json'), '{"auths":{}}\n');
  const policy = path.join(conf, 'policy.json');
  await writeFile(policy, '{"default":[{"type":"insecureAcceptAnything"}]}\n');
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    CONTAINERS_REGISTRIES_CONF: path.join(conf, 'registries.conf'),
    CONTAINERS_STORAGE_CONF: path.join(conf, 'storage.conf'),
    CONTAINERS_CONF: path.join(conf, 'containers.conf'),
    REGISTRY_AUTH_FILE: path.join(conf, 'auth.json'),
    TMPDIR: tmp,
  };
  const withEnv = (options?: RunOptions): RunOptions => ({ ...options, env: { ...env, ...options?.env } });
  return {
    root,
    env,
    policy,
    skopeo: (args, options) => run('skopeo', ['--policy', policy, ...args], withEnv(options)),
    buildah: (args, options) => run('buildah', ['--storage-driver', 'vfs', ...args], withEnv(options)),
    podman: (args, options) => run('podman', ['--storage-driver', 'vfs', ...args], withEnv(options)),
  };
}

// ---------------------------------------------------------------------------------------------
// containerd

export interface Containerd {
  readonly address: string;
  /** ctr against this daemon, in namespace "e2e". */
  ctr(args: readonly string[], options?: RunOptions): Promise<RunResult>;
  stop(): Promise<void>;
}

/** A private containerd: root, state and sockets under `dir`, CRI and unusable snapshotters off. */
export async function startContainerd(dir: string): Promise<Containerd> {
  await mkdir(dir, { recursive: true });
  const address = path.join(dir, 'containerd.sock');
  const q = (s: string) => JSON.stringify(s);
  const config = path.join(dir, 'config.toml');
  await writeFile(
    config,
    [
      'version = 2',
      `root = ${q(path.join(dir, 'root'))}`,
      `state = ${q(path.join(dir, 'state'))}`,
      'disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]',
      '[grpc]',
      `  address = ${q(address)}`,
      '[ttrpc]',
      `  address = ${q(`${address}.ttrpc`)}`,
      '[debug]',
      '  address = ""',
      '[metrics]',
      '  address = ""',
      '[plugins."io.containerd.internal.v1.opt"]',
      `  path = ${q(path.join(dir, 'opt'))}`,
      '',
    ].join('\n'),
  );
  const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('CONTAINERD_')));
  const daemon = new Daemon('containerd', 'containerd', ['--config', config], { env });
  const ctr = (args: readonly string[], options?: RunOptions) => run('ctr', ['--address', address, '--namespace', 'e2e', ...args], { env, ...options });
  try {
    await daemon.ready(
      () =>
        ctr(['version'], { timeoutMs: 5000 }).then(
          () => true,
          () => false,
        ),
      'ctr version',
    );
  } catch (err) {
    await daemon.terminate(2000);
    throw err;
  }
  return {
    address,
    ctr,
    async stop() {
      const end = await daemon.terminate();
      assert.equal(end.forced, false, `containerd did not stop after SIGTERM:\n${daemon.tail()}`);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The reference registry (CNCF distribution, Debian docker-registry)

export interface ReferenceRegistry {
  readonly url: string;
  readonly host: string;
  stop(): Promise<void>;
}

export interface ReferenceRegistryOptions {
  /**
   * user → password: the registry then demands HTTP basic auth (htpasswd, challenge
   * `Basic realm="berth-e2e"`), with no anonymous access at all. Needs apache2-utils' htpasswd.
   */
  readonly users?: Readonly<Record<string, string>>;
}

export async function startReferenceRegistry(dir: string, options: ReferenceRegistryOptions = {}): Promise<ReferenceRegistry> {
  await mkdir(dir, { recursive: true });
  const users = Object.entries(options.users ?? {});
  let htpasswd: string | undefined;
  if (users.length > 0) {
    // distribution's htpasswd auth accepts bcrypt entries only, hence -B.
    const lines = await Promise.all(users.map(async ([user, password]) => (await run('htpasswd', ['-Bbn', user, password])).text.trim()));
    htpasswd = path.join(dir, 'htpasswd');
    await writeFile(htpasswd, `${lines.join('\n')}\n`);
  }
  // Readiness probe: with auth, GET /v2/ is 401 until it carries a valid user.
  const probe: Record<string, string> = users[0] ? { authorization: `Basic ${Buffer.from(`${users[0][0]}:${users[0][1]}`).toString('base64')}` } : {};
  // A free port can be taken between the probe and the listen: then try another one.
  for (let attempt = 1; ; attempt++) {
    try {
      return await spawnReferenceRegistry(dir, await freePort(), htpasswd, probe);
    } catch (err) {
      if (attempt >= 3 || !/address already in use/.test((err as Error).message)) throw err;
    }
  }
}

async function spawnReferenceRegistry(dir: string, port: number, htpasswd: string | undefined, probe: Record<string, string>): Promise<ReferenceRegistry> {
  const host = `127.0.0.1:${port}`;
  const config = path.join(dir, 'config.yml');
  await writeFile(
    config,
    [
      'version: 0.1',
      'log: { level: info, formatter: text, accesslog: { disabled: true } }',
      'storage:',
      '  cache: { blobdescriptor: inmemory }',
      `  filesystem: { rootdirectory: ${JSON.stringify(path.join(dir, 'data'))} }`,
      '  delete: { enabled: true }',
      '  redirect: { disable: true }',
      '  maintenance: { uploadpurging: { enabled: false } }',
      'http:',
      `  addr: ${host}`,
      '  secret: berth-e2e-reference-registry',
      ...(htpasswd ? [`auth: { htpasswd: { realm: berth-e2e, path: ${JSON.stringify(htpasswd)} } }`] : []),
      '',
    ].join('\n'),
  );
  const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('REGISTRY_')));
  const daemon = new Daemon('docker-registry', 'docker-registry', ['serve', config], { env });
  const url = `http://${host}`;
  try {
    await daemon.ready(async () => daemon.output.some((line) => line.includes(`listening on ${host}`)) && answers(`${url}/v2/`, probe), `GET ${url}/v2/`);
  } catch (err) {
    await daemon.terminate(2000);
    throw err;
  }
  return {
    url,
    host,
    async stop() {
      const end = await daemon.terminate();
      assert.equal(end.forced, false, `docker-registry did not stop after SIGTERM:\n${daemon.tail()}`);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Images and OCI layouts

export interface Descriptor {
  readonly mediaType: string;
  readonly digest: string;
  readonly size: number;
  readonly platform?: { architecture: string; os: string; variant?: string };
  readonly annotations?: Record<string, string>;
}

export interface ImageManifest {
  readonly schemaVersion: 2;
  readonly mediaType?: string;
  readonly config: Descriptor;
  readonly layers: Descriptor[];
}

export interface ImageIndex {
  readonly schemaVersion: 2;
  readonly mediaType?: string;
  readonly manifests: Descriptor[];
}

export interface ImageConfig {
  readonly architecture: string;
  readonly os: string;
  readonly config?: { Cmd?: string[]; Labels?: Record<string, string> };
  readonly rootfs: { type: 'layers'; diff_ids: string[] };
}

/** A file tree: relative path → content. */
export type Files = Record<string, string | Buffer>;

export async function writeFiles(root: string, files: Files): Promise<void> {
  for (const [name, content] of Object.entries(files)) {
    const full = path.join(root, name);
    await mkdir(path.dirname(full), { recursive: true });
    await writeFile(full, content);
  }
}

/** Asserts that every file of `files` is in `root` with the same bytes. */
export async function assertFiles(root: string, files: Files, message = ''): Promise<void> {
  for (const [name, content] of Object.entries(files)) {
    const actual = await readFile(path.join(root, name)).catch((err: NodeJS.ErrnoException) => {
      throw new Error(`${message}${name} is missing from ${root}: ${err.code}`);
    });
    assert.ok(actual.equals(Buffer.isBuffer(content) ? content : Buffer.from(content)), `${message}${name} differs`);
  }
}

export class OciLayout {
  readonly dir: string;
  constructor(dir: string) {
    this.dir = dir;
  }

  blobPath(digest: string): string {
    const [algorithm, hex] = digest.split(':') as [string, string];
    return path.join(this.dir, 'blobs', algorithm, hex);
  }

  async blob(digest: string): Promise<Buffer> {
    return readFile(this.blobPath(digest));
  }

  async json<T>(digest: string): Promise<T> {
    return JSON.parse((await this.blob(digest)).toString('utf8')) as T;
  }

  async index(): Promise<ImageIndex> {
    return JSON.parse(await readFile(path.join(this.dir, 'index.json'), 'utf8')) as ImageIndex;
  }

  /** The descriptor index.json gives for a ref name (org.opencontainers.image.ref.name). */
  async descriptor(ref: string): Promise<Descriptor> {
    const found = (await this.index()).manifests.find((d) => d.annotations?.['org.opencontainers.image.ref.name'] === ref);
    assert.ok(found, `${this.dir} has no ref ${ref}`);
    return found;
  }

  /** Manifest, config and digests of the image `ref` (an image manifest, not an index). */
  async image(ref: string): Promise<LayoutImage> {
    const descriptor = await this.descriptor(ref);
    return this.imageAt(descriptor.digest);
  }

  async imageAt(digest: string): Promise<LayoutImage> {
    const manifestBytes = await this.blob(digest);
    assert.equal(sha256(manifestBytes), digest, `${this.dir}: manifest blob ${digest} has other content`);
    const manifest = JSON.parse(manifestBytes.toString('utf8')) as ImageManifest;
    const configBytes = await this.blob(manifest.config.digest);
    return {
      digest,
      manifestBytes,
      manifest,
      configBytes,
      config: JSON.parse(configBytes.toString('utf8')) as ImageConfig,
      layers: manifest.layers.map((l) => l.digest),
    };
  }

  /** Asserts that every blob under blobs/ has the content its name says. */
  async verifyBlobs(digests: readonly string[]): Promise<void> {
    for (const digest of digests) assert.equal(sha256(await this.blob(digest)), digest, `${this.dir}: blob ${digest} is corrupt`);
  }
}

export interface LayoutImage {
  readonly digest: string;
  readonly manifestBytes: Buffer;
  readonly manifest: ImageManifest;
  readonly configBytes: Buffer;
  readonly config: ImageConfig;
  readonly layers: string[];
}

export interface UmociImageSpec {
  /** One layer per entry, in order. */
  readonly layers: readonly Files[];
  readonly architecture?: string;
  readonly cmd?: string;
  /** Build on top of this existing tag of the same layout instead of an empty image. */
  readonly from?: string;
}

/**
 * Builds an image with umoci into the OCI layout `layoutDir` under `tag`: init (once), new or
 * unpack `from`, then one `umoci repack --refresh-bundle` per layer, config, gc.
 */
export async function buildUmociImage(layoutDir: string, tag: string, spec: UmociImageSpec): Promise<LayoutImage> {
  const exists = await access(path.join(layoutDir, 'oci-layout')).then(
    () => true,
    () => false,
  );
  if (!exists) await run('umoci', ['init', '--layout', layoutDir]);
  const image = `${layoutDir}:${tag}`;
  if (spec.from === undefined) await run('umoci', ['new', '--image', image]);
  const bundle = await mkdtemp(path.join(path.dirname(layoutDir), `bundle-${tag}-`));
  try {
    await rm(bundle, { recursive: true, force: true });
    await run('umoci', ['unpack', '--image', spec.from === undefined ? image : `${layoutDir}:${spec.from}`, bundle]);
    for (const files of spec.layers) {
      await writeFiles(path.join(bundle, 'rootfs'), files);
      await run('umoci', ['repack', '--refresh-bundle', '--image', image, bundle]);
    }
  } finally {
    await rm(bundle, { recursive: true, force: true });
  }
  const config = ['config', '--image', image, '--author', 'berth-e2e', '--config.cmd', spec.cmd ?? '/bin/true'];
  if (spec.architecture) config.push('--architecture', spec.architecture);
  await run('umoci', config);
  await run('umoci', ['gc', '--layout', layoutDir]);
  return new OciLayout(layoutDir).image(tag);
}

/** `umoci unpack` of an image in a layout; returns the rootfs folder. */
export async function unpackImage(layoutDir: string, ref: string, bundle: string): Promise<string> {
  await run('umoci', ['unpack', '--image', `${layoutDir}:${ref}`, bundle]);
  return path.join(bundle, 'rootfs');
}

/**
 * Builds a FROM-scratch image with `buildah bud` (chroot isolation, vfs) for one architecture,
 * from a context holding `files` and a Containerfile that COPYs them.
 */
export async function buildahBud(containers: ContainersEnv, contextDir: string, tag: string, files: Files, options: { arch?: string; label?: string } = {}): Promise<void> {
  await writeFiles(contextDir, files);
  const lines = ['FROM scratch', ...Object.keys(files).map((name) => `COPY ${name} /${name}`), `LABEL org.berth.e2e=${JSON.stringify(options.label ?? tag)}`, 'CMD ["/bin/true"]', ''];
  await writeFile(path.join(contextDir, 'Containerfile'), lines.join('\n'));
  await containers.buildah(['bud', '--isolation', 'chroot', ...(options.arch ? ['--arch', options.arch] : []), '-f', path.join(contextDir, 'Containerfile'), '-t', tag, contextDir]);
}

/** Reads the JSON of a command's stdout. */
export function json<T>(result: RunResult): T {
  return JSON.parse(result.text) as T;
}

/** GETs a blob from a registry over HTTP and returns its bytes. */
export async function fetchBlob(registryUrl: string, repository: string, digest: string): Promise<Buffer> {
  const res = await fetch(`${registryUrl}/v2/${repository}/blobs/${digest}`, { signal: AbortSignal.timeout(60_000) });
  assert.equal(res.status, 200, `GET ${registryUrl}/v2/${repository}/blobs/${digest}`);
  return Buffer.from(await res.arrayBuffer());
}

// ---------------------------------------------------------------------------------------------
// The fixture images the scenarios share

export interface AppImage {
  readonly layout: OciLayout;
  /** Two layers: a small text layer and a 2 MiB incompressible one. */
  readonly v1: LayoutImage;
  /** v1 plus a third layer. */
  readonly v2: LayoutImage;
  /** The files each tag's root filesystem holds. */
  readonly files: { readonly v1: Files; readonly v2: Files };
}

/** An OCI layout `dir` with tags v1 and v2 built by umoci (fresh random content on every run). */
export async function buildAppImage(dir: string): Promise<AppImage> {
  const layer1: Files = { 'etc/berth-e2e/hello.txt': `hello from umoci ${randomBytes(8).toString('hex')}\n` };
  const layer2: Files = { 'opt/data/random.bin': randomBytes(2 * 1024 * 1024) };
  const layer3: Files = { 'etc/berth-e2e/v2.txt': 'the second version\n' };
  const v1 = await buildUmociImage(dir, 'v1', { layers: [layer1, layer2] });
  const v2 = await buildUmociImage(dir, 'v2', { from: 'v1', layers: [layer3], cmd: '/bin/v2' });
  assert.equal(v1.layers.length, 2);
  assert.equal(v2.layers.length, 3);
  return { layout: new OciLayout(dir), v1, v2, files: { v1: { ...layer1, ...layer2 }, v2: { ...layer1, ...layer2, ...layer3 } } };
}

export interface MultiArchImage {
  readonly layout: OciLayout;
  /** The ref name of the index in the layout. */
  readonly ref: 'index';
  readonly indexDigest: string;
  readonly indexBytes: Buffer;
  readonly index: ImageIndex;
  /** Child manifest digest per architecture. */
  readonly children: Readonly<Record<'amd64' | 'arm64', string>>;
  readonly files: Readonly<Record<'amd64' | 'arm64', Files>>;
}

export const ARCHES = ['amd64', 'arm64'] as const;

/**
 * An amd64 and an arm64 image built with `buildah bud` FROM scratch, put in a list with
 * `buildah manifest create/add` and written with `manifest push --all --format oci` into the
 * OCI layout `dir` as ref "index".
 */
export async function buildMultiArchImage(containers: ContainersEnv, dir: string): Promise<MultiArchImage> {
  const nonce = randomBytes(6).toString('hex');
  const list = `localhost/berth-e2e/multi-${nonce}:index`;
  const files = {} as Record<'amd64' | 'arm64', Files>;
  await containers.buildah(['manifest', 'create', list]);
  for (const arch of ARCHES) {
    files[arch] = { 'arch.txt': `built for ${arch} ${nonce}\n`, [`only-${arch}.txt`]: `${arch}\n` };
    const tag = `localhost/berth-e2e/multi-${nonce}:${arch}`;
    await buildahBud(containers, path.join(dir, `../ctx-${arch}-${nonce}`), tag, files[arch], { arch });
    await containers.buildah(['manifest', 'add', list, tag]);
  }
  await containers.buildah(['manifest', 'push', '--all', '--format', 'oci', list, `oci:${dir}:index`]);
  const layout = new OciLayout(dir);
  const top = await layout.descriptor('index');
  const indexBytes = await layout.blob(top.digest);
  assert.equal(sha256(indexBytes), top.digest);
  const index = JSON.parse(indexBytes.toString('utf8')) as ImageIndex;
  const children = {} as Record<'amd64' | 'arm64', string>;
  for (const arch of ARCHES) {
    const child = index.manifests.find((d) => d.platform?.architecture === arch);
    assert.ok(child, `the index buildah wrote has no ${arch} entry: ${indexBytes.toString('utf8')}`);
    children[arch] = child.digest;
  }
  return { layout, ref: 'index', indexDigest: top.digest, indexBytes, index, children, files };
}

// ---------------------------------------------------------------------------------------------
// skopeo shorthands (plain HTTP on loopback: skopeo 1.9 needs the flags, see the top)

export function skopeoCopy(containers: ContainersEnv, source: string, destination: string, flags: readonly string[] = []): Promise<RunResult> {
  return containers.skopeo(['copy', '--src-tls-verify=false', '--dest-tls-verify=false', ...flags, source, destination]);
}

/** `skopeo inspect --raw`: the manifest bytes exactly as the registry serves them. */
export async function skopeoRaw(containers: ContainersEnv, target: string): Promise<Buffer> {
  return (await containers.skopeo(['inspect', '--tls-verify=false', '--raw', target])).stdout;
}

export interface SkopeoInspect {
  readonly Name: string;
  readonly Digest: string;
  readonly RepoTags: string[];
  readonly Architecture: string;
  readonly Os: string;
  readonly Layers: string[];
  readonly Labels: Record<string, string> | null;
}

export async function skopeoInspect(containers: ContainersEnv, target: string, globalFlags: readonly string[] = []): Promise<SkopeoInspect> {
  return json<SkopeoInspect>(await containers.skopeo([...globalFlags, 'inspect', '--tls-verify=false', target]));
}

/** `skopeo list-tags`, sorted. */
export async function skopeoTags(containers: ContainersEnv, repository: string): Promise<string[]> {
  return json<{ Tags: string[] }>(await containers.skopeo(['list-tags', '--tls-verify=false', repository])).Tags.slice().sort();
}
