import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { type App, createApp } from '../../src/app.ts';
import { loadConfig } from '../../src/config/load.ts';
import { type Backend, createTestDatabase, type TestDatabase } from './backends.ts';

export interface TestServer {
  readonly app: App;
  /** Base URL, e.g. http://127.0.0.1:40123 */
  readonly url: string;
  readonly dataDir: string;
  readonly backend: Backend;
  /** Log lines the server wrote (JSON strings). */
  readonly logs: string[];
  /** Stops the server but keeps the data folder and database (for restart tests). */
  stop(): Promise<void>;
  /** Starts a new server process-in-process on the same data and database. */
  restart(): Promise<TestServer>;
  /** Stops and removes everything. */
  close(): Promise<void>;
  /**
   * Starts another node on the same data folder and database (a cluster of two, in this process).
   * Its close() only stops it; the first node's close() removes what they share.
   */
  addNode(): Promise<TestServer>;
}

export interface TestServerOptions {
  /** Extra configuration, in the shape of the YAML file. */
  config?: Record<string, unknown>;
}

/** The password of `admin` in test servers (config adminPassword). */
export const ADMIN_PASSWORD = 'Admin12345';

/** Authorization header value for HTTP Basic. */
export function basicAuth(username: string, password: string): string {
  return `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;
}

export const ADMIN_AUTH = basicAuth('admin', ADMIN_PASSWORD);

/**
 * Builds a whole Berth app in this process on a real socket (127.0.0.1, port 0) with a fresh
 * data folder and a fresh database of the given backend.
 */
export async function startTestServer(backend: Backend, options: TestServerOptions = {}): Promise<TestServer> {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'berth-test-'));
  const database = await createTestDatabase(backend);
  return boot(backend, dataDir, database, options);
}

async function boot(backend: Backend, dataDir: string, database: TestDatabase, options: TestServerOptions): Promise<TestServer> {
  const extra = options.config ?? {};
  const config = loadConfig({
    env: {},
    overrides: {
      ...extra,
      dataDir,
      server: { addr: '127.0.0.1:0', ...((extra.server as object) ?? {}) },
      database: { url: database.url, ...((extra.database as object) ?? {}) },
      log: { level: 'info', ...((extra.log as object) ?? {}) },
      // Registry-core suites run like a bare registry; suites about access control turn auth on.
      auth: { enabled: false, ...((extra.auth as object) ?? {}) },
      adminPassword: extra.adminPassword ?? ADMIN_PASSWORD,
    },
  });
  const logs: string[] = [];
  const logStream = new Writable({
    write(chunk, _encoding, callback) {
      logs.push(String(chunk));
      callback();
    },
  });
  const app = await createApp(config, { logStream, processMetrics: false });
  const url = await app.start();
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await app.stop();
  };
  return {
    app,
    url,
    dataDir,
    backend,
    logs,
    stop,
    restart: async () => {
      await stop();
      return boot(backend, dataDir, database, options);
    },
    async close() {
      await stop();
      await database.drop();
      await rm(dataDir, { recursive: true, force: true });
    },
    async addNode() {
      const node = await boot(backend, dataDir, database, options);
      return { ...node, close: node.stop };
    },
  };
}
