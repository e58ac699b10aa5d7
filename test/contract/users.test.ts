/**
 * UserService and SessionService (src/iam/users.ts, src/iam/sessions.ts) on every database
 * backend: validation, uniqueness (409), the last-admin rules (412, nothing changed, also under
 * concurrency), password changes and rehashing, admin bootstrap, and session lifetimes.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import argon2 from '@node-rs/argon2';
import { PURGE_SESSIONS_JOB, registerSessionJobs, SessionService } from '../../src/iam/sessions.ts';
import type { JobService } from '../../src/platform/jobs/service.ts';
import { ADMIN_USERNAME, emailProblem, UserService, usernameProblem } from '../../src/iam/users.ts';
import { createDatabase, type DatabaseHandle } from '../../src/platform/db/database.ts';
import { ApiError } from '../../src/platform/http/api.ts';
import { BACKENDS, createTestDatabase, type TestDatabase } from '../helpers/backends.ts';

const GOOD = 'Passw0rdOK';

async function rejects(promise: Promise<unknown>, code: string, message?: RegExp): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof ApiError, `expected an ApiError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (message) assert.match(err.message, message);
    return true;
  });
}

describe('username and email rules', () => {
  it('accepts Harbor-valid names and refuses the rest with a reason', () => {
    for (const ok of ['a', 'alice', 'bob.smith', 'dev-1', 'x'.repeat(255), '名前', 'a b', 'user@example.com']) assert.equal(usernameProblem(ok), undefined, ok);
    const bad: Array<[string, RegExp]> = [
      ['', /empty/],
      ['x'.repeat(256), /at most 255/],
      [' alice', /spaces/],
      ['alice ', /spaces/],
      ['a,b', /must not contain/],
      ['a"b', /must not contain/],
      ['a~b', /must not contain/],
      ['a#b', /must not contain/],
      ['a$b', /must not contain/],
      ['a%b', /must not contain/],
      ['a:b', /must not contain/],
      ['a\nb', /control/],
      ['a\u0000b', /control/],
    ];
    for (const [name, reason] of bad) assert.match(usernameProblem(name) ?? '', reason, JSON.stringify(name));
    assert.match(usernameProblem('bot_x', 'bot_') ?? '', /robot/);
  });

  it('checks email addresses', () => {
    for (const ok of ['a@b.io', 'first.last+tag@sub.example.com']) assert.equal(emailProblem(ok), undefined, ok);
    for (const bad of ['a', 'a@b', '@b.io', 'a b@c.io', 'a@b..io', `${'x'.repeat(251)}@b.io`]) assert.ok(emailProblem(bad), bad);
  });
});

for (const backend of BACKENDS) {
  describe(`UserService on ${backend}`, () => {
    let testDb: TestDatabase;
    let dataDir: string;
    let database: DatabaseHandle;
    let users: UserService;
    let changes = 0;
    let clock = 1_700_000_000_000;

    before(async () => {
      testDb = await createTestDatabase(backend);
      dataDir = await mkdtemp(path.join(tmpdir(), 'berth-users-'));
      database = createDatabase({ url: testDb.url, sqliteFile: path.join(dataDir, 'berth.db') });
      await database.migrate();
      users = new UserService({ db: database.db, passwordPolicy: { minLength: 8 }, onCredentialsChanged: () => changes++, now: () => clock });
    });
    after(async () => {
      await database.close();
      await testDb.drop();
      await rm(dataDir, { recursive: true, force: true });
    });

    const count = async () => Number((await database.db.selectFrom('users').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow()).n);

    it('refuses a configured admin password that fails the policy, naming BERTH_ADMIN_PASSWORD, and creates nothing', async () => {
      await assert.rejects(users.ensureAdmin('short'), /BERTH_ADMIN_PASSWORD/);
      assert.equal(await count(), 0);
    });

    it('creates admin as user 1, a system admin, with a generated password when none is configured; only once', async () => {
      const first = await users.ensureAdmin('');
      assert.equal(first.created, true);
      assert.ok(first.generatedPassword && first.generatedPassword.length >= 32);
      const admin = await users.getByName(ADMIN_USERNAME);
      assert.equal(admin?.id, 1);
      assert.equal(admin?.sysadmin, true);
      assert.deepEqual(await users.checkPassword('admin', first.generatedPassword), { kind: 'user', id: 1, name: 'admin', sysadmin: true });
      assert.deepEqual(await users.ensureAdmin('Harbor12345'), { created: false });
      assert.equal(await users.checkPassword('admin', 'Harbor12345'), undefined, 'a second start does not change the password');
      await users.setPassword(1, 'Harbor12345');
    });

    it('creates users, refusing bad input with 400 and twins with 409, nothing written', async () => {
      const before = await count();
      await rejects(users.create({ username: 'bad,name', password: GOOD }), 'BAD_REQUEST', /must not contain/);
      await rejects(users.create({ username: 'robot$x', password: GOOD }), 'BAD_REQUEST');
      await rejects(users.create({ username: 'carol', password: 'short' }), 'BAD_REQUEST', /at least 8/);
      await rejects(users.create({ username: 'carol', password: 'alllowercase1' }), 'BAD_REQUEST', /uppercase/);
      await rejects(users.create({ username: 'carol', password: GOOD, email: 'not-an-email' }), 'BAD_REQUEST', /email/);
      await rejects(users.create({ username: 'carol', password: GOOD, realname: 'a#b' }), 'BAD_REQUEST', /realname/);
      await rejects(users.create({ username: 'carol', password: GOOD, comment: 'x'.repeat(256) }), 'BAD_REQUEST', /comment/);
      assert.equal(await count(), before);

      const alice = await users.create({ username: 'alice', password: GOOD, email: 'alice@example.com', realname: 'Alice A', comment: 'dev' });
      assert.equal(alice.username, 'alice');
      assert.equal(alice.email, 'alice@example.com');
      assert.equal(alice.sysadmin, false);
      assert.equal(alice.createdAt, clock);
      await rejects(users.create({ username: 'alice', password: GOOD }), 'CONFLICT', /alice already exists/);
      await rejects(users.create({ username: 'ALICE', password: GOOD }), 'CONFLICT', /case/);
      await rejects(users.create({ username: 'alice2', password: GOOD, email: 'alice@example.com' }), 'CONFLICT', /email/);
      await rejects(users.create({ username: 'alice3', password: GOOD, email: 'ALICE@example.com' }), 'CONFLICT', /email/);
      const noEmail = await users.create({ username: 'bob', password: GOOD, email: '' });
      assert.equal(noEmail.email, null);
      await users.create({ username: 'bob2', password: GOOD });
      assert.equal(await count(), before + 3);
    });

    it('maps a unique violation that slips past the pre-check (a race) to 409', async () => {
      const results = await Promise.allSettled([users.create({ username: 'racer', password: GOOD }), users.create({ username: 'racer', password: GOOD })]);
      assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
      const failed = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
      assert.ok(failed.reason instanceof ApiError && failed.reason.code === 'CONFLICT', String(failed.reason));
    });

    it('checks passwords without revealing whether the user exists, and rehashes weak hashes', async () => {
      assert.equal(await users.checkPassword('alice', 'Wrong0000'), undefined);
      assert.equal(await users.checkPassword('nobody', GOOD), undefined);
      assert.equal(await users.checkPassword('', GOOD), undefined);
      const subject = await users.checkPassword('alice', GOOD);
      assert.equal(subject?.name, 'alice');
      assert.equal(subject?.sysadmin, false);
      // A hash at weaker parameters (an older release's) is upgraded on the next good login.
      const weak = await argon2.hash(GOOD, { algorithm: 2, memoryCost: 4096, timeCost: 1, parallelism: 1 });
      await database.db.updateTable('users').set({ password_hash: weak }).where('username', '=', 'alice').execute();
      assert.ok(await users.checkPassword('alice', GOOD));
      const row = await database.db.selectFrom('users').select('password_hash').where('username', '=', 'alice').executeTakeFirstOrThrow();
      assert.notEqual(row.password_hash, weak);
      assert.match(row.password_hash, /m=19456,t=2/);
      assert.ok(await users.checkPassword('alice', GOOD));
    });

    it('lists with paging, filters (exact and fuzzy, LIKE characters taken literally) and sorting', async () => {
      await users.create({ username: 'under_score', password: GOOD, email: 'u@example.org' });
      await users.create({ username: 'underXscore', password: GOOD });
      const all = await users.list({ offset: 0, limit: 100 });
      assert.equal(all.total, all.users.length);
      assert.deepEqual(
        all.users.map((u) => u.id),
        [...all.users.map((u) => u.id)].sort((a, b) => a - b),
      );
      const page = await users.list({ offset: 1, limit: 2 });
      assert.equal(page.total, all.total);
      assert.deepEqual(
        page.users.map((u) => u.id),
        all.users.slice(1, 3).map((u) => u.id),
      );
      assert.deepEqual((await users.list({ username: { kind: 'fuzzy', value: '_' }, offset: 0, limit: 10 })).users.map((u) => u.username), ['under_score']);
      assert.deepEqual((await users.list({ username: { kind: 'fuzzy', value: 'LIC' }, offset: 0, limit: 10 })).users.map((u) => u.username), ['alice']);
      assert.deepEqual((await users.list({ username: { kind: 'exact', value: 'bob' }, offset: 0, limit: 10 })).users.map((u) => u.username), ['bob']);
      assert.deepEqual((await users.list({ email: { kind: 'fuzzy', value: 'example.org' }, offset: 0, limit: 10 })).users.map((u) => u.username), ['under_score']);
      assert.equal((await users.list({ username: { kind: 'fuzzy', value: '%' }, offset: 0, limit: 10 })).total, 0);
      const sorted = await users.list({ sort: [{ field: 'username', desc: true }], offset: 0, limit: 100 });
      assert.deepEqual(
        sorted.users.map((u) => u.username),
        [...sorted.users.map((u) => u.username)].sort().reverse(),
      );
      assert.deepEqual(await users.list({ offset: 1000, limit: 10 }), { total: all.total, users: [] });
    });

    it('updates profiles, keeping fields left out; email conflicts are 409', async () => {
      clock += 1000;
      const bob = await users.getByName('bob');
      assert.ok(bob);
      const updated = await users.updateProfile(bob.id, { email: 'bob@example.com', realname: 'Bob B' });
      assert.equal(updated.email, 'bob@example.com');
      assert.equal(updated.realname, 'Bob B');
      assert.equal(updated.updatedAt, clock);
      const kept = await users.updateProfile(bob.id, { comment: 'ops' });
      assert.equal(kept.email, 'bob@example.com');
      assert.equal(kept.comment, 'ops');
      await rejects(users.updateProfile(bob.id, { email: 'alice@example.com' }), 'CONFLICT');
      await rejects(users.updateProfile(bob.id, { email: 'nope' }), 'BAD_REQUEST');
      await rejects(users.updateProfile(99999, { comment: 'x' }), 'NOT_FOUND');
      assert.equal((await users.getByName('bob'))?.email, 'bob@example.com');
      assert.equal((await users.updateProfile(bob.id, { email: '' })).email, null);
    });

    it('changes passwords: policy, old password, identical password refused; credentials-changed fired', async () => {
      const bob = await users.getByName('bob');
      assert.ok(bob);
      const fired = changes;
      await rejects(users.setPassword(bob.id, 'Newpass1', { oldPassword: 'Wrong0000' }), 'FORBIDDEN', /current password/);
      await rejects(users.setPassword(bob.id, 'weak'), 'BAD_REQUEST', /at least 8/);
      await rejects(users.setPassword(bob.id, GOOD), 'BAD_REQUEST', /identical/);
      await rejects(users.setPassword(99999, 'Newpass1'), 'NOT_FOUND');
      assert.equal(changes, fired);
      assert.ok(await users.checkPassword('bob', GOOD));
      await users.setPassword(bob.id, 'Newpass1', { oldPassword: GOOD });
      assert.equal(changes, fired + 1);
      assert.equal(await users.checkPassword('bob', GOOD), undefined);
      assert.ok(await users.checkPassword('bob', 'Newpass1'));
    });

    it('never removes the last system admin and never deletes admin: 412/403, nothing changed', async () => {
      const admin = await users.getByName('admin');
      const bob = await users.getByName('bob');
      assert.ok(admin && bob);
      await rejects(users.setSysadmin(admin.id, false), 'PRECONDITION', /last system administrator/);
      await rejects(users.delete(admin.id), 'FORBIDDEN', /admin cannot be deleted/);
      assert.equal((await users.get(admin.id))?.sysadmin, true);

      const fired = changes;
      assert.equal((await users.setSysadmin(bob.id, true)).sysadmin, true);
      assert.equal(changes, fired + 1);
      assert.equal((await users.setSysadmin(admin.id, false)).sysadmin, false);
      // bob is now the only system admin.
      await rejects(users.setSysadmin(bob.id, false), 'PRECONDITION');
      await rejects(users.delete(bob.id), 'PRECONDITION', /last system administrator/);
      assert.equal((await users.get(bob.id))?.sysadmin, true);
      await users.setSysadmin(admin.id, true);
      await rejects(users.setSysadmin(99999, true), 'NOT_FOUND');
      await rejects(users.delete(99999), 'NOT_FOUND');
    });

    it('two concurrent demotions of the last two admins leave one admin', async () => {
      const admin = await users.getByName('admin');
      const bob = await users.getByName('bob');
      assert.ok(admin && bob);
      const results = await Promise.allSettled([users.setSysadmin(admin.id, false), users.setSysadmin(bob.id, false)]);
      assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1, JSON.stringify(results.map((r) => r.status)));
      const refused = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
      assert.equal((refused.reason as ApiError).code, 'PRECONDITION');
      const admins = (await users.list({ offset: 0, limit: 100 })).users.filter((u) => u.sysadmin);
      assert.equal(admins.length, 1);
      await users.setSysadmin(admin.id, true);
      await users.setSysadmin(bob.id, true);
    });

    it('deletes users with their sessions; subjectByName reflects it', async () => {
      const carol = await users.create({ username: 'carol', password: GOOD });
      const sessions = new SessionService({ db: database.db, timeoutMinutes: 60, now: () => clock });
      const { cookieValue } = await sessions.create(carol.id);
      assert.ok(await sessions.resolve(cookieValue));
      assert.deepEqual(await users.subjectByName('carol'), { kind: 'user', id: carol.id, name: 'carol', sysadmin: false });
      await users.delete(carol.id);
      assert.equal(await users.get(carol.id), undefined);
      assert.equal(await users.subjectByName('carol'), undefined);
      assert.equal(await sessions.resolve(cookieValue), undefined);
      // A sysadmin who is not the last one may be deleted.
      await users.delete(idOf(await users.getByName('bob')));
      assert.equal(await users.getByName('bob'), undefined);
    });
  });

  describe(`first start on ${backend}`, () => {
    let testDb: TestDatabase;
    let dataDir: string;
    let database: DatabaseHandle;

    before(async () => {
      testDb = await createTestDatabase(backend);
      dataDir = await mkdtemp(path.join(tmpdir(), 'berth-admin-'));
      database = createDatabase({ url: testDb.url, sqliteFile: path.join(dataDir, 'berth.db') });
      await database.migrate();
    });
    after(async () => {
      await database.close();
      await testDb.drop();
      await rm(dataDir, { recursive: true, force: true });
    });

    it('creates admin once when several nodes start at the same moment', async () => {
      const nodes = [1, 2, 3].map(() => new UserService({ db: database.db, passwordPolicy: {} }));
      const results = await Promise.all(nodes.map((node) => node.ensureAdmin('Harbor12345')));
      assert.equal(results.filter((r) => r.created).length, 1, JSON.stringify(results));
      assert.ok(await nodes[0]?.checkPassword('admin', 'Harbor12345'));
    });

    it('names the conflict when a case-twin of admin is in the way', async () => {
      await database.db.deleteFrom('users').execute();
      const users = new UserService({ db: database.db, passwordPolicy: {} });
      await users.create({ username: 'Admin', password: GOOD });
      await assert.rejects(users.ensureAdmin('Harbor12345'), /cannot create the admin user: user Admin already exists/);
    });
  });

  describe(`SessionService on ${backend}`, () => {
    let testDb: TestDatabase;
    let dataDir: string;
    let database: DatabaseHandle;
    let sessions: SessionService;
    let userId: number;
    let clock = 1_700_000_000_000;

    before(async () => {
      testDb = await createTestDatabase(backend);
      dataDir = await mkdtemp(path.join(tmpdir(), 'berth-sessions-'));
      database = createDatabase({ url: testDb.url, sqliteFile: path.join(dataDir, 'berth.db') });
      await database.migrate();
      const users = new UserService({ db: database.db, passwordPolicy: {}, now: () => clock });
      userId = (await users.create({ username: 'dora', password: GOOD, sysadmin: true })).id;
      sessions = new SessionService({ db: database.db, timeoutMinutes: 10, now: () => clock });
    });
    after(async () => {
      await database.close();
      await testDb.drop();
      await rm(dataDir, { recursive: true, force: true });
    });

    it('creates random cookies stored only as SHA-256, with a CSRF token', async () => {
      const a = await sessions.create(userId);
      const b = await sessions.create(userId);
      assert.match(a.cookieValue, /^[A-Za-z0-9_-]{43}$/);
      assert.notEqual(a.cookieValue, b.cookieValue);
      assert.notEqual(a.csrfToken, b.csrfToken);
      const rows = await database.db.selectFrom('sessions').selectAll().execute();
      assert.ok(rows.every((r) => r.id !== a.cookieValue && /^[0-9a-f]{64}$/.test(r.id)));
      assert.deepEqual(await sessions.resolve(a.cookieValue), { subject: { kind: 'user', id: userId, name: 'dora', sysadmin: true }, csrfToken: a.csrfToken });
      for (const bad of ['', 'x', `${a.cookieValue}x`, a.cookieValue.replace(/^./, '!'), 'A'.repeat(43)]) assert.equal(await sessions.resolve(bad), undefined, bad);
    });

    it('expires after the idle timeout, refreshed by use at most once a minute', async () => {
      const { cookieValue } = await sessions.create(userId);
      const expiresAt = async () =>
        Number((await database.db.selectFrom('sessions').select('expires_at').orderBy('created_at', 'desc').orderBy('expires_at', 'desc').executeTakeFirstOrThrow()).expires_at);
      const start = clock;
      assert.equal(await expiresAt(), start + 600_000);
      clock += 30_000;
      assert.ok(await sessions.resolve(cookieValue));
      assert.equal(await expiresAt(), start + 600_000, 'no write within the first minute');
      clock += 40_000;
      assert.ok(await sessions.resolve(cookieValue));
      assert.equal(await expiresAt(), clock + 600_000, 'refreshed after a minute');
      clock += 599_000;
      assert.ok(await sessions.resolve(cookieValue), 'still alive just before the idle deadline');
      clock += 600_000;
      assert.equal(await sessions.resolve(cookieValue), undefined, 'gone after ten idle minutes');
    });

    it('destroys one session, all of a user, and purges expired ones', async () => {
      const a = await sessions.create(userId);
      const b = await sessions.create(userId);
      await sessions.destroy(a.cookieValue);
      assert.equal(await sessions.resolve(a.cookieValue), undefined);
      assert.ok(await sessions.resolve(b.cookieValue));
      await sessions.destroy('not-a-cookie');
      const c = await sessions.create(userId);
      assert.ok((await sessions.destroyAllOf(userId, c.cookieValue)) >= 1);
      assert.equal(await sessions.resolve(b.cookieValue), undefined);
      assert.ok(await sessions.resolve(c.cookieValue));
      clock += 11 * 60_000;
      const purged = await sessions.purgeExpired();
      assert.ok(purged >= 1);
      assert.equal((await database.db.selectFrom('sessions').selectAll().execute()).length, 0);
    });

    it('registers a scheduled job that purges expired sessions', async () => {
      let handler: ((payload: unknown, context: { log: (line: string) => void }) => Promise<void>) | undefined;
      const schedules: Array<{ name: string; cron: string; kind: string }> = [];
      const jobs = {
        workers: { register: (kind: string, fn: typeof handler) => kind === PURGE_SESSIONS_JOB && (handler = fn) },
        schedule: (spec: { name: string; cron: string; kind: string }) => schedules.push(spec),
      } as unknown as JobService;
      registerSessionJobs(jobs, { sessions });
      assert.deepEqual(schedules, [{ name: PURGE_SESSIONS_JOB, cron: '0 */10 * * * *', kind: PURGE_SESSIONS_JOB }]);
      await sessions.create(userId);
      clock += 11 * 60_000;
      const lines: string[] = [];
      await handler?.(undefined, { log: (line) => lines.push(line) });
      assert.deepEqual(lines, ['deleted 1 expired web sessions']);
      assert.equal((await database.db.selectFrom('sessions').selectAll().execute()).length, 0);
    });
  });
}

function idOf(user: { id: number } | undefined): number {
  assert.ok(user);
  return user.id;
}
