import type { Hash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { KeyedMutex } from '../platform/lib/keyed-mutex.ts';
import { newUploadId } from '../platform/lib/ids.ts';
import { hashUpdater, MeteredStream } from '../platform/lib/streams.ts';
import { type DigestAlgorithm, newHash, type ParsedDigest, parseDigest } from '../platform/oci/digest.ts';
import { OciError } from '../platform/oci/errors.ts';
import { assertRepositoryName } from '../platform/oci/names.ts';
import { type BlobStore, UploadOffsetMismatch } from '../platform/storage/blob-store.ts';
import type { Metrics } from '../platform/http/metrics.ts';
import type { RegistryStore } from './store.ts';

/** An inclusive byte range from a Content-Range request header. */
export interface ChunkRange {
  readonly start: number;
  readonly end: number;
}

export interface ChunkInput {
  readonly body: Readable;
  /** Declared Content-Length, when the client sent one. */
  readonly contentLength: number | undefined;
  readonly range: ChunkRange | undefined;
}

export type StartResult =
  | { readonly kind: 'blob'; readonly digest: string }
  | { readonly kind: 'session'; readonly id: string; readonly offset: number };

export interface UploadLimits {
  /** Largest blob accepted; 0 means no limit. */
  readonly maxBlobBytes: number;
  readonly expireAfterMs: number;
  /**
   * Mount without `from` (OCI 1.1: any blob the registry holds). Off when auth is on: knowing a
   * digest must not copy a blob out of a project the caller cannot read; the client then uploads.
   */
  readonly mountWithoutFrom?: boolean;
}

/** The in-process running hash of an upload, valid while `offset` matches the session. */
interface RunningHash {
  readonly algorithm: DigestAlgorithm;
  readonly hash: Hash;
  offset: number;
}

const MAX_RUNNING_HASHES = 10_000;

function rangeError(message: string, offset: number, location: string): OciError {
  return new OciError('RANGE_INVALID', message, undefined, { Range: rangeHeader(offset), Location: location });
}

/** The Range header of an upload status: the inclusive range received so far ("0-0" when empty). */
export function rangeHeader(offset: number): string {
  return `0-${Math.max(0, offset - 1)}`;
}

/**
 * Blob uploads: monolithic, streamed and chunked, plus cross-repository mounts.
 *
 * Bytes stream from the socket through a hasher into the blob store; a blob becomes visible only
 * after its digest matched. The session's offset is persisted after every chunk. The running
 * hash is kept in process memory (node:crypto, about five times faster here than a hash whose
 * state can be exported); after a restart, or when another node continues the session, it is
 * rebuilt once by reading the bytes stored so far.
 */
export class UploadService {
  readonly #store: RegistryStore;
  readonly #blobs: BlobStore;
  readonly #metrics: Metrics;
  readonly #limits: UploadLimits;
  readonly #locks = new KeyedMutex();
  readonly #running = new Map<string, RunningHash>();

  constructor(deps: { store: RegistryStore; blobs: BlobStore; metrics: Metrics; limits: UploadLimits }) {
    this.#store = deps.store;
    this.#blobs = deps.blobs;
    this.#metrics = deps.metrics;
    this.#limits = deps.limits;
  }

  /** POST /blobs/uploads/: a mount, a monolithic upload (`digest`), or a new session. */
  async start(repository: string, options: { digest?: string; mount?: string; from?: string }, chunk: ChunkInput): Promise<StartResult> {
    assertRepositoryName(repository);
    if (options.mount !== undefined) {
      const mounted = await this.#tryMount(repository, options.mount, options.from);
      if (mounted) {
        chunk.body.resume();
        return { kind: 'blob', digest: mounted };
      }
    }
    if (options.digest !== undefined) {
      const digest = parseDigest(options.digest);
      await this.#putMonolithic(repository, digest, chunk);
      return { kind: 'blob', digest: digest.value };
    }
    chunk.body.resume();
    const repositoryId = await this.#store.ensureRepository(repository);
    const id = newUploadId();
    await this.#blobs.startUpload(id);
    await this.#store.createUpload(id, repositoryId);
    return { kind: 'session', id, offset: 0 };
  }

  /**
   * Mounts a blob from `from`, or, without `from`, any blob the registry already holds (OCI 1.1).
   * Returns the digest when mounted; undefined means "start a normal upload instead".
   */
  async #tryMount(repository: string, mount: string, from: string | undefined): Promise<string | undefined> {
    const digest = parseDigest(mount);
    let size: number | undefined;
    if (from !== undefined && from !== '') {
      assertRepositoryName(from);
      const fromId = await this.#store.findRepositoryId(from);
      size = fromId === undefined ? undefined : await this.#store.linkedBlobSize(fromId, digest.value);
    } else if (this.#limits.mountWithoutFrom !== false) {
      size = await this.#store.blobSize(digest.value);
    }
    if (size === undefined) return undefined;
    const repositoryId = await this.#store.ensureRepository(repository);
    // Under the blob row's lock: garbage collection cannot take the blob away between the check and the link.
    const mounted = await this.#store.mountBlob(repositoryId, digest.value, async () => (await this.#blobs.stat(digest)) !== undefined);
    return mounted === undefined ? undefined : digest.value;
  }

  async #putMonolithic(repository: string, digest: ParsedDigest, chunk: ChunkInput): Promise<void> {
    const repositoryId = await this.#store.ensureRepository(repository);
    const id = newUploadId();
    const hash = newHash(digest.algorithm);
    await this.#blobs.startUpload(id);
    try {
      const size = await this.#append(id, 0, chunk, hash);
      const actual = `${digest.algorithm}:${hash.digest('hex')}`;
      if (actual !== digest.value) throw new OciError('DIGEST_INVALID', 'uploaded content does not match the digest', { expected: digest.value, actual });
      await this.#store.precheckQuota(repositoryId, [{ digest: digest.value, size }]);
      await this.#publish(repositoryId, id, digest, size);
    } catch (err) {
      await this.#blobs.cancelUpload(id);
      throw err;
    }
  }

  /**
   * Makes a verified upload visible as `digest` and links it: the bytes are synced first, then
   * renamed into place inside the transaction that claims the blob row (see RegistryStore.linkBlob).
   */
  async #publish(repositoryId: number, id: string, digest: ParsedDigest, size: number): Promise<void> {
    await this.#blobs.syncUpload(id);
    await this.#store.linkBlob(repositoryId, digest.value, size, () => this.#blobs.publishUpload(id, digest));
  }

  /** PATCH: appends one chunk (streamed, or with Content-Range) and returns the new offset. */
  async append(repository: string, id: string, chunk: ChunkInput, location: string): Promise<number> {
    await this.#session(repository, id, chunk.body);
    return this.#locks.run(id, async () => {
      const offset = (await this.#session(repository, id, chunk.body)).offset;
      if (chunk.range && chunk.range.start !== offset) {
        chunk.body.resume();
        throw rangeError(`chunk starts at ${chunk.range.start}, the upload is at ${offset}`, offset, location);
      }
      const running = await this.#runningHash(id, offset, 'sha256');
      let next: number;
      try {
        next = await this.#append(id, offset, chunk, running.hash);
      } catch (err) {
        this.#running.delete(id);
        if (err instanceof UploadOffsetMismatch) throw rangeError('upload data is missing; restart the upload', offset, location);
        throw err;
      }
      if (!(await this.#store.advanceUpload(id, offset, next))) {
        this.#running.delete(id);
        throw rangeError('the upload was changed concurrently', offset, location);
      }
      running.offset = next;
      return next;
    });
  }

  /** PUT: appends an optional final chunk, verifies the digest and publishes the blob. */
  async complete(repository: string, id: string, digestParam: string | undefined, chunk: ChunkInput, location: string): Promise<string> {
    await this.#session(repository, id, chunk.body);
    if (digestParam === undefined || digestParam === '') {
      chunk.body.resume();
      throw new OciError('DIGEST_INVALID', 'the digest query parameter is required to complete an upload');
    }
    const digest = parseDigest(digestParam);
    return this.#locks.run(id, async () => {
      const session = await this.#session(repository, id, chunk.body);
      let offset = session.offset;
      if (chunk.range && chunk.range.start !== offset) {
        chunk.body.resume();
        throw rangeError(`chunk starts at ${chunk.range.start}, the upload is at ${offset}`, offset, location);
      }
      const running = await this.#runningHash(id, offset, digest.algorithm);
      try {
        offset = await this.#append(id, offset, chunk, running.hash);
      } catch (err) {
        this.#running.delete(id);
        if (err instanceof UploadOffsetMismatch) throw rangeError('upload data is missing; restart the upload', session.offset, location);
        throw err;
      }
      this.#running.delete(id);
      const actual = `${digest.algorithm}:${running.hash.digest('hex')}`;
      if (actual !== digest.value) {
        await this.#discard(id);
        throw new OciError('DIGEST_INVALID', 'uploaded content does not match the digest', { expected: digest.value, actual });
      }
      try {
        // A push past the project's quota leaves nothing: no blob, no link, no session.
        await this.#store.precheckQuota(session.repository_id, [{ digest: digest.value, size: offset }]);
        await this.#publish(session.repository_id, id, digest, offset);
      } catch (err) {
        if (err instanceof OciError && err.code === 'DENIED') await this.#discard(id);
        throw err;
      }
      await this.#store.deleteUpload(id);
      return digest.value;
    });
  }

  /** GET: the session's current offset. */
  async status(repository: string, id: string): Promise<number> {
    return (await this.#session(repository, id)).offset;
  }

  /** DELETE: cancels the session and removes its data. */
  async cancel(repository: string, id: string): Promise<void> {
    await this.#session(repository, id);
    await this.#locks.run(id, () => this.#discard(id));
  }

  /** Removes sessions untouched for longer than the expiry, and stray upload data with no session. */
  async purgeExpired(now = Date.now()): Promise<number> {
    const before = now - this.#limits.expireAfterMs;
    let purged = 0;
    for (;;) {
      const ids = await this.#store.uploadsIdleSince(before, 500);
      for (const id of ids) {
        await this.#locks.run(id, () => this.#discard(id));
        purged++;
      }
      if (ids.length < 500) break;
    }
    for await (const upload of this.#blobs.listUploads()) {
      if (upload.modifiedAt < before && !(await this.#store.uploadExists(upload.id))) {
        await this.#blobs.cancelUpload(upload.id);
        purged++;
      }
    }
    return purged;
  }

  async #discard(id: string): Promise<void> {
    this.#running.delete(id);
    await this.#store.deleteUpload(id);
    await this.#blobs.cancelUpload(id);
  }

  async #session(repository: string, id: string, body?: Readable) {
    assertRepositoryName(repository);
    const session = await this.#store.findUpload(id);
    if (!session || session.repository !== repository) {
      body?.resume();
      throw new OciError('BLOB_UPLOAD_UNKNOWN', 'upload unknown to the registry', { id });
    }
    return session;
  }

  /** The running hash at `offset`, rebuilt from the stored bytes when this process lacks it. */
  async #runningHash(id: string, offset: number, algorithm: DigestAlgorithm): Promise<RunningHash> {
    const cached = this.#running.get(id);
    if (cached && cached.offset === offset && cached.algorithm === algorithm) return cached;
    const hash = newHash(algorithm);
    let seen = 0;
    if (offset > 0) {
      const meter = new MeteredStream({ limit: offset, update: hashUpdater(hash), onLimit: () => new Error('stored upload is longer than its offset') });
      // Only the first `offset` bytes count; anything beyond is a leftover the next append discards.
      await pipeline(this.#blobs.readUpload(id), limitTo(offset), meter, async (source) => {
        for await (const _ of source) {
          /* drain */
        }
      }).catch((err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') throw new OciError('BLOB_UPLOAD_UNKNOWN', 'upload data is gone', { id });
        throw err;
      });
      seen = meter.bytes;
      if (seen !== offset) throw new OciError('BLOB_UPLOAD_INVALID', 'stored upload data is shorter than its recorded offset; restart the upload', { id });
    }
    const running: RunningHash = { algorithm, hash, offset };
    if (this.#running.size >= MAX_RUNNING_HASHES) this.#running.delete(this.#running.keys().next().value as string);
    this.#running.set(id, running);
    return running;
  }

  /** Streams one chunk into the upload at `offset`, through the hash; returns the new size. */
  async #append(id: string, offset: number, chunk: ChunkInput, hash: Hash): Promise<number> {
    const max = this.#limits.maxBlobBytes > 0 ? this.#limits.maxBlobBytes - offset : Number.POSITIVE_INFINITY;
    let exactBytes: number | undefined;
    if (chunk.range) {
      exactBytes = chunk.range.end - chunk.range.start + 1;
      if (chunk.contentLength !== undefined && chunk.contentLength !== exactBytes) {
        chunk.body.resume();
        throw new OciError('RANGE_INVALID', `Content-Range covers ${exactBytes} bytes but Content-Length is ${chunk.contentLength}`, undefined, { Range: rangeHeader(offset) });
      }
    } else if (chunk.contentLength !== undefined) {
      exactBytes = chunk.contentLength;
    }
    if (exactBytes !== undefined && exactBytes > max) {
      chunk.body.resume();
      throw new OciError('SIZE_INVALID', `blob exceeds the limit of ${this.#limits.maxBlobBytes} bytes`);
    }
    const meter = new MeteredStream({
      limit: max,
      update: hashUpdater(hash),
      onLimit: () => new OciError('SIZE_INVALID', `blob exceeds the limit of ${this.#limits.maxBlobBytes} bytes`),
      ...(exactBytes !== undefined
        ? { exact: { bytes: exactBytes, onMismatch: (actual: number) => new OciError('SIZE_INVALID', `expected ${exactBytes} bytes, received ${actual}`) } }
        : {}),
    });
    const source = chunk.body.pipe(meter);
    const disconnected = () => meter.destroy(new OciError('BLOB_UPLOAD_INVALID', 'client disconnected during upload'));
    chunk.body.once('error', (err) => meter.destroy(err));
    chunk.body.once('aborted', disconnected);
    // A client may hang up before these listeners exist (while its session was looked up). Its body
    // then never ends and the events above are past: without this the append would wait forever,
    // holding the session's lock.
    if (chunk.body.readableAborted) disconnected();
    this.#metrics.uploadsInProgress.inc();
    try {
      const size = await this.#blobs.appendUpload(id, offset, source);
      this.#metrics.bytesReceived.inc(meter.bytes);
      return size;
    } finally {
      this.#metrics.uploadsInProgress.dec();
    }
  }
}

/** Passes through only the first `limit` bytes of a stream. */
function limitTo(limit: number) {
  let remaining = limit;
  return async function* (source: AsyncIterable<Buffer>) {
    for await (const chunk of source) {
      if (remaining <= 0) break;
      const piece = chunk.length > remaining ? chunk.subarray(0, remaining) : chunk;
      remaining -= piece.length;
      yield piece;
    }
  };
}

