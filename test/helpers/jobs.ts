import { type ChildProcess, fork } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createDatabase, type DatabaseHandle } from '../../src/platform/db/database.ts';
import { type Backend, createTestDatabase } from './backends.ts';

export { waitUntil } from './http.ts';

/** One fresh database and several handles on it: separate pools (PostgreSQL) or connections (SQLite file). */
export interface SharedDatabase {
  readonly backend: Backend;
  /** config database.url: '' for SQLite. */
  readonly url: string;
  readonly sqliteFile: string;
  readonly handles: DatabaseHandle[];
  close(): Promise<void>;
}

export async function openSharedDatabase(backend: Backend, count: number): Promise<SharedDatabase> {
  const testDatabase = await createTestDatabase(backend);
  const dir = await mkdtemp(path.join(tmpdir(), 'berth-jobs-'));
  const sqliteFile = path.join(dir, 'berth.db');
  const handles = Array.from({ length: count }, () => createDatabase({ url: testDatabase.url, sqliteFile, poolSize: 6 }));
  await (handles[0] as DatabaseHandle).migrate();
  return {
    backend,
    url: testDatabase.url,
    sqliteFile,
    handles,
    async close() {
      for (const handle of handles) await handle.close();
      await testDatabase.drop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A clock that moves only when told to. */
export interface FakeClock {
  t: number;
  readonly now: () => number;
  advance(ms: number): void;
}

export function fakeClock(start = Date.UTC(2030, 0, 1)): FakeClock {
  const clock: FakeClock = {
    t: start,
    now: () => clock.t,
    advance(ms) {
      clock.t += ms;
    },
  };
  return clock;
}

/**
 * Another Berth node in a child process, on the same database, driven by requests (see
 * job-node.ts). Two SQLite connections in one process cannot wait for each other's locks (the
 * driver is synchronous), two processes can: this is how tests run a real second node.
 */
export interface JobNode {
  request<T = unknown>(op: string, args?: Record<string, unknown>): Promise<T>;
  close(): Promise<void>;
}

export async function spawnJobNode(shared: SharedDatabase): Promise<JobNode> {
  const child: ChildProcess = fork(path.join(import.meta.dirname, 'job-node.ts'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  let nextId = 0;
  const pending = new Map<number, { resolve(value: unknown): void; reject(err: Error): void }>();
  child.on('message', (message: { id: number; result?: unknown; error?: string }) => {
    const waiter = pending.get(message.id);
    pending.delete(message.id);
    if (message.error !== undefined) waiter?.reject(new Error(`job node: ${message.error}`));
    else waiter?.resolve(message.result);
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  void exited.then(() => {
    for (const waiter of pending.values()) waiter.reject(new Error('job node exited'));
    pending.clear();
  });
  const node: JobNode = {
    request<T>(op: string, args: Record<string, unknown> = {}) {
      const id = ++nextId;
      return new Promise<T>((resolve, reject) => {
        pending.set(id, { resolve: resolve as (value: unknown) => void, reject });
        child.send({ id, op, args });
      });
    },
    async close() {
      if (child.exitCode === null) {
        await node.request('close').catch(() => {});
        child.disconnect();
      }
      await exited;
    },
  };
  await node.request('open', { url: shared.url, sqliteFile: shared.sqliteFile });
  return node;
}

/** A worker as GET /jobservice/pools/{pool_id}/workers shows it. */
export interface WorkerJson {
  id: string;
  pool_id: string;
  job_id?: string;
  job_name?: string;
  start_at?: string;
  checkin_at?: string;
}
