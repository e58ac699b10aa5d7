/**
 * Docker registry bearer tokens (distribution's docs/spec/auth/jwt.md, as Harbor issues them):
 * ES256 JWTs with `access: [{type, name, actions}]`, signed by one P-256 key that lives in a file
 * so tokens stay valid across restarts and across nodes that share the file.
 *
 * Nothing here knows HTTP or the database: the token endpoint parses scopes (scopes.ts), asks
 * `grant` with a callback over the RBAC function, and calls `issue`; the /v2 auth hook calls `verify`.
 */
import { createPrivateKey, createPublicKey, type KeyObject, randomBytes } from 'node:crypto';
import { chmod, link, mkdir, readFile, unlink, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { type CryptoKey, calculateJwkThumbprint, errors as joseErrors, exportJWK, exportPKCS8, generateKeyPair, type JWK, type JWTPayload, jwtVerify, SignJWT } from 'jose';
import type { ResourceAccess } from './scopes.ts';

export interface TokenServiceOptions {
  /** PEM file holding the ES256 (P-256) private key; created with mode 0600 when missing. */
  readonly keyFile: string;
  /** Audience of issued tokens and the `service` of the challenge. */
  readonly service?: string;
  readonly issuer?: string;
  readonly lifetimeSeconds?: number;
  /** Milliseconds since the epoch; injectable for tests. */
  readonly now?: () => number;
  /** Most verified tokens remembered at once. */
  readonly cacheSize?: number;
}

/** A token access entry: what the holder may do on one resource. */
export interface TokenAccess {
  readonly type: string;
  readonly name: string;
  readonly actions: readonly string[];
}

/** The body of a successful GET /service/token. */
export interface IssuedToken {
  readonly token: string;
  /** The same token, for OAuth2-style clients (containerd reads this one). */
  readonly access_token: string;
  readonly expires_in: number;
  /** RFC 3339. */
  readonly issued_at: string;
}

export interface VerifiedToken {
  /** The `sub` claim: the user or robot name, empty for an anonymous caller. */
  readonly subject: string;
  readonly access: readonly TokenAccess[];
  /** `iat`, seconds since the epoch: lets the caller refuse tokens older than a project they name (Harbor does). */
  readonly issuedAt: number;
  /** Expiry, seconds since the epoch. */
  readonly expiresAt: number;
}

export type TokenErrorReason =
  | 'malformed'
  | 'unsupported algorithm'
  | 'bad signature'
  | 'wrong issuer'
  | 'wrong audience'
  | 'expired'
  | 'not yet valid';

/** A bearer token that must be refused. The /v2 auth hook answers it with 401 and a fresh challenge. */
export class TokenError extends Error {
  readonly reason: TokenErrorReason;

  constructor(reason: TokenErrorReason, detail?: string) {
    super(detail ? `invalid token (${reason}): ${detail}` : `invalid token (${reason})`);
    this.name = 'TokenError';
    this.reason = reason;
  }
}

/** The signing key file exists but cannot be used. Never replaced silently: tokens and trust hang on it. */
export class TokenKeyError extends Error {
  readonly keyFile: string;

  constructor(keyFile: string, reason: string, options?: { cause?: unknown }) {
    super(`token signing key ${keyFile}: ${reason}`, options);
    this.name = 'TokenKeyError';
    this.keyFile = keyFile;
  }
}

/** Time claims may be off by this much between nodes (Harbor's common.JwtLeeway). */
export const CLOCK_LEEWAY_SECONDS = 60;
/** Longer strings are no token of ours; refusing them early keeps junk out of the cache. */
const MAX_TOKEN_LENGTH = 16 * 1024;
const ALGORITHM = 'ES256';

interface SigningKey {
  readonly privateKey: CryptoKey;
  readonly publicKey: CryptoKey;
  readonly publicJwk: JWK;
  readonly kid: string;
}

interface CacheEntry {
  readonly verified: VerifiedToken;
  readonly notBefore: number;
}

export class TokenService {
  readonly service: string;
  readonly issuer: string;
  readonly lifetimeSeconds: number;
  readonly #keyFile: string;
  readonly #now: () => number;
  readonly #cacheSize: number;
  readonly #cache = new Map<string, CacheEntry>();
  #key: Promise<SigningKey> | undefined;

  constructor(options: TokenServiceOptions) {
    this.service = options.service ?? 'berth';
    this.issuer = options.issuer ?? 'berth-token-issuer';
    this.lifetimeSeconds = options.lifetimeSeconds ?? 1800;
    this.#keyFile = options.keyFile;
    this.#now = options.now ?? Date.now;
    this.#cacheSize = options.cacheSize ?? 10_000;
    if (!Number.isInteger(this.lifetimeSeconds) || this.lifetimeSeconds <= 0) {
      throw new RangeError(`token lifetime must be a positive whole number of seconds, got ${this.lifetimeSeconds}`);
    }
  }

  /** The key id (`kid`) put in every token header: the RFC 7638 thumbprint of the public key. */
  async keyId(): Promise<string> {
    return (await this.#signingKey()).kid;
  }

  /** The public key as a JWK (with its kid), for publishing or for another verifier. */
  async publicJwk(): Promise<JWK> {
    const key = await this.#signingKey();
    return { ...key.publicJwk, kid: key.kid, alg: ALGORITHM, use: 'sig' };
  }

  /** Signs a token for `subjectName` (empty for anonymous) carrying exactly `access`. */
  async issue(subjectName: string, access: readonly TokenAccess[]): Promise<IssuedToken> {
    const key = await this.#signingKey();
    const issuedAt = Math.floor(this.#now() / 1000);
    const token = await new SignJWT({
      access: access.map((a) => ({ type: a.type, name: a.name, actions: [...a.actions] })),
    })
      .setProtectedHeader({ alg: ALGORITHM, typ: 'JWT', kid: key.kid })
      .setIssuer(this.issuer)
      .setSubject(subjectName)
      .setAudience(this.service)
      .setIssuedAt(issuedAt)
      .setNotBefore(issuedAt)
      .setExpirationTime(issuedAt + this.lifetimeSeconds)
      .setJti(randomBytes(12).toString('base64url'))
      .sign(key.privateKey);
    return {
      token,
      access_token: token,
      expires_in: this.lifetimeSeconds,
      issued_at: new Date(issuedAt * 1000).toISOString().replace('.000Z', 'Z'),
    };
  }

  /**
   * Checks a bearer token and returns who holds it and what it grants. Throws TokenError.
   * A token verified before is answered from memory until it expires; its time window is still
   * checked on every call.
   */
  async verify(token: string): Promise<VerifiedToken> {
    const nowSeconds = this.#now() / 1000;
    const cached = this.#cache.get(token);
    if (cached) {
      if (nowSeconds > cached.verified.expiresAt + CLOCK_LEEWAY_SECONDS) {
        this.#cache.delete(token);
        throw new TokenError('expired');
      }
      if (nowSeconds < cached.notBefore - CLOCK_LEEWAY_SECONDS) throw new TokenError('not yet valid');
      return cached.verified;
    }
    if (typeof token !== 'string' || token.length === 0 || token.length > MAX_TOKEN_LENGTH) {
      throw new TokenError('malformed', 'empty or oversized');
    }
    const key = await this.#signingKey();
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, key.publicKey, {
        algorithms: [ALGORITHM],
        issuer: this.issuer,
        audience: this.service,
        clockTolerance: CLOCK_LEEWAY_SECONDS,
        currentDate: new Date(this.#now()),
        requiredClaims: ['exp', 'iat', 'sub'],
      }));
    } catch (err) {
      throw toTokenError(err);
    }
    const verified = Object.freeze({
      subject: payload.sub as string,
      access: parseAccessClaim(payload['access']),
      issuedAt: payload.iat as number,
      expiresAt: payload.exp as number,
    });
    this.#remember(token, { verified, notBefore: typeof payload.nbf === 'number' ? payload.nbf : Number.NEGATIVE_INFINITY });
    return verified;
  }

  #remember(token: string, entry: CacheEntry): void {
    if (this.#cache.size >= this.#cacheSize) {
      // Drop what has expired; if nothing has, drop the oldest entry (insertion order).
      const cutoff = this.#now() / 1000 - CLOCK_LEEWAY_SECONDS;
      for (const [t, e] of this.#cache) if (e.verified.expiresAt < cutoff) this.#cache.delete(t);
      if (this.#cache.size >= this.#cacheSize) {
        const oldest = this.#cache.keys().next();
        if (!oldest.done) this.#cache.delete(oldest.value);
      }
    }
    this.#cache.set(token, entry);
  }

  #signingKey(): Promise<SigningKey> {
    if (!this.#key) {
      this.#key = loadOrCreateKey(this.#keyFile);
      // A failed load is not remembered: fixing the file and retrying works without a restart.
      this.#key.catch(() => {
        this.#key = undefined;
      });
    }
    return this.#key;
  }
}

/**
 * The intersection of what was requested and what the subject may do: each requested action is
 * kept when `mayDo(type, name, action)` says so; resources left with no action are dropped. An
 * unknown project is simply a resource the callback refuses everything on, never an error.
 */
export function grant(
  requested: readonly ResourceAccess[],
  mayDo: (type: ResourceAccess['type'], name: string, action: string) => boolean,
): ResourceAccess[] {
  const granted: ResourceAccess[] = [];
  for (const r of requested) {
    const actions = [...new Set(r.actions)].filter((action) => mayDo(r.type, r.name, action));
    if (actions.length > 0) granted.push({ type: r.type, name: r.name, actions });
  }
  return granted;
}

function toTokenError(err: unknown): TokenError {
  if (err instanceof joseErrors.JWTExpired) return new TokenError('expired');
  if (err instanceof joseErrors.JWTClaimValidationFailed) {
    switch (err.claim) {
      case 'nbf':
      case 'iat':
        return err.reason === 'check_failed' ? new TokenError('not yet valid') : new TokenError('malformed', err.message);
      case 'aud':
        return err.reason === 'check_failed' ? new TokenError('wrong audience') : new TokenError('malformed', err.message);
      case 'iss':
        return err.reason === 'check_failed' ? new TokenError('wrong issuer') : new TokenError('malformed', err.message);
      default:
        return new TokenError('malformed', err.message);
    }
  }
  if (err instanceof joseErrors.JOSEAlgNotAllowed || err instanceof joseErrors.JOSENotSupported) {
    return new TokenError('unsupported algorithm', err.message);
  }
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) return new TokenError('bad signature');
  if (err instanceof joseErrors.JOSEError) return new TokenError('malformed', err.message);
  // jose reports some garbage (bad base64, a non-object payload) as plain errors.
  return new TokenError('malformed', err instanceof Error ? err.message : String(err));
}

function parseAccessClaim(claim: unknown): readonly TokenAccess[] {
  if (claim === undefined) return Object.freeze([]);
  if (!Array.isArray(claim)) throw new TokenError('malformed', 'access claim is not a list');
  return Object.freeze(
    claim.map((entry: unknown) => {
      const e = entry as Partial<Record<'type' | 'name' | 'actions', unknown>> | null;
      if (
        typeof e !== 'object' ||
        e === null ||
        typeof e.type !== 'string' ||
        typeof e.name !== 'string' ||
        !Array.isArray(e.actions) ||
        !e.actions.every((a) => typeof a === 'string')
      ) {
        throw new TokenError('malformed', 'access entry is not {type, name, actions}');
      }
      return Object.freeze({ type: e.type, name: e.name, actions: Object.freeze([...(e.actions as string[])]) });
    }),
  );
}

function isEnoent(err: unknown): boolean {
  return (err as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';
}

async function loadOrCreateKey(keyFile: string): Promise<SigningKey> {
  let pem: string;
  try {
    pem = await readFile(keyFile, 'utf8');
  } catch (err) {
    if (!isEnoent(err)) throw new TokenKeyError(keyFile, `cannot read: ${(err as Error).message}`, { cause: err });
    pem = await createKeyFile(keyFile);
  }
  return importSigningKey(keyFile, pem);
}

/**
 * Generates a P-256 key and publishes it whole or not at all: written to a private temporary file,
 * then hard-linked to its name, which fails if another process created the key first (that key wins).
 */
async function createKeyFile(keyFile: string): Promise<string> {
  const { privateKey } = await generateKeyPair(ALGORITHM, { extractable: true });
  const text = await exportPKCS8(privateKey);
  await mkdir(dirname(keyFile), { recursive: true, mode: 0o700 });
  const temporary = `${keyFile}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  await writeFile(temporary, text, { mode: 0o600, flag: 'wx' });
  try {
    await chmod(temporary, 0o600);
    await link(temporary, keyFile);
    return text;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return readFile(keyFile, 'utf8');
    throw new TokenKeyError(keyFile, `cannot write: ${(err as Error).message}`, { cause: err });
  } finally {
    await unlink(temporary).catch(() => undefined);
  }
}

async function importSigningKey(keyFile: string, pem: string): Promise<SigningKey> {
  let privateObject: KeyObject;
  try {
    // Accepts PKCS#8 ("PRIVATE KEY") and SEC1 ("EC PRIVATE KEY", from `openssl ecparam -genkey`).
    privateObject = createPrivateKey({ key: pem, format: 'pem' });
  } catch (err) {
    throw new TokenKeyError(keyFile, 'not a readable PEM private key (the file is corrupt; restore it or remove it to generate a new key, which invalidates issued tokens)', { cause: err });
  }
  const curve = privateObject.asymmetricKeyDetails?.namedCurve;
  if (privateObject.asymmetricKeyType !== 'ec' || curve !== 'prime256v1') {
    throw new TokenKeyError(keyFile, `expected an EC P-256 key for ES256, found ${privateObject.asymmetricKeyType}${curve ? ` (${curve})` : ''}`);
  }
  const publicObject = createPublicKey(privateObject);
  const algorithm = { name: 'ECDSA', namedCurve: 'P-256' };
  const publicJwk = await exportJWK(publicObject);
  return {
    privateKey: privateObject.toCryptoKey(algorithm, false, ['sign']) as CryptoKey,
    publicKey: publicObject.toCryptoKey(algorithm, true, ['verify']) as CryptoKey,
    publicJwk,
    kid: await calculateJwkThumbprint(publicJwk, 'sha256'),
  };
}
