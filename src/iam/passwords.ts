/**
 * Passwords and robot secrets: argon2id hashing in PHC strings, verification that never throws,
 * upgrade detection, a dummy verification for unknown users, the password policy, and robot
 * secrets (generated, or user-supplied under Harbor's `IsValidSec` rule).
 *
 * Plain text is normalised to Unicode NFC before it is hashed, verified or measured (RFC 8265's
 * OpaqueString profile), so "é" typed as one code point or as "e" plus a combining accent is the
 * same password on every client. ASCII is unchanged by NFC, so generated secrets are unaffected.
 *
 * Nothing here knows about users, HTTP or the database: the caller looks the user up, then calls
 * `verifyPassword` (user found) or `verifyAgainstNothing` (user not found), and both take as long.
 */
import { randomInt } from 'node:crypto';
// The default import is the package's CommonJS exports object; calls go through it at call
// time, which is also what lets a test observe that a verification really reached argon2.
import argon2 from '@node-rs/argon2';

/** argon2id at OWASP's recommended minimum: 19 MiB of memory, 2 passes, 1 lane. */
export const ARGON2_PARAMS = Object.freeze({
  memoryCost: 19456, // KiB
  timeCost: 2,
  parallelism: 1,
  outputLen: 32, // bytes of hash
  saltLen: 16, // bytes; the library generates 16-byte salts
});

// `Algorithm` and `Version` are `const enum`s in the package's types, which erasable TypeScript
// cannot reference; these are their values (Algorithm.Argon2id = 2, Version.V0x13 = 1).
const ARGON2ID = 2;
const VERSION_0X13 = 1;

/**
 * Upper bounds on what a stored hash may ask of us. A hash beyond these (a tampered or corrupt
 * row asking for gigabytes of memory or minutes of work) is treated as malformed instead of run.
 */
const MAX_STORED_MEMORY_KIB = 262_144; // 256 MiB
const MAX_STORED_TIME_COST = 64;
const MAX_STORED_PARALLELISM = 16;

/** The longest plain text we hash or verify, in UTF-8 bytes (a policy allows at most 1024 code points). */
export const MAX_PASSWORD_BYTES = 4096;
/** The largest `maxLength` a password policy may set, in characters (code points). */
export const MAX_POLICY_LENGTH = 1024;

function base64NoPad(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('base64').replace(/=+$/, '');
}

/**
 * A well-formed argon2id hash at the current parameters that no password matches (its hash part
 * is all zeros, which argon2 output equals with probability 2^-256). Verifying against it costs
 * exactly what verifying a real, current hash costs.
 */
export const DUMMY_HASH = `$argon2id$v=19$m=${ARGON2_PARAMS.memoryCost},t=${ARGON2_PARAMS.timeCost},p=${ARGON2_PARAMS.parallelism}$${base64NoPad(
  new Uint8Array(ARGON2_PARAMS.saltLen).fill(0x5a),
)}$${base64NoPad(new Uint8Array(ARGON2_PARAMS.outputLen))}`;

function normalise(plain: string): string {
  return plain.normalize('NFC');
}

/** Hashes a password (or robot secret) with argon2id at `ARGON2_PARAMS`; returns a PHC string. */
export async function hashPassword(plain: string): Promise<string> {
  if (typeof plain !== 'string') throw new TypeError('password must be a string');
  const text = normalise(plain);
  if (Buffer.byteLength(text, 'utf8') > MAX_PASSWORD_BYTES) {
    throw new RangeError(`password is longer than ${MAX_PASSWORD_BYTES} bytes`);
  }
  return argon2.hash(text, {
    algorithm: ARGON2ID,
    version: VERSION_0X13,
    memoryCost: ARGON2_PARAMS.memoryCost,
    timeCost: ARGON2_PARAMS.timeCost,
    parallelism: ARGON2_PARAMS.parallelism,
    outputLen: ARGON2_PARAMS.outputLen,
  });
}

/** Parameters of a stored hash, or undefined when it is not a decodable argon2 PHC string. */
function parseStored(phc: unknown): argon2.ParsedHashOptions | undefined {
  if (typeof phc !== 'string' || phc.length === 0 || phc.length > 1024) return undefined;
  try {
    return argon2.parseOptions(phc);
  } catch {
    return undefined;
  }
}

function withinStoredLimits(options: argon2.ParsedHashOptions): boolean {
  return options.memoryCost <= MAX_STORED_MEMORY_KIB && options.timeCost <= MAX_STORED_TIME_COST && options.parallelism <= MAX_STORED_PARALLELISM;
}

/** The one place an argon2 verification runs; a library error reads as "no match". */
async function runVerify(phc: string, text: string): Promise<boolean> {
  try {
    return await argon2.verify(phc, text);
  } catch {
    return false;
  }
}

/**
 * True when `plain` matches the stored PHC hash. Never throws: a malformed, empty, foreign or
 * absurdly expensive stored hash, a non-string or an over-long password all give false, after
 * the same dummy verification an unknown user gets, so no false answer is faster than another.
 * The comparison itself is argon2's (constant time).
 */
export async function verifyPassword(phc: string, plain: string): Promise<boolean> {
  const options = parseStored(phc);
  const text = typeof plain === 'string' ? normalise(plain) : undefined;
  if (options === undefined || !withinStoredLimits(options) || text === undefined || Buffer.byteLength(text, 'utf8') > MAX_PASSWORD_BYTES) {
    await runVerify(DUMMY_HASH, '');
    return false;
  }
  return runVerify(phc, text);
}

/**
 * Spends what a real verification spends (an argon2id verification at the current parameters
 * against `DUMMY_HASH`) and returns false. Call it when the user does not exist, so that a login
 * for a missing user takes as long as a wrong password for an existing one.
 */
export async function verifyAgainstNothing(plain: string): Promise<false> {
  const text = typeof plain === 'string' ? normalise(plain) : '';
  await runVerify(DUMMY_HASH, Buffer.byteLength(text, 'utf8') > MAX_PASSWORD_BYTES ? '' : text);
  return false;
}

/**
 * True when the stored hash should be replaced by a fresh `hashPassword` after a successful
 * login: another algorithm or version, or less memory, fewer passes, a shorter output or a
 * shorter salt than `ARGON2_PARAMS`. Stronger parameters are kept. A hash that cannot be decoded
 * needs replacing too (though it can never verify, so login never reaches this with one).
 */
export function needsRehash(phc: string): boolean {
  const options = parseStored(phc);
  if (options === undefined) return true;
  return (
    options.algorithm !== ARGON2ID ||
    options.version !== VERSION_0X13 ||
    options.memoryCost < ARGON2_PARAMS.memoryCost ||
    options.timeCost < ARGON2_PARAMS.timeCost ||
    options.outputLen < ARGON2_PARAMS.outputLen ||
    options.saltLen < ARGON2_PARAMS.saltLen
  );
}

// ---------------------------------------------------------------------------------------------
// Policy

export type CharacterClass = 'upper' | 'lower' | 'digit';

export interface PasswordPolicy {
  /** Fewest characters (Unicode code points, after NFC). Default 8. */
  readonly minLength?: number;
  /** Most characters (Unicode code points, after NFC). Default 128, at most `MAX_POLICY_LENGTH`. */
  readonly maxLength?: number;
  /** Classes that must each appear at least once. Default all three: upper, lower, digit. */
  readonly requireClasses?: readonly CharacterClass[];
}

export type PolicyViolationCode = 'too_short' | 'too_long' | 'missing_upper' | 'missing_lower' | 'missing_digit';

export interface PolicyViolation {
  readonly code: PolicyViolationCode;
  readonly message: string;
}

/** Harbor's rule for user passwords and robot secrets: 8–128 characters, upper, lower and digit. */
export const DEFAULT_PASSWORD_POLICY = Object.freeze({
  minLength: 8,
  maxLength: 128,
  requireClasses: Object.freeze(['upper', 'lower', 'digit'] as const),
});

const CLASS_WORDING: Record<CharacterClass, string> = {
  upper: 'uppercase letter',
  lower: 'lowercase letter',
  digit: 'digit',
};

// Passwords: Unicode-aware classes (an uppercase Cyrillic or Greek letter counts as uppercase).
const UNICODE_CLASSES: Record<CharacterClass, RegExp> = {
  upper: /[\p{Lu}\p{Lt}]/u,
  lower: /\p{Ll}/u,
  digit: /\p{Nd}/u,
};

// Robot secrets: exactly Harbor's IsValidSec, Go RE2 classes, which are ASCII.
const ASCII_CLASSES: Record<CharacterClass, RegExp> = {
  upper: /[A-Z]/,
  lower: /[a-z]/,
  digit: /[0-9]/,
};

const ALL_CLASSES: readonly CharacterClass[] = ['upper', 'lower', 'digit'];

function resolvePolicy(policy: PasswordPolicy): { minLength: number; maxLength: number; requireClasses: readonly CharacterClass[] } {
  const minLength = policy.minLength ?? DEFAULT_PASSWORD_POLICY.minLength;
  const maxLength = policy.maxLength ?? DEFAULT_PASSWORD_POLICY.maxLength;
  const requireClasses = policy.requireClasses ?? DEFAULT_PASSWORD_POLICY.requireClasses;
  if (!Number.isInteger(minLength) || minLength < 1) throw new RangeError(`password policy minLength must be an integer of at least 1, got ${minLength}`);
  if (!Number.isInteger(maxLength) || maxLength < minLength || maxLength > MAX_POLICY_LENGTH) {
    throw new RangeError(`password policy maxLength must be an integer from minLength (${minLength}) to ${MAX_POLICY_LENGTH}, got ${maxLength}`);
  }
  for (const name of requireClasses) {
    if (!ALL_CLASSES.includes(name)) throw new RangeError(`password policy requireClasses has unknown class ${JSON.stringify(name)}; use upper, lower or digit`);
  }
  return { minLength, maxLength, requireClasses };
}

function violations(
  subject: string,
  length: number,
  unit: string,
  minLength: number,
  maxLength: number,
  classes: readonly CharacterClass[],
  patterns: Record<CharacterClass, RegExp>,
  text: string,
): PolicyViolation[] {
  const found: PolicyViolation[] = [];
  if (length < minLength) found.push({ code: 'too_short', message: `${subject} must be at least ${minLength} ${unit} long.` });
  if (length > maxLength) found.push({ code: 'too_long', message: `${subject} must be at most ${maxLength} ${unit} long.` });
  for (const name of ALL_CLASSES) {
    if (classes.includes(name) && !patterns[name].test(text)) {
      found.push({ code: `missing_${name}`, message: `${subject} must contain at least one ${CLASS_WORDING[name]}.` });
    }
  }
  return found;
}

/**
 * Checks a new password against the policy (default: Harbor's 8–128 characters with at least one
 * uppercase letter, one lowercase letter and one digit). Returns every violation, in a fixed
 * order (length first, then upper, lower, digit); an empty list means the password is accepted.
 * Throws RangeError only for an invalid policy (a configuration mistake), never for a password.
 */
export function checkPasswordPolicy(plain: string, policy: PasswordPolicy = {}): PolicyViolation[] {
  const { minLength, maxLength, requireClasses } = resolvePolicy(policy);
  const text = normalise(typeof plain === 'string' ? plain : '');
  let length = 0;
  for (const _ of text) length++;
  return violations('Password', length, 'characters', minLength, maxLength, requireClasses, UNICODE_CLASSES, text);
}

/**
 * Checks a user-supplied robot secret by Harbor's `IsValidSec`: 8 to 128 bytes (Go's `len`, so
 * UTF-8 bytes) with at least one ASCII lowercase letter, one ASCII uppercase letter and one ASCII
 * digit. Returns the violations; an empty list means the secret is accepted.
 */
export function checkRobotSecret(plain: string): PolicyViolation[] {
  const text = typeof plain === 'string' ? plain : '';
  return violations('Secret', Buffer.byteLength(text, 'utf8'), 'bytes', 8, 128, ALL_CLASSES, ASCII_CLASSES, text);
}

const SECRET_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

/**
 * A random robot (or CLI) secret: `length` characters (32 to 128, default 32) drawn uniformly from
 * [A-Za-z0-9] by the system CSPRNG, about 5.95 bits each (190 bits at 32). Draws are repeated
 * until the secret has an upper, a lower and a digit (as Harbor's CreateSec does), so it always
 * passes both `checkRobotSecret` and the default password policy; at 32 characters about one
 * draw in 280 lacks a digit and is redrawn.
 */
export function generateSecret(length = 32): string {
  if (!Number.isInteger(length) || length < 32 || length > 128) throw new RangeError(`secret length must be an integer from 32 to 128, got ${length}`);
  for (;;) {
    let secret = '';
    for (let i = 0; i < length; i++) secret += SECRET_ALPHABET[randomInt(SECRET_ALPHABET.length)];
    if (checkRobotSecret(secret).length === 0) return secret;
  }
}
