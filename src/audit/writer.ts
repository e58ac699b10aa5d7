/**
 * Where the recorder's batches go: straight to the AuditStore on this thread, or to a worker
 * thread with its own database connection (audit.writerThread), which hashes and inserts them
 * there. Either way batches are written one after the other, in order, each in one transaction
 * under the chain's lock; an error comes back with its code, so the recorder can tell a database
 * that is down from an entry it refuses.
 */
import { Worker } from 'node:worker_threads';
import { decodeBatch, type EncodedBatch } from './batch.ts';
import type { AuditEntry } from './entry.ts';
import type { AuditStore } from './store.ts';

export interface Written {
  readonly count: number;
  /** The entries as written (id and hash), when the writer was asked for them. */
  readonly entries: readonly AuditEntry[] | undefined;
}

export interface AuditWriter {
  append(batch: EncodedBatch): Promise<Written>;
  close(): Promise<void>;
}

/** Writes on this thread. */
export function storeWriter(store: AuditStore): AuditWriter {
  return {
    append: async (batch) => {
      const entries = await store.append(decodeBatch(batch));
      return { count: entries.length, entries };
    },
    close: async () => {},
  };
}

export interface ThreadedWriterOptions {
  /** The database, as the configuration names it: postgres:// URL, or '' and the SQLite file. */
  readonly url: string;
  readonly sqliteFile: string;
  /** Send the written entries back (for forwarding); otherwise only their count. */
  readonly wantEntries: boolean;
  /** Scheduling niceness of the thread (0–19; 19 yields the CPU to requests the most). */
  readonly nice?: number;
  /** Told when the thread reports a problem that does not stop it (its priority could not be set). */
  readonly onWarning?: (message: string) => void;
}

/** The writer thread's name, as `top -H` and /proc/<pid>/task/<tid>/comm show it (15 characters at most). */
export const WRITER_THREAD_NAME = 'audit-writer';

interface Pending {
  resolve(written: Written): void;
  reject(error: Error): void;
}

type Reply = { id: number; entries: AuditEntry[] | undefined; count: number } | { id: number; error: { name: string; message: string; code?: string } } | { closed: true } | { warning: string };

/** Writes on a worker thread, started at the first batch (and again if it dies). */
/** `bytes` copied into an ArrayBuffer of exactly their length, which can be transferred to a thread. */
export function ownBufferCopy(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  return new Uint8Array(bytes);
}

export class ThreadedAuditWriter implements AuditWriter {
  readonly #options: ThreadedWriterOptions;
  #worker: Worker | undefined;
  #nextId = 1;
  readonly #pending = new Map<number, Pending>();
  #closed: Promise<void> | undefined;

  constructor(options: ThreadedWriterOptions) {
    this.#options = options;
  }

  #start(): Worker {
    const worker = new Worker(new URL('./writer-thread.ts', import.meta.url), {
      name: WRITER_THREAD_NAME,
      workerData: { url: this.#options.url, sqliteFile: this.#options.sqliteFile, wantEntries: this.#options.wantEntries, nice: this.#options.nice ?? 0 },
    });
    worker.unref();
    worker.on('message', (reply: Reply) => {
      if ('closed' in reply) return;
      if ('warning' in reply) {
        this.#options.onWarning?.(reply.warning);
        return;
      }
      const pending = this.#pending.get(reply.id);
      if (!pending) return;
      this.#pending.delete(reply.id);
      if ('error' in reply) {
        pending.reject(Object.assign(new Error(reply.error.message), { name: reply.error.name }, reply.error.code !== undefined ? { code: reply.error.code } : {}));
      } else {
        pending.resolve({ count: reply.count, entries: reply.entries });
      }
    });
    const fail = (error: Error) => {
      if (this.#worker === worker) this.#worker = undefined;
      for (const [id, pending] of this.#pending) {
        this.#pending.delete(id);
        pending.reject(error);
      }
    };
    worker.on('error', (err) => fail(new Error(`the audit writer thread failed: ${err.message}`)));
    worker.on('exit', (code) => fail(new Error(`the audit writer thread exited (${code})`)));
    this.#worker = worker;
    return worker;
  }

  append(batch: EncodedBatch): Promise<Written> {
    if (this.#closed) return Promise.reject(new Error('the audit writer is closed'));
    const worker = this.#worker ?? this.#start();
    const id = this.#nextId++;
    return new Promise<Written>((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      // The batch's bytes are copied once into a buffer of their own, which is handed over (not
      // copied again) to the thread; the batch stays here until the reply. Posting the view itself
      // would clone its whole slab (256 KiB for a few KiB of entries): measured 175–350 µs of
      // request-thread CPU per batch, and as much garbage on the writer thread.
      const bytes = ownBufferCopy(batch.bytes);
      worker.postMessage({ id, bytes, count: batch.count }, [bytes.buffer]);
    });
  }

  /** Lets the batches sent finish, closes the thread's database connection and ends the thread. */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      const worker = this.#worker;
      if (!worker) return;
      const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
      const closed = new Promise<void>((resolve) => {
        worker.on('message', (reply: Reply) => {
          if ('closed' in reply) resolve();
        });
      });
      worker.postMessage({ close: true });
      await Promise.race([closed, exited, new Promise((resolve) => setTimeout(resolve, 10_000).unref())]);
      await worker.terminate();
    })();
    return this.#closed;
  }
}
