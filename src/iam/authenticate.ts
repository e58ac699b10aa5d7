/**
 * Turns credentials into a Subject: HTTP Basic (a user's password or a robot's secret), a web
 * session cookie, or a registry bearer token. Failed logins are rate-limited per name and per
 * client address and never say whether the name exists.
 *
 * Verifying an argon2 hash costs tens of milliseconds by design, and CI clients send Basic
 * credentials on every request, so a successful check is remembered for a short while under a
 * SHA-256 of the credentials (never the password itself). Password changes, robot changes and
 * deletions clear the cache through `forget`, on every node (src/platform/cache/generations.ts).
 */
import { hash } from 'node:crypto';
import { ApiError } from '../platform/http/api.ts';
import { LoginLimiter } from './login-limiter.ts';
import type { Subject } from './rbac.ts';

export type UserSubject = Extract<Subject, { kind: 'user' }>;
export type RobotSubject = Extract<Subject, { kind: 'robot' }>;

/** Local users (src/iam/users.ts). */
export interface UserDirectory {
  /** The user when the password is right; undefined for a wrong password or an unknown name (in about the same time). */
  checkPassword(username: string, password: string): Promise<UserSubject | undefined>;
  /** The user by name, for tokens and sessions that carry only the name or id. */
  subjectByName(username: string): Promise<UserSubject | undefined>;
}

/** Robot accounts (src/iam/robots.ts). */
export interface RobotDirectory {
  /** Names that belong to robots (they start with the configured prefix). */
  isRobotName(name: string): boolean;
  /** The robot when the secret is right and it is enabled and unexpired. */
  checkSecret(name: string, secret: string): Promise<RobotSubject | undefined>;
  /** An enabled, unexpired robot by name. */
  subjectByName(name: string): Promise<RobotSubject | undefined>;
}

/** Web sessions (src/iam/sessions.ts). */
export interface SessionDirectory {
  /** The session's user and CSRF token, when the cookie names a live session (and refreshes its idle timer). */
  resolve(cookieValue: string): Promise<{ subject: UserSubject; csrfToken: string } | undefined>;
}

export interface AuthenticatorOptions {
  readonly users: UserDirectory;
  readonly robots: RobotDirectory;
  readonly limiter?: LoginLimiter;
  /** How long a verified Basic credential is remembered, in milliseconds. */
  readonly cacheMs?: number;
  readonly now?: () => number;
  /** Told of every password or secret actually checked (not cached logins), for the audit log. */
  readonly onLoginChecked?: (check: LoginCheck) => void;
}

/** The client a login came from, beyond its address: what the audit log records of it. */
export interface LoginClient {
  readonly userAgent?: string | undefined;
  readonly requestId?: string | undefined;
}

/** A password or secret checked, as told to `onLoginChecked`. */
export interface LoginCheck extends LoginClient {
  readonly name: string;
  readonly kind: 'user' | 'robot';
  readonly address: string;
  readonly ok: boolean;
  readonly reason?: string;
}

/** The user agent and request id of a request, for `Authenticator.login`. */
export function loginClientOf(request: { readonly id: string; readonly headers: { readonly 'user-agent'?: string | undefined } }): LoginClient {
  const userAgent = request.headers['user-agent'];
  return { userAgent: typeof userAgent === 'string' ? userAgent : undefined, requestId: request.id };
}

interface CachedLogin {
  readonly subject: Subject;
  readonly until: number;
}

/** Parses `Authorization: Basic …`; undefined when the header is another scheme or malformed. */
export function parseBasic(header: string | undefined): { username: string; password: string } | undefined {
  if (!header || !/^basic /i.test(header)) return undefined;
  const decoded = Buffer.from(header.slice(6).trim(), 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon <= 0) return undefined;
  return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

export function parseBearer(header: string | undefined): string | undefined {
  if (!header || !/^bearer /i.test(header)) return undefined;
  const token = header.slice(7).trim();
  return token === '' ? undefined : token;
}

export class Authenticator {
  readonly #users: UserDirectory;
  readonly #robots: RobotDirectory;
  readonly #limiter: LoginLimiter;
  readonly #cacheMs: number;
  readonly #now: () => number;
  readonly #cache = new Map<string, CachedLogin>();
  /** Counts forget() calls: a check that started before one is not cached after it. */
  #generation = 0;
  readonly #onLoginChecked: AuthenticatorOptions['onLoginChecked'];

  constructor(options: AuthenticatorOptions) {
    this.#users = options.users;
    this.#robots = options.robots;
    this.#limiter = options.limiter ?? new LoginLimiter();
    this.#cacheMs = options.cacheMs ?? 60_000;
    this.#now = options.now ?? Date.now;
    this.#onLoginChecked = options.onLoginChecked;
  }

  /**
   * A user or robot from a name and password. Throws 429 while the name or address is locked out
   * and 401 for wrong credentials; the message is the same whether or not the name exists.
   * `client` (the request's user agent and id) is only passed on to `onLoginChecked`.
   */
  async login(username: string, password: string, clientAddress: string, client: LoginClient = {}): Promise<Exclude<Subject, { kind: 'anonymous' }>> {
    const key = cacheKey(username, password);
    const cached = this.#cache.get(key);
    if (cached && cached.until > this.#now()) return cached.subject as Exclude<Subject, { kind: 'anonymous' }>;
    const decision = this.#limiter.check(username, clientAddress);
    const kind = this.#robots.isRobotName(username) ? 'robot' : 'user';
    if (!decision.allowed) {
      this.#onLoginChecked?.({ ...client, name: username, kind, address: clientAddress, ok: false, reason: 'too many failed logins' });
      throw new ApiError('TOO_MANY_REQUESTS', `too many failed logins; try again in ${decision.retryAfterSeconds} s`, { 'retry-after': String(decision.retryAfterSeconds) });
    }
    const generation = this.#generation;
    const subject = kind === 'robot' ? await this.#robots.checkSecret(username, password) : await this.#users.checkPassword(username, password);
    if (!subject) {
      this.#limiter.recordFailure(username, clientAddress);
      this.#onLoginChecked?.({ ...client, name: username, kind, address: clientAddress, ok: false, reason: 'invalid username or password' });
      throw new ApiError('UNAUTHORIZED', 'invalid username or password');
    }
    this.#limiter.recordSuccess(username, clientAddress);
    this.#onLoginChecked?.({ ...client, name: username, kind, address: clientAddress, ok: true });
    // A change of credentials while the hash was being checked may have made this answer stale.
    if (generation !== this.#generation) return subject;
    if (this.#cache.size >= 10_000) this.#cache.clear();
    this.#cache.set(key, { subject, until: this.#now() + this.#cacheMs });
    return subject;
  }

  /** The subject a token's `sub` names: a robot, a user, or anonymous for an empty name. Undefined when gone. */
  async subjectByName(name: string): Promise<Subject | undefined> {
    if (name === '') return { kind: 'anonymous' };
    return this.#robots.isRobotName(name) ? this.#robots.subjectByName(name) : this.#users.subjectByName(name);
  }

  /** Whether a name belongs to a robot (by its prefix). */
  isRobotName(name: string): boolean {
    return this.#robots.isRobotName(name);
  }

  /** Drops every remembered login (after a password change, a robot update, a deletion …). */
  forget(): void {
    this.#generation++;
    this.#cache.clear();
  }
}

/**
 * One-shot `hash` (no Hash object per call: this runs on every Basic-authenticated request). The
 * bytes hashed are the same as updating with the name, a NUL and the password in turn.
 */
function cacheKey(username: string, password: string): string {
  return hash('sha256', `${username}\0${password}`, 'base64');
}
