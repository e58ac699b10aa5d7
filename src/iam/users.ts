/**
 * Local users: the store and use cases behind /api/v2.0/users and `berth user`.
 *
 * Rules that hold whoever asks (the API, the CLI, the first start):
 * - usernames follow Harbor's rule (1–255 characters, none of , " ~ # $ %) plus what a login needs:
 *   no colon (HTTP Basic splits there), no control characters, no leading or trailing spaces, not
 *   the robot prefix, and not a case-insensitive twin of an existing name ("Admin" beside "admin");
 * - an email is optional, but valid and unique when given;
 * - passwords pass the configured policy and are stored as argon2id hashes only;
 * - the user `admin` (the account the first start creates, Harbor's user 1) cannot be deleted, and
 *   the last system administrator can neither be deleted nor lose the flag (412, nothing changed).
 *   Both checks run under a lock on the system-admin rows, so two concurrent demotions cannot
 *   leave the registry without an administrator.
 */
import { type Kysely, type Selectable, sql, type Transaction } from 'kysely';
import { ApiError, badRequest, conflict, notFound } from '../platform/http/api.ts';
import type { Database, UserTable } from '../platform/db/schema.ts';
import type { UserDirectory, UserSubject } from './authenticate.ts';
import { checkPasswordPolicy, generateSecret, hashPassword, needsRehash, type PasswordPolicy, verifyAgainstNothing, verifyPassword } from './passwords.ts';

export interface UserServiceOptions {
  readonly db: Kysely<Database>;
  readonly passwordPolicy: PasswordPolicy;
  /** Called after a password, sysadmin flag or user changes, so cached logins are dropped. */
  readonly onCredentialsChanged?: () => void;
  readonly now?: () => number;
  /** Names starting with this belong to robots (config auth.robotNamePrefix); no user may take one. Default `robot$`. */
  readonly robotPrefix?: string;
}

/** The name of the account the first start creates; it cannot be deleted. */
export const ADMIN_USERNAME = 'admin';

/** A user as the API and the CLI see it: never the password hash. */
export interface UserRecord {
  readonly id: number;
  readonly username: string;
  readonly email: string | null;
  readonly realname: string;
  readonly comment: string;
  readonly sysadmin: boolean;
  /** Epoch milliseconds. */
  readonly createdAt: number;
  readonly updatedAt: number;
}

export interface NewUser {
  readonly username: string;
  readonly password: string;
  readonly email?: string | undefined;
  readonly realname?: string | undefined;
  readonly comment?: string | undefined;
  readonly sysadmin?: boolean | undefined;
}

export interface ProfileUpdate {
  readonly email?: string | undefined;
  readonly realname?: string | undefined;
  readonly comment?: string | undefined;
}

/** A filter on a text column: equal to, or containing (case-insensitively), the value. */
export interface TextMatch {
  readonly kind: 'exact' | 'fuzzy';
  readonly value: string;
}

export const USER_SORT_FIELDS = ['user_id', 'username', 'email', 'realname', 'creation_time', 'update_time'] as const;
export type UserSortField = (typeof USER_SORT_FIELDS)[number];

export interface UserListQuery {
  readonly username?: TextMatch | undefined;
  readonly email?: TextMatch | undefined;
  readonly sort?: ReadonlyArray<{ readonly field: UserSortField; readonly desc: boolean }> | undefined;
  readonly offset: number;
  readonly limit: number;
}

export const USERNAME_MAX = 255;
export const EMAIL_MAX = 255;
export const REALNAME_MAX = 255;
export const COMMENT_MAX = 255;

const SORT_COLUMNS: Record<UserSortField, 'id' | 'username' | 'email' | 'realname' | 'created_at' | 'updated_at'> = {
  user_id: 'id',
  username: 'username',
  email: 'email',
  realname: 'realname',
  creation_time: 'created_at',
  update_time: 'updated_at',
};

// Harbor's rule (IsContainIllegalChar with , ~ # $ %, and the portal's ") plus a colon, which
// HTTP Basic credentials cannot carry in a name.
const USERNAME_ILLEGAL = /[,"~#$%:]/;
const REALNAME_ILLEGAL = /[,~#$%]/;
const CONTROL = /\p{Cc}/u;
// The shape of Harbor's email check, simplified: a local part without spaces or specials, a
// domain of dot-separated labels ending in a top-level name of two or more letters.
const EMAIL = /^[^\s@<>()[\]\\,;:"]+@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,}$/;

function length(text: string): number {
  let n = 0;
  for (const _ of text) n++;
  return n;
}

/** Why `username` cannot name a new user, or undefined when it can. */
export function usernameProblem(username: string, robotPrefix = 'robot$'): string | undefined {
  if (typeof username !== 'string' || username.length === 0) return 'username must not be empty';
  if (length(username) > USERNAME_MAX) return `username must be at most ${USERNAME_MAX} characters long`;
  if (username.trim() !== username) return 'username must not start or end with spaces';
  if (USERNAME_ILLEGAL.test(username)) return 'username must not contain any of , " ~ # $ % :';
  if (CONTROL.test(username)) return 'username must not contain control characters';
  if (robotPrefix !== '' && username.startsWith(robotPrefix)) return `username must not start with "${robotPrefix}", which names robot accounts`;
  return undefined;
}

/** Why `email` is not acceptable, or undefined when it is. */
export function emailProblem(email: string): string | undefined {
  if (length(email) > EMAIL_MAX) return `email must be at most ${EMAIL_MAX} characters long`;
  if (!EMAIL.test(email)) return `email "${email}" is not a valid address`;
  return undefined;
}

function realnameProblem(realname: string): string | undefined {
  if (length(realname) > REALNAME_MAX) return `realname must be at most ${REALNAME_MAX} characters long`;
  if (REALNAME_ILLEGAL.test(realname)) return 'realname must not contain any of , ~ # $ %';
  if (CONTROL.test(realname)) return 'realname must not contain control characters';
  return undefined;
}

function commentProblem(comment: string): string | undefined {
  if (length(comment) > COMMENT_MAX) return `comment must be at most ${COMMENT_MAX} characters long`;
  return undefined;
}

/** An empty or absent email is no email. */
function normaliseEmail(email: string | undefined | null): string | null {
  return email === undefined || email === null || email === '' ? null : email;
}

/** A unique-constraint violation from PostgreSQL (23505) or SQLite (SQLITE_CONSTRAINT_UNIQUE / _PRIMARYKEY). */
export function isUniqueViolation(err: unknown): boolean {
  const e = err as { code?: unknown; errcode?: unknown; message?: unknown } | null;
  if (e?.code === '23505') return true;
  if (e?.errcode === 2067 || e?.errcode === 1555) return true;
  return typeof e?.message === 'string' && e.message.includes('UNIQUE constraint failed');
}

/** `%`, `_` and the escape character itself, escaped for LIKE … ESCAPE '\'. */
function likePattern(value: string): string {
  return `%${value.toLowerCase().replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}

function toRecord(row: Selectable<UserTable>): UserRecord {
  return {
    id: Number(row.id),
    username: row.username,
    email: row.email,
    realname: row.realname,
    comment: row.comment,
    sysadmin: Number(row.sysadmin) === 1,
    createdAt: Number(row.created_at),
    updatedAt: Number(row.updated_at),
  };
}

function toSubject(row: { id: number; username: string; sysadmin: number }): UserSubject {
  return { kind: 'user', id: Number(row.id), name: row.username, sysadmin: Number(row.sysadmin) === 1 };
}

function policyError(violations: ReadonlyArray<{ message: string }>): ApiError {
  return badRequest(violations.map((v) => v.message).join(' '));
}

export class UserService implements UserDirectory {
  readonly #db: Kysely<Database>;
  readonly #policy: PasswordPolicy;
  readonly #changed: () => void;
  readonly #now: () => number;
  readonly #robotPrefix: string;

  constructor(options: UserServiceOptions) {
    this.#db = options.db;
    this.#policy = options.passwordPolicy;
    this.#changed = options.onCredentialsChanged ?? (() => {});
    this.#now = options.now ?? Date.now;
    this.#robotPrefix = options.robotPrefix ?? 'robot$';
    // A broken policy is a configuration mistake: say so at start, not at the first password.
    checkPasswordPolicy('', this.#policy);
  }

  // ── UserDirectory ────────────────────────────────────────────────────────

  async checkPassword(username: string, password: string): Promise<UserSubject | undefined> {
    const name = typeof username === 'string' ? username.normalize('NFC') : '';
    const row =
      name === ''
        ? undefined
        : await this.#db.selectFrom('users').select(['id', 'username', 'sysadmin', 'password_hash']).where('username', '=', name).executeTakeFirst();
    if (!row) {
      await verifyAgainstNothing(password);
      return undefined;
    }
    if (!(await verifyPassword(row.password_hash, password))) return undefined;
    if (needsRehash(row.password_hash)) {
      // Upgrade the stored hash to the current parameters; only if nobody changed it meanwhile.
      const fresh = await hashPassword(password);
      await this.#db.updateTable('users').set({ password_hash: fresh }).where('id', '=', row.id).where('password_hash', '=', row.password_hash).execute();
    }
    return toSubject(row);
  }

  async subjectByName(username: string): Promise<UserSubject | undefined> {
    if (typeof username !== 'string' || username === '') return undefined;
    const row = await this.#db.selectFrom('users').select(['id', 'username', 'sysadmin']).where('username', '=', username.normalize('NFC')).executeTakeFirst();
    return row ? toSubject(row) : undefined;
  }

  // ── first start ──────────────────────────────────────────────────────────

  /**
   * Creates `admin` (a system administrator; user 1 on a fresh database) when no user of that
   * name exists. An empty `password` generates one, which is returned so that the caller logs it
   * once. A configured password that fails the password policy is refused with an Error naming
   * BERTH_ADMIN_PASSWORD. Safe when several nodes start at once: one creates, the others see it.
   */
  async ensureAdmin(password: string): Promise<{ created: boolean; generatedPassword?: string }> {
    if (await this.#findByName(ADMIN_USERNAME)) return { created: false };
    const generated = password === '' ? generateSecret() : undefined;
    const plain = generated ?? password;
    const violations = checkPasswordPolicy(plain, this.#policy);
    if (violations.length > 0) {
      throw new Error(
        `the configured admin password (adminPassword / BERTH_ADMIN_PASSWORD) does not pass the password policy: ${violations.map((v) => v.message).join(' ')} Set a stronger one, or leave it empty to have one generated.`,
      );
    }
    try {
      await this.#insert({ username: ADMIN_USERNAME, password: plain, sysadmin: true, realname: 'system admin', comment: 'admin user' });
    } catch (err) {
      // Another node created it at the same moment: fine. Anything else in the way (a user
      // "Admin" made with the CLI before the first start) is for the operator to resolve.
      if (err instanceof ApiError && err.code === 'CONFLICT') {
        if (await this.#findByName(ADMIN_USERNAME)) return { created: false };
        throw new Error(`cannot create the ${ADMIN_USERNAME} user: ${err.message}`);
      }
      throw err;
    }
    return generated === undefined ? { created: true } : { created: true, generatedPassword: generated };
  }

  // ── reads ────────────────────────────────────────────────────────────────

  async get(id: number): Promise<UserRecord | undefined> {
    if (!Number.isSafeInteger(id) || id < 1) return undefined;
    const row = await this.#db.selectFrom('users').selectAll().where('id', '=', id).executeTakeFirst();
    return row ? toRecord(row) : undefined;
  }

  /** The user, or a 404 naming the id. */
  async require(id: number): Promise<UserRecord> {
    const user = await this.get(id);
    if (!user) throw notFound(`user ${id} not found`);
    return user;
  }

  async getByName(username: string): Promise<UserRecord | undefined> {
    const row = await this.#findByName(username);
    return row ? toRecord(row) : undefined;
  }

  /** A page of users and how many match in all. */
  async list(query: UserListQuery): Promise<{ total: number; users: UserRecord[] }> {
    let base = this.#db.selectFrom('users');
    for (const [column, match] of [
      ['username', query.username],
      ['email', query.email],
    ] as const) {
      if (!match) continue;
      base =
        match.kind === 'exact'
          ? base.where(column, '=', match.value)
          : base.where(sql<string>`lower(${sql.ref(column)})`, 'like', sql<string>`${likePattern(match.value)} escape '\\'`);
    }
    const counted = await base.select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
    const total = Number(counted.n);
    if (total === 0 || query.offset >= total) return { total, users: [] };
    let page = base.selectAll();
    for (const { field, desc } of query.sort ?? []) page = page.orderBy(SORT_COLUMNS[field], desc ? 'desc' : 'asc');
    const rows = await page.orderBy('id', 'asc').limit(query.limit).offset(query.offset).execute();
    return { total, users: rows.map(toRecord) };
  }

  // ── changes ──────────────────────────────────────────────────────────────

  /** Creates a user (409 when the name or email is taken, 400 for anything invalid). */
  async create(input: NewUser): Promise<UserRecord> {
    const username = typeof input.username === 'string' ? input.username.normalize('NFC') : '';
    const problem = usernameProblem(username, this.#robotPrefix);
    if (problem) throw badRequest(problem);
    const email = normaliseEmail(input.email);
    const realname = input.realname ?? '';
    const comment = input.comment ?? '';
    const invalid = (email === null ? undefined : emailProblem(email)) ?? realnameProblem(realname) ?? commentProblem(comment);
    if (invalid) throw badRequest(invalid);
    const violations = checkPasswordPolicy(input.password, this.#policy);
    if (violations.length > 0) throw policyError(violations);
    const id = await this.#insert({ username, password: input.password, email, realname, comment, sysadmin: input.sysadmin === true });
    return this.require(id);
  }

  /** Changes email, realname and comment; fields left out stay as they are. */
  async updateProfile(id: number, update: ProfileUpdate): Promise<UserRecord> {
    const current = await this.require(id);
    const email = update.email === undefined ? current.email : normaliseEmail(update.email);
    const realname = update.realname ?? current.realname;
    const comment = update.comment ?? current.comment;
    const invalid = (email === null || email === current.email ? undefined : emailProblem(email)) ?? realnameProblem(realname) ?? commentProblem(comment);
    if (invalid) throw badRequest(invalid);
    try {
      await this.#db.transaction().execute(async (trx) => {
        if (email !== null && email !== current.email) await this.#requireFreeEmail(trx, email, id);
        const result = await trx.updateTable('users').set({ email, realname, comment, updated_at: this.#now() }).where('id', '=', id).executeTakeFirst();
        if (Number(result.numUpdatedRows) === 0) throw notFound(`user ${id} not found`);
      });
    } catch (err) {
      if (isUniqueViolation(err)) throw conflict(`email ${email} is already used by another user`);
      throw err;
    }
    return this.require(id);
  }

  /**
   * Sets a user's password. With `oldPassword` (a user changing their own) it must match the
   * current one (403 otherwise). The new password must pass the policy and differ from the current.
   */
  async setPassword(id: number, newPassword: string, options: { oldPassword?: string } = {}): Promise<void> {
    const row = await this.#db.selectFrom('users').select(['id', 'password_hash']).where('id', '=', id).executeTakeFirst();
    if (!row) throw notFound(`user ${id} not found`);
    if (options.oldPassword !== undefined && !(await verifyPassword(row.password_hash, options.oldPassword))) {
      throw new ApiError('FORBIDDEN', 'the current password is incorrect');
    }
    const violations = checkPasswordPolicy(newPassword, this.#policy);
    if (violations.length > 0) throw policyError(violations);
    if (await verifyPassword(row.password_hash, newPassword)) throw badRequest('the new password is identical to the old password');
    const hash = await hashPassword(newPassword);
    await this.#db.updateTable('users').set({ password_hash: hash, updated_at: this.#now() }).where('id', '=', id).execute();
    this.#changed();
  }

  /** Grants or removes the system-admin flag; removing it from the last system admin is refused (412). */
  async setSysadmin(id: number, sysadmin: boolean): Promise<UserRecord> {
    await this.#db.transaction().execute(async (trx) => {
      await lockSysadmins(trx);
      const row = await trx.selectFrom('users').select(['id', 'sysadmin']).where('id', '=', id).executeTakeFirst();
      if (!row) throw notFound(`user ${id} not found`);
      const was = Number(row.sysadmin) === 1;
      if (was === sysadmin) return;
      if (was && (await countSysadmins(trx)) <= 1) {
        throw new ApiError('PRECONDITION', 'cannot remove the system admin flag from the last system administrator; make another user a system administrator first');
      }
      await trx
        .updateTable('users')
        .set({ sysadmin: sysadmin ? 1 : 0, updated_at: this.#now() })
        .where('id', '=', id)
        .execute();
    });
    this.#changed();
    return this.require(id);
  }

  /**
   * Deletes a user (their memberships and sessions go with them). `admin` cannot be deleted (403),
   * nor can the last system administrator (412).
   */
  async delete(id: number): Promise<void> {
    await this.#db.transaction().execute(async (trx) => {
      await lockSysadmins(trx);
      const row = await trx.selectFrom('users').select(['id', 'username', 'sysadmin']).where('id', '=', id).executeTakeFirst();
      if (!row) throw notFound(`user ${id} not found`);
      if (row.username === ADMIN_USERNAME) throw new ApiError('FORBIDDEN', `the user ${ADMIN_USERNAME} cannot be deleted`);
      if (Number(row.sysadmin) === 1 && (await countSysadmins(trx)) <= 1) {
        throw new ApiError('PRECONDITION', 'cannot delete the last system administrator; make another user a system administrator first');
      }
      await trx.deleteFrom('users').where('id', '=', id).execute();
    });
    this.#changed();
  }

  // ── internals ────────────────────────────────────────────────────────────

  async #findByName(username: string): Promise<Selectable<UserTable> | undefined> {
    if (typeof username !== 'string' || username === '') return undefined;
    return this.#db.selectFrom('users').selectAll().where('username', '=', username.normalize('NFC')).executeTakeFirst();
  }

  async #requireFreeEmail(trx: Transaction<Database>, email: string, exceptId?: number): Promise<void> {
    let query = trx.selectFrom('users').select('id').where(sql<string>`lower(email)`, '=', email.toLowerCase());
    if (exceptId !== undefined) query = query.where('id', '!=', exceptId);
    if (await query.executeTakeFirst()) throw conflict(`email ${email} is already used by another user`);
  }

  /** Inserts a validated user; returns its id. Names and emails are checked for twins first (409). */
  async #insert(user: { username: string; password: string; email?: string | null; realname: string; comment: string; sysadmin: boolean }): Promise<number> {
    const hash = await hashPassword(user.password);
    const now = this.#now();
    try {
      return await this.#db.transaction().execute(async (trx) => {
        const twin = await trx
          .selectFrom('users')
          .select('username')
          .where(sql<string>`lower(username)`, '=', user.username.toLowerCase())
          .executeTakeFirst();
        if (twin) throw conflict(twin.username === user.username ? `user ${user.username} already exists` : `user ${twin.username} already exists (names differ only in case)`);
        if (user.email) await this.#requireFreeEmail(trx, user.email);
        const inserted = await trx
          .insertInto('users')
          .values({
            username: user.username,
            email: user.email ?? null,
            realname: user.realname,
            comment: user.comment,
            password_hash: hash,
            sysadmin: user.sysadmin ? 1 : 0,
            created_at: now,
            updated_at: now,
          })
          .returning('id')
          .executeTakeFirstOrThrow();
        return Number(inserted.id);
      });
    } catch (err) {
      if (isUniqueViolation(err)) throw conflict(user.email ? `user ${user.username} or email ${user.email} already exists` : `user ${user.username} already exists`);
      throw err;
    }
  }
}

/**
 * Locks every system-admin row for the rest of the transaction (a no-op update takes row locks on
 * PostgreSQL; SQLite has one writer at a time anyway), so that two transactions that each remove
 * one of the last two administrators run one after the other and the second sees the first.
 */
async function lockSysadmins(trx: Transaction<Database>): Promise<void> {
  await trx
    .updateTable('users')
    .set((eb) => ({ sysadmin: eb.ref('sysadmin') }))
    .where('sysadmin', '=', 1)
    .execute();
}

async function countSysadmins(trx: Transaction<Database>): Promise<number> {
  const row = await trx
    .selectFrom('users')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('sysadmin', '=', 1)
    .executeTakeFirstOrThrow();
  return Number(row.n);
}
