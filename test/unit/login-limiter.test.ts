import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { addressKey, type LoginDecision, LoginLimiter, type LoginLimiterOptions, userKey } from '../../src/iam/login-limiter.ts';
import { KeyedMutex } from '../../src/platform/lib/keyed-mutex.ts';

/** A limiter on a hand-driven clock; `at(seconds)` sets the time. */
function limiterAt(options: LoginLimiterOptions = {}) {
  let nowMs = 0;
  const limiter = new LoginLimiter({ ...options, now: () => nowMs });
  return {
    limiter,
    at(seconds: number) {
      nowMs = seconds * 1000;
    },
  };
}

function failTimes(limiter: LoginLimiter, times: number, username: string, address: string): LoginDecision[] {
  return Array.from({ length: times }, () => limiter.recordFailure(username, address));
}

describe('LoginLimiter per user', () => {
  it('allows attempts while the failures stay under the limit, refuses at the limit', () => {
    const { limiter } = limiterAt();
    assert.deepEqual(limiter.check('alice', '10.0.0.1'), { allowed: true });
    const decisions = failTimes(limiter, 5, 'alice', '10.0.0.1');
    assert.deepEqual(
      decisions.map((d) => d.allowed),
      [true, true, true, true, false],
    );
    const refused = limiter.check('alice', '10.0.0.1');
    assert.equal(refused.allowed, false);
    assert.equal(!refused.allowed && refused.limitedBy, 'user');
    // The name is refused from any address; other names from this address are not.
    assert.equal(limiter.check('alice', '10.9.9.9').allowed, false);
    assert.deepEqual(limiter.check('bob', '10.0.0.1'), { allowed: true });
  });

  it('counts Retry-After down as the clock moves, then allows again', () => {
    const { limiter, at } = limiterAt();
    for (const second of [0, 10, 20, 30, 40]) {
      at(second);
      limiter.recordFailure('alice', '10.0.0.1');
    }
    // The oldest failure (t=0) leaves the 300 s window at t=300; that frees one attempt.
    const table: [number, LoginDecision][] = [
      [40, { allowed: false, retryAfterSeconds: 260, limitedBy: 'user' }],
      [100, { allowed: false, retryAfterSeconds: 200, limitedBy: 'user' }],
      [298, { allowed: false, retryAfterSeconds: 2, limitedBy: 'user' }],
      [299.001, { allowed: false, retryAfterSeconds: 1, limitedBy: 'user' }],
      [299.999, { allowed: false, retryAfterSeconds: 1, limitedBy: 'user' }],
      [300, { allowed: true }],
    ];
    for (const [second, expected] of table) {
      at(second);
      assert.deepEqual(limiter.check('alice', '10.0.0.1'), expected, `t=${second}`);
    }
  });

  it('slides: each old failure expires on its own, and a new failure refuses again until the next expiry', () => {
    const { limiter, at } = limiterAt();
    for (const second of [0, 10, 20, 30, 40]) {
      at(second);
      limiter.recordFailure('alice', '10.0.0.1');
    }
    at(300);
    assert.equal(limiter.check('alice', '10.0.0.1').allowed, true);
    assert.deepEqual(limiter.recordFailure('alice', '10.0.0.1'), { allowed: false, retryAfterSeconds: 10, limitedBy: 'user' });
    at(310);
    assert.equal(limiter.check('alice', '10.0.0.1').allowed, true);
    // Long after the last failure (t=300) every failure has expired: five fresh ones are allowed.
    at(600);
    assert.deepEqual(
      failTimes(limiter, 5, 'alice', '10.0.0.2').map((d) => d.allowed),
      [true, true, true, true, false],
    );
  });

  it('forgets a name entirely once all its failures expire', () => {
    const { limiter, at } = limiterAt();
    failTimes(limiter, 3, 'alice', '10.0.0.1');
    assert.deepEqual(limiter.trackedKeys(), { users: 1, addresses: 1 });
    at(300);
    limiter.check('alice', '10.0.0.1');
    assert.deepEqual(limiter.trackedKeys(), { users: 0, addresses: 0 });
  });

  it('follows configured limits and windows', () => {
    const { limiter, at } = limiterAt({ userLimit: 3, userWindowSeconds: 60 });
    assert.deepEqual(
      failTimes(limiter, 3, 'alice', '10.0.0.1').map((d) => d.allowed),
      [true, true, false],
    );
    assert.deepEqual(limiter.check('alice', '10.0.0.1'), { allowed: false, retryAfterSeconds: 60, limitedBy: 'user' });
    at(60);
    assert.deepEqual(limiter.check('alice', '10.0.0.1'), { allowed: true });
  });

  it('keeps counting failures recorded while refused, so they extend the refusal', () => {
    const { limiter, at } = limiterAt();
    failTimes(limiter, 5, 'alice', '10.0.0.1');
    at(200);
    failTimes(limiter, 5, 'alice', '10.0.0.1');
    at(300); // the t=0 failures have expired; the five from t=200 still refuse
    assert.deepEqual(limiter.check('alice', '10.0.0.1'), { allowed: false, retryAfterSeconds: 200, limitedBy: 'user' });
    at(500);
    assert.deepEqual(limiter.check('alice', '10.0.0.1'), { allowed: true });
  });
});

describe('LoginLimiter per address', () => {
  it('trips after the address limit across many usernames, for any name, and only for that address', () => {
    const { limiter } = limiterAt();
    const decisions = Array.from({ length: 20 }, (_, i) => limiter.recordFailure(`user${i}`, '203.0.113.7'));
    assert.deepEqual(
      decisions.map((d) => d.allowed),
      [...new Array<boolean>(19).fill(true), false],
    );
    assert.deepEqual(limiter.check('never-seen', '203.0.113.7'), { allowed: false, retryAfterSeconds: 300, limitedBy: 'address' });
    assert.deepEqual(limiter.check('never-seen', '203.0.113.8'), { allowed: true });
    assert.deepEqual(limiter.check('user0', '203.0.113.8'), { allowed: true }, 'one failure per name stays under the user limit');
  });

  it('reports the longer wait when both the name and the address are refused', () => {
    const { limiter, at } = limiterAt({ addressLimit: 6 });
    failTimes(limiter, 1, 'bob', '198.51.100.1'); // t=0: the address' oldest failure
    at(100);
    failTimes(limiter, 5, 'alice', '198.51.100.1'); // t=100: alice at her limit, the address at 6
    assert.deepEqual(limiter.check('alice', '198.51.100.1'), { allowed: false, retryAfterSeconds: 300, limitedBy: 'user' });
    assert.deepEqual(limiter.check('carol', '198.51.100.1'), { allowed: false, retryAfterSeconds: 200, limitedBy: 'address' });
    at(300);
    assert.deepEqual(limiter.check('carol', '198.51.100.1'), { allowed: true });
    assert.deepEqual(limiter.check('alice', '198.51.100.1'), { allowed: false, retryAfterSeconds: 100, limitedBy: 'user' });
  });

  it('groups an IPv6 /64 as one address and IPv4-mapped IPv6 with its IPv4 address', () => {
    const { limiter } = limiterAt({ addressLimit: 3 });
    limiter.recordFailure('a', '2001:db8:1:2::1');
    limiter.recordFailure('b', '2001:db8:1:2:ffff:ffff:ffff:ffff');
    limiter.recordFailure('c', '[2001:DB8:1:2::abcd]');
    assert.equal(limiter.check('d', '2001:db8:1:2::99').allowed, false);
    assert.equal(limiter.check('d', '2001:db8:1:3::1').allowed, true, 'the next /64 is another address');

    limiter.recordFailure('a', '192.0.2.1');
    limiter.recordFailure('b', '::ffff:192.0.2.1');
    limiter.recordFailure('c', '::FFFF:c000:201');
    assert.equal(limiter.check('d', '192.0.2.1').allowed, false);
  });
});

describe('LoginLimiter success', () => {
  it("resets the user's count, not the address'", () => {
    const { limiter } = limiterAt({ addressLimit: 7 });
    failTimes(limiter, 4, 'alice', '10.0.0.1');
    limiter.recordSuccess('alice', '10.0.0.1');
    // alice starts again from zero: four more failures are allowed, the fifth refuses...
    assert.deepEqual(
      failTimes(limiter, 2, 'alice', '10.0.0.1').map((d) => d.allowed),
      [true, true],
    );
    // ...but the address kept its four earlier failures: 4 + 2 + 1 = 7 trips the address limit.
    assert.deepEqual(limiter.recordFailure('bob', '10.0.0.1'), { allowed: false, retryAfterSeconds: 300, limitedBy: 'address' });
    assert.equal(limiter.check('alice', '10.0.0.2').allowed, true, 'alice herself is under her limit');
  });

  it('does not lift a refusal on the address when the user succeeds', () => {
    const { limiter } = limiterAt({ addressLimit: 3 });
    failTimes(limiter, 3, 'mallory', '10.0.0.5');
    limiter.recordSuccess('mallory', '10.0.0.5');
    assert.equal(limiter.check('victim', '10.0.0.5').allowed, false);
  });
});

describe('LoginLimiter does not reveal which users exist', () => {
  it('answers the same sequence identically for an existing and a missing user', async () => {
    const users = new Map([['alice', 'Right-Pass1']]);
    async function login(limiter: LoginLimiter, username: string, password: string, address: string): Promise<string> {
      const decision = limiter.check(username, address);
      if (!decision.allowed) return `429 retry-after=${decision.retryAfterSeconds}`;
      await Promise.resolve(); // the (equal-time) password verification
      const ok = users.get(username) === password;
      if (ok) {
        limiter.recordSuccess(username, address);
        return '200';
      }
      limiter.recordFailure(username, address);
      return '401';
    }
    const run = async (username: string): Promise<string[]> => {
      const { limiter, at } = limiterAt();
      const answers: string[] = [];
      for (const second of [0, 1, 2, 3, 4, 5, 60, 299, 300, 300.5]) {
        at(second);
        answers.push(await login(limiter, username, 'Wrong-Pass1', '192.0.2.10'));
      }
      return answers;
    };
    const existing = await run('alice');
    const missing = await run('nobody-by-this-name');
    assert.deepEqual(existing, missing);
    assert.deepEqual(existing, ['401', '401', '401', '401', '401', '429 retry-after=295', '429 retry-after=240', '429 retry-after=1', '401', '429 retry-after=1']);
  });

  it('treats names case-insensitively and after NFC, so case tricks do not multiply the attempts', () => {
    const { limiter } = limiterAt();
    for (const name of ['Admin', 'admin', 'ADMIN', 'aDmIn']) limiter.recordFailure(name, '10.0.0.1');
    assert.equal(limiter.recordFailure('AdMiN', '10.0.0.2').allowed, false);
    limiter.recordFailure('Jos\u00e9', '10.0.0.3');
    assert.equal(userKey('Jos\u00e9'), userKey('jose\u0301'));
  });
});

describe('LoginLimiter memory', () => {
  it('stays bounded under 100,000 random usernames from random addresses', () => {
    const { limiter, at } = limiterAt({ maxTrackedKeys: 10_000 });
    let largest = 0;
    for (let i = 0; i < 100_000; i++) {
      at(i / 1000); // all within one window: nothing expires on its own
      const address = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
      limiter.recordFailure(`${i}-${Math.random().toString(36).slice(2)}`, address);
      if (i % 997 === 0) largest = Math.max(largest, limiter.trackedKeys().users, limiter.trackedKeys().addresses);
    }
    const tracked = limiter.trackedKeys();
    assert.ok(largest <= 10_000, `peaked at ${largest} keys`);
    // At the cap it evicts only an eighth at a time: the table stays full of recent counters.
    for (const size of [tracked.users, tracked.addresses]) assert.ok(size > 8_700 && size <= 10_000, `${size} keys`);
  });

  it('stays bounded when every random username comes from one address', () => {
    const { limiter } = limiterAt({ maxTrackedKeys: 1000 });
    for (let i = 0; i < 100_000; i++) limiter.recordFailure(`r${i}-${Math.random().toString(36).slice(2)}`, '10.0.0.1');
    const tracked = limiter.trackedKeys();
    assert.ok(tracked.users > 870 && tracked.users <= 1000, `${tracked.users} keys`);
    assert.equal(tracked.addresses, 1);
    assert.equal(limiter.check('anyone', '10.0.0.1').allowed, false);
  });

  it('stores huge names and addresses as fixed-size keys', () => {
    const huge = 'x'.repeat(1_000_000);
    assert.match(userKey(huge), /^sha256:[0-9a-f]{64}$/);
    assert.match(addressKey(huge), /^sha256:[0-9a-f]{64}$/);
    assert.notEqual(userKey(huge), userKey(`${huge}y`));
    assert.equal(userKey('a'.repeat(128)), 'a'.repeat(128));
  });

  it('drops expired keys before evicting a live one', () => {
    const { limiter, at } = limiterAt({ maxTrackedKeys: 16 });
    limiter.recordFailure('old', '10.0.0.1');
    at(200);
    failTimes(limiter, 4, 'victim', '10.0.0.2');
    at(201);
    for (let i = 0; i < 14; i++) limiter.recordFailure(`other${i}`, `10.0.1.${i}`);
    assert.equal(limiter.trackedKeys().users, 16, 'full');
    at(301); // "old" has expired; every other key is live
    limiter.recordFailure('newcomer', '10.0.0.3');
    assert.equal(limiter.trackedKeys().users, 16, 'only the expired key made room');
    assert.equal(limiter.recordFailure('victim', '10.0.0.2').allowed, false, 'victim kept its four failures');
  });

  it('evicts the least recently failed live key when all are live (the documented price of the bound)', () => {
    const { limiter, at } = limiterAt({ maxTrackedKeys: 2 });
    failTimes(limiter, 4, 'first', '10.0.0.1');
    at(1);
    failTimes(limiter, 4, 'second', '10.0.0.2');
    at(2);
    limiter.recordFailure('third', '10.0.0.3');
    assert.deepEqual(limiter.trackedKeys(), { users: 2, addresses: 2 });
    assert.equal(limiter.recordFailure('second', '10.0.0.2').allowed, false, 'second kept its count');
    assert.equal(limiter.recordFailure('first', '10.0.0.1').allowed, true, 'first was evicted and starts over');
  });
});

describe('LoginLimiter concurrency', () => {
  it('with the documented KeyedMutex, 100 parallel guesses at one name get exactly five tries', async () => {
    const { limiter } = limiterAt({ addressLimit: 1000 });
    const mutex = new KeyedMutex();
    let verified = 0;
    const attempt = (i: number) =>
      mutex.run(userKey('alice'), async () => {
        if (!limiter.check('alice', `10.0.1.${i}`).allowed) return 429;
        verified++;
        await new Promise((resolve) => setImmediate(resolve)); // the password hash
        limiter.recordFailure('alice', `10.0.1.${i}`);
        return 401;
      });
    const statuses = await Promise.all(Array.from({ length: 100 }, (_, i) => attempt(i)));
    assert.equal(verified, 5);
    assert.equal(statuses.filter((s) => s === 401).length, 5);
    assert.equal(statuses.filter((s) => s === 429).length, 95);
  });

  it('counts every one of many interleaved calls (the limiter itself is synchronous)', async () => {
    const { limiter } = limiterAt({ userLimit: 1000, addressLimit: 100_000 });
    await Promise.all(
      Array.from({ length: 2000 }, async (_, i) => {
        await new Promise((resolve) => setImmediate(resolve));
        limiter.recordFailure(`user${i % 4}`, `10.0.2.${i % 8}`);
      }),
    );
    // 500 failures per name: each of the four names is still under 1000...
    for (let u = 0; u < 4; u++) assert.equal(limiter.check(`user${u}`, '10.9.9.9').allowed, true);
    // ...and 500 more for one of them reaches exactly the limit.
    const more = failTimes(limiter, 500, 'user0', '10.0.3.1');
    assert.deepEqual(
      [more[498]!.allowed, more[499]!.allowed],
      [true, false],
    );
  });
});

describe('LoginLimiter configuration', () => {
  it('refuses invalid settings', () => {
    for (const options of [{ userLimit: 0 }, { userLimit: -1 }, { addressLimit: 1.5 }, { userWindowSeconds: 0 }, { addressWindowSeconds: Number.NaN }, { maxTrackedKeys: 0 }]) {
      assert.throws(() => new LoginLimiter(options), RangeError, JSON.stringify(options));
    }
  });

  it('takes an explicitly undefined setting as its default', () => {
    const { limiter } = limiterAt({ userLimit: undefined, addressLimit: undefined });
    assert.deepEqual(
      failTimes(limiter, 5, 'alice', '10.0.0.1').map((d) => d.allowed),
      [true, true, true, true, false],
    );
  });

  it('runs on the real monotonic clock by default', () => {
    const limiter = new LoginLimiter({ userLimit: 1 });
    assert.deepEqual(limiter.check('alice', '10.0.0.1'), { allowed: true });
    const decision = limiter.recordFailure('alice', '10.0.0.1');
    assert.equal(decision.allowed, false);
    assert.ok(!decision.allowed && decision.retryAfterSeconds >= 299 && decision.retryAfterSeconds <= 300);
  });
});

describe('addressKey', () => {
  it('normalises addresses', () => {
    const table: [string, string][] = [
      ['192.0.2.1', '192.0.2.1'],
      ['::ffff:192.0.2.1', '192.0.2.1'],
      ['::ffff:c000:0201', '192.0.2.1'],
      ['2001:db8:1:2::1', '2001:db8:1:2::/64'],
      ['2001:0DB8:0001:0002:0003:0004:0005:0006', '2001:db8:1:2::/64'],
      ['[2001:db8::1]', '2001:db8:0:0::/64'],
      ['fe80::1%eth0', 'fe80:0:0:0::/64'],
      ['64:ff9b::198.51.100.1', '64:ff9b:0:0::/64'],
      ['unix-socket', 'unix-socket'],
    ];
    for (const [input, expected] of table) assert.equal(addressKey(input), expected, input);
  });
});
