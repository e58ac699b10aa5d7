import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import argon2 from '@node-rs/argon2';
import {
  ARGON2_PARAMS,
  checkPasswordPolicy,
  checkRobotSecret,
  DUMMY_HASH,
  generateSecret,
  hashPassword,
  MAX_PASSWORD_BYTES,
  needsRehash,
  type PolicyViolationCode,
  verifyAgainstNothing,
  verifyPassword,
} from '../../src/iam/passwords.ts';

const PHC_CURRENT = /^\$argon2id\$v=19\$m=19456,t=2,p=1\$([A-Za-z0-9+/]{22})\$([A-Za-z0-9+/]{43})$/;

/** A hash made directly with the library at other parameters (argon2.Algorithm values: d=0, i=1, id=2). */
function hashWith(plain: string, options: argon2.Options): Promise<string> {
  return argon2.hash(plain, { algorithm: 2, memoryCost: 19456, timeCost: 2, parallelism: 1, ...options });
}

function b64(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('base64').replace(/=+$/, '');
}

describe('hashPassword / verifyPassword', () => {
  it('round-trips: the hash of a password verifies with that password', async () => {
    const phc = await hashPassword('Correct-Horse-9');
    assert.equal(await verifyPassword(phc, 'Correct-Horse-9'), true);
  });

  it('rejects every other password', async () => {
    const phc = await hashPassword('Correct-Horse-9');
    for (const wrong of ['correct-horse-9', 'Correct-Horse-', 'Correct-Horse-9 ', ' Correct-Horse-9', 'Correct-Horse-99', '', 'x']) {
      assert.equal(await verifyPassword(phc, wrong), false, `accepted ${JSON.stringify(wrong)}`);
    }
  });

  it('produces an argon2id PHC string with the OWASP parameters, a 16-byte salt and a 32-byte hash', async () => {
    const phc = await hashPassword('Abcdefg1');
    assert.match(phc, PHC_CURRENT);
    assert.deepEqual(argon2.parseOptions(phc), { algorithm: 2, version: 1, memoryCost: 19456, timeCost: 2, parallelism: 1, outputLen: 32, saltLen: 16 });
    assert.deepEqual(
      { m: ARGON2_PARAMS.memoryCost, t: ARGON2_PARAMS.timeCost, p: ARGON2_PARAMS.parallelism },
      { m: 19456, t: 2, p: 1 },
    );
  });

  it('salts every hash: the same password hashes differently each time, and each verifies', async () => {
    const first = await hashPassword('Same-Password1');
    const second = await hashPassword('Same-Password1');
    assert.notEqual(first, second);
    assert.notEqual(PHC_CURRENT.exec(first)?.[1], PHC_CURRENT.exec(second)?.[1], 'salts differ');
    assert.equal(await verifyPassword(first, 'Same-Password1'), true);
    assert.equal(await verifyPassword(second, 'Same-Password1'), true);
  });

  it('returns false, never throws, for malformed, empty, foreign or tampered stored hashes', async () => {
    const real = await hashPassword('Abcdefg1');
    const [, salt, hash] = PHC_CURRENT.exec(real)!;
    const flipped = real.slice(0, -1) + (real.endsWith('A') ? 'B' : 'A');
    const cases: [string, unknown][] = [
      ['empty string', ''],
      ['garbage', 'garbage'],
      ['only the prefix', '$argon2id$'],
      ['truncated real hash', real.slice(0, real.length - 20)],
      ['hash part missing', `$argon2id$v=19$m=19456,t=2,p=1$${salt}`],
      ['invalid base64 salt', `$argon2id$v=19$m=19456,t=2,p=1$!!!!$${hash}`],
      ['unknown algorithm', `$argon2x$v=19$m=19456,t=2,p=1$${salt}$${hash}`],
      ['bcrypt hash', '$2b$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy'],
      ['Harbor PBKDF2 hex digest', 'a6b9e8a1a3f2c7d1e0f9b8a7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7'],
      ['one character of the hash changed', flipped],
      ['absurd memory cost (4 GiB, never run)', `$argon2id$v=19$m=4194304,t=2,p=1$${salt}$${hash}`],
      ['absurd time cost (never run)', `$argon2id$v=19$m=19456,t=100000,p=1$${salt}$${hash}`],
      ['a megabyte of text', 'x'.repeat(1 << 20)],
      ['null', null],
      ['undefined', undefined],
      ['a number', 42],
    ];
    for (const [label, stored] of cases) {
      const result = await verifyPassword(stored as string, 'Abcdefg1');
      assert.equal(result, false, label);
    }
  });

  it('spends one dummy verification, never the stored hash, when it refuses a hash or password', async (t) => {
    const real = await hashPassword('Abcdefg1');
    const [, salt, hash] = PHC_CURRENT.exec(real)!;
    const spy = t.mock.method(argon2, 'verify');
    const cases: [string, string, string][] = [
      ['malformed stored hash', 'not a hash', 'Abcdefg1'],
      ['stored hash asking for 4 GiB', `$argon2id$v=19$m=4194304,t=2,p=1$${salt}$${hash}`, 'Abcdefg1'],
      ['stored hash asking for 100000 passes', `$argon2id$v=19$m=19456,t=100000,p=1$${salt}$${hash}`, 'Abcdefg1'],
      ['over-long password', real, 'A1'.padEnd(MAX_PASSWORD_BYTES + 1, 'a')],
    ];
    for (const [label, stored, plain] of cases) {
      spy.mock.resetCalls();
      assert.equal(await verifyPassword(stored, plain), false, label);
      assert.equal(spy.mock.callCount(), 1, label);
      assert.equal(spy.mock.calls[0]!.arguments[0], DUMMY_HASH, label);
    }
  });

  it('returns false for an over-long password and refuses to hash one', async () => {
    const phc = await hashPassword('Abcdefg1');
    const long = `Abcdefg1${'a'.repeat(MAX_PASSWORD_BYTES)}`;
    assert.equal(await verifyPassword(phc, long), false);
    await assert.rejects(hashPassword(long), RangeError);
    // At exactly the limit it still hashes and verifies.
    const atLimit = 'Ab1'.padEnd(MAX_PASSWORD_BYTES, 'z');
    assert.equal(await verifyPassword(await hashPassword(atLimit), atLimit), true);
  });

  it('handles Unicode passwords, and treats composed and decomposed forms as the same password', async () => {
    for (const plain of ['pässwörd-Über9', '密码Mima2024', '🔐Secret-key1', 'Пароль-надёжный7', 'مرور\u200fKey1']) {
      const phc = await hashPassword(plain);
      assert.equal(await verifyPassword(phc, plain), true, plain);
      assert.equal(await verifyPassword(phc, plain.slice(0, -1)), false, `${plain} minus its last character`);
    }
    const composed = 'Caf\u00e9-Passw0rd'; // é as one code point
    const decomposed = 'Cafe\u0301-Passw0rd'; // e + combining acute accent
    assert.notEqual(composed, decomposed);
    assert.equal(await verifyPassword(await hashPassword(composed), decomposed), true);
    assert.equal(await verifyPassword(await hashPassword(decomposed), composed), true);
    assert.equal(await verifyPassword(await hashPassword(composed), 'Cafe-Passw0rd'), false);
  });
});

describe('needsRehash', () => {
  it('is false for a hash at the current parameters', async () => {
    assert.equal(needsRehash(await hashPassword('Abcdefg1')), false);
  });

  it('is true for weaker parameters, another variant or version, and for undecodable hashes; false for stronger', async () => {
    const cases: [string, string, boolean][] = [
      ['less memory (m=4096)', await hashWith('Abcdefg1', { memoryCost: 4096 }), true],
      ['one pass (t=1)', await hashWith('Abcdefg1', { timeCost: 1 }), true],
      ['argon2i', await hashWith('Abcdefg1', { algorithm: 1 }), true],
      ['argon2d', await hashWith('Abcdefg1', { algorithm: 0 }), true],
      ['version 0x10', await hashWith('Abcdefg1', { version: 0 }), true],
      ['16-byte output', await hashWith('Abcdefg1', { outputLen: 16 }), true],
      ['8-byte salt', await hashWith('Abcdefg1', { salt: new Uint8Array(8).fill(7) }), true],
      ['more memory (m=32768)', await hashWith('Abcdefg1', { memoryCost: 32768 }), false],
      ['more passes (t=3)', await hashWith('Abcdefg1', { timeCost: 3 }), false],
      ['two lanes, same memory and passes', await hashWith('Abcdefg1', { parallelism: 2 }), false],
      ['garbage', 'garbage', true],
      ['empty', '', true],
    ];
    for (const [label, phc, expected] of cases) assert.equal(needsRehash(phc), expected, label);
  });

  it('still verifies the weaker hashes it flags, so a login can upgrade them', async () => {
    for (const options of [{ memoryCost: 4096 }, { timeCost: 1 }, { algorithm: 1 as const }, { version: 0 as const }]) {
      const weak = await hashWith('Upgrade-Me1', options as argon2.Options);
      assert.equal(needsRehash(weak), true);
      assert.equal(await verifyPassword(weak, 'Upgrade-Me1'), true, JSON.stringify(options));
      assert.equal(await verifyPassword(weak, 'upgrade-me1'), false, JSON.stringify(options));
      const upgraded = await hashPassword('Upgrade-Me1');
      assert.equal(needsRehash(upgraded), false);
    }
  });
});

describe('verifyAgainstNothing', () => {
  it('returns false for any password', async () => {
    for (const plain of ['', 'Abcdefg1', 'x'.repeat(MAX_PASSWORD_BYTES + 1), '🔐']) assert.equal(await verifyAgainstNothing(plain), false);
  });

  it('verifies against a dummy hash with exactly the current parameters (the same cost as a real one)', () => {
    assert.match(DUMMY_HASH, PHC_CURRENT);
    assert.deepEqual(argon2.parseOptions(DUMMY_HASH), {
      algorithm: 2,
      version: 1,
      memoryCost: ARGON2_PARAMS.memoryCost,
      timeCost: ARGON2_PARAMS.timeCost,
      parallelism: ARGON2_PARAMS.parallelism,
      outputLen: ARGON2_PARAMS.outputLen,
      saltLen: ARGON2_PARAMS.saltLen,
    });
  });

  it('runs a real argon2 verification, through the same call a real login makes', async (t) => {
    const spy = t.mock.method(argon2, 'verify');
    const phc = await hashPassword('Real-User-Pass1');

    assert.equal(await verifyPassword(phc, 'Wrong-Pass1'), false);
    assert.equal(spy.mock.callCount(), 1);
    assert.deepEqual(spy.mock.calls[0]!.arguments, [phc, 'Wrong-Pass1']);

    assert.equal(await verifyAgainstNothing('Wrong-Pass1'), false);
    assert.equal(spy.mock.callCount(), 2);
    assert.deepEqual(spy.mock.calls[1]!.arguments, [DUMMY_HASH, 'Wrong-Pass1']);
    // The library really ran (it resolved false, it did not reject on a malformed input).
    assert.equal(await spy.mock.calls[1]!.result, false);
  });

  it('uses a dummy that argon2 fully computes: with its salt and a matching hash part, it verifies', async () => {
    const [, salt] = PHC_CURRENT.exec(DUMMY_HASH)!;
    const raw = await argon2.hashRaw('Probe-Pass1', {
      algorithm: 2,
      memoryCost: ARGON2_PARAMS.memoryCost,
      timeCost: ARGON2_PARAMS.timeCost,
      parallelism: ARGON2_PARAMS.parallelism,
      outputLen: ARGON2_PARAMS.outputLen,
      salt: Buffer.from(salt!, 'base64'),
    });
    const matching = DUMMY_HASH.slice(0, DUMMY_HASH.lastIndexOf('$') + 1) + b64(raw);
    assert.equal(await verifyPassword(matching, 'Probe-Pass1'), true);
    assert.equal(await verifyPassword(DUMMY_HASH, 'Probe-Pass1'), false);
  });
});

describe('checkPasswordPolicy', () => {
  const codes = (plain: string, policy?: Parameters<typeof checkPasswordPolicy>[1]): PolicyViolationCode[] => checkPasswordPolicy(plain, policy).map((v) => v.code);

  it('applies Harbor rule by default: 8–128 characters, an upper, a lower and a digit', () => {
    const table: [string, string, PolicyViolationCode[]][] = [
      ['valid', 'Abcdefg1', []],
      ['valid with symbols', 'Tr0ub4dor&3', []],
      ['exactly 8', 'Abcdef12', []],
      ['7, one short', 'Abcde12', ['too_short']],
      ['exactly 128', 'Aa1'.padEnd(128, 'x'), []],
      ['129, one long', 'Aa1'.padEnd(129, 'x'), ['too_long']],
      ['no uppercase', 'abcdefg1', ['missing_upper']],
      ['no lowercase', 'ABCDEFG1', ['missing_lower']],
      ['no digit', 'Abcdefgh', ['missing_digit']],
      ['digits only', '12345678', ['missing_upper', 'missing_lower']],
      ['empty', '', ['too_short', 'missing_upper', 'missing_lower', 'missing_digit']],
      ['short and lowercase', 'abc', ['too_short', 'missing_upper', 'missing_digit']],
      ['spaces count as characters', 'A b c 1 ', []],
      ['Unicode letters count in their class', 'ÜBERsicht9', []],
      ['Greek upper and lower', 'ΑΒΓαβγδ7', []],
      ['Arabic-Indic digit counts as a digit', 'Abcdefg\u0663', []],
      ['emoji is one character, not two', `Ab1${'😀'.repeat(5)}`, []],
      ['7 characters even if 20 bytes', `Ab1${'😀'.repeat(4)}`, ['too_short']],
      ['128 emoji-heavy characters fit', `Ab1${'😀'.repeat(125)}`, []],
      ['decomposed accent counts once after NFC', 'Abcdef1\u0065\u0301', []],
    ];
    for (const [label, plain, expected] of table) assert.deepEqual(codes(plain), expected, label);
  });

  it('explains each violation in plain words', () => {
    assert.deepEqual(checkPasswordPolicy(''), [
      { code: 'too_short', message: 'Password must be at least 8 characters long.' },
      { code: 'missing_upper', message: 'Password must contain at least one uppercase letter.' },
      { code: 'missing_lower', message: 'Password must contain at least one lowercase letter.' },
      { code: 'missing_digit', message: 'Password must contain at least one digit.' },
    ]);
    assert.deepEqual(checkPasswordPolicy('Aa1'.padEnd(200, 'x')), [{ code: 'too_long', message: 'Password must be at most 128 characters long.' }]);
  });

  it('follows configured lengths and classes', () => {
    const table: [string, string, Parameters<typeof checkPasswordPolicy>[1], PolicyViolationCode[]][] = [
      ['min 12, 11 given', 'Abcdefghij1', { minLength: 12 }, ['too_short']],
      ['min 12, 12 given', 'Abcdefghijk1', { minLength: 12 }, []],
      ['max 10, 11 given', 'Abcdefghij1', { maxLength: 10 }, ['too_long']],
      ['max 10, 10 given', 'Abcdefghi1', { maxLength: 10 }, []],
      ['no classes required', 'aaaaaaaa', { requireClasses: [] }, []],
      ['only digit required', 'aaaaaaaa', { requireClasses: ['digit'] }, ['missing_digit']],
      ['min 1 max 1', 'x', { minLength: 1, maxLength: 1, requireClasses: [] }, []],
    ];
    for (const [label, plain, policy, expected] of table) assert.deepEqual(codes(plain, policy), expected, label);
    assert.equal(checkPasswordPolicy('Abc1', { minLength: 12 })[0]!.message, 'Password must be at least 12 characters long.');
  });

  it('throws RangeError for an invalid policy (a configuration mistake), never for a password', () => {
    for (const policy of [{ minLength: 0 }, { minLength: 2.5 }, { minLength: 10, maxLength: 9 }, { maxLength: 5000 }, { requireClasses: ['symbol' as never] }]) {
      assert.throws(() => checkPasswordPolicy('Abcdefg1', policy), RangeError, JSON.stringify(policy));
    }
  });
});

describe('robot secrets', () => {
  it('checkRobotSecret follows Harbor IsValidSec: 8–128 bytes, ASCII upper, lower and digit', () => {
    const table: [string, string, PolicyViolationCode[]][] = [
      ['valid', 'Abcdefg1', []],
      ['exactly 8', 'Abcdef12', []],
      ['7', 'Abcde12', ['too_short']],
      ['exactly 128', 'Aa1'.padEnd(128, 'x'), []],
      ['129', 'Aa1'.padEnd(129, 'x'), ['too_long']],
      ['no upper', 'abcdefg1', ['missing_upper']],
      ['no lower', 'ABCDEFG1', ['missing_lower']],
      ['no digit', 'Abcdefgh', ['missing_digit']],
      ['empty', '', ['too_short', 'missing_upper', 'missing_lower', 'missing_digit']],
      ['non-ASCII letters do not count (Go RE2 [A-Z])', 'Überall1', ['missing_upper']],
      ['non-ASCII digit does not count (Go \\d is ASCII)', 'Abcdefg\u0663', ['missing_digit']],
      ['length is bytes, as Go len: 40 emoji are 160 bytes', `Aa1${'😀'.repeat(40)}`, ['too_long']],
      ['length is bytes: 2 emoji make 8 bytes', `Aa1${'😀'.repeat(2)}`, []],
    ];
    for (const [label, plain, expected] of table) {
      assert.deepEqual(
        checkRobotSecret(plain).map((v) => v.code),
        expected,
        label,
      );
    }
    assert.deepEqual(checkRobotSecret('Abc1'), [{ code: 'too_short', message: 'Secret must be at least 8 bytes long.' }]);
    assert.deepEqual(checkRobotSecret('abcdefgh1'), [{ code: 'missing_upper', message: 'Secret must contain at least one uppercase letter.' }]);
  });

  it('generateSecret gives unique 32-character alphanumeric secrets that satisfy both rules', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 2000; i++) {
      const secret = generateSecret();
      assert.match(secret, /^[A-Za-z0-9]{32}$/);
      assert.deepEqual(checkRobotSecret(secret), [], secret);
      assert.deepEqual(checkPasswordPolicy(secret), [], secret);
      seen.add(secret);
    }
    assert.equal(seen.size, 2000);
  });

  it('generateSecret uses the whole alphabet (not a biased subset)', () => {
    const chars = new Set(Array.from({ length: 400 }, () => generateSecret()).join(''));
    assert.equal(chars.size, 62);
  });

  it('generateSecret takes a length from 32 to 128 and refuses others', () => {
    assert.equal(generateSecret(32).length, 32);
    assert.equal(generateSecret(64).length, 64);
    assert.equal(generateSecret(128).length, 128);
    assert.deepEqual(checkRobotSecret(generateSecret(128)), []);
    for (const bad of [0, 8, 31, 129, 40.5, Number.NaN]) assert.throws(() => generateSecret(bad), RangeError, String(bad));
  });

  it('a generated secret is stored as a salted hash and verifies once shown', async () => {
    const secret = generateSecret();
    const phc = await hashPassword(secret);
    assert.equal(phc.includes(secret), false);
    assert.match(phc, PHC_CURRENT);
    assert.equal(await verifyPassword(phc, secret), true);
    assert.equal(await verifyPassword(phc, generateSecret()), false);
  });
});
