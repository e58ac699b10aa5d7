/**
 * Web sessions for the portal: POST /c/login sets an HttpOnly SameSite cookie, state-changing
 * API calls made with it need the CSRF token (enforced by the API auth hook), GET /c/log_out ends it.
 *
 * The cookie is 32 random bytes; the database keeps only its SHA-256, so a leaked sessions table
 * yields no usable cookie. A session ends after `timeoutMinutes` without a request; resolving it
 * moves that deadline, but writes at most once a minute per session, not on every request.
 */
import { createHash, randomBytes } from 'node:crypto';
import { parse as parseQueryString } from 'node:querystring';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Kysely } from 'kysely';
import type { Database } from '../platform/db/schema.ts';
import { ApiError, badRequest, sendApiError, toApiError } from '../platform/http/api.ts';
import { cronEvery } from '../platform/jobs/scheduler.ts';
import type { JobService } from '../platform/jobs/service.ts';
import { type Authenticator, loginClientOf, type SessionDirectory, type UserSubject } from './authenticate.ts';

export const SESSION_COOKIE = 'sid';
export const CSRF_HEADER = 'x-harbor-csrf-token';

/** Resolving a session writes its new deadline at most this often. */
const REFRESH_EVERY_MS = 60_000;
/** base64url of 32 bytes. */
const COOKIE_VALUE = /^[A-Za-z0-9_-]{43}$/;

export interface SessionServiceOptions {
  readonly db: Kysely<Database>;
  readonly timeoutMinutes: number;
  readonly now?: () => number;
}

function sessionId(cookieValue: string): string {
  return createHash('sha256').update(cookieValue).digest('hex');
}

/** The value of the session cookie in a Cookie header, or undefined. */
export function readSessionCookie(header: string | undefined): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    if (part.slice(0, eq).trim() !== SESSION_COOKIE) continue;
    const value = part.slice(eq + 1).trim();
    if (value !== '') return value;
  }
  return undefined;
}

export class SessionService implements SessionDirectory {
  readonly #db: Kysely<Database>;
  readonly #timeoutMs: number;
  readonly #now: () => number;

  constructor(options: SessionServiceOptions) {
    if (!Number.isFinite(options.timeoutMinutes) || options.timeoutMinutes <= 0) throw new RangeError(`session timeout must be positive, got ${options.timeoutMinutes}`);
    this.#db = options.db;
    this.#timeoutMs = options.timeoutMinutes * 60_000;
    this.#now = options.now ?? Date.now;
  }

  /** Starts a session for the user: the cookie value to hand out and the session's CSRF token. */
  async create(userId: number): Promise<{ cookieValue: string; csrfToken: string }> {
    const cookieValue = randomBytes(32).toString('base64url');
    const csrfToken = randomBytes(32).toString('base64url');
    const now = this.#now();
    await this.#db
      .insertInto('sessions')
      .values({ id: sessionId(cookieValue), user_id: userId, csrf_token: csrfToken, created_at: now, last_seen_at: now, expires_at: now + this.#timeoutMs })
      .execute();
    return { cookieValue, csrfToken };
  }

  /** The session's user (with its current sysadmin flag) and CSRF token while the session lives; moves its idle deadline. */
  async resolve(cookieValue: string): Promise<{ subject: UserSubject; csrfToken: string } | undefined> {
    if (typeof cookieValue !== 'string' || !COOKIE_VALUE.test(cookieValue)) return undefined;
    const id = sessionId(cookieValue);
    const now = this.#now();
    const row = await this.#db
      .selectFrom('sessions')
      .innerJoin('users', 'users.id', 'sessions.user_id')
      .select(['sessions.csrf_token', 'sessions.last_seen_at', 'users.id as user_id', 'users.username', 'users.sysadmin'])
      .where('sessions.id', '=', id)
      .where('sessions.expires_at', '>', now)
      .executeTakeFirst();
    if (!row) return undefined;
    if (now - Number(row.last_seen_at) >= REFRESH_EVERY_MS) {
      await this.#db.updateTable('sessions').set({ last_seen_at: now, expires_at: now + this.#timeoutMs }).where('id', '=', id).execute();
    }
    return {
      subject: { kind: 'user', id: Number(row.user_id), name: row.username, sysadmin: Number(row.sysadmin) === 1 },
      csrfToken: row.csrf_token,
    };
  }

  /** Ends the session the cookie names (nothing happens when there is none). */
  async destroy(cookieValue: string): Promise<void> {
    if (typeof cookieValue !== 'string' || !COOKIE_VALUE.test(cookieValue)) return;
    await this.#db.deleteFrom('sessions').where('id', '=', sessionId(cookieValue)).execute();
  }

  /** Ends every session of a user, except the one `keepCookieValue` names. */
  async destroyAllOf(userId: number, keepCookieValue?: string): Promise<number> {
    let query = this.#db.deleteFrom('sessions').where('user_id', '=', userId);
    if (keepCookieValue !== undefined) query = query.where('id', '!=', sessionId(keepCookieValue));
    const result = await query.executeTakeFirst();
    return Number(result.numDeletedRows);
  }

  /** Deletes expired sessions; returns how many. For a periodic job. */
  async purgeExpired(): Promise<number> {
    const result = await this.#db.deleteFrom('sessions').where('expires_at', '<=', this.#now()).executeTakeFirst();
    return Number(result.numDeletedRows);
  }
}

/** Deletes expired web sessions (idempotent; safe on any node). */
export const PURGE_SESSIONS_JOB = 'iam.purge-sessions';

/** The job that deletes expired sessions, and its schedule (every `intervalSeconds`, default 10 minutes). */
export function registerSessionJobs(jobs: JobService, deps: { sessions: SessionService; intervalSeconds?: number }): void {
  jobs.workers.register(PURGE_SESSIONS_JOB, async (_payload, { log }) => {
    log(`deleted ${await deps.sessions.purgeExpired()} expired web sessions`);
  });
  jobs.schedule({ name: PURGE_SESSIONS_JOB, cron: cronEvery(deps.intervalSeconds ?? 600), kind: PURGE_SESSIONS_JOB });
}

export interface SessionRoutesDeps {
  readonly sessions: SessionService;
  readonly authenticator: Authenticator;
  /** config server.externalUrl: when it is https, the cookie is always `Secure`. */
  readonly externalUrl?: string;
}

const LOGIN_FIELDS = new Set(['principal', 'username', 'password']);
const FORM_BODY_LIMIT = 16 * 1024;

/** principal (Harbor's form field) or username, and password, from a form or JSON body. */
function credentialsOf(body: unknown): { username: string; password: string } {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw badRequest('send principal and password, as a form or a JSON object');
  const fields = body as Record<string, unknown>;
  for (const key of Object.keys(fields)) {
    if (!LOGIN_FIELDS.has(key)) throw badRequest(`unknown field "${key}"; send principal (or username) and password`);
  }
  if (fields.principal !== undefined && fields.username !== undefined) throw badRequest('send either principal or username, not both');
  const username = fields.principal ?? fields.username;
  const password = fields.password;
  if (typeof username !== 'string' || username === '') throw badRequest('principal (or username) is required and must be a string');
  if (typeof password !== 'string' || password === '') throw badRequest('password is required and must be a string');
  return { username, password };
}

function isHttps(request: FastifyRequest, externalUrl: string | undefined): boolean {
  if (externalUrl?.toLowerCase().startsWith('https:')) return true;
  if (request.protocol === 'https') return true;
  const forwarded = request.headers['x-forwarded-proto'];
  const first = (Array.isArray(forwarded) ? forwarded[0] : forwarded)?.split(',')[0]?.trim().toLowerCase();
  return first === 'https';
}

function cookieAttributes(secure: boolean): string {
  return `Path=/; HttpOnly; SameSite=Strict${secure ? '; Secure' : ''}`;
}

/** POST /c/login, GET|POST /c/log_out, on the root scope, in their own plugin (form and JSON bodies, Harbor's error shape). */
export async function sessionRoutes(app: FastifyInstance, deps: SessionRoutesDeps): Promise<void> {
  await app.register(async (scope) => {
    // Harbor's error shape for these routes (the root scope answers in the OCI one).
    scope.setErrorHandler((err, request, reply) => {
      const error = toApiError(err);
      if (error.status >= 500) request.log.error({ err }, 'unhandled error');
      return sendApiError(reply, error);
    });
    scope.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit: FORM_BODY_LIMIT }, (_request, body, done) => {
      const parsed = parseQueryString(body as string);
      const fields: Record<string, unknown> = {};
      for (const [key, value] of Object.entries(parsed)) {
        if (Array.isArray(value)) {
          done(badRequest(`field "${key}" was given more than once`), undefined);
          return;
        }
        fields[key] = value;
      }
      done(null, fields);
    });

    scope.post('/c/login', { bodyLimit: FORM_BODY_LIMIT }, async (request, reply) => {
      const { username, password } = credentialsOf(request.body);
      const subject = await deps.authenticator.login(username, password, request.ip, loginClientOf(request));
      if (subject.kind !== 'user') throw new ApiError('FORBIDDEN', 'robot accounts cannot log in to the web portal');
      const previous = readSessionCookie(request.headers.cookie);
      if (previous) await deps.sessions.destroy(previous);
      const { cookieValue, csrfToken } = await deps.sessions.create(subject.id);
      return reply
        .header('set-cookie', `${SESSION_COOKIE}=${cookieValue}; ${cookieAttributes(isHttps(request, deps.externalUrl))}`)
        .header(CSRF_HEADER, csrfToken)
        .header('cache-control', 'no-store')
        .send({ csrf_token: csrfToken });
    });

    const logout = async (request: FastifyRequest, reply: FastifyReply) => {
      const cookie = readSessionCookie(request.headers.cookie);
      if (cookie) await deps.sessions.destroy(cookie);
      return reply
        .header('set-cookie', `${SESSION_COOKIE}=; ${cookieAttributes(isHttps(request, deps.externalUrl))}; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT`)
        .header('cache-control', 'no-store')
        .send();
    };
    scope.get('/c/log_out', logout);
    scope.post('/c/log_out', logout);
  });
}
