/**
 * The BlobStore contract (src/platform/storage/blob-store.ts), written once and run against every
 * driver: a driver's test file calls `blobStoreContract(name, makeStore)`.
 *
 * Every test gets a fresh store from `makeStore` and ends by checking that the store holds exactly
 * the blobs the test left committed and no upload area; `options.verifyClean` lets a driver also
 * look at its backing storage (files, objects) for anything left behind.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { PassThrough, Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { type DigestAlgorithm, digestOf, type ParsedDigest, parseDigest } from '../../src/platform/oci/digest.ts';
import { BlobNotFound, type BlobStore, UploadOffsetMismatch } from '../../src/platform/storage/blob-store.ts';

export interface BlobStoreContractOptions {
  /** Called at the end of every test with the digests it left committed; throws if the backing storage holds anything else. */
  verifyClean?: (store: BlobStore, committed: readonly ParsedDigest[]) => Promise<void>;
}

let uploadCounter = 0;
/** Upload ids as the registry makes them (random UUIDs), unique within the run. */
function newId(): string {
  uploadCounter++;
  return `${randomBytes(4).toString('hex')}-0000-4000-8000-${uploadCounter.toString(16).padStart(12, '0')}`;
}

function digestFor(bytes: Uint8Array, algorithm: DigestAlgorithm = 'sha256'): ParsedDigest {
  return parseDigest(digestOf(bytes, algorithm));
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.from(chunk as Uint8Array));
  return Buffer.concat(chunks);
}

async function collect<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of iterable) out.push(item);
  return out;
}

/** A source stream of the given bytes, in chunks of at most `chunkSize`. */
function sourceOf(bytes: Buffer, chunkSize = 64 * 1024): Readable {
  const chunks: Buffer[] = [];
  for (let i = 0; i < bytes.length; i += chunkSize) chunks.push(bytes.subarray(i, i + chunkSize));
  return Readable.from(chunks);
}

/** A source that sends `first`, then fails with `error` (or is destroyed without one: an abort). */
function failingSource(first: Buffer, error: Error | undefined): Readable {
  let sent = false;
  return new Readable({
    read() {
      if (!sent) {
        sent = true;
        this.push(first);
      } else {
        setImmediate(() => this.destroy(error));
      }
    },
  });
}

/** Lets pending callbacks and I/O run. */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

async function readUploadBytes(store: BlobStore, id: string): Promise<Buffer> {
  return readAll(store.readUpload(id));
}

/** Starts an upload and appends `bytes` in one go; returns its id. */
async function stage(store: BlobStore, bytes: Buffer): Promise<string> {
  const id = newId();
  await store.startUpload(id);
  assert.equal(await store.appendUpload(id, 0, sourceOf(bytes)), bytes.length);
  return id;
}

/** Uploads and commits `bytes`; returns the digest. */
async function push(store: BlobStore, bytes: Buffer, algorithm: DigestAlgorithm = 'sha256'): Promise<ParsedDigest> {
  const digest = digestFor(bytes, algorithm);
  const id = await stage(store, bytes);
  await store.commitUpload(id, digest);
  return digest;
}

async function assertBlob(store: BlobStore, digest: ParsedDigest, bytes: Buffer): Promise<void> {
  assert.deepEqual(await store.stat(digest), { size: bytes.length });
  assert.ok((await readAll(await store.read(digest))).equals(bytes), `${digest.value} has other bytes`);
  assert.ok((await collect(store.list())).includes(digest.value), `${digest.value} is not listed`);
}

async function assertNoBlob(store: BlobStore, digest: ParsedDigest): Promise<void> {
  assert.equal(await store.stat(digest), undefined);
  await assert.rejects(store.read(digest), BlobNotFound);
  assert.ok(!(await collect(store.list())).includes(digest.value), `${digest.value} is listed`);
}

/**
 * One look at `digest` by a reader that knows nothing of the writer: the blob is either absent
 * everywhere (stat, list, read) or complete with exactly `bytes`. Returns which.
 */
async function observe(store: BlobStore, digest: ParsedDigest, bytes: Buffer): Promise<'absent' | 'complete'> {
  const stat = await store.stat(digest);
  if (stat !== undefined) assert.equal(stat.size, bytes.length, 'stat saw a partial blob');
  let read: Buffer | undefined;
  try {
    read = await readAll(await store.read(digest));
  } catch (err) {
    if (!(err instanceof BlobNotFound)) throw err;
  }
  if (read !== undefined) assert.ok(read.equals(bytes), `read saw ${read.length} bytes of ${bytes.length}`);
  const listed = (await collect(store.list())).includes(digest.value);
  return stat === undefined && read === undefined && !listed ? 'absent' : 'complete';
}

export function blobStoreContract(name: string, makeStore: () => Promise<BlobStore>, options: BlobStoreContractOptions = {}): void {
  /** The end of every test: exactly `committed` is stored, no upload area is left. */
  async function finish(store: BlobStore, committed: ParsedDigest[]): Promise<void> {
    assert.deepEqual((await collect(store.list())).sort(), committed.map((d) => d.value).sort(), 'committed blobs');
    assert.deepEqual(await collect(store.listUploads()), [], 'upload areas left behind');
    await options.verifyClean?.(store, committed);
  }

  describe(`BlobStore contract: ${name}`, () => {
    describe('uploads', () => {
      it('startUpload creates an empty upload area, and is idempotent', async () => {
        const store = await makeStore();
        const id = newId();
        await store.startUpload(id);
        assert.equal(await store.uploadSize(id), 0);
        assert.equal((await readUploadBytes(store, id)).length, 0);
        assert.equal(await store.appendUpload(id, 0, sourceOf(Buffer.from('hello'))), 5);
        await store.startUpload(id);
        assert.equal(await store.uploadSize(id), 5, 'a second startUpload keeps the bytes');
        assert.equal((await readUploadBytes(store, id)).toString(), 'hello');
        await store.cancelUpload(id);
        await finish(store, []);
      });

      it('uploadSize is undefined for an unknown upload', async () => {
        const store = await makeStore();
        assert.equal(await store.uploadSize(newId()), undefined);
        await finish(store, []);
      });

      it('appendUpload appends at the offset and resolves to the new size', async () => {
        const store = await makeStore();
        const id = newId();
        await store.startUpload(id);
        const a = randomBytes(1000);
        const b = randomBytes(70_000);
        const c = randomBytes(1);
        assert.equal(await store.appendUpload(id, 0, sourceOf(a)), 1000);
        assert.equal(await store.appendUpload(id, 1000, sourceOf(b, 4096)), 71_000);
        assert.equal(await store.appendUpload(id, 71_000, sourceOf(c)), 71_001);
        assert.equal(await store.uploadSize(id), 71_001);
        assert.ok((await readUploadBytes(store, id)).equals(Buffer.concat([a, b, c])));
        await store.cancelUpload(id);
        await finish(store, []);
      });

      it('appending an empty stream changes nothing', async () => {
        const store = await makeStore();
        const id = await stage(store, Buffer.from('abc'));
        assert.equal(await store.appendUpload(id, 3, sourceOf(Buffer.alloc(0))), 3);
        assert.equal((await readUploadBytes(store, id)).toString(), 'abc');
        await store.cancelUpload(id);
        await finish(store, []);
      });

      it('an offset past the end is an UploadOffsetMismatch carrying the actual size, and nothing is written', async () => {
        const store = await makeStore();
        const id = await stage(store, Buffer.from('0123456789'));
        await assert.rejects(store.appendUpload(id, 11, sourceOf(Buffer.from('xyz'))), (err: unknown) => {
          assert.ok(err instanceof UploadOffsetMismatch);
          assert.equal(err.actual, 10);
          return true;
        });
        await assert.rejects(store.appendUpload(id, 1000, sourceOf(Buffer.from('xyz'))), UploadOffsetMismatch);
        assert.equal(await store.uploadSize(id), 10);
        assert.equal((await readUploadBytes(store, id)).toString(), '0123456789');
        await store.cancelUpload(id);
        await finish(store, []);
      });

      it('an append at an offset before the end discards the leftover bytes first', async () => {
        const store = await makeStore();
        const id = await stage(store, Buffer.from('0123456789'));
        assert.equal(await store.appendUpload(id, 4, sourceOf(Buffer.from('ab'))), 6);
        assert.equal(await store.uploadSize(id), 6);
        assert.equal((await readUploadBytes(store, id)).toString(), '0123ab');
        assert.equal(await store.appendUpload(id, 0, sourceOf(Buffer.from('Z'))), 1);
        assert.equal((await readUploadBytes(store, id)).toString(), 'Z');
        await store.cancelUpload(id);
        await finish(store, []);
      });

      it('a leftover-discarding append with an empty stream cuts the upload back to the offset', async () => {
        const store = await makeStore();
        const id = await stage(store, Buffer.from('0123456789'));
        assert.equal(await store.appendUpload(id, 7, sourceOf(Buffer.alloc(0))), 7);
        assert.equal((await readUploadBytes(store, id)).toString(), '0123456');
        await store.cancelUpload(id);
        await finish(store, []);
      });

      for (const [label, error] of [
        ['fails midway', new Error('client went away')],
        ['is aborted midway', undefined],
      ] as const) {
        it(`an append whose source ${label} rejects and leaves the upload at its previous size`, async () => {
          const store = await makeStore();
          const before = randomBytes(100_000);
          const id = await stage(store, before);
          await assert.rejects(store.appendUpload(id, before.length, failingSource(randomBytes(256 * 1024), error)));
          assert.equal(await store.uploadSize(id), before.length);
          assert.ok((await readUploadBytes(store, id)).equals(before), 'no partial chunk is kept');
          // The session goes on from where it was.
          const after = randomBytes(5000);
          assert.equal(await store.appendUpload(id, before.length, sourceOf(after)), before.length + after.length);
          const all = Buffer.concat([before, after]);
          const digest = digestFor(all);
          await store.commitUpload(id, digest);
          await assertBlob(store, digest, all);
          await finish(store, [digest]);
        });
      }

      it('a source that fails before the store reads from it rejects the append and writes nothing', async () => {
        const store = await makeStore();
        const before = Buffer.from('kept');
        const id = await stage(store, before);
        // The caller's stream errors right away (a client that hung up), before the driver is ready.
        const early = new PassThrough();
        const appending = store.appendUpload(id, before.length, early);
        early.destroy(new Error('gone before the store was ready'));
        await assert.rejects(appending, /gone before the store was ready/);
        assert.equal(await store.uploadSize(id), before.length);
        // Same when the caller's stream already failed when it is handed over.
        const failed = new PassThrough();
        failed.on('error', () => {});
        failed.destroy(new Error('already failed'));
        await assert.rejects(store.appendUpload(id, before.length, failed), /already failed/);
        assert.ok((await readUploadBytes(store, id)).equals(before));
        await store.cancelUpload(id);
        await finish(store, []);
      });

      it('a source that fails after an offset mismatch does not escape as an unhandled error', async () => {
        const store = await makeStore();
        const id = await stage(store, Buffer.from('abc'));
        const source = new PassThrough();
        await assert.rejects(store.appendUpload(id, 10, source), UploadOffsetMismatch);
        source.destroy(new Error('late failure'));
        await settle();
        assert.equal(await store.uploadSize(id), 3);
        await store.cancelUpload(id);
        await finish(store, []);
      });

      it('a failed first append leaves an empty upload', async () => {
        const store = await makeStore();
        const id = newId();
        await store.startUpload(id);
        await assert.rejects(store.appendUpload(id, 0, failingSource(randomBytes(128 * 1024), new Error('boom'))));
        assert.equal(await store.uploadSize(id), 0);
        await store.cancelUpload(id);
        await finish(store, []);
      });

      it('an append to an upload that does not exist rejects and creates nothing', async () => {
        const store = await makeStore();
        const id = newId();
        await assert.rejects(store.appendUpload(id, 0, sourceOf(Buffer.from('data'))));
        assert.equal(await store.uploadSize(id), undefined);
        await finish(store, []);
      });

      it('uploads are independent of each other', async () => {
        const store = await makeStore();
        const [x, y] = [newId(), newId()];
        await Promise.all([store.startUpload(x), store.startUpload(y)]);
        await Promise.all([store.appendUpload(x, 0, sourceOf(Buffer.from('xx'))), store.appendUpload(y, 0, sourceOf(Buffer.from('yyy')))]);
        await Promise.all([store.appendUpload(x, 2, sourceOf(Buffer.from('X'))), store.appendUpload(y, 3, sourceOf(Buffer.from('Y')))]);
        assert.equal((await readUploadBytes(store, x)).toString(), 'xxX');
        assert.equal((await readUploadBytes(store, y)).toString(), 'yyyY');
        await store.cancelUpload(x);
        assert.equal((await readUploadBytes(store, y)).toString(), 'yyyY', 'cancelling one upload leaves the other');
        await store.cancelUpload(y);
        await finish(store, []);
      });

      it('listUploads lists every upload area with its size and modification time', async () => {
        const store = await makeStore();
        const empty = newId();
        await store.startUpload(empty);
        const full = await stage(store, randomBytes(1234));
        const listed = await collect(store.listUploads());
        const byId = (a: { id: string }, b: { id: string }) => (a.id < b.id ? -1 : 1);
        assert.deepEqual(
          listed.map((u) => ({ id: u.id, size: u.size })).sort(byId),
          [
            { id: empty, size: 0 },
            { id: full, size: 1234 },
          ].sort(byId),
        );
        for (const upload of listed) assert.ok(Number.isFinite(upload.modifiedAt) && upload.modifiedAt > 0, `modifiedAt of ${upload.id}`);
        await store.cancelUpload(empty);
        assert.deepEqual((await collect(store.listUploads())).map((u) => u.id), [full]);
        await store.cancelUpload(full);
        await finish(store, []);
      });

      it('cancelUpload removes the upload and its data, and is idempotent', async () => {
        const store = await makeStore();
        const id = await stage(store, randomBytes(4096));
        await store.cancelUpload(id);
        assert.equal(await store.uploadSize(id), undefined);
        await store.cancelUpload(id);
        await store.cancelUpload(newId());
        await assert.rejects(store.appendUpload(id, 0, sourceOf(Buffer.from('late'))), 'a cancelled upload takes no more bytes');
        assert.equal(await store.uploadSize(id), undefined);
        await finish(store, []);
      });
    });

    describe('commit', () => {
      it('makes the blob visible with exactly the bytes appended, and removes the upload area', async () => {
        const store = await makeStore();
        const first = randomBytes(3 * 1024 * 1024 + 17);
        const second = randomBytes(1000);
        const all = Buffer.concat([first, second]);
        const digest = digestFor(all);
        const id = newId();
        await store.startUpload(id);
        await store.appendUpload(id, 0, sourceOf(first));
        await store.appendUpload(id, first.length, sourceOf(second));
        await assertNoBlob(store, digest);
        await store.commitUpload(id, digest);
        await assertBlob(store, digest, all);
        assert.equal(await store.uploadSize(id), undefined);
        await finish(store, [digest]);
      });

      it('commits an empty blob', async () => {
        const store = await makeStore();
        const empty = Buffer.alloc(0);
        const digest = await push(store, empty);
        await assertBlob(store, digest, empty);
        await finish(store, [digest]);
      });

      it('commits sha512 blobs', async () => {
        const store = await makeStore();
        const bytes = randomBytes(777);
        const digest = await push(store, bytes, 'sha512');
        assert.equal(digest.algorithm, 'sha512');
        await assertBlob(store, digest, bytes);
        await finish(store, [digest]);
      });

      it('committing a digest that already exists keeps the existing blob and discards the upload', async () => {
        const store = await makeStore();
        const original = randomBytes(2048);
        const digest = await push(store, original);
        // The store trusts the digest it is given, so other bytes under the same digest must not replace the blob.
        const impostor = await stage(store, randomBytes(100));
        await store.commitUpload(impostor, digest);
        await assertBlob(store, digest, original);
        assert.equal(await store.uploadSize(impostor), undefined);
        // The same bytes again: still one blob.
        const again = await stage(store, original);
        await store.commitUpload(again, digest);
        await assertBlob(store, digest, original);
        assert.equal((await collect(store.list())).filter((d) => d === digest.value).length, 1);
        await finish(store, [digest]);
      });

      it('concurrent commits of the same digest leave one complete blob', async () => {
        const store = await makeStore();
        const bytes = randomBytes(200_000);
        const digest = digestFor(bytes);
        const ids = await Promise.all([stage(store, bytes), stage(store, bytes), stage(store, bytes)]);
        await Promise.all(ids.map((id) => store.commitUpload(id, digest)));
        await assertBlob(store, digest, bytes);
        for (const id of ids) assert.equal(await store.uploadSize(id), undefined);
        await finish(store, [digest]);
      });

      it('no reader sees a blob before its commit, nor a partial one at any point', async () => {
        const store = await makeStore();
        const chunks = Array.from({ length: 6 }, () => randomBytes(300 * 1024));
        const all = Buffer.concat(chunks);
        const digest = digestFor(all);
        const id = newId();
        await store.startUpload(id);
        assert.equal(await observe(store, digest, all), 'absent');

        // The writer streams chunk by chunk; a reader looks between chunks.
        const source = new PassThrough();
        const appending = store.appendUpload(id, 0, source);
        for (const chunk of chunks.slice(0, 3)) {
          source.write(chunk);
          await settle();
          assert.equal(await observe(store, digest, all), 'absent', 'visible while the first append was streaming');
        }
        source.end();
        const middle = Buffer.concat(chunks.slice(0, 3)).length;
        assert.equal(await appending, middle);
        assert.equal(await observe(store, digest, all), 'absent', 'visible between appends');

        // A second append that fails midway must not publish anything either.
        await assert.rejects(store.appendUpload(id, middle, failingSource(chunks[3] as Buffer, new Error('cut'))));
        assert.equal(await observe(store, digest, all), 'absent', 'visible after a failed append');

        const rest = new PassThrough();
        const appendingRest = store.appendUpload(id, middle, rest);
        for (const chunk of chunks.slice(3)) {
          rest.write(chunk);
          await settle();
          assert.equal(await observe(store, digest, all), 'absent', 'visible while the last append was streaming');
        }
        rest.end();
        assert.equal(await appendingRest, all.length);
        assert.equal(await observe(store, digest, all), 'absent', 'visible before commit');

        // During the commit a reader may see nothing or everything, never a part.
        let committed = false;
        const commit = store.commitUpload(id, digest).finally(() => {
          committed = true;
        });
        let looks = 0;
        while (!committed) {
          await observe(store, digest, all);
          looks++;
        }
        await commit;
        assert.ok(looks >= 1);
        assert.equal(await observe(store, digest, all), 'complete');
        await finish(store, [digest]);
      });
    });

    describe('committed blobs', () => {
      it('stat gives the size of a blob and undefined for a missing one', async () => {
        const store = await makeStore();
        const bytes = randomBytes(4321);
        const digest = await push(store, bytes);
        assert.deepEqual(await store.stat(digest), { size: 4321 });
        assert.equal(await store.stat(digestFor(Buffer.from('never stored'))), undefined);
        await finish(store, [digest]);
      });

      it('read streams inclusive byte ranges', async () => {
        const store = await makeStore();
        const bytes = randomBytes(100_000);
        const digest = await push(store, bytes);
        const ranges: Array<[number, number]> = [
          [0, 0],
          [0, 99_999],
          [10, 19],
          [99_999, 99_999],
          [50_000, 99_999],
          [1, 65_537],
        ];
        for (const [start, end] of ranges) {
          const got = await readAll(await store.read(digest, { start, end }));
          assert.ok(got.equals(bytes.subarray(start, end + 1)), `range ${start}-${end}`);
        }
        assert.ok((await readAll(await store.read(digest))).equals(bytes));
        await finish(store, [digest]);
      });

      it('read of a missing blob throws BlobNotFound, with or without a range', async () => {
        const store = await makeStore();
        const missing = digestFor(Buffer.from('missing'));
        await assert.rejects(store.read(missing), BlobNotFound);
        await assert.rejects(store.read(missing, { start: 0, end: 0 }), BlobNotFound);
        await assert.rejects(store.read(digestFor(Buffer.from('missing'), 'sha512')), BlobNotFound);
        await finish(store, []);
      });

      it('openPositional, where a driver offers it, reads any range into the caller\'s buffer and knows the size', async (t) => {
        const store = await makeStore();
        if (!store.openPositional) {
          // Optional by contract: such a driver is served through read(); nothing more to check.
          assert.equal(typeof store.read, 'function');
          await finish(store, []);
          return;
        }
        const bytes = randomBytes(70_000);
        const digest = await push(store, bytes);
        const reader = await store.openPositional(digest);
        try {
          assert.equal(reader.size, bytes.length);
          const buffer = Buffer.alloc(10_000);
          for (const [position, length] of [[0, 10_000], [69_990, 10], [12_345, 1]] as const) {
            const read = await reader.read(buffer, length, position);
            assert.equal(read, length);
            assert.ok(buffer.subarray(0, read).equals(bytes.subarray(position, position + length)), `${length} bytes at ${position}`);
          }
          assert.equal(await reader.read(buffer, 100, bytes.length), 0, 'a read at the end gives 0 bytes');
        } finally {
          await reader.close();
        }
        await assert.rejects(store.openPositional(digestFor(Buffer.from('missing'))), BlobNotFound);
        t.diagnostic('positional reads checked');
        await finish(store, [digest]);
      });

      it('delete removes a blob and reports whether it existed', async () => {
        const store = await makeStore();
        const keep = await push(store, randomBytes(10));
        const gone = await push(store, randomBytes(11));
        assert.equal(await store.delete(gone), true);
        await assertNoBlob(store, gone);
        assert.equal(await store.delete(gone), false);
        assert.equal(await store.delete(digestFor(Buffer.from('never stored'))), false);
        assert.ok(await store.stat(keep));
        await finish(store, [keep]);
      });

      it('a deleted blob can be committed again', async () => {
        const store = await makeStore();
        const bytes = randomBytes(999);
        const digest = await push(store, bytes);
        assert.equal(await store.delete(digest), true);
        await push(store, bytes);
        await assertBlob(store, digest, bytes);
        await finish(store, [digest]);
      });

      it('list yields every committed blob once, and nothing that is only uploaded', async () => {
        const store = await makeStore();
        assert.deepEqual(await collect(store.list()), []);
        const digests: ParsedDigest[] = [];
        for (let i = 0; i < 12; i++) digests.push(await push(store, randomBytes(16 + i), i % 4 === 0 ? 'sha512' : 'sha256'));
        const pending = await stage(store, randomBytes(50));
        const listed = await collect(store.list());
        assert.deepEqual([...listed].sort(), digests.map((d) => d.value).sort());
        for (const value of listed) assert.equal(parseDigest(value).value, value, 'list yields canonical digests');
        await store.cancelUpload(pending);
        await finish(store, digests);
      });
    });
  });
}
