/**
 * Harbor's user API (/api/v2.0/users…) over HTTP on every backend: shapes, paging, who may do
 * what, bad input (400/409/412 with Harbor's error shape and nothing changed), passwords, the
 * system-admin flag, deletion rules and the caller's permissions.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { BACKENDS } from '../helpers/backends.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';

const ADMIN = 'Admin12345';
const GOOD = 'Passw0rdOK';

const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

interface Call {
  readonly status: number;
  readonly headers: Headers;
  readonly text: string;
  readonly json: any;
}

const USER_KEYS = ['admin_role_in_auth', 'comment', 'creation_time', 'email', 'realname', 'sysadmin_flag', 'update_time', 'user_id', 'username'];

for (const backend of BACKENDS) {
  describe(`user API on ${backend}`, () => {
    let server: TestServer;
    const admin = basic('admin', ADMIN);
    const ids: Record<string, number> = {};

    before(async () => {
      server = await startTestServer(backend, { config: { auth: { enabled: true }, adminPassword: ADMIN } });
    });
    after(() => server.close());

    async function call(method: string, path: string, options: { auth?: string; body?: unknown; raw?: string; contentType?: string } = {}): Promise<Call> {
      const headers: Record<string, string> = {};
      if (options.auth) headers.authorization = options.auth;
      let body: string | undefined;
      if (options.raw !== undefined) {
        body = options.raw;
        headers['content-type'] = options.contentType ?? 'application/json';
      } else if (options.body !== undefined) {
        body = JSON.stringify(options.body);
        headers['content-type'] = 'application/json';
      }
      const res = await fetch(`${server.url}/api/v2.0${path}`, { method, headers, ...(body !== undefined ? { body } : {}) });
      const text = await res.text();
      let json: unknown;
      try {
        json = text === '' ? undefined : JSON.parse(text);
      } catch {
        json = undefined;
      }
      return { status: res.status, headers: res.headers, text, json };
    }

    function assertError(res: Call, status: number, code: string, message?: RegExp): void {
      assert.equal(res.status, status, res.text);
      assert.equal(res.json?.errors?.length, 1, res.text);
      assert.equal(res.json.errors[0].code, code, res.text);
      if (message) assert.match(res.json.errors[0].message, message);
    }

    async function userCount(): Promise<number> {
      const res = await call('GET', '/users?page_size=1', { auth: admin });
      assert.equal(res.status, 200);
      return Number(res.headers.get('x-total-count'));
    }

    async function create(username: string, extra: Record<string, unknown> = {}): Promise<number> {
      const res = await call('POST', '/users', { auth: admin, body: { username, password: GOOD, ...extra } });
      assert.equal(res.status, 201, res.text);
      const location = res.headers.get('location') ?? '';
      const match = /^\/api\/v2\.0\/users\/(\d+)$/.exec(location);
      assert.ok(match, `Location ${location}`);
      ids[username] = Number(match[1]);
      return Number(match[1]);
    }

    it('creates a user: 201 with Location, readable in Harbor’s shape, never a password', async () => {
      const res = await call('POST', '/users', { auth: admin, body: { username: 'alice', password: GOOD, email: 'alice@example.com', realname: 'Alice A', comment: 'dev' } });
      assert.equal(res.status, 201, res.text);
      assert.equal(res.text, '');
      const location = res.headers.get('location');
      assert.match(location ?? '', /^\/api\/v2\.0\/users\/\d+$/);
      ids.alice = Number(location?.split('/').pop());
      const got = await fetch(`${server.url}${location}`, { headers: { authorization: admin } });
      assert.equal(got.status, 200);
      const user = (await got.json()) as Record<string, unknown>;
      assert.deepEqual(Object.keys(user).sort(), USER_KEYS);
      assert.equal(user.user_id, ids.alice);
      assert.equal(user.username, 'alice');
      assert.equal(user.email, 'alice@example.com');
      assert.equal(user.realname, 'Alice A');
      assert.equal(user.comment, 'dev');
      assert.equal(user.sysadmin_flag, false);
      assert.equal(user.admin_role_in_auth, false);
      assert.match(String(user.creation_time), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/);
      assert.ok(!JSON.stringify(user).includes('argon2'));
      await create('bob', { email: 'bob@example.com' });
      await create('carol');
      // The new user can log in with the password.
      assert.equal((await call('GET', '/users/current', { auth: basic('alice', GOOD) })).json.username, 'alice');
    });

    it('refuses bad creation input with clear 4xx errors and creates nothing', async () => {
      const before = await userCount();
      const cases: Array<[string, { body?: unknown; raw?: string; contentType?: string }, number, string, RegExp?]> = [
        ['malformed JSON', { raw: '{"username": "x",' }, 400, 'BAD_REQUEST', /JSON/i],
        ['empty body', { raw: '' }, 400, 'BAD_REQUEST'],
        ['an array', { body: [] }, 400, 'BAD_REQUEST'],
        ['unknown field', { body: { username: 'dan', password: GOOD, sysadmin_flag: true } }, 400, 'BAD_REQUEST', /additional|sysadmin_flag/],
        ['wrong type', { body: { username: 5, password: GOOD } }, 400, 'BAD_REQUEST', /string/],
        ['missing password', { body: { username: 'dan' } }, 400, 'BAD_REQUEST', /password/],
        ['name too long', { body: { username: 'd'.repeat(256), password: GOOD } }, 400, 'BAD_REQUEST'],
        ['illegal characters', { body: { username: 'd#n', password: GOOD } }, 400, 'BAD_REQUEST', /must not contain/],
        ['leading space', { body: { username: ' dan', password: GOOD } }, 400, 'BAD_REQUEST', /spaces/],
        ['weak password', { body: { username: 'dan', password: 'password' } }, 400, 'BAD_REQUEST', /uppercase/],
        ['bad email', { body: { username: 'dan', password: GOOD, email: 'dan-at-example' } }, 400, 'BAD_REQUEST', /email/],
        ['bad realname', { body: { username: 'dan', password: GOOD, realname: 'a$b' } }, 400, 'BAD_REQUEST', /realname/],
        ['taken name', { body: { username: 'alice', password: GOOD } }, 409, 'CONFLICT', /already exists/],
        ['name differing in case', { body: { username: 'Alice', password: GOOD } }, 409, 'CONFLICT'],
        ['taken email', { body: { username: 'dan', password: GOOD, email: 'alice@example.com' } }, 409, 'CONFLICT', /email/],
        ['wrong content type', { raw: 'username=dan', contentType: 'application/x-www-form-urlencoded' }, 415, 'UNSUPPORTED_MEDIA_TYPE'],
      ];
      for (const [label, input, status, code, message] of cases) {
        const res = await call('POST', '/users', { auth: admin, ...input });
        assert.equal(res.status, status, `${label}: ${res.text}`);
        assertError(res, status, code, message);
      }
      assert.equal(await userCount(), before);
    });

    it('lets only system admins list and create users; self-registration is off', async () => {
      assertError(await call('GET', '/users'), 401, 'UNAUTHORIZED');
      assertError(await call('GET', '/users', { auth: basic('alice', GOOD) }), 403, 'FORBIDDEN');
      assertError(await call('POST', '/users', { body: { username: 'eve', password: GOOD } }), 401, 'UNAUTHORIZED');
      assertError(await call('POST', '/users', { auth: basic('alice', GOOD), body: { username: 'eve', password: GOOD } }), 403, 'FORBIDDEN');
      assertError(await call('GET', '/users', { auth: basic('alice', 'Wrong0000') }), 401, 'UNAUTHORIZED');
    });

    it('lists with paging headers, q= and username= filters and sorting; bad parameters are 400', async () => {
      await create('dave.smith', { email: 'dave@corp.example.org' });
      await create('erin');
      const total = await userCount();
      assert.equal(total, 6);
      const page = await call('GET', '/users?page=2&page_size=2', { auth: admin });
      assert.equal(page.status, 200);
      assert.equal(page.headers.get('x-total-count'), '6');
      assert.equal(page.json.length, 2);
      assert.deepEqual(
        page.json.map((u: { username: string }) => u.username),
        ['bob', 'carol'],
      );
      const link = page.headers.get('link') ?? '';
      assert.match(link, /page=1&page_size=2>; rel="prev"/);
      assert.match(link, /page=3&page_size=2>; rel="next"/);
      const names = async (query: string) => {
        const res = await call('GET', `/users?${query}`, { auth: admin });
        assert.equal(res.status, 200, res.text);
        return res.json.map((u: { username: string }) => u.username);
      };
      assert.deepEqual(await names(`q=${encodeURIComponent('username=~LIC')}`), ['alice']);
      assert.deepEqual(await names(`q=${encodeURIComponent('username=bob')}`), ['bob']);
      assert.deepEqual(await names(`q=${encodeURIComponent('email=~corp.example')}`), ['dave.smith']);
      assert.deepEqual(await names('username=a'), ['admin', 'alice', 'carol', 'dave.smith']);
      assert.deepEqual(await names('email=example.com'), ['alice', 'bob']);
      assert.deepEqual(await names('sort=-username&page_size=3'), ['erin', 'dave.smith', 'carol']);
      assert.deepEqual(await names(`q=${encodeURIComponent('username=~%')}`), []);
      assertError(await call('GET', '/users?sort=password', { auth: admin }), 400, 'BAD_REQUEST', /sort/);
      assertError(await call('GET', `/users?q=${encodeURIComponent('password=x')}`, { auth: admin }), 400, 'BAD_REQUEST', /unknown key/);
      assertError(await call('GET', `/users?q=${encodeURIComponent('username={a b}')}`, { auth: admin }), 400, 'BAD_REQUEST');
      assertError(await call('GET', '/users?page_size=101', { auth: admin }), 400, 'BAD_REQUEST', /page_size/);
      assertError(await call('GET', '/users?page=0', { auth: admin }), 400, 'BAD_REQUEST', /page/);
    });

    it('GET /users/current is the caller; anonymous callers have none', async () => {
      const me = await call('GET', '/users/current', { auth: basic('bob', GOOD) });
      assert.equal(me.status, 200);
      assert.equal(me.json.user_id, ids.bob);
      assert.deepEqual(Object.keys(me.json).sort(), USER_KEYS);
      assertError(await call('GET', '/users/current'), 401, 'UNAUTHORIZED');
    });

    it('GET /users/search finds names for any logged-in user, showing only id and name', async () => {
      const res = await call('GET', '/users/search?username=a', { auth: basic('bob', GOOD) });
      assert.equal(res.status, 200, res.text);
      assert.equal(res.headers.get('x-total-count'), '4');
      for (const item of res.json) assert.deepEqual(Object.keys(item).sort(), ['user_id', 'username']);
      assert.deepEqual(
        res.json.map((u: { username: string }) => u.username),
        ['admin', 'alice', 'carol', 'dave.smith'],
      );
      const paged = await call('GET', '/users/search?username=a&page_size=1&page=2', { auth: basic('bob', GOOD) });
      assert.deepEqual(paged.json, [{ user_id: ids.alice, username: 'alice' }]);
      assertError(await call('GET', '/users/search?username=a'), 401, 'UNAUTHORIZED');
      assertError(await call('GET', '/users/search', { auth: basic('bob', GOOD) }), 400, 'BAD_REQUEST', /username/);
      assertError(await call('GET', '/users/search?username=', { auth: basic('bob', GOOD) }), 400, 'BAD_REQUEST');
    });

    it('GET /users/{id}: yourself or, for admins, anyone; others 403 (even for missing ids); bad ids 400', async () => {
      assert.equal((await call('GET', `/users/${ids.bob}`, { auth: basic('bob', GOOD) })).json.username, 'bob');
      assertError(await call('GET', `/users/${ids.alice}`, { auth: basic('bob', GOOD) }), 403, 'FORBIDDEN');
      assertError(await call('GET', '/users/99999', { auth: basic('bob', GOOD) }), 403, 'FORBIDDEN');
      assertError(await call('GET', '/users/99999', { auth: admin }), 404, 'NOT_FOUND');
      assertError(await call('GET', `/users/${ids.bob}`), 401, 'UNAUTHORIZED');
      for (const bad of ['abc', '0', '-1', '1.5', '99999999999999999999']) assertError(await call('GET', `/users/${bad}`, { auth: admin }), 400, 'BAD_REQUEST');
    });

    it('PUT /users/{id} updates a profile (yourself, or admins anyone); bad input changes nothing', async () => {
      const bob = basic('bob', GOOD);
      const res = await call('PUT', `/users/${ids.bob}`, { auth: bob, body: { realname: 'Bob B', comment: 'ops' } });
      assert.equal(res.status, 200, res.text);
      let got = (await call('GET', `/users/${ids.bob}`, { auth: bob })).json;
      assert.equal(got.realname, 'Bob B');
      assert.equal(got.comment, 'ops');
      assert.equal(got.email, 'bob@example.com');
      assert.ok(got.update_time >= got.creation_time);
      assert.equal((await call('PUT', `/users/${ids.bob}`, { auth: admin, body: { email: 'robert@example.com' } })).status, 200);
      assertError(await call('PUT', `/users/${ids.alice}`, { auth: bob, body: { realname: 'hacked' } }), 403, 'FORBIDDEN');
      assertError(await call('PUT', `/users/${ids.bob}`, { auth: bob, body: { email: 'alice@example.com' } }), 409, 'CONFLICT');
      assertError(await call('PUT', `/users/${ids.bob}`, { auth: bob, body: { email: 'nope' } }), 400, 'BAD_REQUEST', /email/);
      assertError(await call('PUT', `/users/${ids.bob}`, { auth: bob, body: { username: 'bobby' } }), 400, 'BAD_REQUEST');
      assertError(await call('PUT', `/users/${ids.bob}`, { auth: bob, body: { comment: 7 } }), 400, 'BAD_REQUEST');
      assertError(await call('PUT', `/users/${ids.bob}`, { auth: bob, raw: '{' }), 400, 'BAD_REQUEST');
      assertError(await call('PUT', '/users/99999', { auth: admin, body: { comment: 'x' } }), 404, 'NOT_FOUND');
      got = (await call('GET', `/users/${ids.bob}`, { auth: bob })).json;
      assert.equal(got.email, 'robert@example.com');
      assert.equal(got.realname, 'Bob B');
      assert.equal((await call('GET', `/users/${ids.alice}`, { auth: admin })).json.realname, 'Alice A');
    });

    it('PUT /users/{id}/password: your own needs the current one; admins reset anyone’s; policy and reuse refused', async () => {
      const path = `/users/${ids.carol}/password`;
      const carol = basic('carol', GOOD);
      assertError(await call('PUT', path, { auth: carol, body: { new_password: 'Newpass12' } }), 400, 'BAD_REQUEST', /old_password/);
      assertError(await call('PUT', path, { auth: carol, body: { old_password: 'Wrong0000', new_password: 'Newpass12' } }), 403, 'FORBIDDEN', /current password/);
      assertError(await call('PUT', path, { auth: carol, body: { old_password: GOOD, new_password: 'weak' } }), 400, 'BAD_REQUEST', /at least 8/);
      assertError(await call('PUT', path, { auth: carol, body: { old_password: GOOD, new_password: GOOD } }), 400, 'BAD_REQUEST', /identical/);
      assertError(await call('PUT', path, { auth: carol, body: { old_password: GOOD, new_password: 'Newpass12', extra: 1 } }), 400, 'BAD_REQUEST');
      assertError(await call('PUT', path, { auth: carol, body: { old_password: GOOD } }), 400, 'BAD_REQUEST', /new_password/);
      assertError(await call('PUT', `/users/${ids.alice}/password`, { auth: carol, body: { old_password: GOOD, new_password: 'Newpass12' } }), 403, 'FORBIDDEN');
      assert.equal((await call('GET', '/users/current', { auth: carol })).status, 200, 'nothing changed so far');

      assert.equal((await call('PUT', path, { auth: carol, body: { old_password: GOOD, new_password: 'Newpass12' } })).status, 200);
      assertError(await call('GET', '/users/current', { auth: carol }), 401, 'UNAUTHORIZED');
      assert.equal((await call('GET', '/users/current', { auth: basic('carol', 'Newpass12') })).status, 200);

      // An admin resets someone else's password without the old one.
      assert.equal((await call('PUT', path, { auth: admin, body: { new_password: 'Reset1234' } })).status, 200);
      assert.equal((await call('GET', '/users/current', { auth: basic('carol', 'Reset1234') })).status, 200);
      assertError(await call('PUT', '/users/99999/password', { auth: admin, body: { new_password: 'Reset1234' } }), 404, 'NOT_FOUND');
      // An admin changing their own password gives the current one too.
      assertError(await call('PUT', '/users/1/password', { auth: admin, body: { new_password: 'Admin99999' } }), 400, 'BAD_REQUEST', /old_password/);
    });

    it('PUT /users/{id}/sysadmin: admins only; the last system admin keeps the flag (412)', async () => {
      const alice = basic('alice', GOOD);
      assertError(await call('PUT', `/users/${ids.alice}/sysadmin`, { auth: alice, body: { sysadmin_flag: true } }), 403, 'FORBIDDEN');
      for (const body of [{}, { sysadmin_flag: 'yes' }, { sysadmin_flag: 1 }, { sysadmin_flag: true, x: 1 }]) {
        assertError(await call('PUT', `/users/${ids.alice}/sysadmin`, { auth: admin, body }), 400, 'BAD_REQUEST');
      }
      assertError(await call('PUT', '/users/1/sysadmin', { auth: admin, body: { sysadmin_flag: false } }), 412, 'PRECONDITION', /last system administrator/);
      assert.equal((await call('GET', '/users/current', { auth: admin })).json.sysadmin_flag, true);
      assertError(await call('PUT', '/users/99999/sysadmin', { auth: admin, body: { sysadmin_flag: true } }), 404, 'NOT_FOUND');

      assert.equal((await call('PUT', `/users/${ids.alice}/sysadmin`, { auth: admin, body: { sysadmin_flag: true } })).status, 200);
      // The change applies at once, even to a login that was just cached.
      const listed = await call('GET', '/users', { auth: alice });
      assert.equal(listed.status, 200, listed.text);
      assert.equal((await call('GET', '/users/current', { auth: alice })).json.sysadmin_flag, true);
      // admin steps down; alice is the last system admin and cannot step down herself.
      assert.equal((await call('PUT', '/users/1/sysadmin', { auth: alice, body: { sysadmin_flag: false } })).status, 200);
      assertError(await call('GET', '/users', { auth: admin }), 403, 'FORBIDDEN');
      assertError(await call('PUT', `/users/${ids.alice}/sysadmin`, { auth: alice, body: { sysadmin_flag: false } }), 412, 'PRECONDITION');
      // Nor delete herself (the only way, for a user, to delete the last system admin).
      assertError(await call('DELETE', `/users/${ids.alice}`, { auth: alice }), 403, 'FORBIDDEN', /yourself/);
      assert.equal((await call('GET', '/users/current', { auth: alice })).json.sysadmin_flag, true);
      assert.equal((await call('PUT', '/users/1/sysadmin', { auth: alice, body: { sysadmin_flag: true } })).status, 200);
      assert.equal((await call('GET', '/users/current', { auth: admin })).json.sysadmin_flag, true);
    });

    it('DELETE /users/{id}: admins only, not yourself, never admin; the deleted user can no longer log in', async () => {
      const alice = basic('alice', GOOD);
      const erin = basic('erin', GOOD);
      assert.equal((await call('GET', '/users/current', { auth: erin })).status, 200);
      assertError(await call('DELETE', `/users/${ids.erin}`, { auth: basic('bob', GOOD) }), 403, 'FORBIDDEN');
      assertError(await call('DELETE', `/users/${ids.erin}`), 401, 'UNAUTHORIZED');
      assertError(await call('DELETE', '/users/1', { auth: admin }), 403, 'FORBIDDEN', /yourself/);
      assertError(await call('DELETE', '/users/1', { auth: alice }), 403, 'FORBIDDEN', /admin cannot be deleted/);
      assertError(await call('DELETE', '/users/99999', { auth: admin }), 404, 'NOT_FOUND');
      assertError(await call('DELETE', '/users/x', { auth: admin }), 400, 'BAD_REQUEST');
      const before = await userCount();
      const res = await call('DELETE', `/users/${ids.erin}`, { auth: admin });
      assert.equal(res.status, 200, res.text);
      assert.equal(await userCount(), before - 1);
      assertError(await call('GET', `/users/${ids.erin}`, { auth: admin }), 404, 'NOT_FOUND');
      assertError(await call('GET', '/users/current', { auth: erin }), 401, 'UNAUTHORIZED');
      // A system admin other than yourself may be deleted.
      assert.equal((await call('DELETE', `/users/${ids.alice}`, { auth: admin })).status, 200);
      assertError(await call('GET', '/users/current', { auth: alice }), 401, 'UNAUTHORIZED');
    });

    it('GET /users/current/permissions lists what the caller holds in /system or a project', async () => {
      const system = await call('GET', '/users/current/permissions?scope=/system', { auth: admin });
      assert.equal(system.status, 200, system.text);
      assert.ok(system.json.some((p: { resource: string; action: string }) => p.resource === '/system/user' && p.action === 'create'));
      const relative = await call('GET', '/users/current/permissions?scope=/system&relative=true', { auth: admin });
      assert.ok(relative.json.some((p: { resource: string; action: string }) => p.resource === 'user' && p.action === 'delete'));
      assert.deepEqual((await call('GET', '/users/current/permissions?scope=/system', { auth: basic('bob', GOOD) })).json, []);

      // library (project 1) is public: bob, not a member, may pull from it but not push.
      const project = await call('GET', '/users/current/permissions?scope=/project/1&relative=true', { auth: basic('bob', GOOD) });
      assert.equal(project.status, 200, project.text);
      const held = new Set(project.json.map((p: { resource: string; action: string }) => `${p.resource}:${p.action}`));
      assert.ok(held.has('repository:pull'), project.text);
      assert.ok(!held.has('repository:push'));
      const asAdmin = await call('GET', '/users/current/permissions?scope=/project/1', { auth: admin });
      assert.ok(asAdmin.json.some((p: { resource: string; action: string }) => p.resource === '/project/1/repository' && p.action === 'push'), asAdmin.text);
      assert.deepEqual((await call('GET', '/users/current/permissions?scope=/project/99999', { auth: basic('bob', GOOD) })).json, []);

      assertError(await call('GET', '/users/current/permissions?scope=/system'), 401, 'UNAUTHORIZED');
      assertError(await call('GET', '/users/current/permissions', { auth: admin }), 400, 'BAD_REQUEST', /scope/);
      assertError(await call('GET', '/users/current/permissions?scope=/projects/1', { auth: admin }), 400, 'BAD_REQUEST', /scope/);
      assertError(await call('GET', '/users/current/permissions?scope=/system&relative=maybe', { auth: admin }), 400, 'BAD_REQUEST');
    });

    it('a system robot acts on users exactly as far as its permissions go, and has no current user', async () => {
      const created = await call('POST', '/robots', {
        auth: admin,
        body: { name: 'user-reader', level: 'system', duration: -1, permissions: [{ kind: 'system', namespace: '/', access: [{ resource: 'user', action: 'list' }, { resource: 'user', action: 'read' }] }] },
      });
      assert.equal(created.status, 201, created.text);
      const robot = basic(created.json.name, created.json.secret);
      assert.equal((await call('GET', '/users', { auth: robot })).status, 200);
      assert.equal((await call('GET', `/users/${ids.bob}`, { auth: robot })).json.username, 'bob');
      assertError(await call('POST', '/users', { auth: robot, body: { username: 'fred', password: GOOD } }), 403, 'FORBIDDEN');
      assertError(await call('PUT', `/users/${ids.bob}`, { auth: robot, body: { comment: 'x' } }), 403, 'FORBIDDEN');
      assertError(await call('DELETE', `/users/${ids.bob}`, { auth: robot }), 403, 'FORBIDDEN');
      assertError(await call('GET', '/users/current', { auth: robot }), 403, 'FORBIDDEN');
      assert.equal((await call('GET', '/users/search?username=b', { auth: robot })).status, 200);
      const held = await call('GET', '/users/current/permissions?scope=/system', { auth: robot });
      assert.deepEqual(
        held.json.map((p: { resource: string; action: string }) => `${p.resource}:${p.action}`).sort(),
        ['/system/user:list', '/system/user:read'],
      );
    });

    it('documents every user route in the OpenAPI document', async () => {
      const res = await fetch(`${server.url}/api/v2.0/openapi.json`);
      assert.equal(res.status, 200);
      const doc = (await res.json()) as { paths: Record<string, Record<string, { operationId?: string; tags?: string[] }>> };
      const operations = Object.values(doc.paths)
        .flatMap((methods) => Object.values(methods))
        .filter((op) => op.tags?.includes('user'))
        .map((op) => op.operationId)
        .sort();
      assert.deepEqual(operations, [
        'createUser',
        'deleteUser',
        'getCurrentUserInfo',
        'getCurrentUserPermissions',
        'getUser',
        'listUsers',
        'searchUsers',
        'setUserSysAdmin',
        'updateUserPassword',
        'updateUserProfile',
      ]);
    });
  });
}
