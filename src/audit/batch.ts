/**
 * Audit records waiting to be written, encoded as bytes outside the JavaScript heap. A record
 * kept as objects until its batch is written (up to a few hundred milliseconds) outlives the
 * young generation and is promoted to the old one with the strings it holds; at thousands of
 * requests per second that garbage-collection work cost more than writing the entries (measured:
 * see BENCHMARKS.md). Bytes in an off-heap buffer cost the collector nothing, and a batch of them
 * goes to a writer thread as one copy.
 *
 * Layout of one record: at (float64), status (int32, -1 for none), result (uint8: 0 success,
 * 1 failure), then the text fields in FIELDS order, each an int32 byte length (-1 for none,
 * -2 for "the same text as this field of the previous record in the batch") followed by its
 * UTF-8 bytes. Little-endian. Consecutive pulls share most of their texts (principal, address,
 * user agent, resource, project …): the repeat mark saves encoding them again, which was most of
 * what a pull's entry cost the request path.
 */
import type { AuditRecord } from './entry.ts';

const FIELDS = ['principal', 'principalKind', 'operation', 'resourceType', 'resource', 'project', 'reason', 'clientAddress', 'userAgent', 'requestId', 'description'] as const;
type TextField = (typeof FIELDS)[number];

/** A sealed run of encoded records. */
export interface EncodedBatch {
  readonly bytes: Uint8Array;
  readonly count: number;
  /** When its first record happened (its `at`, ms since the epoch): how long the batch has waited. */
  readonly firstAt?: number;
}

const SLAB_BYTES = 256 * 1024;
const NONE = -1;
const REPEAT = -2;
const FIXED_BYTES = 8 + 4 + 1 + FIELDS.length * 4;

/**
 * Appends records to off-heap slabs; seal() hands over what was written so far, as batches. A
 * batch is a run of one slab holding at most `maxRecords` records (a slab can hold several).
 */
export class BatchEncoder {
  readonly #maxRecords: number;
  #slab: Buffer = Buffer.allocUnsafeSlow(SLAB_BYTES);
  #offset = 0;
  /** Where the current batch starts in the slab. */
  #start = 0;
  /** Records in the current batch. */
  #count = 0;
  /** The `at` of the current batch's first record. */
  #firstAt = 0;
  /** Records encoded and not yet sealed, in all batches. */
  #total = 0;
  /** Finished batches not yet sealed. */
  #full: EncodedBatch[] = [];
  /** The texts of the previous record in the current batch, in FIELDS order (undefined: none yet). */
  #previous: Array<string | null | undefined> = new Array(FIELDS.length).fill(undefined);

  constructor(maxRecords = Number.POSITIVE_INFINITY) {
    this.#maxRecords = maxRecords;
  }

  /** Records encoded and not yet sealed. */
  get count(): number {
    return this.#total;
  }

  push(record: AuditRecord): void {
    let worst = FIXED_BYTES;
    for (const field of FIELDS) {
      const value = record[field];
      if (value !== null) worst += value.length * 3;
    }
    if (this.#count >= this.#maxRecords) this.#finishBatch();
    if (this.#offset + worst > this.#slab.length) {
      this.#finishBatch();
      this.#slab = Buffer.allocUnsafeSlow(Math.max(SLAB_BYTES, worst));
      this.#offset = 0;
      this.#start = 0;
    }
    const slab = this.#slab;
    if (this.#count === 0) this.#firstAt = record.at;
    let at = slab.writeDoubleLE(record.at, this.#offset);
    at = slab.writeInt32LE(record.status ?? -1, at);
    at = slab.writeUInt8(record.result === 'failure' ? 1 : 0, at);
    const previous = this.#previous;
    for (let i = 0; i < FIELDS.length; i++) {
      const value = record[FIELDS[i] as TextField];
      if (value === previous[i]) {
        at = slab.writeInt32LE(REPEAT, at);
      } else if (value === null) {
        at = slab.writeInt32LE(NONE, at);
      } else {
        const written = slab.write(value, at + 4, 'utf8');
        slab.writeInt32LE(written, at);
        at += 4 + written;
      }
      previous[i] = value;
    }
    this.#offset = at;
    this.#count++;
    this.#total++;
  }

  /** Ends the current batch (the next record starts a new one, with no repeat marks into this one). */
  #finishBatch(): void {
    if (this.#count > 0) this.#full.push({ bytes: this.#slab.subarray(this.#start, this.#offset), count: this.#count, firstAt: this.#firstAt });
    this.#start = this.#offset;
    this.#count = 0;
    this.#previous.fill(undefined);
  }

  /** What was encoded so far, as batches; the encoder starts afresh. */
  seal(): EncodedBatch[] {
    this.#finishBatch();
    const batches = this.#full;
    this.#full = [];
    this.#slab = Buffer.allocUnsafeSlow(SLAB_BYTES);
    this.#offset = 0;
    this.#start = 0;
    this.#total = 0;
    return batches;
  }
}

/** Encodes records as one batch (tests, and re-sending records one by one). */
export function encodeBatch(records: readonly AuditRecord[]): EncodedBatch {
  const encoder = new BatchEncoder();
  for (const record of records) encoder.push(record);
  const sealed = encoder.seal();
  if (sealed.length <= 1) return sealed[0] ?? { bytes: new Uint8Array(0), count: 0 };
  const bytes = Buffer.concat(sealed.map((b) => b.bytes));
  return { bytes, count: records.length };
}

/** The records of a batch. */
export function decodeBatch(batch: EncodedBatch): AuditRecord[] {
  const buffer = Buffer.from(batch.bytes.buffer, batch.bytes.byteOffset, batch.bytes.byteLength);
  const records: AuditRecord[] = [];
  // A repeat mark refers to the previous record; the first record of a slab has none.
  const text: Partial<Record<TextField, string | null>> = {};
  let at = 0;
  for (let i = 0; i < batch.count; i++) {
    const time = buffer.readDoubleLE(at);
    const status = buffer.readInt32LE(at + 8);
    const result = buffer.readUInt8(at + 12) === 1 ? 'failure' : 'success';
    at += 13;
    for (const field of FIELDS) {
      const length = buffer.readInt32LE(at);
      at += 4;
      if (length === REPEAT) {
        if (!(field in text)) throw new Error('corrupt audit batch: a repeat mark without a previous record');
      } else if (length < 0) {
        text[field] = null;
      } else {
        text[field] = buffer.toString('utf8', at, at + length);
        at += length;
      }
    }
    records.push({
      at: time,
      principal: text.principal ?? 'anonymous',
      principalKind: text.principalKind ?? 'anonymous',
      operation: text.operation ?? '',
      resourceType: text.resourceType ?? '',
      resource: text.resource ?? '',
      project: text.project ?? null,
      result,
      reason: text.reason ?? null,
      status: status < 0 ? null : status,
      clientAddress: text.clientAddress ?? null,
      userAgent: text.userAgent ?? null,
      requestId: text.requestId ?? null,
      description: text.description ?? null,
    });
  }
  return records;
}
