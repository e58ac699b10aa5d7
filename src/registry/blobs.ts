import type { Readable } from 'node:stream';
import { parseDigest } from '../platform/oci/digest.ts';
import { OciError } from '../platform/oci/errors.ts';
import { assertRepositoryName } from '../platform/oci/names.ts';
import { BlobNotFound, type BlobStore, type ByteRange, type PositionalReader } from '../platform/storage/blob-store.ts';
import type { RegistryStore } from './store.ts';

export type BlobContent = { readonly kind: 'positional'; readonly reader: PositionalReader } | { readonly kind: 'stream'; readonly stream: Readable };

export interface BlobHead {
  readonly digest: string;
  readonly size: number;
  /** Set when the digest names a manifest of the repository: manifests are readable as blobs too, as in distribution. */
  readonly manifest?: Uint8Array;
}

/**
 * Parses a single-range `Range: bytes=…` header against a blob of `size` bytes.
 * Returns undefined when there is no usable header (serve the whole blob), throws
 * RANGE_NOT_SATISFIABLE when the range cannot be served.
 */
export function parseRangeHeader(header: string | undefined, size: number): ByteRange | undefined {
  if (header === undefined) return undefined;
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  const unsatisfiable = () => new OciError('RANGE_NOT_SATISFIABLE', `range ${header} cannot be served from ${size} bytes`, undefined, { 'Content-Range': `bytes */${size}` });
  // Multiple ranges or other units: RFC 9110 lets us ignore the header and send everything.
  if (!match) return undefined;
  const [, first, last] = match as unknown as [string, string, string];
  if (first === '' && last === '') throw unsatisfiable();
  if (first === '') {
    const suffix = Number(last);
    if (suffix === 0 || size === 0) throw unsatisfiable();
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(first);
  const end = last === '' ? size - 1 : Math.min(Number(last), size - 1);
  if (start >= size || (last !== '' && Number(last) < start)) throw unsatisfiable();
  return { start, end };
}

/** Reading and unlinking blobs of a repository. */
export class BlobService {
  readonly #store: RegistryStore;
  readonly #blobs: BlobStore;

  constructor(deps: { store: RegistryStore; blobs: BlobStore }) {
    this.#store = deps.store;
    this.#blobs = deps.blobs;
  }

  async head(repository: string, digestText: string): Promise<BlobHead> {
    assertRepositoryName(repository);
    const digest = parseDigest(digestText);
    const size = await this.#store.linkedBlobSizeByName(repository, digest.value);
    if (size !== undefined) return { digest: digest.value, size };
    const { manifest } = await this.#store.findManifest(repository, { digest: digest.value });
    if (!manifest) throw new OciError('BLOB_UNKNOWN', 'blob unknown to registry', { digest: digest.value });
    return { digest: digest.value, size: manifest.size, manifest: manifest.content };
  }

  /** Opens the blob's bytes for sending: positional reads where the driver offers them, else a stream. */
  async open(digestText: string, range?: ByteRange): Promise<BlobContent> {
    const digest = parseDigest(digestText);
    try {
      if (this.#blobs.openPositional) return { kind: 'positional', reader: await this.#blobs.openPositional(digest) };
      return { kind: 'stream', stream: await this.#blobs.read(digest, range) };
    } catch (err) {
      if (err instanceof BlobNotFound) throw new OciError('BLOB_UNKNOWN', 'blob content is missing from storage', { digest: digestText });
      throw err;
    }
  }

  /** Unlinks the blob from the repository; the bytes stay until garbage collection. */
  async delete(repository: string, digestText: string): Promise<void> {
    assertRepositoryName(repository);
    const digest = parseDigest(digestText);
    const repositoryId = await this.#store.findRepositoryId(repository);
    if (repositoryId === undefined || !(await this.#store.unlinkBlob(repositoryId, digest.value))) {
      throw new OciError('BLOB_UNKNOWN', 'blob unknown to registry', { digest: digest.value });
    }
  }
}
