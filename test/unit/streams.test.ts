import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, it } from 'node:test';
import { KeyedMutex } from '../../src/platform/lib/keyed-mutex.ts';
import { hashUpdater, MeteredStream, readLimited } from '../../src/platform/lib/streams.ts';

/** A source that emits the given chunks one by one. */
function source(...chunks: string[]): Readable {
  return Readable.from(chunks.map((c) => Buffer.from(c)), { objectMode: false });
}

/** Runs `chunks` through `meter` into memory; returns what came out and the error, if any. */
async function run(meter: MeteredStream, ...chunks: string[]): Promise<{ out: string; error: unknown }> {
  const received: Buffer[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      received.push(chunk);
      callback();
    },
  });
  let error: unknown;
  try {
    await pipeline(source(...chunks), meter, sink);
  } catch (err) {
    error = err;
  }
  return { out: Buffer.concat(received).toString(), error };
}

class LimitError extends Error {}
class MismatchError extends Error {
  readonly actual: number;
  constructor(actual: number) {
    super(`got ${actual}`);
    this.actual = actual;
  }
}

describe('MeteredStream', () => {
  it('passes bytes through unchanged, counts them and feeds the hasher', async () => {
    const hash = createHash('sha256');
    const meter = new MeteredStream({ update: hashUpdater(hash) });
    const { out, error } = await run(meter, 'hello ', 'wor', 'ld');
    assert.equal(error, undefined);
    assert.equal(out, 'hello world');
    assert.equal(meter.bytes, 11);
    assert.equal(hash.digest('hex'), createHash('sha256').update('hello world').digest('hex'));
  });

  it('allows exactly `limit` bytes', async () => {
    const meter = new MeteredStream({ limit: 6, onLimit: () => new LimitError() });
    const { out, error } = await run(meter, 'abc', 'def');
    assert.equal(error, undefined);
    assert.equal(out, 'abcdef');
  });

  it('fails with onLimit() as soon as more than `limit` bytes went by, passing nothing past the limit', async () => {
    const seen: string[] = [];
    const meter = new MeteredStream({ limit: 5, update: (c) => seen.push(c.toString()), onLimit: () => new LimitError('too big') });
    const { out, error } = await run(meter, 'abc', 'def', 'ghi');
    assert.ok(error instanceof LimitError);
    assert.equal(out, 'abc');
    assert.deepEqual(seen, ['abc'], 'the chunk that crossed the limit is not hashed');
  });

  it('has a default limit error', async () => {
    const { error } = await run(new MeteredStream({ limit: 1 }), 'ab');
    assert.ok(error instanceof Error);
    assert.match((error as Error).message, /byte limit exceeded/);
  });

  it('exact: succeeds with exactly that many bytes', async () => {
    const meter = new MeteredStream({ exact: { bytes: 4, onMismatch: (n) => new MismatchError(n) } });
    const { out, error } = await run(meter, 'ab', 'cd');
    assert.equal(error, undefined);
    assert.equal(out, 'abcd');
  });

  it('exact: fails at the end when fewer bytes came, reporting how many', async () => {
    const meter = new MeteredStream({ exact: { bytes: 10, onMismatch: (n) => new MismatchError(n) } });
    const { error } = await run(meter, 'abc');
    assert.ok(error instanceof MismatchError);
    assert.equal(error.actual, 3);
  });

  it('exact: fails as soon as more bytes come, without passing the excess', async () => {
    const meter = new MeteredStream({ exact: { bytes: 4, onMismatch: (n) => new MismatchError(n) } });
    const { out, error } = await run(meter, 'ab', 'cd', 'ef', 'gh');
    assert.ok(error instanceof MismatchError);
    assert.equal(error.actual, 6);
    assert.equal(out, 'abcd');
  });

  it('exact: an empty stream matches zero and mismatches one', async () => {
    assert.equal((await run(new MeteredStream({ exact: { bytes: 0, onMismatch: (n) => new MismatchError(n) } }))).error, undefined);
    const { error } = await run(new MeteredStream({ exact: { bytes: 1, onMismatch: (n) => new MismatchError(n) } }));
    assert.ok(error instanceof MismatchError);
    assert.equal(error.actual, 0);
  });

  it('exact larger than limit: crossing the limit is a limit error', async () => {
    const meter = new MeteredStream({ limit: 3, onLimit: () => new LimitError(), exact: { bytes: 10, onMismatch: (n) => new MismatchError(n) } });
    const { out, error } = await run(meter, 'ab', 'cd', 'ef');
    assert.ok(error instanceof LimitError);
    assert.equal(out, 'ab');
  });

  it('exact within limit: crossing the declared size is a mismatch, not a limit error', async () => {
    const meter = new MeteredStream({ limit: 100, onLimit: () => new LimitError(), exact: { bytes: 3, onMismatch: (n) => new MismatchError(n) } });
    const { error } = await run(meter, 'ab', 'cd');
    assert.ok(error instanceof MismatchError);
    assert.equal(error.actual, 4);
  });
});

describe('readLimited', () => {
  it('reads a whole small stream', async () => {
    assert.equal((await readLimited(source('ab', 'cd'), 4, () => new LimitError())).toString(), 'abcd');
  });

  it('reads an empty stream', async () => {
    assert.equal((await readLimited(source(), 4, () => new LimitError())).length, 0);
  });

  it('throws onLimit() past the limit', async () => {
    await assert.rejects(readLimited(source('ab', 'cd', 'e'), 4, () => new LimitError()), LimitError);
  });
});

/** A promise with its resolve function, to hold a task until the test lets it go. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}

/** Lets every queued callback and I/O turn run. */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('KeyedMutex', () => {
  it('runs tasks of one key one at a time, in arrival order', async () => {
    const mutex = new KeyedMutex();
    const events: string[] = [];
    const gates = [gate(), gate(), gate()];
    const runs = gates.map((g, i) =>
      mutex.run('k', async () => {
        events.push(`start ${i}`);
        await g.promise;
        events.push(`end ${i}`);
        return i;
      }),
    );
    await settle();
    assert.deepEqual(events, ['start 0']);
    // Release out of order: 2 and 1 must still wait for 0.
    gates[2]?.open();
    gates[1]?.open();
    await settle();
    assert.deepEqual(events, ['start 0']);
    gates[0]?.open();
    assert.deepEqual(await Promise.all(runs), [0, 1, 2]);
    assert.deepEqual(events, ['start 0', 'end 0', 'start 1', 'end 1', 'start 2', 'end 2']);
  });

  it('keeps order over many tasks, never interleaving them', async () => {
    const mutex = new KeyedMutex();
    const events: number[] = [];
    let inside = 0;
    const runs = Array.from({ length: 50 }, (_, i) =>
      mutex.run('k', async () => {
        inside++;
        assert.equal(inside, 1);
        await settle();
        events.push(i);
        inside--;
      }),
    );
    await Promise.all(runs);
    assert.deepEqual(events, Array.from({ length: 50 }, (_, i) => i));
  });

  it('a failing task rejects its own caller and does not block the next', async () => {
    const mutex = new KeyedMutex();
    const first = mutex.run('k', async () => {
      throw new Error('boom');
    });
    const second = mutex.run('k', async () => 'second ran');
    await assert.rejects(first, /boom/);
    assert.equal(await second, 'second ran');
    assert.equal(await mutex.run('k', async () => 'third ran'), 'third ran');
  });

  it('runs different keys concurrently', async () => {
    const mutex = new KeyedMutex();
    const held = gate();
    let aDone = false;
    const a = mutex.run('a', async () => {
      await held.promise;
      aDone = true;
    });
    const b = await mutex.run('b', async () => 'b finished while a was held');
    assert.equal(b, 'b finished while a was held');
    assert.equal(aDone, false);
    held.open();
    await a;
    assert.equal(aDone, true);
  });

  it('is usable again for a key after its queue drained', async () => {
    const mutex = new KeyedMutex();
    await mutex.run('k', async () => 1);
    const events: string[] = [];
    await Promise.all([mutex.run('k', async () => events.push('x')), mutex.run('k', async () => events.push('y'))]);
    assert.deepEqual(events, ['x', 'y']);
  });
});
