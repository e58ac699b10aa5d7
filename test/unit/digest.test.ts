import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { digestOf, looksLikeDigest, newHash, parseDigest, tryParseDigest } from '../../src/platform/oci/digest.ts';
import { OciError } from '../../src/platform/oci/errors.ts';

const HEX64 = createHash('sha256').update('berth').digest('hex');
const HEX128 = createHash('sha512').update('berth').digest('hex');

describe('parseDigest', () => {
  const valid = [
    { input: `sha256:${HEX64}`, algorithm: 'sha256', hex: HEX64 },
    { input: `sha512:${HEX128}`, algorithm: 'sha512', hex: HEX128 },
    { input: `sha256:${'0'.repeat(64)}`, algorithm: 'sha256', hex: '0'.repeat(64) },
  ];
  for (const { input, algorithm, hex } of valid) {
    it(`accepts ${input.slice(0, 20)}…`, () => {
      const parsed = parseDigest(input);
      assert.deepEqual(parsed, { algorithm, hex, value: input });
      assert.deepEqual(tryParseDigest(input), parsed);
    });
  }

  // Each case names a fragment the message must contain, so a client learns what to fix.
  const invalid: Array<{ label: string; input: string; says: RegExp }> = [
    { label: 'sha256 too short', input: `sha256:${HEX64.slice(1)}`, says: /sha256.*64 lowercase hex/ },
    { label: 'sha256 too long', input: `sha256:${HEX64}0`, says: /sha256.*64 lowercase hex/ },
    { label: 'sha256 with a sha512 length', input: `sha256:${HEX128}`, says: /sha256.*64 lowercase hex/ },
    { label: 'sha512 too short', input: `sha512:${HEX64}`, says: /sha512.*128 lowercase hex/ },
    { label: 'uppercase hex', input: `sha256:${HEX64.toUpperCase()}`, says: /sha256.*lowercase hex/ },
    { label: 'non-hex letters', input: `sha256:${'g'.repeat(64)}`, says: /sha256.*lowercase hex/ },
    { label: 'unknown algorithm', input: `md5:${'a'.repeat(32)}`, says: /unsupported digest algorithm "md5".*sha256/ },
    { label: 'unknown algorithm shaped like a builtin property', input: 'constructor:abc', says: /unsupported digest algorithm "constructor"/ },
    { label: 'uppercase algorithm', input: `SHA256:${HEX64}`, says: /expected ALGORITHM:HEX/ },
    { label: 'empty', input: '', says: /expected ALGORITHM:HEX/ },
    { label: 'missing colon', input: `sha256${HEX64}`, says: /expected ALGORITHM:HEX/ },
    { label: 'empty encoded part', input: 'sha256:', says: /expected ALGORITHM:HEX/ },
    { label: 'empty algorithm', input: `:${HEX64}`, says: /expected ALGORITHM:HEX/ },
    { label: 'two colons', input: `sha256:${HEX64}:x`, says: /expected ALGORITHM:HEX/ },
    { label: 'whitespace around it', input: ` sha256:${HEX64}`, says: /expected ALGORITHM:HEX/ },
  ];
  for (const { label, input, says } of invalid) {
    it(`rejects ${label} with DIGEST_INVALID`, () => {
      assert.equal(tryParseDigest(input), undefined);
      assert.throws(
        () => parseDigest(input),
        (err: unknown) => {
          assert.ok(err instanceof OciError);
          assert.equal(err.code, 'DIGEST_INVALID');
          assert.match(err.message, says);
          assert.deepEqual(err.detail, { digest: input });
          return true;
        },
      );
    });
  }
});

describe('digest helpers', () => {
  it('digestOf hashes bytes with the chosen algorithm', () => {
    const bytes = new TextEncoder().encode('berth');
    assert.equal(digestOf(bytes), `sha256:${HEX64}`);
    assert.equal(digestOf(bytes, 'sha512'), `sha512:${HEX128}`);
    assert.ok(parseDigest(digestOf(bytes)));
  });

  it('newHash gives an incremental hasher equal to the one-pass digest', () => {
    const hash = newHash('sha256');
    hash.update('ber');
    hash.update('th');
    assert.equal(hash.digest('hex'), HEX64);
  });

  it('looksLikeDigest tells digests from tags by the colon', () => {
    assert.equal(looksLikeDigest(`sha256:${HEX64}`), true);
    assert.equal(looksLikeDigest('latest'), false);
  });
});
