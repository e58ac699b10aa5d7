import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { OciError } from '../../src/platform/oci/errors.ts';
import { parseRangeHeader } from '../../src/registry/blobs.ts';
import { parsePageSize } from '../../src/registry/listings.ts';
import { parseContentRange } from '../../src/registry/routes.ts';

describe('parseRangeHeader (blob GET Range)', () => {
  const served: Array<[string | undefined, number, { start: number; end: number } | undefined]> = [
    [undefined, 100, undefined],
    ['bytes=0-9', 100, { start: 0, end: 9 }],
    ['bytes=0-0', 100, { start: 0, end: 0 }],
    ['bytes=99-99', 100, { start: 99, end: 99 }],
    ['bytes=10-', 100, { start: 10, end: 99 }],
    ['bytes=0-', 1, { start: 0, end: 0 }],
    ['bytes=-10', 100, { start: 90, end: 99 }],
    ['bytes=-100', 100, { start: 0, end: 99 }],
    ['bytes=-500', 100, { start: 0, end: 99 }], // a suffix longer than the blob is the whole blob
    ['bytes=50-500', 100, { start: 50, end: 99 }], // last past the end is clamped
    ['bytes=0-99999999999999999999', 100, { start: 0, end: 99 }],
    ['  bytes=1-2  ', 100, { start: 1, end: 2 }],
    // Headers we do not serve as a range: the whole blob is sent (RFC 9110 allows ignoring them).
    ['bytes=0-1,5-6', 100, undefined],
    ['items=0-1', 100, undefined],
    ['bytes 0-1', 100, undefined],
    ['bytes=a-b', 100, undefined],
    ['', 100, undefined],
  ];
  for (const [header, size, expected] of served) {
    it(`${JSON.stringify(header)} of ${size} bytes → ${expected ? `${expected.start}-${expected.end}` : 'whole blob'}`, () => {
      assert.deepEqual(parseRangeHeader(header, size), expected);
    });
  }

  const unsatisfiable: Array<[string, number]> = [
    ['bytes=100-', 100],
    ['bytes=100-200', 100],
    ['bytes=5-4', 100],
    ['bytes=-0', 100],
    ['bytes=-', 100],
    ['bytes=0-', 0],
    ['bytes=-5', 0],
    ['bytes=0-0', 0],
  ];
  for (const [header, size] of unsatisfiable) {
    it(`${JSON.stringify(header)} of ${size} bytes → 416 with Content-Range: bytes */${size}`, () => {
      assert.throws(
        () => parseRangeHeader(header, size),
        (err: unknown) => {
          assert.ok(err instanceof OciError);
          assert.equal(err.code, 'RANGE_NOT_SATISFIABLE');
          assert.deepEqual(err.headers, { 'Content-Range': `bytes */${size}` });
          return true;
        },
      );
    });
  }
});

describe('parseContentRange (upload PATCH/PUT Content-Range)', () => {
  const neverAsked = async (): Promise<number> => {
    throw new Error('the current offset should not be needed');
  };

  const valid: Array<[string, { start: number; end: number }]> = [
    ['0-99', { start: 0, end: 99 }],
    ['0-0', { start: 0, end: 0 }],
    ['100-199', { start: 100, end: 199 }],
    ['bytes 100-199', { start: 100, end: 199 }],
    ['bytes=100-199', { start: 100, end: 199 }],
    ['bytes 0-99/100', { start: 0, end: 99 }],
    ['bytes 0-99/*', { start: 0, end: 99 }],
    ['0-99/1000', { start: 0, end: 99 }],
    [' 5-9 ', { start: 5, end: 9 }],
  ];
  for (const [header, expected] of valid) {
    it(`accepts ${JSON.stringify(header)}`, async () => {
      assert.deepEqual(await parseContentRange(header, neverAsked, '/v2/a/blobs/uploads/x'), expected);
    });
  }

  it('no header means no range', async () => {
    assert.equal(await parseContentRange(undefined, neverAsked, '/x'), undefined);
  });

  const invalid = ['99-0', 'abc', '', '-5', '5-', 'bytes 0-99/abc', 'bytes=0-1,2-3', '0 - 9', '1.5-3'];
  for (const header of invalid) {
    it(`rejects ${JSON.stringify(header)} with RANGE_INVALID, the current Range and the Location`, async () => {
      let asked = 0;
      const current = async () => {
        asked++;
        return 42;
      };
      await assert.rejects(
        async () => parseContentRange(header, current, '/v2/a/blobs/uploads/id'),
        (err: unknown) => {
          assert.ok(err instanceof OciError);
          assert.equal(err.code, 'RANGE_INVALID');
          assert.match(err.message, /malformed Content-Range/);
          assert.deepEqual(err.headers, { Range: '0-41', Location: '/v2/a/blobs/uploads/id' });
          return true;
        },
      );
      assert.equal(asked, 1);
    });
  }

  it('reports "0-0" as the Range of an empty upload', async () => {
    await assert.rejects(
      async () => parseContentRange('junk', async () => 0, '/loc'),
      (err: unknown) => err instanceof OciError && err.headers?.Range === '0-0',
    );
  });
});

describe('parsePageSize (n query parameter)', () => {
  const cases: Array<[string | undefined, number, number]> = [
    [undefined, 1000, 1000],
    ['', 1000, 1000],
    ['0', 1000, 0],
    ['1', 1000, 1],
    ['50', 1000, 50],
    ['1000', 1000, 1000],
    ['1001', 1000, 1000],
    ['007', 1000, 7],
    ['99999999999999999999999', 1000, 1000],
  ];
  for (const [n, max, expected] of cases) {
    it(`n=${JSON.stringify(n)} with max ${max} → ${expected}`, () => {
      assert.equal(parsePageSize(n, max), expected);
    });
  }

  for (const n of ['-1', 'abc', '1.5', ' 5', '5 ', '1e3', '+5', '0x10']) {
    it(`n=${JSON.stringify(n)} → PAGINATION_NUMBER_INVALID`, () => {
      assert.throws(
        () => parsePageSize(n, 1000),
        (err: unknown) => err instanceof OciError && err.code === 'PAGINATION_NUMBER_INVALID' && (err.detail as { n: string }).n === n,
      );
    });
  }
});
