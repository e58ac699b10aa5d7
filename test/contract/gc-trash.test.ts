/**
 * The blob store's part in garbage collection (src/platform/storage/blob-store.ts): publishing a
 * synced upload, and trash bins (move a blob in, put it back, drop it, list, remove empty bins).
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { parseDigest } from '../../src/platform/oci/digest.ts';
import { FilesystemBlobStore } from '../../src/platform/storage/filesystem.ts';
import { blobKey } from '../../src/platform/storage/layout.ts';
import { sha256 } from '../helpers/oci.ts';

describe('blob store trash bins (filesystem)', () => {
  let root: string;
  let store: FilesystemBlobStore;
  before(async () => {
    root = await mkdtemp(path.join(tmpdir(), 'berth-trash-'));
    store = new FilesystemBlobStore(root);
    await store.init();
  });
  after(() => rm(root, { recursive: true, force: true }));

  async function put(text: string) {
    const digest = parseDigest(sha256(text));
    const id = `up-${digest.hex.slice(0, 12)}`;
    await store.startUpload(id);
    await store.appendUpload(id, 0, Readable.from([Buffer.from(text)]));
    await store.syncUpload(id);
    await store.publishUpload(id, digest);
    return digest;
  }

  async function trashed(): Promise<string[]> {
    const out: string[] = [];
    for await (const t of store.listTrash()) out.push(`${t.bin} ${t.digest}`);
    return out.sort();
  }

  it('publishes a synced upload once; publishing the same digest again keeps the first and drops the upload', async () => {
    const digest = await put('published');
    assert.equal((await store.stat(digest))?.size, 'published'.length);
    const again = await put('published');
    assert.equal(again.value, digest.value);
    assert.equal(await readFile(path.join(root, blobKey(digest)), 'utf8'), 'published');
    const uploads: string[] = [];
    for await (const u of store.listUploads()) uploads.push(u.id);
    assert.deepEqual(uploads, []);
  });

  it('moves a blob into a bin (invisible), puts it back, and drops it', async () => {
    const digest = await put('to the trash');
    assert.equal(await store.trashBlob(digest, 'run-1'), true);
    assert.equal(await store.stat(digest), undefined);
    assert.deepEqual(await trashed(), [`run-1 ${digest.value}`]);
    const listed: string[] = [];
    for await (const d of store.list()) listed.push(d);
    assert.ok(!listed.includes(digest.value));
    assert.equal(await store.restoreTrashed(digest, 'run-1'), true);
    assert.equal(await readFile(path.join(root, blobKey(digest)), 'utf8'), 'to the trash');
    assert.equal(await store.restoreTrashed(digest, 'run-1'), false, 'nothing left in the bin');
    assert.equal(await store.trashBlob(digest, 'run-2'), true);
    await store.deleteTrashed(digest, 'run-2');
    await store.deleteTrashed(digest, 'run-2');
    assert.deepEqual(await trashed(), []);
    assert.equal(await store.trashBlob(digest, 'run-2'), false, 'no blob to move');
  });

  it('drops the trashed copy when the digest was pushed anew meanwhile', async () => {
    const digest = await put('pushed anew');
    await store.trashBlob(digest, 'run-3');
    await put('pushed anew');
    assert.equal(await store.restoreTrashed(digest, 'run-3'), true);
    assert.deepEqual(await trashed(), []);
    assert.equal(await readFile(path.join(root, blobKey(digest)), 'utf8'), 'pushed anew');
  });

  it('removes only empty bins, and a removed bin can be used again', async () => {
    const digest = await put('kept in a bin');
    await store.trashBlob(digest, 'run-4');
    await store.removeTrashBin('run-4');
    assert.deepEqual(await trashed(), [`run-4 ${digest.value}`], 'a bin holding a blob stays');
    await store.deleteTrashed(digest, 'run-4');
    for (const bin of await store.listTrashBins()) await store.removeTrashBin(bin);
    assert.deepEqual(await store.listTrashBins(), []);
    const other = await put('bin reused');
    assert.equal(await store.trashBlob(other, 'run-4'), true);
    await store.deleteTrashed(other, 'run-4');
  });

  it('refuses bin names that are not plain names', async () => {
    const digest = await put('safe names');
    for (const bin of ['../blobs', 'a/b', '', '.hidden']) await assert.rejects(store.trashBlob(digest, bin), /invalid trash bin name/);
  });
});
