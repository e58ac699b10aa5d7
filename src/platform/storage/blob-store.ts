import type { Readable } from 'node:stream';
import type { ParsedDigest } from '../oci/digest.ts';

export interface BlobStat {
  readonly size: number;
}

/** An inclusive byte range, as in HTTP Range: bytes start..end. */
export interface ByteRange {
  readonly start: number;
  readonly end: number;
}

export interface UploadInfo {
  readonly id: string;
  readonly size: number;
  readonly modifiedAt: number;
}

/** Thrown by appendUpload when the upload's stored size is not the offset the caller expected. */
export class UploadOffsetMismatch extends Error {
  readonly actual: number;
  constructor(actual: number) {
    super(`upload is at offset ${actual}`);
    this.actual = actual;
  }
}

/**
 * Content-addressed blob storage plus the scratch space of upload sessions.
 *
 * Contract every driver keeps (test/contract/blob-store.contract.ts checks it):
 * - A blob is visible (stat/read/list) only after commitUpload, and then with exactly the bytes
 *   appended. No reader ever sees a partial blob, whatever happens mid-write.
 * - Blobs are immutable. Committing a digest that already exists keeps the existing blob and
 *   discards the upload.
 * - The store does not verify digests: the caller hashes while streaming and commits only after
 *   the digest matched. The store trusts the digest it is given.
 * - "Not found" is `undefined` from stat/uploadSize and false from delete; read throws a
 *   `BlobNotFound` error.
 */
export interface BlobStore {
  /** Creates an empty upload area. Idempotent. */
  startUpload(uploadId: string): Promise<void>;
  /**
   * Appends the stream at `offset`. Bytes stored beyond `offset` (left by a crash between a write
   * and the caller recording the new offset) are discarded first; an upload shorter than `offset`
   * is an UploadOffsetMismatch and nothing is written. If the stream fails or is aborted, the
   * upload is cut back to `offset`, so a failed append leaves no partial chunk. Resolves to the
   * new size.
   */
  appendUpload(uploadId: string, offset: number, source: Readable): Promise<number>;
  /** Current size of the upload, or undefined when there is no such upload. */
  uploadSize(uploadId: string): Promise<number | undefined>;
  /** Streams the bytes received so far (used to rebuild a hash state after a restart). */
  readUpload(uploadId: string): Readable;
  /** Durably publishes the upload's bytes as `digest` and removes the upload area (syncUpload + publishUpload). */
  commitUpload(uploadId: string, digest: ParsedDigest): Promise<void>;
  /** Makes the upload's bytes durable, so that publishUpload is only a cheap rename (done inside a database transaction). */
  syncUpload(uploadId: string): Promise<void>;
  /**
   * Publishes an upload that syncUpload made durable as `digest` and removes the upload area. When
   * the blob exists already it is kept and the upload is dropped.
   */
  publishUpload(uploadId: string, digest: ParsedDigest): Promise<void>;
  /** Removes the upload area and its data. Idempotent. */
  cancelUpload(uploadId: string): Promise<void>;
  /** Every upload area with its last modification time (for purging abandoned sessions). */
  listUploads(): AsyncIterable<UploadInfo>;
  stat(digest: ParsedDigest): Promise<BlobStat | undefined>;
  /** Streams the blob, or the inclusive `range` of it. */
  read(digest: ParsedDigest, range?: ByteRange): Promise<Readable>;
  /**
   * Optional fast path for serving: positional reads into caller-owned buffers. Drivers on a local
   * file system offer it; the HTTP layer then reuses a few buffers instead of allocating one per
   * chunk (that garbage cost more CPU than the bytes themselves). Throws BlobNotFound like read.
   */
  openPositional?(digest: ParsedDigest): Promise<PositionalReader>;
  /** Removes a blob; false when it did not exist. */
  delete(digest: ParsedDigest): Promise<boolean>;
  /** Every committed blob's digest, in no particular order. */
  list(): AsyncIterable<string>;

  // Garbage collection moves a blob into a trash bin inside the database transaction that deletes
  // its row, and empties the bin after the commit; after a crash the next run puts back what a
  // surviving row still names and drops the rest (src/gc). Trashed blobs are invisible to
  // stat/read/list.

  /** Moves a committed blob into the trash bin `bin`; false when there was no such blob. */
  trashBlob(digest: ParsedDigest, bin: string): Promise<boolean>;
  /**
   * Moves a trashed blob back where it was; when a blob with that digest exists again (pushed
   * anew), the trashed copy is dropped instead. False when the bin did not hold it.
   */
  restoreTrashed(digest: ParsedDigest, bin: string): Promise<boolean>;
  /** Deletes a trashed blob. Idempotent. */
  deleteTrashed(digest: ParsedDigest, bin: string): Promise<void>;
  /** Every trashed blob with its bin, in no particular order. */
  listTrash(): AsyncIterable<TrashedBlob>;
  /** The names of the trash bins, empty ones included. */
  listTrashBins(): Promise<string[]>;
  /**
   * Removes a bin if it holds nothing any more (its empty folders too); a bin with a blob in it is
   * left alone, since another process may still put that blob back. Idempotent.
   */
  removeTrashBin(bin: string): Promise<void>;
}

export interface TrashedBlob {
  readonly bin: string;
  readonly digest: string;
}

/** Positional reads of one blob into buffers the caller owns (so a server can reuse its buffers). */
export interface PositionalReader {
  readonly size: number;
  /** Reads up to `length` bytes at `position` into `buffer`; resolves to the bytes read (0 at the end). */
  read(buffer: Buffer, length: number, position: number): Promise<number>;
  close(): Promise<void>;
}

export class BlobNotFound extends Error {
  constructor(digest: string) {
    super(`blob ${digest} not found`);
    this.name = 'BlobNotFound';
  }
}
