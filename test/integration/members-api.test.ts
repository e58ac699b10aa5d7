/**
 * /api/v2.0/projects/{p}/members over HTTP on every backend: the permission matrix, Harbor's
 * member JSON, adding by user id or name, role changes taking effect at once, removal, and bad
 * input answered with a 4xx that changes nothing.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { BACKENDS } from '../helpers/backends.ts';
import { createUser, type TestUser } from '../helpers/iam.ts';
import { CALLERS, type Caller, type Cast, createCast, refusal, type TestProject } from '../helpers/project-roles.ts';
import { ADMIN_AUTH, startTestServer, type TestServer } from '../helpers/server.ts';

interface MemberJson {
  id: number;
  project_id: number;
  entity_name: string;
  role_name: string;
  role_id: number;
  entity_id: number;
  entity_type: string;
}

const READERS: readonly Caller[] = ['admin', 'projectAdmin', 'maintainer', 'developer', 'guest'];
const ADMINS: readonly Caller[] = ['admin', 'projectAdmin'];

for (const backend of BACKENDS) {
  describe(`members API (${backend})`, () => {
    let server: TestServer;
    let cast: Cast;
    let extra: TestUser;
    let newcomer: TestUser;
    /** The member id of `extra` in each project. */
    const extraMid = new Map<number, number>();

    async function call(method: string, path: string, options: { auth?: string | undefined; body?: unknown; raw?: string; headers?: Record<string, string> } = {}): Promise<Response> {
      const headers: Record<string, string> = { ...(options.headers ?? {}) };
      if (options.auth) headers.authorization = options.auth;
      let body: string | undefined;
      if (options.raw !== undefined) {
        body = options.raw;
        headers['content-type'] ??= 'application/json';
      } else if (options.body !== undefined) {
        body = JSON.stringify(options.body);
        headers['content-type'] ??= 'application/json';
      }
      return fetch(`${server.url}/api/v2.0${path}`, { method, headers, ...(body !== undefined ? { body } : {}) });
    }
    const json = async <T>(res: Response, status = 200): Promise<T> => {
      const text = await res.text();
      assert.equal(res.status, status, text);
      return JSON.parse(text) as T;
    };
    const memberRows = async (projectId: number) =>
      (await server.app.database.db.selectFrom('project_members').select(['user_id', 'role_id']).where('project_id', '=', projectId).orderBy('user_id').execute()).map((r) => ({ ...r }));

    before(async () => {
      server = await startTestServer(backend, { config: { auth: { enabled: true } } });
      cast = await createCast(server, 'mm');
      extra = await createUser(server, 'extra');
      newcomer = await createUser(server, 'newcomer');
      for (const p of [cast.priv, cast.pub]) {
        const res = await call('POST', `/projects/${p.name}/members`, { auth: ADMIN_AUTH, body: { role_id: 3, member_user: { username: 'extra' } } });
        assert.equal(res.status, 201, await res.text());
        extraMid.set(p.id, Number(res.headers.get('location')?.split('/').pop()));
      }
    });

    after(async () => {
      await server?.close();
    });

    describe('permissions', () => {
      interface Case {
        readonly name: string;
        readonly method: string;
        readonly path: (p: TestProject) => string;
        readonly body?: unknown;
        readonly allow: readonly Caller[];
        readonly ok: readonly number[];
      }
      const cases: Case[] = [
        { name: 'GET members', method: 'GET', path: (p) => `/projects/${p.name}/members`, allow: READERS, ok: [200] },
        { name: 'GET members/{mid}', method: 'GET', path: (p) => `/projects/${p.id}/members/${extraMid.get(p.id)}`, allow: READERS, ok: [200] },
        { name: 'POST members', method: 'POST', path: (p) => `/projects/${p.name}/members`, body: { role_id: 3, member_user: { username: 'extra' } }, allow: ADMINS, ok: [409] },
        { name: 'PUT members/{mid}', method: 'PUT', path: (p) => `/projects/${p.name}/members/${extraMid.get(p.id)}`, body: { role_id: 3 }, allow: ADMINS, ok: [200] },
        { name: 'DELETE members/{mid}', method: 'DELETE', path: (p) => `/projects/${p.name}/members/999999`, allow: ADMINS, ok: [404] },
      ];
      for (const c of cases) {
        it(`${c.name}: the matrix for every caller on a private and a public project`, async () => {
          const got: string[] = [];
          const want: string[] = [];
          for (const project of [cast.priv, cast.pub]) {
            for (const caller of CALLERS) {
              const allowed = c.allow.includes(caller);
              const res = await call(c.method, c.path(project), { auth: cast.headers(caller).authorization, body: c.body });
              const text = await res.text();
              // An allowed DELETE of an unknown member is a 404 about the member, not the project.
              const ok = allowed && c.ok.includes(res.status) && (c.method !== 'DELETE' || text.includes('member 999999'));
              const label = `${project.public ? 'public' : 'private'} ${caller}`;
              got.push(`${label}: ${ok ? 'allowed' : res.status}`);
              want.push(`${label}: ${allowed ? 'allowed' : refusal(caller, project)}`);
            }
          }
          assert.deepEqual(got, want);
        });
      }

      it('refused member changes change nothing', async () => {
        for (const project of [cast.priv, cast.pub]) {
          const before = await memberRows(project.id);
          for (const caller of ['maintainer', 'developer', 'guest', 'limitedGuest', 'outsider', 'anonymous'] as const) {
            const auth = cast.headers(caller).authorization;
            const mid = extraMid.get(project.id);
            assert.equal((await call('POST', `/projects/${project.name}/members`, { auth, body: { role_id: 1, member_user: { username: 'newcomer' } } })).status, refusal(caller, project));
            assert.equal((await call('PUT', `/projects/${project.name}/members/${mid}`, { auth, body: { role_id: 1 } })).status, refusal(caller, project));
            assert.equal((await call('DELETE', `/projects/${project.name}/members/${mid}`, { auth })).status, refusal(caller, project));
          }
          assert.deepEqual(await memberRows(project.id), before);
        }
      });
    });

    it('a project admin adds a user by name or id; the member JSON is Harbor’s; the role applies at once', async () => {
      const p = cast.priv;
      const pa = cast.users.projectAdmin.auth;
      assert.equal((await call('GET', `/projects/${p.name}/metadatas/`, { auth: newcomer.auth })).status, 404, 'not a member: the project is hidden');
      const res = await call('POST', `/projects/${p.name}/members`, { auth: pa, body: { role_id: 4, member_user: { user_id: newcomer.id } } });
      assert.equal(res.status, 201, await res.text());
      const location = res.headers.get('location') ?? '';
      assert.match(location, new RegExp(`^/api/v2\\.0/projects/${p.id}/members/\\d+$`));
      const mid = Number(location.split('/').pop());
      const member = await json<MemberJson>(await call('GET', location.replace('/api/v2.0', ''), { auth: pa }));
      assert.deepEqual(member, { id: mid, project_id: p.id, entity_name: 'newcomer', role_name: 'maintainer', role_id: 4, entity_id: newcomer.id, entity_type: 'u' });
      assert.equal((await call('GET', `/projects/${p.name}/metadatas/`, { auth: newcomer.auth })).status, 200, 'maintainers read metadata');

      assert.equal((await call('PUT', `/projects/${p.name}/members/${mid}`, { auth: pa, body: { role_id: 2 } })).status, 200);
      assert.equal((await json<MemberJson>(await call('GET', `/projects/${p.name}/members/${mid}`, { auth: pa }))).role_name, 'developer');
      assert.equal((await call('GET', `/projects/${p.name}/metadatas/`, { auth: newcomer.auth })).status, 403, 'developers do not');
      const shown = await json<{ current_user_role_id: number }>(await call('GET', `/projects/${p.name}`, { auth: newcomer.auth }));
      assert.equal(shown.current_user_role_id, 2);

      assert.equal((await call('DELETE', `/projects/${p.name}/members/${mid}`, { auth: pa })).status, 200);
      assert.equal((await call('GET', `/projects/${p.name}`, { auth: newcomer.auth })).status, 404, 'removed: hidden again');
      assert.equal((await call('GET', `/projects/${p.name}/members/${mid}`, { auth: pa })).status, 404);
      assert.equal((await call('DELETE', `/projects/${p.name}/members/${mid}`, { auth: pa })).status, 404);

      const byName = await call('POST', `/projects/${p.id}/members`, { auth: pa, body: { role_id: 5, member_user: { username: 'newcomer' } } });
      assert.equal(byName.status, 201);
    });

    it('lists members by name with an entityname filter and paging headers', async () => {
      const p = cast.pub;
      const res = await call('GET', `/projects/${p.name}/members?page_size=100`, { auth: cast.users.guest.auth });
      const all = await json<MemberJson[]>(res);
      const names = all.map((m) => m.entity_name);
      assert.deepEqual(names, [...names].sort());
      assert.equal(Number(res.headers.get('x-total-count')), all.length);
      assert.ok(names.includes('admin') && names.includes('extra') && names.includes('mm-limitedguest'));
      assert.deepEqual(
        (await json<MemberJson[]>(await call('GET', `/projects/${p.name}/members?entityname=guest`, { auth: cast.users.guest.auth }))).map((m) => m.entity_name),
        ['mm-guest', 'mm-limitedguest'],
      );
      assert.deepEqual(await json(await call('GET', `/projects/${p.name}/members?entityname=nobody`, { auth: ADMIN_AUTH })), []);
      const page = await call('GET', `/projects/${p.name}/members?page=2&page_size=3`, { auth: ADMIN_AUTH });
      assert.deepEqual(
        (await json<MemberJson[]>(page)).map((m) => m.entity_name),
        names.slice(3, 6),
      );
      assert.match(page.headers.get('link') ?? '', /rel="prev"/);
      assert.equal((await call('GET', `/projects/${p.name}/members?page_size=0`, { auth: ADMIN_AUTH })).status, 400);
      const numeric = await call('GET', `/projects/${p.name}/members`, { auth: ADMIN_AUTH, headers: { 'x-is-resource-name': 'true' } });
      assert.equal(numeric.status, 200);
    });

    it('duplicates are 409, unknown users 404, bad roles and bodies 400; nothing changes', async () => {
      const p = cast.pub;
      const before = await memberRows(p.id);
      const post = (body: unknown) => call('POST', `/projects/${p.name}/members`, { auth: ADMIN_AUTH, body });
      const conflict = await post({ role_id: 2, member_user: { username: 'extra' } });
      assert.equal(conflict.status, 409);
      assert.match(await conflict.text(), /CONFLICT/);
      assert.equal((await post({ role_id: 2, member_user: { username: 'nobody-here' } })).status, 404);
      assert.equal((await post({ role_id: 2, member_user: { user_id: 999999 } })).status, 404);
      const bad: unknown[] = [
        { role_id: 0, member_user: { username: 'newcomer' } },
        { role_id: 6, member_user: { username: 'newcomer' } },
        { role_id: '1', member_user: { username: 'newcomer' } },
        { role_id: 1.5, member_user: { username: 'newcomer' } },
        { member_user: { username: 'newcomer' } },
        { role_id: 1 },
        { role_id: 1, member_user: {} },
        { role_id: 1, member_user: { username: '' } },
        { role_id: 1, member_user: { user_id: 0 } },
        { role_id: 1, member_user: { user_id: '5' } },
        { role_id: 1, member_user: { username: 'newcomer', admin: true } },
        { role_id: 1, member_user: { user_id: extra.id, username: 'newcomer' } },
        { role_id: 1, member_group: { group_name: 'devs' } },
        { role_id: 1, member_user: { username: 'newcomer' }, extra: 1 },
        [],
        'newcomer',
      ];
      for (const body of bad) assert.equal((await post(body)).status, 400, JSON.stringify(body));
      assert.equal((await call('POST', `/projects/${p.name}/members`, { auth: ADMIN_AUTH, raw: '{"role_id": 1, ' })).status, 400);
      const mid = extraMid.get(p.id);
      for (const body of [{ role_id: 9 }, { role_id: 'guest' }, {}, { role_id: 2, extra: true }]) {
        assert.equal((await call('PUT', `/projects/${p.name}/members/${mid}`, { auth: ADMIN_AUTH, body })).status, 400, JSON.stringify(body));
      }
      assert.equal((await call('PUT', `/projects/${p.name}/members/${mid}`, { auth: ADMIN_AUTH, raw: 'nope' })).status, 400);
      for (const path of ['abc', '0', '-1', '1.5']) assert.equal((await call('GET', `/projects/${p.name}/members/${path}`, { auth: ADMIN_AUTH })).status, 400, path);
      const otherProjectsMember = extraMid.get(cast.priv.id);
      assert.equal((await call('GET', `/projects/${p.name}/members/${otherProjectsMember}`, { auth: ADMIN_AUTH })).status, 404);
      assert.equal((await call('PUT', `/projects/${p.name}/members/${otherProjectsMember}`, { auth: ADMIN_AUTH, body: { role_id: 1 } })).status, 404);
      assert.deepEqual(await memberRows(p.id), before);
      assert.deepEqual(await memberRows(cast.priv.id).then((rows) => rows.find((r) => r.user_id === extra.id)?.role_id), 3);
    });

    it('the last Project Admin may leave (as in Harbor); system admins still manage the project', async () => {
      const created = await call('POST', '/projects', { auth: newcomer.auth, body: { project_name: 'solo' } });
      assert.equal(created.status, 201);
      const members = await json<MemberJson[]>(await call('GET', '/projects/solo/members', { auth: newcomer.auth }));
      assert.equal(members.length, 1);
      assert.equal((await call('DELETE', `/projects/solo/members/${members[0]?.id}`, { auth: newcomer.auth })).status, 200);
      assert.equal((await call('GET', '/projects/solo', { auth: newcomer.auth })).status, 404);
      const readd = await call('POST', '/projects/solo/members', { auth: ADMIN_AUTH, body: { role_id: 1, member_user: { username: 'newcomer' } } });
      assert.equal(readd.status, 201);
      assert.equal((await call('GET', '/projects/solo', { auth: newcomer.auth })).status, 200);
    });
  });
}
