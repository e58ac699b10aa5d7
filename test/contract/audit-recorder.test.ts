/**
 * The audit recorder: events become entries without any I/O on the caller's path, are written in
 * batches (one transaction each) on a timer or when enough wait, survive a database that fails
 * (kept in order, retried), are dropped and counted past the buffer's bound, and are all written
 * by stop(). Run against a real store on every backend, and against a store that fails on demand.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { MessageChannel } from 'node:worker_threads';
import { after, before, beforeEach, describe, it } from 'node:test';
import { type AuditEntry, type AuditRecord, GENESIS_HASH } from '../../src/audit/entry.ts';
import { BatchEncoder, decodeBatch, type EncodedBatch, encodeBatch } from '../../src/audit/batch.ts';
import { AuditRecorder, type AuditRecorderOptions } from '../../src/audit/recorder.ts';
import { AuditStore } from '../../src/audit/store.ts';
import { ownBufferCopy, storeWriter, ThreadedAuditWriter, WRITER_THREAD_NAME, type Written } from '../../src/audit/writer.ts';
import { createDatabase, type DatabaseHandle } from '../../src/platform/db/database.ts';
import { EventBus, type RegistryOperationEvent } from '../../src/platform/events/bus.ts';
import { BACKENDS, createTestDatabase, type TestDatabase } from '../helpers/backends.ts';
import { waitUntil } from '../helpers/http.ts';

function rec(i: number): AuditRecord {
  return {
    at: 1_700_000_000_000 + i,
    principal: `user${i}`,
    principalKind: 'user',
    operation: 'pull',
    resourceType: 'artifact',
    resource: 'team/app:v1',
    project: 'team',
    result: 'success',
    reason: null,
    status: 200,
    clientAddress: null,
    userAgent: null,
    requestId: `r${i}`,
    description: null,
  };
}

/** A store whose append fails while `down` is set (like a database that is unreachable), and counts its transactions. */
class FlakyStore {
  down = false;
  refuse: ((record: AuditRecord) => boolean) | undefined;
  readonly batches: number[] = [];
  readonly written: AuditRecord[] = [];
  async append(batch: EncodedBatch): Promise<Written> {
    const records = decodeBatch(batch);
    await new Promise((resolve) => setImmediate(resolve));
    if (this.down) throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
    if (this.refuse && records.some(this.refuse)) throw Object.assign(new Error('invalid byte sequence'), { code: '22021' });
    this.batches.push(records.length);
    const start = this.written.length;
    this.written.push(...records);
    const entries: AuditEntry[] = records.map((r, i) => ({ ...r, id: start + i + 1, hash: 'x' }));
    return { count: entries.length, entries };
  }
  async close(): Promise<void> {}
}

function recorderOn(store: FlakyStore | AuditStore, options: Partial<AuditRecorderOptions> = {}) {
  const counts = { written: 0, dropped: { 'buffer-full': 0, unwritable: 0 } };
  const recorder = new AuditRecorder({
    writer: store instanceof AuditStore ? storeWriter(store) : store,
    flushIntervalMs: 10_000,
    batchEntries: 1000,
    maxBuffered: 1000,
    recordPulls: true,
    maxBackoffMs: 50,
    counters: { written: (n) => (counts.written += n), dropped: (n, why) => (counts.dropped[why] += n) },
    ...options,
  });
  return { recorder, counts };
}

describe('audit recorder', () => {
  it('records without waiting: nothing is written until the batch fills or the timer fires', async () => {
    const store = new FlakyStore();
    const { recorder } = recorderOn(store, { batchEntries: 5 });
    for (let i = 0; i < 4; i++) recorder.record(rec(i));
    assert.equal(recorder.pending, 4);
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.deepEqual(store.batches, [], 'no timer started, batch not full');
    recorder.record(rec(4));
    await waitUntil(() => store.batches.length === 1, 'the full batch written');
    assert.deepEqual(store.batches, [5]);
    for (let i = 5; i < 8; i++) recorder.record(rec(i));
    recorder.start();
    await recorder.stop();
    assert.deepEqual(store.batches, [5, 3]);
    assert.deepEqual(
      store.written.map((r) => r.requestId),
      Array.from({ length: 8 }, (_, i) => `r${i}`),
    );
  });

  it('does not write what arrives during a write as a batch of its own until it fills one or the timer fires', async () => {
    const store = new FlakyStore();
    const { recorder } = recorderOn(store, { batchEntries: 5 });
    for (let i = 0; i < 5; i++) recorder.record(rec(i));
    // While that batch is being written (the writer answers on a later turn), three more arrive.
    for (let i = 5; i < 8; i++) recorder.record(rec(i));
    await waitUntil(() => store.batches.length === 1, 'the full batch written');
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.deepEqual(store.batches, [5], 'the three wait: no batch of three right after the write');
    assert.equal(recorder.pending, 3);
    for (let i = 8; i < 10; i++) recorder.record(rec(i));
    await waitUntil(() => store.batches.length === 2, 'the second batch, once full');
    assert.deepEqual(store.batches, [5, 5]);
    await recorder.flush();
    assert.deepEqual(
      store.written.map((r) => r.requestId),
      Array.from({ length: 10 }, (_, i) => `r${i}`),
    );
    await recorder.stop();
  });

  it('writes on the timer, one transaction per sealed batch of encoded entries', async () => {
    const store = new FlakyStore();
    const { recorder, counts } = recorderOn(store, { flushIntervalMs: 20, batchEntries: 10_000, maxBuffered: 10_000 });
    recorder.start();
    for (let i = 0; i < 4500; i++) recorder.record(rec(i));
    await waitUntil(() => store.written.length === 4500, 'the timer flush');
    // 4500 small entries fill two 256 KiB slabs: two transactions.
    assert.equal(store.batches.length, 2);
    assert.equal(
      store.batches.reduce((n, b) => n + b, 0),
      4500,
    );
    assert.deepEqual(
      store.written.map((r) => r.requestId),
      Array.from({ length: 4500 }, (_, i) => `r${i}`),
    );
    assert.equal(counts.written, 4500);
    await recorder.stop();
  });

  it('cuts batches at the most records asked for, each decoding on its own, with the time of its first record', () => {
    const encoder = new BatchEncoder(3);
    const records = Array.from({ length: 7 }, (_, i) => rec(i));
    for (const r of records) encoder.push(r);
    assert.equal(encoder.count, 7);
    const batches = encoder.seal();
    assert.deepEqual(
      batches.map((b) => b.count),
      [3, 3, 1],
    );
    assert.deepEqual(batches.map(decodeBatch), [records.slice(0, 3), records.slice(3, 6), records.slice(6)]);
    assert.deepEqual(
      batches.map((b) => b.firstAt),
      [records[0]?.at, records[3]?.at, records[6]?.at],
    );
    assert.equal(encoder.count, 0);
  });

  it('hands a batch to the writer thread as a buffer of its own size, leaving the slab and the batch intact', async () => {
    const encoder = new BatchEncoder(3);
    const records = Array.from({ length: 7 }, (_, i) => rec(i));
    for (const r of records) encoder.push(r);
    const [first] = encoder.seal();
    assert.ok(first !== undefined && first.bytes.buffer.byteLength > first.bytes.byteLength * 10, 'a batch is a view into a larger slab');
    const copy = ownBufferCopy(first.bytes);
    assert.equal(copy.buffer.byteLength, first.bytes.byteLength);
    // Transferred as the writer transfers it: the receiver decodes the same records, the batch here still decodes.
    const { port1, port2 } = new MessageChannel();
    const received = new Promise<Uint8Array>((resolve) => port2.once('message', (m: { bytes: Uint8Array }) => resolve(m.bytes)));
    port1.postMessage({ bytes: copy }, [copy.buffer]);
    const bytes = await received;
    port1.close();
    assert.equal(copy.byteLength, 0, 'the copy was handed over, not cloned');
    assert.deepEqual(decodeBatch({ bytes, count: first.count }), records.slice(0, 3));
    assert.deepEqual(decodeBatch(first), records.slice(0, 3));
  });

  it('encodes entries off the heap and decodes them as they were (text of any kind, nulls, an entry larger than a slab)', () => {
    const records: AuditRecord[] = [
      rec(1),
      { ...rec(2), principal: 'ünïcödé 😀', reason: 'DENIED: "quoted", with\nnewline', status: null, project: null, userAgent: 'x'.repeat(300_000), description: '' },
      { ...rec(3), result: 'failure', principal: 'nul\u0000inside', clientAddress: '::1', at: 1.5e12 + 0.25 },
    ];
    const encoder = new BatchEncoder();
    for (const r of records) encoder.push(r);
    assert.equal(encoder.count, 3);
    const sealed = encoder.seal();
    assert.equal(encoder.count, 0);
    const decoded = sealed.flatMap((b) => decodeBatch(b));
    // '' comes back as '' (only null is none).
    assert.deepEqual(decoded, records);
    assert.deepEqual(decodeBatch(encodeBatch(records)), records);
    assert.deepEqual(decodeBatch(encodeBatch([])), []);
  });

  it('writes a text equal to the previous entry\'s once per slab, and decodes every slab on its own', () => {
    const same = (i: number): AuditRecord => ({ ...rec(i), principal: 'ci-bot', userAgent: 'containerd/2.0', resource: `library/app:${'v'.repeat(1)}` });
    const encoder = new BatchEncoder();
    const records = Array.from({ length: 3000 }, (_, i) => (i % 7 === 3 ? { ...same(i), userAgent: null, principal: 'other' } : same(i)));
    for (const r of records) encoder.push(r);
    const sealed = encoder.seal();
    // Repeats make an entry small: 3000 of them fit one 256 KiB slab, where each alone would take about 130 bytes more.
    assert.equal(sealed.length, 1);
    assert.deepEqual(decodeBatch(sealed[0] as EncodedBatch), records);
    // After a seal the next entry is written whole, so each sealed batch decodes alone.
    encoder.push(same(9000));
    encoder.push({ ...same(9001), userAgent: 'skopeo/1.9' });
    const next = encoder.seal();
    assert.deepEqual(decodeBatch(next[0] as EncodedBatch), [same(9000), { ...same(9001), userAgent: 'skopeo/1.9' }]);
    // Slabs filled by a large entry start afresh too.
    const big = { ...same(1), description: 'd'.repeat(200_000) };
    const mixed = [same(1), big, same(2), same(3)];
    const slabs = (() => {
      const e = new BatchEncoder();
      for (const r of mixed) e.push(r);
      return e.seal();
    })();
    assert.ok(slabs.length >= 2);
    assert.deepEqual(
      slabs.flatMap((b) => decodeBatch(b)),
      mixed,
    );
  });

  it('keeps entries in order while the database is down, retries, and drops (counting) past the bound', async () => {
    const store = new FlakyStore();
    store.down = true;
    const { recorder, counts } = recorderOn(store, { flushIntervalMs: 10, batchEntries: 10, maxBuffered: 100 });
    recorder.start();
    for (let i = 0; i < 150; i++) recorder.record(rec(i));
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(recorder.pending, 100);
    assert.equal(counts.dropped['buffer-full'], 50);
    assert.equal(store.written.length, 0);
    store.down = false;
    await waitUntil(() => store.written.length === 100, 'the retried flush');
    assert.deepEqual(
      store.written.map((r) => r.requestId),
      Array.from({ length: 100 }, (_, i) => `r${i}`),
    );
    assert.equal(recorder.pending, 0);
    await recorder.stop();
  });

  it('hands batches to the urgent writer while the backlog is above its mark, and back once it is not', async () => {
    // The background writer (a low-priority thread on a busy server) takes a batch and does not answer until released.
    const order: string[] = [];
    const log = (who: string, records: readonly AuditRecord[]) => order.push(...records.map((r) => `${who}:${r.requestId}`));
    let release: () => void = () => {};
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    const background = {
      batches: [] as number[],
      async append(batch: EncodedBatch): Promise<Written> {
        await held;
        this.batches.push(batch.count);
        log('background', decodeBatch(batch));
        return { count: batch.count, entries: undefined };
      },
      close: async () => {},
    };
    const urgent = {
      batches: [] as number[],
      async append(batch: EncodedBatch): Promise<Written> {
        this.batches.push(batch.count);
        log('urgent', decodeBatch(batch));
        return { count: batch.count, entries: undefined };
      },
      close: async () => {},
    };
    const counts = { written: 0, urgently: 0 };
    const recorder = new AuditRecorder({
      writer: background,
      urgentWriter: urgent,
      urgentAbove: 25,
      flushIntervalMs: 10_000,
      batchEntries: 10,
      maxBuffered: 1000,
      recordPulls: true,
      counters: { written: (n) => (counts.written += n), writtenUrgently: (n) => (counts.urgently += n), dropped: () => assert.fail('nothing is dropped') },
    });
    for (let i = 0; i < 10; i++) recorder.record(rec(i));
    // The first batch (10 waiting: under the mark) went to the background writer, which holds it; 30 more pile up.
    for (let i = 10; i < 40; i++) recorder.record(rec(i));
    assert.equal(recorder.pending, 40);
    release();
    await waitUntil(() => urgent.batches.length === 1, 'the backlog written by the urgent writer');
    assert.deepEqual(background.batches, [10]);
    assert.deepEqual(urgent.batches, [30], '30 waiting, above the mark of 25');
    for (let i = 40; i < 45; i++) recorder.record(rec(i));
    await recorder.stop();
    assert.deepEqual(background.batches, [10, 5], 'a backlog under the mark goes back to the background writer');
    assert.deepEqual(
      order,
      Array.from({ length: 45 }, (_, i) => `${i < 10 || i >= 40 ? 'background' : 'urgent'}:r${i}`),
      'one batch at a time, in order, whoever writes it',
    );
    assert.deepEqual(counts, { written: 45, urgently: 30 });
  });

  it('hands a batch to the urgent writer once its first entry has waited too long, however few wait', async () => {
    let release: () => void = () => {};
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    const written: string[] = [];
    const writer = (who: string, wait: Promise<void>) => ({
      async append(batch: EncodedBatch): Promise<Written> {
        await wait;
        written.push(...decodeBatch(batch).map((r) => `${who}:${r.requestId}`));
        return { count: batch.count, entries: undefined };
      },
      close: async () => {},
    });
    const recorder = new AuditRecorder({
      writer: writer('background', held),
      urgentWriter: writer('urgent', Promise.resolve()),
      urgentAbove: 1000,
      urgentAfterMs: 100,
      flushIntervalMs: 10,
      batchEntries: 1000,
      maxBuffered: 10_000,
      recordPulls: true,
    });
    // Entries are stamped now: the first batch goes to the background writer, which holds it.
    recorder.record({ ...rec(0), at: Date.now() });
    recorder.start();
    await waitUntil(() => recorder.pending === 1 && written.length === 0, 'the first batch taken');
    await new Promise((resolve) => setTimeout(resolve, 30));
    recorder.record({ ...rec(1), at: Date.now() });
    recorder.record({ ...rec(2), at: Date.now() });
    // The held batch is released after the two have waited longer than urgentAfterMs.
    await new Promise((resolve) => setTimeout(resolve, 150));
    release();
    await waitUntil(() => written.length === 3, 'every entry written');
    assert.deepEqual(written, ['background:r0', 'urgent:r1', 'urgent:r2']);
    // A fresh entry goes back to the background writer.
    recorder.record({ ...rec(3), at: Date.now() });
    await recorder.stop();
    assert.deepEqual(written.slice(3), ['background:r3']);
  });

  it('drops only the entry the database refuses, not its batch', async () => {
    const store = new FlakyStore();
    store.refuse = (r) => r.requestId === 'r3';
    const { recorder, counts } = recorderOn(store);
    for (let i = 0; i < 6; i++) recorder.record(rec(i));
    await recorder.flush();
    assert.deepEqual(
      store.written.map((r) => r.requestId),
      ['r0', 'r1', 'r2', 'r4', 'r5'],
    );
    assert.equal(counts.dropped.unwritable, 1);
  });

  it('stop() writes what is buffered, retrying while the database comes back; past its timeout it counts the loss', async () => {
    const store = new FlakyStore();
    store.down = true;
    const { recorder } = recorderOn(store);
    for (let i = 0; i < 5; i++) recorder.record(rec(i));
    setTimeout(() => {
      store.down = false;
    }, 100);
    await recorder.stop(5000);
    assert.equal(store.written.length, 5);

    const dead = new FlakyStore();
    dead.down = true;
    const second = recorderOn(dead);
    for (let i = 0; i < 5; i++) second.recorder.record(rec(i));
    await second.recorder.stop(100);
    assert.equal(second.counts.dropped.unwritable, 5);
    assert.equal(second.recorder.pending, 0);
  });

  it('subscribes to the events it keeps; pulls can be left out', async () => {
    const bus = new EventBus();
    const store = new FlakyStore();
    const { recorder } = recorderOn(store, { recordPulls: false });
    recorder.subscribe(bus);
    const event = (operation: RegistryOperationEvent['operation']): RegistryOperationEvent => ({
      type: 'registry.operation',
      at: 1,
      actor: { name: 'alice', kind: 'user' },
      operation,
      resourceType: 'artifact',
      repository: 'team/app',
      reference: 'v1',
      result: 'success',
      status: 200,
    });
    bus.emit(event('pull'));
    bus.emit(event('push'));
    bus.emit({ type: 'job.finished', at: 1, actor: { name: 'system', kind: 'system' }, jobId: 4, kind: 'registry.purge-uploads', status: 'succeeded' });
    bus.emit({ type: 'job.finished', at: 1, actor: { name: 'system', kind: 'system' }, jobId: 5, kind: 'gc.run', status: 'failed', error: 'boom' });
    assert.equal(recorder.pending, 2);
    await recorder.stop();
    assert.deepEqual(
      store.written.map((r) => [r.operation, r.resourceType, r.resource, r.result, r.reason]),
      [
        ['create', 'artifact', 'team/app:v1', 'success', null],
        ['run', 'garbage_collection', 'jobs/5', 'failure', 'boom'],
      ],
    );
    bus.emit(event('push'));
    assert.equal(recorder.pending, 0, 'unsubscribed once stopped');
  });
});

for (const backend of BACKENDS) {
  describe(`audit recorder on a real store (${backend})`, () => {
    let testDb: TestDatabase;
    let dir: string;
    let handle: DatabaseHandle;
    before(async () => {
      dir = await mkdtemp(path.join(tmpdir(), 'berth-audit-recorder-'));
      testDb = await createTestDatabase(backend);
      handle = createDatabase({ url: testDb.url, sqliteFile: path.join(dir, 'berth.db') });
      await handle.migrate();
    });
    after(async () => {
      await handle.close();
      await testDb.drop();
      await rm(dir, { recursive: true, force: true });
    });

    beforeEach(async () => {
      await handle.db.deleteFrom('audit_log').execute();
      await handle.db.updateTable('audit_chain').set({ last_id: 0, last_hash: GENESIS_HASH, checkpoint_id: 0, checkpoint_hash: GENESIS_HASH }).execute();
    });

    it('writes on a worker thread: the same chain, the entries back only when asked, errors with their code', async () => {
      const store = new AuditStore(handle.db);
      const start = (await store.head()).lastId;
      const sqliteFile = path.join(dir, 'berth.db');
      const forwarding = new ThreadedAuditWriter({ url: testDb.url, sqliteFile, wantEntries: true });
      const counting = new ThreadedAuditWriter({ url: testDb.url, sqliteFile, wantEntries: false });
      try {
        const batches = await Promise.all([forwarding.append(encodeBatch([rec(1), rec(2)])), forwarding.append(encodeBatch([rec(3)]))]);
        assert.deepEqual(
          batches.map((b) => b.entries?.map((e) => [e.id, e.requestId])),
          [
            [
              [start + 1, 'r1'],
              [start + 2, 'r2'],
            ],
            [[start + 3, 'r3']],
          ],
        );
        const counted = await counting.append(encodeBatch([rec(4), rec(5)]));
        assert.deepEqual(counted, { count: 2, entries: undefined });
        const result = await store.verify();
        assert.equal(result.valid, true);
        assert.equal(result.head.id, start + 5);
        assert.equal(result.head.hash, (await handle.db.selectFrom('audit_log').select('hash').where('id', '=', start + 5).executeTakeFirstOrThrow()).hash);
        // An entry the database refuses (its id taken: the head moved back) comes back as a data error.
        await handle.db.updateTable('audit_chain').set({ last_id: start }).execute();
        await assert.rejects(counting.append(encodeBatch([rec(6)])), (err: Error & { code?: string }) => /constraint failed|duplicate key/i.test(err.message) && (backend === 'sqlite' || err.code === '23505'));
        await handle.db.updateTable('audit_chain').set({ last_id: start + 5, last_hash: result.head.hash }).execute();
      } finally {
        await forwarding.close();
        await counting.close();
      }
      await assert.rejects(forwarding.append(encodeBatch([rec(7)])), /closed/);
    });

    it('runs the writer thread at the niceness asked for (that thread only: the request thread keeps its own)', async () => {
      const niceOf = (tid: string) => {
        const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
        return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]);
      };
      const writerThreads = () => readdirSync('/proc/self/task').filter((tid) => readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim() === WRITER_THREAD_NAME);
      const mainNice = niceOf(String(process.pid));
      assert.deepEqual(writerThreads(), [], 'no writer thread before the first batch');
      const warnings: string[] = [];
      const writer = new ThreadedAuditWriter({ url: testDb.url, sqliteFile: path.join(dir, 'berth.db'), wantEntries: false, nice: 17, onWarning: (w) => warnings.push(w) });
      try {
        assert.equal((await writer.append(encodeBatch([rec(1)]))).count, 1);
        const [tid, ...others] = writerThreads();
        assert.ok(tid !== undefined && others.length === 0, 'one thread named for the audit writer');
        assert.equal(niceOf(tid), 17);
        assert.equal(niceOf(String(process.pid)), mainNice, 'the request thread is left as it was');
        assert.deepEqual(warnings, []);
      } finally {
        await writer.close();
      }
    });

    it('writes every recorded entry, in order, as a verifiable chain', async () => {
      const store = new AuditStore(handle.db);
      const written: number[] = [];
      const { recorder, counts } = recorderOn(store, { flushIntervalMs: 5, batchEntries: 50, maxBuffered: 10_000, onWritten: (entries) => written.push(...entries.map((e) => e.id)) });
      recorder.start();
      for (let i = 0; i < 3000; i++) {
        recorder.record(rec(i));
        if (i % 500 === 0) await new Promise((resolve) => setImmediate(resolve));
      }
      await recorder.stop();
      assert.deepEqual([counts.written, counts.dropped['buffer-full'], counts.dropped.unwritable], [3000, 0, 0]);
      const rows = await handle.db.selectFrom('audit_log').select(['id', 'request_id']).orderBy('id').execute();
      assert.equal(rows.length, 3000);
      assert.deepEqual(
        rows.map((r) => r.request_id),
        Array.from({ length: 3000 }, (_, i) => `r${i}`),
      );
      assert.deepEqual(
        written,
        rows.map((r) => Number(r.id)),
      );
      const result = await store.verify();
      assert.equal(result.valid, true);
      assert.equal(result.checked, 3000);
    });
  });
}
