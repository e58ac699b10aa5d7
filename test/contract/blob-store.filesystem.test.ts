import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, describe, it } from 'node:test';
import { digestOf, parseDigest } from '../../src/platform/oci/digest.ts';
import type { BlobStore } from '../../src/platform/storage/blob-store.ts';
import { FilesystemBlobStore } from '../../src/platform/storage/filesystem.ts';
import { BLOBS_PREFIX, blobKey, UPLOADS_PREFIX } from '../../src/platform/storage/layout.ts';
import { blobStoreContract } from './blob-store.contract.ts';

const roots: string[] = [];
after(async () => {
  await Promise.all(roots.map((root) => rm(root, { recursive: true, force: true })));
});

async function makeStore(): Promise<FilesystemBlobStore> {
  const root = await mkdtemp(path.join(tmpdir(), 'berth-blobstore-'));
  roots.push(root);
  const store = new FilesystemBlobStore(root);
  await store.init();
  return store;
}

/** Every regular file under `folder`, as POSIX paths relative to it. */
async function filesUnder(folder: string): Promise<string[]> {
  const entries = await readdir(folder, { recursive: true, withFileTypes: true });
  return entries.filter((e) => !e.isDirectory()).map((e) => path.relative(folder, path.join(e.parentPath, e.name)).split(path.sep).join('/'));
}

blobStoreContract('filesystem', makeStore, {
  // Nothing on disk but the committed blobs at their layout keys: no upload data, no temp files.
  async verifyClean(store: BlobStore, committed) {
    const root = (store as FilesystemBlobStore).root;
    const files = (await filesUnder(root)).sort();
    assert.deepEqual(files, committed.map((d) => blobKey(d)).sort(), 'files left in the store folder');
    assert.deepEqual(await readdir(path.join(root, UPLOADS_PREFIX)), []);
  },
});

describe('FilesystemBlobStore specifics', () => {
  it('keeps blobs under blobs/<algorithm>/<first two hex digits>/<hex>', async () => {
    const store = await makeStore();
    const bytes = Buffer.from('layout');
    const digest = parseDigest(digestOf(bytes));
    await store.startUpload('u1');
    await store.appendUpload('u1', 0, Readable.from([bytes]));
    await store.commitUpload('u1', digest);
    assert.deepEqual(await filesUnder(path.join(store.root, BLOBS_PREFIX)), [`sha256/${digest.hex.slice(0, 2)}/${digest.hex}`]);
  });

  it('a new store on the same folder sees the committed blobs and the open uploads (restart)', async () => {
    const first = await makeStore();
    const bytes = Buffer.from('survives a restart');
    const digest = parseDigest(digestOf(bytes));
    await first.startUpload('committed');
    await first.appendUpload('committed', 0, Readable.from([bytes]));
    await first.commitUpload('committed', digest);
    await first.startUpload('open');
    await first.appendUpload('open', 0, Readable.from([Buffer.from('half')]));

    const second = new FilesystemBlobStore(first.root);
    await second.init();
    assert.deepEqual(await second.stat(digest), { size: bytes.length });
    assert.equal(await second.uploadSize('open'), 4);
    assert.equal(await second.appendUpload('open', 4, Readable.from([Buffer.from(' done')])), 9);
  });

  it('commits into a blob folder that was removed after an earlier commit (e.g. by a sweep of empty folders)', async () => {
    const store = await makeStore();
    const first = Buffer.from('first blob');
    const firstDigest = parseDigest(digestOf(first));
    await store.startUpload('a');
    await store.appendUpload('a', 0, Readable.from([first]));
    await store.commitUpload('a', firstDigest);
    await store.delete(firstDigest);
    await rm(path.join(store.root, BLOBS_PREFIX, 'sha256'), { recursive: true });
    await store.startUpload('b');
    await store.appendUpload('b', 0, Readable.from([first]));
    await store.commitUpload('b', firstDigest);
    assert.deepEqual(await store.stat(firstDigest), { size: first.length });
  });
});
