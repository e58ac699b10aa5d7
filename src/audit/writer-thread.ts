/**
 * The worker thread of ThreadedAuditWriter (writer.ts): its own database connection and an
 * AuditStore that hashes and writes the batches the main thread sends, so that this work (all of
 * it on the server's one JavaScript thread with SQLite) leaves the request path's thread.
 *
 * Once its modules are loaded it lowers its own scheduling priority (`nice`; on Linux a thread's
 * niceness is its own, the request thread keeps its own): when the two compete for a core,
 * requests go first and entries are written with the time the server has left.
 *
 * Messages in: { id, bytes, count } (an EncodedBatch, batch.ts) and { close: true }.
 * Messages out: { id, count, entries } (the written AuditEntry[], or undefined when not wanted),
 * { id, error: { name, message, code } }, { warning } and { closed: true }.
 */
import os from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import { createDatabase } from '../platform/db/database.ts';
import { decodeBatch } from './batch.ts';
import { AuditStore } from './store.ts';

interface WriterData {
  readonly url: string;
  readonly sqliteFile: string;
  readonly wantEntries: boolean;
  readonly nice: number;
}

const port = parentPort;
if (!port) throw new Error('writer-thread.ts runs as a worker thread');
const data = workerData as WriterData;
if (data.nice !== 0 && process.platform !== 'linux') {
  // Elsewhere setpriority(0) would lower the whole process, requests included.
  port.postMessage({ warning: "audit.writerThreadNice applies on Linux only; the audit writer thread runs at the process's priority" });
} else if (data.nice !== 0) {
  try {
    // pid 0 is the calling thread on Linux, not the whole process.
    os.setPriority(0, data.nice);
  } catch (err) {
    port.postMessage({ warning: `could not lower the audit writer thread's priority to nice ${data.nice}: ${(err as Error).message}` });
  }
}
const handle = createDatabase({ url: data.url, sqliteFile: data.sqliteFile, poolSize: 2 });
const store = new AuditStore(handle.db);
// One batch at a time, in the order sent: the chain's order is the order of the messages.
let chain: Promise<void> = Promise.resolve();

port.on('message', (message: { id?: number; bytes?: Uint8Array; count?: number; close?: boolean }) => {
  chain = chain.then(async () => {
    if (message.close) {
      await handle.close().catch(() => {});
      port.postMessage({ closed: true });
      return;
    }
    try {
      const entries = await store.append(decodeBatch({ bytes: message.bytes ?? new Uint8Array(0), count: message.count ?? 0 }));
      port.postMessage({ id: message.id, entries: data.wantEntries ? entries : undefined, count: entries.length });
    } catch (err) {
      const e = err as { name?: unknown; message?: unknown; code?: unknown };
      port.postMessage({ id: message.id, error: { name: String(e?.name ?? 'Error'), message: String(e?.message ?? err), ...(typeof e?.code === 'string' ? { code: e.code } : {}) } });
    }
  });
});
