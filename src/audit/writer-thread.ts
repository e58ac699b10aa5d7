/**
 * The worker thread of ThreadedAuditWriter (writer.ts): its own database connection and an
 * AuditStore that hashes and writes the batches the main thread sends, so that this work (all of
 * it on the server's one JavaScript thread with SQLite) leaves the request path's thread.
 *
 * Messages in: { id, bytes, count } (an EncodedBatch, batch.ts) and { close: true }.
 * Messages out: { id, count, entries } (the written AuditEntry[], or undefined when not wanted),
 * { id, error: { name, message, code } }, and { closed: true }.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { createDatabase } from '../platform/db/database.ts';
import { decodeBatch } from './batch.ts';
import { AuditStore } from './store.ts';

interface WriterData {
  readonly url: string;
  readonly sqliteFile: string;
  readonly wantEntries: boolean;
}

const port = parentPort;
if (!port) throw new Error('writer-thread.ts runs as a worker thread');
const data = workerData as WriterData;
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
