/**
 * A private Docker daemon for the end-to-end tests: Debian's docker.io 20.10 (dockerd plus its
 * CLI) on a unix socket in a temp folder, with its own containerd, vfs storage and no networking
 * changes, so it touches nothing of the machine's (there is no system dockerd here anyway).
 *
 * Debian package: docker.io (`apt-get install -y --no-install-recommends docker.io`; .ci/run does).
 * - The CLI is always /usr/bin/docker: the machine image has a newer, unpackaged CLI in
 *   /usr/local/bin that comes first on PATH. Debian puts the daemon in /usr/sbin/dockerd.
 * - dockerd treats 127.0.0.0/8 as insecure (plain HTTP) by itself; `insecureRegistries` is for
 *   other hosts and for documenting intent.
 * - Only npm and Debian are reachable from the test machines, so images come from
 *   `importTinyImage` (a `docker import` of a tar built here), never from a `docker pull` of Hub.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { constants as fsConstants, readFileSync, rmSync } from 'node:fs';
import { access, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type Containerd, sha256, sleep, startContainerd } from './e2e.ts';

export const DOCKER_CLI = '/usr/bin/docker';
export const DOCKERD = '/usr/sbin/dockerd';

/** Time limit of one docker CLI command. */
const DOCKER_TIMEOUT_MS = 60_000;

export interface DockerResult {
  /** Exit code; null only if the command was killed by a signal. */
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

export interface DockerRunOptions {
  /** Written to the command's stdin (which is closed after it). */
  readonly input?: string | Buffer;
  readonly timeoutMs?: number;
}

export interface DockerDaemon {
  /** The temp folder holding everything: sockets, data-root, exec-root, containerd, CLI config. */
  readonly dir: string;
  /** unix://… — the DOCKER_HOST of this daemon. */
  readonly host: string;
  /** The CLI's DOCKER_CONFIG folder; config.json there holds the `auths` that login writes. */
  readonly configDir: string;
  /** Runs /usr/bin/docker against this daemon. Resolves whatever the exit code (see `ok`). */
  run(args: readonly string[], options?: DockerRunOptions): Promise<DockerResult>;
  /** `run`, but rejects with the full output unless the exit code is 0. */
  ok(args: readonly string[], options?: DockerRunOptions): Promise<DockerResult>;
  /** `docker login --password-stdin`; resolves with the result (a refused login is not an error). */
  login(registry: string, user: string, password: string): Promise<DockerResult>;
  logout(registry: string): Promise<DockerResult>;
  /** The CLI's stored credentials (config.json `auths`), {} when there are none. */
  auths(): Promise<Record<string, { auth?: string }>>;
  /** The daemon's log lines so far (dockerd logs on stderr). */
  tail(lines?: number): string;
  /** Stops dockerd and its containerd, unmounts what dockerd left and removes `dir`. Idempotent. */
  stop(): Promise<void>;
}

export interface DockerDaemonOptions {
  /** host:port values for daemon.json `insecure-registries` (plain HTTP). */
  readonly insecureRegistries: readonly string[];
}

// ---------------------------------------------------------------------------------------------
// Same rule as the daemons of e2e.ts: nothing outlives this process. The exit hook can only do
// synchronous work, so it SIGKILLs dockerd and then lazily unmounts its data-root bind mount
// (which dockerd removes only on a graceful shutdown); containerd is e2e.ts's child and hook.
const live = new Set<{ child: ChildProcess; dir: string }>();
/** Running docker CLI commands. */
const commands = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of commands) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  for (const { child, dir } of live) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    for (const mount of mountsUnder(dir)) spawnSync('umount', ['--lazy', mount]);
    rmSync(dir, { recursive: true, force: true });
  }
});

/** Mount points at or below `dir`, deepest first (so they unmount in order). */
function mountsUnder(dir: string): string[] {
  if (!path.isAbsolute(dir) || dir === '/') return [];
  // Field 5 of mountinfo is the mount point, with spaces and the like escaped as \ooo octal.
  const points = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((line) => (line.split(' ')[4] ?? '').replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(Number.parseInt(octal, 8))))
    .filter((point) => point === dir || point.startsWith(`${dir}/`));
  return points.sort((a, b) => b.length - a.length);
}

/** Fails (never skips) when Debian's docker.io is missing. */
export async function requireDocker(): Promise<void> {
  for (const file of [DOCKER_CLI, DOCKERD]) {
    await access(file, fsConstants.X_OK).catch(() => {
      throw new Error(`e2e test needs ${file} (Debian package docker.io); install with: apt-get install -y --no-install-recommends docker.io`);
    });
  }
}

/** Spawns a command, feeds it `input`, collects its output; rejects only on spawn failure or timeout. */
function exec(command: string, args: readonly string[], env: NodeJS.ProcessEnv, options: DockerRunOptions = {}): Promise<DockerResult> {
  const timeout = options.timeoutMs ?? DOCKER_TIMEOUT_MS;
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
    commands.add(child);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => err.push(chunk));
    // EPIPE when the command exits without reading stdin (e.g. a usage error): its exit code tells.
    child.stdin.on('error', () => {});
    child.stdin.end(options.input ?? '');
    const timer = setTimeout(() => child.kill('SIGKILL'), timeout);
    child.once('error', (error) => {
      clearTimeout(timer);
      commands.delete(child);
      reject(new Error(`${command} ${args.join(' ')}: ${error.message}`));
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      commands.delete(child);
      const result = { code, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') };
      if (signal === 'SIGKILL' && code === null) reject(new Error(`${command} ${args.join(' ')} timed out after ${timeout} ms\n${describe(result)}`));
      else resolve(result);
    });
  });
}

function describe(result: DockerResult): string {
  return `exit code ${result.code}\n--- stderr ---\n${result.stderr}\n--- stdout ---\n${result.stdout.slice(0, 4000)}`;
}

/** The environment without any DOCKER_* / CONTAINERD_* setting of whoever runs the tests. */
function cleanEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('DOCKER_') && !key.startsWith('CONTAINERD_')));
}

/**
 * Starts containerd and dockerd under a new temp folder and waits until `docker version` reaches
 * the daemon. The caller must `stop()` it (register that with its Cleanup right away).
 */
export async function startDockerDaemon(options: DockerDaemonOptions): Promise<DockerDaemon> {
  await requireDocker();
  // Short base path: unix socket paths (containerd.sock.ttrpc, exec-root's sockets) max out at 107 bytes.
  const dir = await mkdtemp(path.join(tmpdir(), 'berth-docker-'));
  const socket = path.join(dir, 'docker.sock');
  const host = `unix://${socket}`;
  const configDir = path.join(dir, 'cli');
  let containerd: Containerd | undefined;
  let dockerd: ChildProcess | undefined;
  const log: string[] = [];
  const tail = (lines = 40) => log.slice(-lines).join('\n');

  let stopped: Promise<void> | undefined;
  const stop = () => {
    stopped ??= (async () => {
      const errors: string[] = [];
      if (dockerd) {
        const end = await terminate(dockerd, 20_000);
        if (end.forced) errors.push(`dockerd did not stop within 20 s of SIGTERM:\n${tail()}`);
      }
      if (containerd) await containerd.stop().catch((err: Error) => errors.push(err.message));
      // After a graceful exit dockerd has unmounted its data-root itself; this is for a forced one.
      for (const mount of mountsUnder(dir)) {
        const umount = spawnSync('umount', ['--lazy', mount], { encoding: 'utf8' });
        if (umount.status !== 0) errors.push(`umount ${mount}: ${umount.stderr}`);
      }
      await rm(dir, { recursive: true, force: true, maxRetries: 3 });
      for (const entry of live) if (entry.dir === dir) live.delete(entry);
      assert.deepEqual(errors, [], 'stopping the private docker daemon');
    })();
    return stopped;
  };

  try {
    await mkdir(configDir);
    // An empty CLI config: no credential helper, so login stores `auths` here (see `auths()`).
    await writeFile(path.join(configDir, 'config.json'), '{"auths":{}}\n');
    containerd = await startContainerd(path.join(dir, 'containerd'));

    const daemonJson = path.join(dir, 'daemon.json');
    await writeFile(
      daemonJson,
      `${JSON.stringify(
        {
          hosts: [host],
          // Leave the machine's firewall and interfaces alone: no docker0, no NAT rules.
          iptables: false,
          ip6tables: false,
          bridge: 'none',
          // overlayfs and friends need more than this sandbox has; vfs is plain copies.
          'storage-driver': 'vfs',
          'data-root': path.join(dir, 'data'),
          'exec-root': path.join(dir, 'exec'),
          pidfile: path.join(dir, 'docker.pid'),
          // Otherwise dockerd writes its identity key to /etc/docker/key.json.
          'deprecated-key-path': path.join(dir, 'key.json'),
          // Without this dockerd would start (and on SIGKILL orphan) a containerd of its own.
          containerd: containerd.address,
          'insecure-registries': options.insecureRegistries,
        },
        null,
        2,
      )}\n`,
    );

    dockerd = spawn(DOCKERD, ['--config-file', daemonJson], { env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    live.add({ child: dockerd, dir });
    const exited = new Promise<void>((resolve) => dockerd?.once('close', () => resolve()));
    let hasExited = false;
    void exited.then(() => {
      hasExited = true;
    });
    dockerd.once('error', (err) => log.push(`spawn error: ${err.message}`));
    for (const stream of [dockerd.stdout, dockerd.stderr]) {
      let partial = '';
      stream?.setEncoding('utf8');
      stream?.on('data', (chunk: string) => {
        const lines = (partial + chunk).split('\n');
        partial = lines.pop() ?? '';
        log.push(...lines);
      });
    }

    const env = { ...cleanEnv(), DOCKER_HOST: host, DOCKER_CONFIG: configDir };
    const runDocker = (args: readonly string[], runOptions?: DockerRunOptions) => exec(DOCKER_CLI, args, env, runOptions);

    // Ready when the CLI gets the server's version (the socket exists a little before the API answers).
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (hasExited) throw new Error(`dockerd exited before it was ready:\n${tail()}`);
      const version = await runDocker(['version', '--format', '{{.Server.Version}}'], { timeoutMs: 5000 }).catch(() => undefined);
      if (version?.code === 0 && version.stdout.trim() !== '') break;
      if (Date.now() > deadline) throw new Error(`timed out after 30000 ms waiting for dockerd (docker version) on ${host}:\n${version ? describe(version) : ''}\n--- dockerd log ---\n${tail()}`);
      await sleep(100);
    }

    const ok = async (args: readonly string[], runOptions?: DockerRunOptions) => {
      const result = await runDocker(args, runOptions);
      if (result.code !== 0) throw new Error(`docker ${args.join(' ')} failed: ${describe(result)}`);
      return result;
    };
    return {
      dir,
      host,
      configDir,
      run: runDocker,
      ok,
      login: (registry, user, password) => runDocker(['login', '--username', user, '--password-stdin', registry], { input: `${password}\n` }),
      logout: (registry) => runDocker(['logout', registry]),
      async auths() {
        const config = JSON.parse(await readFile(path.join(configDir, 'config.json'), 'utf8')) as { auths?: Record<string, { auth?: string }> };
        return config.auths ?? {};
      },
      tail,
      stop,
    };
  } catch (err) {
    await stop().catch(() => {});
    throw err;
  }
}

/** SIGTERM, wait up to `graceMs`, then SIGKILL. */
async function terminate(child: ChildProcess, graceMs: number): Promise<{ forced: boolean }> {
  if (child.exitCode !== null || child.signalCode !== null) return { forced: false };
  const closed = new Promise<void>((resolve) => child.once('close', () => resolve()));
  child.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const timedOut = await Promise.race([closed.then(() => false), new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), graceMs)))]);
  clearTimeout(timer);
  if (!timedOut) return { forced: false };
  child.kill('SIGKILL');
  await closed;
  return { forced: true };
}

// ---------------------------------------------------------------------------------------------
// Images without network access

export interface TinyImage {
  readonly ref: string;
  /** The image ID: the digest of its config, the same on every daemon that has the image. */
  readonly id: string;
  /** The one file in the image, at /`file`. */
  readonly file: string;
  readonly content: string;
  /** sha256 of the uncompressed layer tar = the config's rootfs diff_id. */
  readonly diffId: string;
}

/**
 * `docker import` of a one-file root filesystem, tagged `ref`. The content carries a random
 * nonce by default, so every import is a layer no registry has seen (a real upload, not a mount).
 */
export async function importTinyImage(daemon: DockerDaemon, ref: string, content = `berth e2e ${randomBytes(8).toString('hex')}\n`): Promise<TinyImage> {
  const file = 'berth-e2e.txt';
  const tar = tarOf(file, Buffer.from(content));
  // A CMD only so that `docker create` accepts the image; nothing is ever run.
  const imported = await daemon.ok(['import', '--change', `CMD ["/${file}"]`, '-', ref], { input: tar });
  const id = imported.stdout.trim();
  assert.match(id, /^sha256:[0-9a-f]{64}$/, `docker import printed ${imported.stdout}`);
  return { ref, id, file, content, diffId: sha256(tar) };
}

/** A POSIX ustar archive holding one regular file (root-owned, 0644, fixed mtime): byte-for-byte reproducible. */
export function tarOf(name: string, data: Buffer): Buffer {
  assert.ok(Buffer.byteLength(name) < 100 && !name.includes('/'), 'tarOf: one short top-level name only');
  const header = Buffer.alloc(512);
  const field = (offset: number, length: number, value: string) => header.write(value, offset, length, 'ascii');
  const octal = (offset: number, length: number, value: number) => field(offset, length, `${value.toString(8).padStart(length - 1, '0')}\0`);
  field(0, 100, name);
  octal(100, 8, 0o644);
  octal(108, 8, 0); // uid
  octal(116, 8, 0); // gid
  octal(124, 12, data.length);
  octal(136, 12, 1_700_000_000); // mtime
  field(148, 8, '        '); // the checksum counts its own field as spaces
  field(156, 1, '0'); // regular file
  field(257, 8, 'ustar\u000000');
  field(265, 32, 'root');
  field(297, 32, 'root');
  let sum = 0;
  for (const byte of header) sum += byte;
  field(148, 8, `${sum.toString(8).padStart(6, '0')}\0 `);
  const padding = Buffer.alloc((512 - (data.length % 512)) % 512);
  // Two zero blocks end the archive.
  return Buffer.concat([header, data, padding, Buffer.alloc(1024)]);
}
