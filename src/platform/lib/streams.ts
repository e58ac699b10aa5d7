import { Transform, type TransformCallback } from 'node:stream';
import type { Hash } from 'node:crypto';

/**
 * Passes bytes through while counting them and feeding one or more hashers. Fails the stream
 * with `onLimit()` as soon as more than `limit` bytes went by, so a lying client cannot make
 * us write past what it declared.
 */
export class MeteredStream extends Transform {
  bytes = 0;
  readonly #limit: number;
  readonly #update: ((chunk: Buffer) => void) | undefined;
  readonly #onLimit: () => Error;
  readonly #exact: { bytes: number; onMismatch: (actual: number) => Error } | undefined;

  constructor(options: {
    limit?: number;
    update?: (chunk: Buffer) => void;
    onLimit?: () => Error;
    /** Fail at the end of the stream unless exactly this many bytes went by. */
    exact?: { bytes: number; onMismatch: (actual: number) => Error };
  }) {
    super({ highWaterMark: 1 << 20 });
    this.#exact = options.exact;
    this.#limit = Math.min(options.limit ?? Number.POSITIVE_INFINITY, options.exact?.bytes ?? Number.POSITIVE_INFINITY);
    this.#update = options.update;
    this.#onLimit = options.exact && (options.limit === undefined || options.exact.bytes <= options.limit)
      ? () => options.exact!.onMismatch(this.bytes)
      : (options.onLimit ?? (() => new Error('byte limit exceeded')));
  }

  override _flush(callback: TransformCallback): void {
    if (this.#exact && this.bytes !== this.#exact.bytes) callback(this.#exact.onMismatch(this.bytes));
    else callback();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.bytes > this.#limit) {
      callback(this.#onLimit());
      return;
    }
    this.#update?.(chunk);
    callback(null, chunk);
  }
}

export function hashUpdater(hash: Hash): (chunk: Buffer) => void {
  return (chunk) => hash.update(chunk);
}

/** Reads a whole stream into memory, refusing more than `limit` bytes. Only for small bodies (manifests). */
export async function readLimited(stream: NodeJS.ReadableStream, limit: number, onLimit: () => Error): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    total += chunk.length;
    if (total > limit) throw onLimit();
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, total);
}
