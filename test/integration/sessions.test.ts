/**
 * Web sessions over HTTP on every backend: POST /c/login (form and JSON), the cookie's
 * attributes, the CSRF rule on state-changing API calls, logout, failures that do not reveal
 * whether a user exists, robots kept out of the portal, and the login rate limit.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Fastify from 'fastify';
import { AccessControl } from '../../src/iam/access.ts';
import { Authenticator } from '../../src/iam/authenticate.ts';
import { apiAuthHook } from '../../src/iam/request-auth.ts';
import { SessionService, sessionRoutes } from '../../src/iam/sessions.ts';
import { userRoutes } from '../../src/iam/user-routes.ts';
import { UserService } from '../../src/iam/users.ts';
import { createDatabase } from '../../src/platform/db/database.ts';
import { useManagementApiConventions } from '../../src/platform/http/api.ts';
import { BACKENDS, createTestDatabase } from '../helpers/backends.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';

const ADMIN = 'Admin12345';
const GOOD = 'Passw0rdOK';
const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

interface Login {
  readonly status: number;
  readonly headers: Headers;
  readonly json: any;
  readonly cookie: string | undefined;
}

function sidOf(setCookie: string | null): string | undefined {
  const match = /(?:^|;\s*)sid=([^;]*)/.exec(setCookie ?? '');
  return match?.[1];
}

for (const backend of BACKENDS) {
  describe(`web sessions on ${backend}`, () => {
    let server: TestServer;
    let userId: number;

    before(async () => {
      server = await startTestServer(backend, { config: { auth: { enabled: true }, adminPassword: ADMIN } });
      const res = await fetch(`${server.url}/api/v2.0/users`, {
        method: 'POST',
        headers: { authorization: basic('admin', ADMIN), 'content-type': 'application/json' },
        body: JSON.stringify({ username: 'alice', password: GOOD, email: 'alice@example.com' }),
      });
      assert.equal(res.status, 201);
      userId = Number(res.headers.get('location')?.split('/').pop());
    });
    after(() => server.close());

    async function login(body: string, contentType: string, headers: Record<string, string> = {}): Promise<Login> {
      const res = await fetch(`${server.url}/c/login`, { method: 'POST', headers: { 'content-type': contentType, ...headers }, body });
      const text = await res.text();
      return { status: res.status, headers: res.headers, json: text ? JSON.parse(text) : undefined, cookie: sidOf(res.headers.get('set-cookie')) };
    }
    const form = (fields: Record<string, string>, headers: Record<string, string> = {}) => login(new URLSearchParams(fields).toString(), 'application/x-www-form-urlencoded', headers);
    const json = (fields: unknown) => login(JSON.stringify(fields), 'application/json');

    function api(method: string, path: string, cookie: string | undefined, init: { csrf?: string; body?: unknown } = {}) {
      const headers: Record<string, string> = {};
      if (cookie !== undefined) headers.cookie = `theme=dark; sid=${cookie}`;
      if (init.csrf !== undefined) headers['x-harbor-csrf-token'] = init.csrf;
      if (init.body !== undefined) headers['content-type'] = 'application/json';
      return fetch(`${server.url}/api/v2.0${path}`, { method, headers, ...(init.body !== undefined ? { body: JSON.stringify(init.body) } : {}) });
    }

    it('logs in with Harbor’s form fields: an HttpOnly SameSite=Strict cookie and the CSRF token in header and body', async () => {
      const res = await form({ principal: 'alice', password: GOOD });
      assert.equal(res.status, 200);
      const setCookie = res.headers.get('set-cookie') ?? '';
      assert.match(setCookie, /^sid=[A-Za-z0-9_-]{43}; /);
      assert.match(setCookie, /; HttpOnly/);
      assert.match(setCookie, /; SameSite=Strict/);
      assert.match(setCookie, /; Path=\//);
      assert.doesNotMatch(setCookie, /Secure/, 'plain http: no Secure attribute');
      const csrf = res.headers.get('x-harbor-csrf-token');
      assert.ok(csrf && csrf.length >= 32);
      assert.deepEqual(res.json, { csrf_token: csrf });
      assert.equal(res.headers.get('cache-control'), 'no-store');
    });

    it('logs in with JSON, as principal or username; marks the cookie Secure behind an https proxy', async () => {
      assert.equal((await json({ principal: 'alice', password: GOOD })).status, 200);
      assert.equal((await json({ username: 'alice', password: GOOD })).status, 200);
      const proxied = await form({ principal: 'alice', password: GOOD }, { 'x-forwarded-proto': 'https' });
      assert.equal(proxied.status, 200);
      assert.match(proxied.headers.get('set-cookie') ?? '', /; Secure/);
    });

    it('refuses bad login input with 400 (Harbor’s error shape) and sets no cookie', async () => {
      const cases: Array<[string, Promise<Login>, number]> = [
        ['missing password', form({ principal: 'alice' }), 400],
        ['missing principal', form({ password: GOOD }), 400],
        ['empty principal', json({ principal: '', password: GOOD }), 400],
        ['unknown field', json({ principal: 'alice', password: GOOD, remember: true }), 400],
        ['both names', json({ principal: 'alice', username: 'alice', password: GOOD }), 400],
        ['number as password', json({ principal: 'alice', password: 12345678 }), 400],
        ['array body', json(['alice', GOOD]), 400],
        ['malformed JSON', login('{"principal":', 'application/json'), 400],
        ['repeated form field', login('principal=alice&principal=bob&password=x', 'application/x-www-form-urlencoded'), 400],
        ['other media type', login('<login/>', 'application/xml'), 415],
      ];
      for (const [label, pending, status] of cases) {
        const res = await pending;
        assert.equal(res.status, status, `${label}: ${JSON.stringify(res.json)}`);
        assert.equal(res.json?.errors?.[0]?.code, status === 415 ? 'UNSUPPORTED_MEDIA_TYPE' : 'BAD_REQUEST', label);
        assert.equal(res.cookie, undefined, label);
      }
    });

    it('answers a wrong password and an unknown user alike: 401, same message, no cookie', async () => {
      const wrong = await form({ principal: 'alice', password: 'Wrong0000' });
      const unknown = await form({ principal: 'nobody', password: 'Wrong0000' });
      assert.equal(wrong.status, 401);
      assert.equal(unknown.status, 401);
      assert.deepEqual(wrong.json, unknown.json);
      assert.equal(wrong.json.errors[0].code, 'UNAUTHORIZED');
      assert.equal(wrong.cookie, undefined);
      assert.equal(unknown.cookie, undefined);
    });

    it('a session authenticates API calls; state changes need the CSRF header; logout ends it', async () => {
      const { cookie, json: body } = await form({ principal: 'alice', password: GOOD });
      assert.ok(cookie);
      const csrf = body.csrf_token as string;

      const me = await api('GET', '/users/current', cookie);
      assert.equal(me.status, 200);
      assert.equal(((await me.json()) as { user_id: number }).user_id, userId);
      assert.equal(me.headers.get('x-harbor-csrf-token'), csrf);

      const noHeader = await api('PUT', `/users/${userId}`, cookie, { body: { comment: 'via session' } });
      assert.equal(noHeader.status, 403);
      assert.equal(((await noHeader.json()) as { errors: Array<{ code: string }> }).errors[0]?.code, 'FORBIDDEN');
      const wrongHeader = await api('PUT', `/users/${userId}`, cookie, { body: { comment: 'via session' }, csrf: `${csrf.slice(0, -1)}x` });
      assert.equal(wrongHeader.status, 403);
      const anotherSessionsToken = (await form({ principal: 'alice', password: GOOD })).json.csrf_token as string;
      assert.equal((await api('PUT', `/users/${userId}`, cookie, { body: { comment: 'via session' }, csrf: anotherSessionsToken })).status, 403);
      let profile = (await (await fetch(`${server.url}/api/v2.0/users/${userId}`, { headers: { authorization: basic('admin', ADMIN) } })).json()) as { comment: string };
      assert.equal(profile.comment, '', 'refused changes changed nothing');

      const withHeader = await api('PUT', `/users/${userId}`, cookie, { body: { comment: 'via session' }, csrf });
      assert.equal(withHeader.status, 200);
      profile = (await (await api('GET', `/users/${userId}`, cookie)).json()) as { comment: string };
      assert.equal(profile.comment, 'via session');

      const logout = await fetch(`${server.url}/c/log_out`, { headers: { cookie: `sid=${cookie}` } });
      assert.equal(logout.status, 200);
      const cleared = logout.headers.get('set-cookie') ?? '';
      assert.match(cleared, /^sid=;/);
      assert.match(cleared, /Max-Age=0/);
      const after = await api('GET', '/users/current', cookie);
      assert.equal(after.status, 401, 'the old cookie is anonymous now');
      assert.equal((await api('PUT', `/users/${userId}`, cookie, { body: { comment: 'x' }, csrf })).status, 401);
    });

    it('POST /c/log_out works too, and logging out without a session is harmless', async () => {
      const { cookie } = await json({ principal: 'alice', password: GOOD });
      const res = await fetch(`${server.url}/c/log_out`, { method: 'POST', headers: { cookie: `sid=${cookie}` } });
      assert.equal(res.status, 200);
      assert.equal((await api('GET', '/users/current', cookie)).status, 401);
      assert.equal((await fetch(`${server.url}/c/log_out`)).status, 200);
      assert.equal((await fetch(`${server.url}/c/log_out`, { headers: { cookie: 'sid=garbage' } })).status, 200);
    });

    it('a new login replaces the session the browser still holds', async () => {
      const first = await form({ principal: 'alice', password: GOOD });
      assert.equal((await api('GET', '/users/current', first.cookie)).status, 200);
      const second = await form({ principal: 'alice', password: GOOD }, { cookie: `sid=${first.cookie}` });
      assert.equal(second.status, 200);
      assert.notEqual(second.cookie, first.cookie);
      assert.equal((await api('GET', '/users/current', first.cookie)).status, 401);
      assert.equal((await api('GET', '/users/current', second.cookie)).status, 200);
    });

    it('a session sees role changes at once and dies with its user', async () => {
      const { cookie, json: body } = await form({ principal: 'alice', password: GOOD });
      assert.equal((await api('GET', '/users', cookie)).status, 403);
      const promote = await fetch(`${server.url}/api/v2.0/users/${userId}/sysadmin`, {
        method: 'PUT',
        headers: { authorization: basic('admin', ADMIN), 'content-type': 'application/json' },
        body: JSON.stringify({ sysadmin_flag: true }),
      });
      assert.equal(promote.status, 200);
      assert.equal((await api('GET', '/users', cookie)).status, 200);
      // alice (a system admin now, through her session) creates a user; then admin deletes alice.
      const created = await api('POST', '/users', cookie, { body: { username: 'gina', password: GOOD }, csrf: body.csrf_token });
      assert.equal(created.status, 201);
      const deleted = await fetch(`${server.url}/api/v2.0/users/${userId}`, { method: 'DELETE', headers: { authorization: basic('admin', ADMIN) } });
      assert.equal(deleted.status, 200);
      assert.equal((await api('GET', '/users/current', cookie)).status, 401);
    });

    it('keeps robot accounts out of the portal (403), while their secret is checked like a password', async () => {
      const created = await fetch(`${server.url}/api/v2.0/robots`, {
        method: 'POST',
        headers: { authorization: basic('admin', ADMIN), 'content-type': 'application/json' },
        body: JSON.stringify({ name: 'ci', level: 'system', duration: -1, permissions: [{ kind: 'system', namespace: '/', access: [{ resource: 'user', action: 'list' }] }] }),
      });
      assert.equal(created.status, 201);
      const robot = (await created.json()) as { name: string; secret: string };
      const res = await form({ principal: robot.name, password: robot.secret });
      assert.equal(res.status, 403);
      assert.equal(res.json.errors[0].code, 'FORBIDDEN');
      assert.equal(res.cookie, undefined);
      assert.equal((await form({ principal: robot.name, password: 'Wrong0000' })).status, 401);
    });

    it('rate-limits failed logins with 429 and Retry-After, the same for real and unknown names', async () => {
      for (const name of ['gina', 'nobody-at-all']) {
        let last: Login | undefined;
        for (let i = 0; i < 6; i++) last = await form({ principal: name, password: 'Wrong0000' });
        assert.equal(last?.status, 429, name);
        assert.equal(last?.json.errors[0].code, 'TOO_MANY_REQUESTS');
        assert.ok(Number(last?.headers.get('retry-after')) >= 1);
      }
      // Even the right password waits out the lock.
      assert.equal((await form({ principal: 'gina', password: GOOD })).status, 429);
    });
  });
}

describe('session routes with a stub authenticator', () => {
  it('refuses a robot subject with 403 before any session is created, and marks cookies Secure for an https external URL', async () => {
    const app = Fastify();
    let created = 0;
    const sessions = {
      create: async () => {
        created++;
        return { cookieValue: 'c'.repeat(43), csrfToken: 't' };
      },
      destroy: async () => {},
    } as unknown as SessionService;
    let subject: { kind: string; id: number; name: string } = { kind: 'robot', id: 1, name: 'robot$x' };
    const authenticator = { login: async () => ({ ...subject, access: [], sysadmin: false }) } as unknown as Authenticator;
    await sessionRoutes(app, { sessions, authenticator, externalUrl: 'https://registry.example.com' });
    try {
      const robot = await app.inject({ method: 'POST', url: '/c/login', payload: { principal: 'robot$x', password: 'Secret123' } });
      assert.equal(robot.statusCode, 403);
      assert.match(robot.body, /robot accounts cannot log in/);
      assert.equal(created, 0);
      subject = { kind: 'user', id: 7, name: 'u' };
      const user = await app.inject({ method: 'POST', url: '/c/login', payload: { principal: 'u', password: 'Secret123' } });
      assert.equal(user.statusCode, 200);
      assert.match(String(user.headers['set-cookie']), /; Secure$/);
      assert.equal(created, 1);
    } finally {
      await app.close();
    }
  });
});

for (const backend of BACKENDS) {
  describe(`password changes end other sessions, on ${backend}`, () => {
    it('keeps only the session that changed the password; an admin reset ends them all', async () => {
      const testDb = await createTestDatabase(backend);
      const dataDir = await mkdtemp(path.join(tmpdir(), 'berth-sessions-'));
      const database = createDatabase({ url: testDb.url, sqliteFile: path.join(dataDir, 'berth.db') });
      const app = Fastify();
      try {
        await database.migrate();
        // The API scope as app.ts builds it, with robots and projects stubbed out.
        let authenticator: Authenticator | undefined;
        const users = new UserService({ db: database.db, passwordPolicy: {}, onCredentialsChanged: () => authenticator?.forget() });
        const sessions = new SessionService({ db: database.db, timeoutMinutes: 60 });
        authenticator = new Authenticator({ users, robots: { isRobotName: () => false, checkSecret: async () => undefined, subjectByName: async () => undefined } });
        const access = new AccessControl({ find: async () => undefined, rolesOf: async () => [] });
        const auth = authenticator;
        await app.register(
          async (api) => {
            useManagementApiConventions(api);
            api.addHook('onRequest', apiAuthHook({ authenticator: auth, sessions }));
            await userRoutes(api, { users, access, authenticator: auth, sessions });
          },
          { prefix: '/api/v2.0' },
        );
        await sessionRoutes(app, { sessions, authenticator: auth });
        await users.create({ username: 'root', password: ADMIN, sysadmin: true });
        const hana = await users.create({ username: 'hana', password: GOOD });

        const login = async () => {
          const res = await app.inject({ method: 'POST', url: '/c/login', payload: { principal: 'hana', password: GOOD } });
          assert.equal(res.statusCode, 200, res.body);
          return { cookie: sidOf(String(res.headers['set-cookie'])) ?? '', csrf: (res.json() as { csrf_token: string }).csrf_token };
        };
        const alive = async (cookie: string) => (await app.inject({ method: 'GET', url: '/api/v2.0/users/current', headers: { cookie: `sid=${cookie}` } })).statusCode === 200;

        const a = await login();
        const b = await login();
        const changed = await app.inject({
          method: 'PUT',
          url: `/api/v2.0/users/${hana.id}/password`,
          headers: { cookie: `sid=${a.cookie}`, 'x-harbor-csrf-token': a.csrf },
          payload: { old_password: GOOD, new_password: 'Hana12345' },
        });
        assert.equal(changed.statusCode, 200, changed.body);
        assert.equal(await alive(a.cookie), true, 'the session that changed it stays');
        assert.equal(await alive(b.cookie), false, 'the other session ended');

        const reset = await app.inject({
          method: 'PUT',
          url: `/api/v2.0/users/${hana.id}/password`,
          headers: { authorization: basic('root', ADMIN) },
          payload: { new_password: 'Reset1234' },
        });
        assert.equal(reset.statusCode, 200, reset.body);
        assert.equal(await alive(a.cookie), false, 'an admin reset ends every session');
      } finally {
        await app.close();
        await database.close();
        await testDb.drop();
        await rm(dataDir, { recursive: true, force: true });
      }
    });
  });
}
