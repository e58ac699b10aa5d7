/**
 * Failed-login limiting: failures are counted per username and per client address in sliding
 * windows; once either count reaches its limit, further attempts are refused (HTTP 429 with
 * Retry-After) until enough of those failures have aged out of the window.
 *
 * The limiter only ever sees names, never users: a name that belongs to nobody is counted exactly
 * like one that exists, so its answers cannot reveal which names exist. A login route uses it so:
 *
 *   const decision = limiter.check(username, address);
 *   if (!decision.allowed) → 429, `Retry-After: decision.retryAfterSeconds` (same body for every name)
 *   const user = await store.findUser(username);
 *   const ok = user ? await verifyPassword(user.hash, password) : await verifyAgainstNothing(password);
 *   ok ? limiter.recordSuccess(username, address) : limiter.recordFailure(username, address);
 *
 * Concurrency: every method is synchronous, so calls never interleave inside the limiter. The
 * sequence above does straddle an await, though: attempts that are all in flight at once pass
 * `check` before any of them is recorded. Run the sequence under a `KeyedMutex` keyed by
 * `userKey(username)` so parallel guesses at one account are counted one after another; the
 * per-address count can still be overshot by one wave of parallel attempts at different names.
 *
 * Memory is bounded: each of the two tables holds at most `maxTrackedKeys` keys (when full, the
 * expired ones are dropped first, else the least recently failed eighth), each key keeps at most
 * `limit` timestamps, and long names are stored as their SHA-256. A flood of random usernames therefore costs a fixed
 * amount of memory; the price is that under such a flood an older live counter can be evicted.
 *
 * Several nodes: the counts live in this process, so behind a load balancer each node limits on
 * its own (an attacker spread over N nodes gets up to N times the attempts). A shared store (the
 * database or a cache) can replace the two maps later without changing this interface.
 */
import { createHash } from 'node:crypto';
import { isIPv4, isIPv6 } from 'node:net';

export interface LoginLimiterOptions {
  /** Failures allowed per username within the user window before attempts are refused. Default 5. */
  readonly userLimit?: number;
  /** Length of the per-username sliding window, in seconds. Default 300. */
  readonly userWindowSeconds?: number;
  /** Failures allowed per client address within the address window. Default 20. */
  readonly addressLimit?: number;
  /** Length of the per-address sliding window, in seconds. Default 300. */
  readonly addressWindowSeconds?: number;
  /** Most keys each table (usernames, addresses) tracks. Default 10 000. */
  readonly maxTrackedKeys?: number;
  /** Milliseconds from any fixed origin; must not run backwards. Default `performance.now`. */
  readonly now?: () => number;
}

export type LoginDecision =
  | { readonly allowed: true }
  | {
      readonly allowed: false;
      /** Whole seconds until an attempt would be allowed again (at least 1). */
      readonly retryAfterSeconds: number;
      /** Which count refused (the one with the longer wait when both do); for logs, not for clients. */
      readonly limitedBy: 'user' | 'address';
    };

export const LOGIN_LIMITER_DEFAULTS = Object.freeze({
  userLimit: 5,
  userWindowSeconds: 300,
  addressLimit: 20,
  addressWindowSeconds: 300,
  maxTrackedKeys: 10_000,
});

/** Keys longer than this are stored as their SHA-256, so a huge name costs no more than a short one. */
const MAX_RAW_KEY_LENGTH = 128;

function boundedKey(key: string): string {
  return key.length <= MAX_RAW_KEY_LENGTH ? key : `sha256:${createHash('sha256').update(key).digest('hex')}`;
}

/**
 * The key a username is counted under: NFC, lower case (so "Admin" and "admin" share one count
 * whatever the user store's case rules are; sharing only makes the limit stricter), bounded length.
 */
export function userKey(username: string): string {
  return boundedKey(String(username).normalize('NFC').toLowerCase());
}

/** The eight 16-bit groups of an IPv6 address (already validated by `isIPv6`), or undefined. */
function ipv6Groups(address: string): number[] | undefined {
  let text = address;
  // A trailing dotted IPv4 part (::ffff:1.2.3.4, 64:ff9b::1.2.3.4) is two groups written in decimal.
  const lastColon = text.lastIndexOf(':');
  const last = text.slice(lastColon + 1);
  if (isIPv4(last)) {
    const [a = 0, b = 0, c = 0, d = 0] = last.split('.').map(Number);
    text = `${text.slice(0, lastColon + 1)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const halves = text.split('::');
  if (halves.length > 2) return undefined;
  const parse = (part: string | undefined): number[] => (part ? part.split(':').map((g) => Number.parseInt(g, 16)) : []);
  const head = parse(halves[0]);
  const rest = parse(halves[1]);
  const missing = 8 - head.length - rest.length;
  if (missing < 0 || (halves.length === 1 && missing !== 0)) return undefined;
  const groups = [...head, ...new Array<number>(missing).fill(0), ...rest];
  return groups.every((g) => Number.isInteger(g) && g >= 0 && g <= 0xffff) ? groups : undefined;
}

/**
 * The key a client address is counted under. IPv4 as is; IPv4-mapped IPv6 (`::ffff:a.b.c.d`) as
 * its IPv4 address; other IPv6 addresses by their /64 prefix, because one host commonly holds a
 * whole /64 and could otherwise rotate through 2^64 addresses. Anything else as its text.
 */
export function addressKey(address: string): string {
  let text = String(address).trim().toLowerCase();
  if (text.startsWith('[') && text.endsWith(']')) text = text.slice(1, -1);
  const zone = text.indexOf('%');
  if (zone >= 0) text = text.slice(0, zone);
  if (isIPv4(text)) return text;
  if (isIPv6(text)) {
    const groups = ipv6Groups(text);
    if (groups) {
      const mapped = groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff;
      if (mapped) return [groups[6]! >> 8, groups[6]! & 0xff, groups[7]! >> 8, groups[7]! & 0xff].join('.');
      return `${groups
        .slice(0, 4)
        .map((g) => g.toString(16))
        .join(':')}::/64`;
    }
  }
  return boundedKey(text);
}

/** One sliding-window failure table: key → ascending failure times, at most `limit` of them. */
class FailureWindow {
  readonly #limit: number;
  readonly #windowMs: number;
  readonly #maxKeys: number;
  // Insertion order is the order of each key's latest failure (a key is re-inserted when it
  // fails), so the first entries are the ones that expire or may be evicted first.
  readonly #failures = new Map<string, number[]>();

  constructor(limit: number, windowMs: number, maxKeys: number) {
    this.#limit = limit;
    this.#windowMs = windowMs;
    this.#maxKeys = maxKeys;
  }

  get size(): number {
    return this.#failures.size;
  }

  /** The key's failures still inside the window at `now`; drops the expired ones. */
  #live(key: string, now: number): number[] | undefined {
    const stamps = this.#failures.get(key);
    if (!stamps) return undefined;
    let expired = 0;
    while (expired < stamps.length && stamps[expired]! + this.#windowMs <= now) expired++;
    if (expired === stamps.length) {
      this.#failures.delete(key);
      return undefined;
    }
    if (expired > 0) stamps.splice(0, expired);
    return stamps;
  }

  /** Milliseconds until the key may try again; 0 when it may now. */
  waitMs(key: string, now: number): number {
    const stamps = this.#live(key, now);
    if (!stamps || stamps.length < this.#limit) return 0;
    // Allowed again once the count falls below the limit: when the failure at this index expires.
    const wait = stamps[stamps.length - this.#limit]! + this.#windowMs - now;
    return Math.min(Math.max(wait, 1), this.#windowMs);
  }

  record(key: string, now: number): void {
    const stamps = this.#live(key, now) ?? [];
    stamps.push(Math.max(now, stamps[stamps.length - 1] ?? now));
    if (stamps.length > this.#limit) stamps.splice(0, stamps.length - this.#limit);
    this.#failures.delete(key);
    if (this.#failures.size >= this.#maxKeys) this.#makeRoom(now);
    this.#failures.set(key, stamps);
  }

  reset(key: string): void {
    this.#failures.delete(key);
  }

  /**
   * Called when the table is full. Drops the expired keys (they are at the front); if that freed
   * nothing, evicts the least recently failed live keys down to 7/8 of the cap. Evicting in a batch
   * keeps the cost amortised O(1): a Map skips its deleted slots on every fresh iteration, so
   * evicting one key per insert would rescan them each time.
   */
  #makeRoom(now: number): void {
    const target = this.#maxKeys - Math.max(1, Math.floor(this.#maxKeys / 8));
    let evicting = false;
    for (const [key, stamps] of this.#failures) {
      const expired = stamps[stamps.length - 1]! + this.#windowMs <= now;
      if (!expired && !evicting) {
        if (this.#failures.size < this.#maxKeys) return;
        evicting = true;
      }
      if (evicting && this.#failures.size <= target) return;
      this.#failures.delete(key);
    }
  }
}

function positiveInteger(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 1) throw new RangeError(`login limiter ${name} must be a positive integer, got ${value}`);
  return value;
}

export class LoginLimiter {
  readonly #users: FailureWindow;
  readonly #addresses: FailureWindow;
  readonly #now: () => number;

  constructor(options: LoginLimiterOptions = {}) {
    const d = LOGIN_LIMITER_DEFAULTS;
    const maxKeys = positiveInteger('maxTrackedKeys', options.maxTrackedKeys ?? d.maxTrackedKeys);
    this.#users = new FailureWindow(
      positiveInteger('userLimit', options.userLimit ?? d.userLimit),
      positiveInteger('userWindowSeconds', options.userWindowSeconds ?? d.userWindowSeconds) * 1000,
      maxKeys,
    );
    this.#addresses = new FailureWindow(
      positiveInteger('addressLimit', options.addressLimit ?? d.addressLimit),
      positiveInteger('addressWindowSeconds', options.addressWindowSeconds ?? d.addressWindowSeconds) * 1000,
      maxKeys,
    );
    this.#now = options.now ?? (() => performance.now());
  }

  /** May this name try to log in from this address now? */
  check(username: string, address: string): LoginDecision {
    const now = this.#now();
    const userWait = this.#users.waitMs(userKey(username), now);
    const addressWait = this.#addresses.waitMs(addressKey(address), now);
    if (userWait === 0 && addressWait === 0) return { allowed: true };
    return {
      allowed: false,
      retryAfterSeconds: Math.max(1, Math.ceil(Math.max(userWait, addressWait) / 1000)),
      limitedBy: userWait >= addressWait ? 'user' : 'address',
    };
  }

  /** Counts a failed login against the name and the address; returns the decision that now holds. */
  recordFailure(username: string, address: string): LoginDecision {
    const now = this.#now();
    this.#users.record(userKey(username), now);
    this.#addresses.record(addressKey(address), now);
    return this.check(username, address);
  }

  /**
   * A successful login clears the name's failures. The address keeps its count: one correct
   * password (say, the attacker's own account) must not reset guessing at other names from there.
   */
  recordSuccess(username: string, _address: string): void {
    this.#users.reset(userKey(username));
  }

  /** How many keys each table tracks now (for metrics and tests). */
  trackedKeys(): { users: number; addresses: number } {
    return { users: this.#users.size, addresses: this.#addresses.size };
  }
}
