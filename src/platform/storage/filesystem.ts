import { createReadStream, createWriteStream } from 'node:fs';
import { type FileHandle, mkdir, open, readdir, rename, rm, rmdir, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ParsedDigest } from '../oci/digest.ts';
import { BlobNotFound, type BlobStat, type BlobStore, type ByteRange, type PositionalReader, type TrashedBlob, UploadOffsetMismatch, type UploadInfo } from './blob-store.ts';
import { BLOBS_PREFIX, blobKey, TRASH_PREFIX, trashBinKey, trashKey, UPLOADS_PREFIX, uploadKey } from './layout.ts';

function isMissing(err: unknown): boolean {
  return (err as NodeJS.ErrnoException).code === 'ENOENT';
}

/** Blob store on a local (or shared, POSIX) folder. Visibility is by rename after fsync. */
export class FilesystemBlobStore implements BlobStore {
  readonly root: string;

  constructor(root: string) {
    this.root = path.resolve(root);
  }

  #path(key: string): string {
    return path.join(this.root, key);
  }

  async init(): Promise<void> {
    await mkdir(this.#path(BLOBS_PREFIX), { recursive: true });
    await mkdir(this.#path(UPLOADS_PREFIX), { recursive: true });
  }

  async startUpload(uploadId: string): Promise<void> {
    const handle = await open(this.#path(uploadKey(uploadId)), 'a');
    await handle.close();
  }

  async appendUpload(uploadId: string, offset: number, source: Readable): Promise<number> {
    // The source may fail before the pipeline below listens (a client hanging up while the file
    // opens) or after a mismatch left it unread. Without a listener that error would be uncaught;
    // the pipeline still sees it (the stream stays errored) and rejects with it.
    source.on('error', ignoreError);
    let handle: Awaited<ReturnType<typeof open>>;
    try {
      handle = await open(this.#path(uploadKey(uploadId)), 'r+');
    } catch (err) {
      source.resume();
      if (isMissing(err)) throw new UploadOffsetMismatch(-1);
      throw err;
    }
    try {
      const { size } = await handle.stat();
      if (size < offset) {
        source.resume();
        throw new UploadOffsetMismatch(size);
      }
      if (size > offset) await handle.truncate(offset);
      // The stream opens a descriptor of its own. Lent `handle.fd`, a failed pipeline would destroy
      // the stream, close that fd under us and make the truncate below fail with EBADF, keeping the
      // partial chunk. Its own fd is closed only after its last write settled, then we cut back.
      const sink = createWriteStream(this.#path(uploadKey(uploadId)), { flags: 'r+', start: offset, highWaterMark: 1 << 20 });
      try {
        await pipeline(source, sink);
      } catch (err) {
        // Drop whatever part of this chunk reached the disk: the session stays at `offset`.
        await handle.truncate(offset);
        throw err;
      }
      return offset + sink.bytesWritten;
    } finally {
      await handle.close();
    }
  }

  async uploadSize(uploadId: string): Promise<number | undefined> {
    try {
      return (await stat(this.#path(uploadKey(uploadId)))).size;
    } catch (err) {
      if (isMissing(err)) return undefined;
      throw err;
    }
  }

  readUpload(uploadId: string): Readable {
    return createReadStream(this.#path(uploadKey(uploadId)), { highWaterMark: 1 << 20 });
  }

  async commitUpload(uploadId: string, digest: ParsedDigest): Promise<void> {
    await this.syncUpload(uploadId);
    await this.publishUpload(uploadId, digest);
  }

  async syncUpload(uploadId: string): Promise<void> {
    const handle = await open(this.#path(uploadKey(uploadId)), 'r+');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  }

  async publishUpload(uploadId: string, digest: ParsedDigest): Promise<void> {
    const source = this.#path(uploadKey(uploadId));
    const target = this.#path(blobKey(digest));
    await this.#ensureFolder(path.dirname(target));
    if (await this.stat(digest)) {
      await rm(source, { force: true });
      return;
    }
    await this.#renameInto(source, target);
    await syncDirectory(path.dirname(target));
  }

  /** Renames into a folder made once (cached); makes it again when it was removed behind our back. */
  async #renameInto(source: string, target: string): Promise<void> {
    const folder = path.dirname(target);
    await this.#ensureFolder(folder);
    try {
      await rename(source, target);
    } catch (err) {
      if (!isMissing(err) || !this.#madeFolders.delete(folder)) throw err;
      // The folder was removed behind our back (a sweep of empty folders, an emptied trash bin): make it again.
      await this.#ensureFolder(folder);
      await rename(source, target);
    }
  }

  /** Blob folders (one per algorithm and two-digit prefix) are made once, not at every commit. */
  readonly #madeFolders = new Set<string>();
  async #ensureFolder(folder: string): Promise<void> {
    if (this.#madeFolders.has(folder)) return;
    await mkdir(folder, { recursive: true });
    this.#madeFolders.add(folder);
  }

  async cancelUpload(uploadId: string): Promise<void> {
    await rm(this.#path(uploadKey(uploadId)), { force: true });
  }

  async *listUploads(): AsyncIterable<UploadInfo> {
    const folder = this.#path(UPLOADS_PREFIX);
    let names: string[];
    try {
      names = await readdir(folder);
    } catch (err) {
      if (isMissing(err)) return;
      throw err;
    }
    for (const id of names) {
      try {
        const info = await stat(path.join(folder, id));
        yield { id, size: info.size, modifiedAt: info.mtimeMs };
      } catch (err) {
        if (!isMissing(err)) throw err;
      }
    }
  }

  async stat(digest: ParsedDigest): Promise<BlobStat | undefined> {
    try {
      return { size: (await stat(this.#path(blobKey(digest)))).size };
    } catch (err) {
      if (isMissing(err)) return undefined;
      throw err;
    }
  }

  /** Opens a committed blob for reading; BlobNotFound when there is none. */
  async #openBlob(digest: ParsedDigest): Promise<FileHandle> {
    try {
      return await open(this.#path(blobKey(digest)), 'r');
    } catch (err) {
      if (isMissing(err)) throw new BlobNotFound(digest.value);
      throw err;
    }
  }

  async read(digest: ParsedDigest, range?: ByteRange): Promise<Readable> {
    const handle = await this.#openBlob(digest);
    return handle.createReadStream({ highWaterMark: 1 << 20, ...(range ? { start: range.start, end: range.end } : {}) });
  }

  async openPositional(digest: ParsedDigest): Promise<PositionalReader> {
    const handle = await this.#openBlob(digest);
    const { size } = await handle.stat();
    return {
      size,
      read: async (buffer, length, position) => (await handle.read(buffer, 0, length, position)).bytesRead,
      close: () => handle.close(),
    };
  }

  async delete(digest: ParsedDigest): Promise<boolean> {
    try {
      await rm(this.#path(blobKey(digest)));
      return true;
    } catch (err) {
      if (isMissing(err)) return false;
      throw err;
    }
  }

  async trashBlob(digest: ParsedDigest, bin: string): Promise<boolean> {
    try {
      await this.#renameInto(this.#path(blobKey(digest)), this.#path(trashKey(bin, digest)));
      return true;
    } catch (err) {
      // A missing source (the blob is gone) fails the rename with ENOENT even after the bin was made.
      if (isMissing(err) && !(await this.stat(digest))) return false;
      throw err;
    }
  }

  async restoreTrashed(digest: ParsedDigest, bin: string): Promise<boolean> {
    const trashed = this.#path(trashKey(bin, digest));
    try {
      await stat(trashed);
    } catch (err) {
      if (isMissing(err)) return false;
      throw err;
    }
    if (await this.stat(digest)) {
      await rm(trashed, { force: true });
      return true;
    }
    try {
      await this.#renameInto(trashed, this.#path(blobKey(digest)));
    } catch (err) {
      // Another process put it back first.
      if (isMissing(err)) return false;
      throw err;
    }
    await syncDirectory(path.dirname(this.#path(blobKey(digest))));
    return true;
  }

  async deleteTrashed(digest: ParsedDigest, bin: string): Promise<void> {
    await rm(this.#path(trashKey(bin, digest)), { force: true });
  }

  async *listTrash(): AsyncIterable<TrashedBlob> {
    const trash = this.#path(TRASH_PREFIX);
    for (const bin of await readdirOrEmpty(trash)) {
      for (const algorithm of await readdirOrEmpty(path.join(trash, bin))) {
        for (const hex of await readdirOrEmpty(path.join(trash, bin, algorithm))) yield { bin, digest: `${algorithm}:${hex}` };
      }
    }
  }

  async listTrashBins(): Promise<string[]> {
    return readdirOrEmpty(this.#path(TRASH_PREFIX));
  }

  async removeTrashBin(bin: string): Promise<void> {
    const folder = this.#path(trashBinKey(bin));
    for (const made of this.#madeFolders) if (made === folder || made.startsWith(`${folder}${path.sep}`)) this.#madeFolders.delete(made);
    for (const algorithm of await readdirOrEmpty(folder)) await removeEmptyFolder(path.join(folder, algorithm));
    await removeEmptyFolder(folder);
  }

  async *list(): AsyncIterable<string> {
    const blobs = this.#path(BLOBS_PREFIX);
    for (const algorithm of await readdirOrEmpty(blobs)) {
      for (const prefix of await readdirOrEmpty(path.join(blobs, algorithm))) {
        for (const hex of await readdirOrEmpty(path.join(blobs, algorithm, prefix))) yield `${algorithm}:${hex}`;
      }
    }
  }
}

function ignoreError(): void {}

/** rmdir: succeeds only on an empty folder; a missing or non-empty one is left as it is. */
async function removeEmptyFolder(folder: string): Promise<void> {
  try {
    await rmdir(folder);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT' && code !== 'ENOTEMPTY' && code !== 'EEXIST') throw err;
  }
}

async function readdirOrEmpty(folder: string): Promise<string[]> {
  try {
    return await readdir(folder);
  } catch (err) {
    if (isMissing(err)) return [];
    throw err;
  }
}

/** fsync a directory so a rename into it survives a crash. */
async function syncDirectory(folder: string): Promise<void> {
  const handle = await open(folder, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
