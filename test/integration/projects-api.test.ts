/**
 * /api/v2.0/projects and /projects/{p}/metadatas over HTTP on every backend: who may do what
 * (each role, outsiders and anonymous visitors on a private and a public project), Harbor's JSON
 * shapes, listings with filters and paging, name-or-id lookups, the delete refusal while a project
 * holds repositories, and bad input answered with a 4xx that changes nothing.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { BACKENDS } from '../helpers/backends.ts';
import { createUser, type TestUser } from '../helpers/iam.ts';
import { CALLERS, type Caller, type Cast, createCast, refusal, type TestProject } from '../helpers/project-roles.ts';
import { ADMIN_AUTH, startTestServer, type TestServer } from '../helpers/server.ts';

interface ProjectJson {
  project_id: number;
  owner_id: number;
  owner_name: string;
  name: string;
  registry_id: null;
  creation_time: string;
  update_time: string;
  deleted: boolean;
  togglable: boolean;
  current_user_role_id: number;
  current_user_role_ids: number[];
  repo_count: number;
  metadata: Record<string, string>;
}

const MEMBERS: readonly Caller[] = ['admin', 'projectAdmin', 'maintainer', 'developer', 'guest', 'limitedGuest'];
const ADMINS: readonly Caller[] = ['admin', 'projectAdmin'];
const MAINTAINERS: readonly Caller[] = ['admin', 'projectAdmin', 'maintainer'];

interface Case {
  readonly name: string;
  readonly method: string;
  readonly path: (p: TestProject) => string;
  readonly body?: unknown;
  /** Who is let through on a private project; on a public one `publicToAll` adds everyone. */
  readonly allow: readonly Caller[];
  readonly publicToAll?: boolean;
  /** Statuses an allowed caller may get (business answers such as 409/412 count as allowed). */
  readonly ok: readonly number[];
}

const CASES: readonly Case[] = [
  { name: 'GET project', method: 'GET', path: (p) => `/projects/${p.name}`, allow: MEMBERS, publicToAll: true, ok: [200] },
  { name: 'GET project by id', method: 'GET', path: (p) => `/projects/${p.id}`, allow: MEMBERS, publicToAll: true, ok: [200] },
  { name: 'GET summary', method: 'GET', path: (p) => `/projects/${p.name}/summary`, allow: MEMBERS, publicToAll: true, ok: [200] },
  { name: 'PUT project', method: 'PUT', path: (p) => `/projects/${p.name}`, body: { metadata: { auto_scan: 'true' } }, allow: ADMINS, ok: [200] },
  { name: 'GET _deletable', method: 'GET', path: (p) => `/projects/${p.name}/_deletable`, allow: ADMINS, ok: [200] },
  // Both projects hold a repository: an allowed caller gets 412, and nothing is deleted.
  { name: 'DELETE project', method: 'DELETE', path: (p) => `/projects/${p.name}`, allow: ADMINS, ok: [412] },
  { name: 'GET metadatas/', method: 'GET', path: (p) => `/projects/${p.name}/metadatas/`, allow: MAINTAINERS, ok: [200] },
  { name: 'GET metadatas', method: 'GET', path: (p) => `/projects/${p.name}/metadatas`, allow: MAINTAINERS, ok: [200] },
  { name: 'GET metadatas/{name}', method: 'GET', path: (p) => `/projects/${p.name}/metadatas/public`, allow: MAINTAINERS, ok: [200] },
  { name: 'POST metadatas/', method: 'POST', path: (p) => `/projects/${p.name}/metadatas/`, body: { enable_content_trust: 'false' }, allow: ADMINS, ok: [200, 409] },
  { name: 'PUT metadatas/{name}', method: 'PUT', path: (p) => `/projects/${p.name}/metadatas/auto_scan`, body: { auto_scan: 'true' }, allow: ADMINS, ok: [200] },
  { name: 'DELETE metadatas/{name}', method: 'DELETE', path: (p) => `/projects/${p.name}/metadatas/prevent_vul`, allow: ADMINS, ok: [200] },
];

for (const backend of BACKENDS) {
  describe(`projects API (${backend})`, () => {
    let server: TestServer;
    let cast: Cast;
    let carol: TestUser;

    async function call(method: string, path: string, options: { auth?: string | undefined; body?: unknown; raw?: string; headers?: Record<string, string> } = {}): Promise<Response> {
      const headers: Record<string, string> = { ...(options.headers ?? {}) };
      if (options.auth) headers.authorization = options.auth;
      let body: string | undefined;
      if (options.raw !== undefined) body = options.raw;
      else if (options.body !== undefined) {
        body = JSON.stringify(options.body);
        headers['content-type'] ??= 'application/json';
      }
      return fetch(`${server.url}/api/v2.0${path}`, { method, headers, ...(body !== undefined ? { body } : {}) });
    }
    const asAdmin = (method: string, path: string, body?: unknown) => call(method, path, { auth: ADMIN_AUTH, body });
    const json = async <T>(res: Response, status = 200): Promise<T> => {
      const text = await res.text();
      assert.equal(res.status, status, text);
      return JSON.parse(text) as T;
    };
    const errorCode = async (res: Response): Promise<string | undefined> => {
      const body = (await res.json()) as { errors?: Array<{ code: string; message: string }> };
      assert.ok(body.errors?.[0]?.message, 'error message');
      return body.errors?.[0]?.code;
    };
    const db = () => server.app.database.db;
    const projectCount = async () => (await db().selectFrom('projects').select('id').execute()).length;
    const insertRepository = async (name: string) => {
      const now = Date.now();
      await db().insertInto('repositories').values({ name, created_at: now, updated_at: now, description: null }).execute();
    };

    before(async () => {
      server = await startTestServer(backend, { config: { auth: { enabled: true } } });
      cast = await createCast(server, 'pm');
      carol = await createUser(server, 'carol');
      for (const p of [cast.priv, cast.pub]) await insertRepository(`${p.name}/app`);
    });

    after(async () => {
      await server?.close();
    });

    describe('permissions', () => {
      for (const c of CASES) {
        it(`${c.name}: the matrix for every caller on a private and a public project`, async () => {
          const got: string[] = [];
          const want: string[] = [];
          for (const project of [cast.priv, cast.pub]) {
            for (const caller of CALLERS) {
              const allowed = c.allow.includes(caller) || (project.public && c.publicToAll === true);
              const res = await call(c.method, c.path(project), { auth: cast.headers(caller).authorization, body: c.body });
              await res.arrayBuffer();
              const label = `${project.public ? 'public' : 'private'} ${caller}`;
              got.push(`${label}: ${allowed && c.ok.includes(res.status) ? 'allowed' : res.status}`);
              want.push(`${label}: ${allowed ? 'allowed' : refusal(caller, project)}`);
            }
          }
          assert.deepEqual(got, want);
        });
      }

      it('HEAD /projects: logged-in callers learn whether a name exists; anonymous ones only for public projects', async () => {
        for (const caller of CALLERS) {
          for (const project of [cast.priv, cast.pub]) {
            const res = await call('HEAD', `/projects?project_name=${project.name}`, { auth: cast.headers(caller).authorization });
            const expected = caller === 'anonymous' && !project.public ? 401 : 200;
            assert.equal(res.status, expected, `${caller} ${project.name}`);
          }
          const missing = await call('HEAD', '/projects?project_name=no-such-project', { auth: cast.headers(caller).authorization });
          assert.equal(missing.status, 404, caller);
        }
        assert.equal((await call('HEAD', '/projects', { auth: ADMIN_AUTH })).status, 400);
      });

      it('refused mutations change nothing', async () => {
        for (const caller of ['maintainer', 'developer', 'guest', 'limitedGuest', 'outsider', 'anonymous'] as const) {
          for (const project of [cast.priv, cast.pub]) {
            const auth = cast.headers(caller).authorization;
            assert.equal((await call('PUT', `/projects/${project.name}`, { auth, body: { public: !project.public } })).status, refusal(caller, project));
            assert.equal((await call('PUT', `/projects/${project.name}/metadatas/public`, { auth, body: { public: String(!project.public) } })).status, refusal(caller, project));
            assert.equal((await call('POST', `/projects/${project.name}/metadatas/`, { auth, body: { severity: 'high' } })).status, refusal(caller, project));
          }
        }
        for (const project of [cast.priv, cast.pub]) {
          const shown = await json<ProjectJson>(await asAdmin('GET', `/projects/${project.id}`));
          assert.equal(shown.metadata.public, String(project.public));
          assert.equal(shown.metadata.severity, undefined);
          assert.equal(shown.repo_count, 1, 'the refused deletes left the project');
        }
      });

      it('summary shows member counts to those who may list members and the quota to those who may read it', async () => {
        const keysFor = async (caller: Caller, project: TestProject) => Object.keys(await json<object>(await call('GET', `/projects/${project.name}/summary`, { auth: cast.headers(caller).authorization }))).sort();
        const full = ['developer_count', 'guest_count', 'limited_guest_count', 'maintainer_count', 'project_admin_count', 'quota', 'repo_count'];
        for (const caller of ['admin', 'projectAdmin', 'maintainer', 'developer', 'guest'] as const) assert.deepEqual(await keysFor(caller, cast.priv), full, caller);
        assert.deepEqual(await keysFor('limitedGuest', cast.priv), ['quota', 'repo_count']);
        assert.deepEqual(await keysFor('outsider', cast.pub), ['repo_count']);
        assert.deepEqual(await keysFor('anonymous', cast.pub), ['repo_count']);
        const summary = await json<Record<string, unknown>>(await asAdmin('GET', `/projects/${cast.priv.name}/summary`));
        assert.deepEqual(summary, {
          repo_count: 1,
          // admin created the project (Project Admin) and projectAdmin was added as one.
          project_admin_count: 2,
          maintainer_count: 1,
          developer_count: 1,
          guest_count: 1,
          limited_guest_count: 1,
          quota: { hard: { storage: -1 }, used: { storage: 0 } },
        });
      });
    });

    describe('create', () => {
      it('a logged-in user creates a project and becomes its Project Admin; Location names it', async () => {
        const res = await call('POST', '/projects', { auth: carol.auth, body: { project_name: 'carols', metadata: { public: 'false', auto_scan: 'true' } } });
        assert.equal(res.status, 201, await res.text());
        const location = res.headers.get('location') ?? '';
        assert.match(location, /^\/api\/v2\.0\/projects\/\d+$/);
        const id = Number(location.split('/').pop());
        const shown = await json<ProjectJson>(await call('GET', `/projects/${id}`, { auth: carol.auth }));
        assert.equal(shown.project_id, id);
        assert.equal(shown.name, 'carols');
        assert.equal(shown.owner_name, 'carol');
        assert.equal(shown.owner_id, carol.id);
        assert.equal(shown.registry_id, null);
        assert.equal(shown.deleted, false);
        assert.equal(shown.togglable, true);
        assert.equal(shown.current_user_role_id, 1);
        assert.deepEqual(shown.current_user_role_ids, [1]);
        assert.equal(shown.repo_count, 0);
        assert.deepEqual(shown.metadata, { public: 'false', auto_scan: 'true' });
        assert.ok(!Number.isNaN(Date.parse(shown.creation_time)) && shown.creation_time.endsWith('Z'));
        const named = await call('POST', '/projects', { auth: carol.auth, body: { project_name: 'carols-2', public: true }, headers: { 'x-resource-name-in-location': 'true' } });
        assert.equal(named.status, 201);
        assert.equal(named.headers.get('location'), '/api/v2.0/projects/carols-2');
        assert.equal((await json<ProjectJson>(await call('GET', '/projects/carols-2'))).metadata.public, 'true', 'public: true is readable anonymously');
      });

      it('anonymous callers get 401, a taken name 409, a non-admin storage_limit 403; admins set it', async () => {
        const before = await projectCount();
        assert.equal((await call('POST', '/projects', { body: { project_name: 'anon-made' } })).status, 401);
        const dup = await call('POST', '/projects', { auth: carol.auth, body: { project_name: 'carols' } });
        assert.equal(dup.status, 409);
        assert.equal(await errorCode(dup), 'CONFLICT');
        assert.equal((await call('POST', '/projects', { auth: carol.auth, body: { project_name: 'library' } })).status, 409);
        const limited = await call('POST', '/projects', { auth: carol.auth, body: { project_name: 'big-one', storage_limit: 1024 } });
        assert.equal(limited.status, 403);
        assert.equal(await errorCode(limited), 'FORBIDDEN');
        assert.equal(await projectCount(), before);
        const res = await asAdmin('POST', '/projects', { project_name: 'big-one', storage_limit: 1024 });
        assert.equal(res.status, 201);
        const id = res.headers.get('location')?.split('/').pop();
        const quotas = await json<Array<{ hard: { storage: number } }>>(await asAdmin('GET', `/quotas?reference=project&reference_id=${id}`));
        assert.equal(quotas[0]?.hard.storage, 1024);
      });

      it('bad input is a 400 (415 for the wrong media type) and creates nothing', async () => {
        const before = await projectCount();
        const bodies: Array<[string, string | undefined, number]> = [
          ['{"project_name": "x"', 'application/json', 400],
          ['', 'application/json', 400],
          ['[]', 'application/json', 400],
          ['"x"', 'application/json', 400],
          ['{}', 'application/json', 400],
          ['{"project_name": 5}', 'application/json', 400],
          ['{"project_name": "ok-name", "unknown": 1}', 'application/json', 400],
          ['{"project_name": "ok-name", "public": "true"}', 'application/json', 400],
          ['{"project_name": "ok-name", "storage_limit": "10"}', 'application/json', 400],
          ['{"project_name": "ok-name", "storage_limit": 1.5}', 'application/json', 400],
          ['{"project_name": "ok-name", "metadata": {"auto_scan": true}}', 'application/json', 400],
          ['{"project_name": "ok-name", "metadata": {"colour": "red"}}', 'application/json', 400],
          ['{"project_name": "ok-name", "metadata": {"public": "yes"}}', 'application/json', 400],
          ['{"project_name": "ok-name", "metadata": {"severity": "apocalyptic"}}', 'application/json', 400],
          ['{"project_name": "ok-name", "metadata": "public"}', 'application/json', 400],
          ['{"project_name": "ok-name", "public": false, "metadata": {"public": "true"}}', 'application/json', 400],
          ['{"project_name": "ok-name", "registry_id": 1}', 'application/json', 400],
          ['{"project_name": "ok-name", "cve_allowlist": {"items": [{"cve_id": "CVE-2020-1"}]}}', 'application/json', 400],
          ['<project_name>ok-name</project_name>', 'application/xml', 415],
        ];
        for (const name of ['Upper', 'with space', '-lead', 'trail-', 'a--b', 'a/b', 'x'.repeat(256), 'ünïcode', '']) {
          bodies.push([JSON.stringify({ project_name: name }), 'application/json', 400]);
        }
        for (const [raw, type, status] of bodies) {
          const res = await call('POST', '/projects', { auth: ADMIN_AUTH, raw, headers: type ? { 'content-type': type } : {} });
          assert.equal(res.status, status, `${raw.slice(0, 60)} → ${res.status}`);
          const code = await errorCode(res);
          assert.equal(code, status === 415 ? 'UNSUPPORTED_MEDIA_TYPE' : 'BAD_REQUEST', raw.slice(0, 60));
        }
        assert.equal(await projectCount(), before);
        assert.equal((await asAdmin('POST', '/projects', { project_name: 'x'.repeat(255) })).status, 201, '255 characters are fine');
      });
    });

    describe('robots', () => {
      async function robot(name: string, permissions: unknown[]): Promise<string> {
        const res = await asAdmin('POST', '/robots', { name, level: 'system', duration: -1, permissions });
        const created = await json<{ name: string; secret: string }>(res, 201);
        return `Basic ${Buffer.from(`${created.name}:${created.secret}`).toString('base64')}`;
      }

      it('create projects only with the system permission project:create; the first admin owns them, the robot is no member', async () => {
        const puller = await robot('puller', [{ kind: 'project', namespace: cast.priv.name, access: [{ resource: 'repository', action: 'pull' }] }]);
        const refused = await call('POST', '/projects', { auth: puller, body: { project_name: 'by-puller' } });
        assert.equal(refused.status, 403);
        const maker = await robot('maker', [{ kind: 'system', namespace: '/', access: [{ resource: 'project', action: 'create' }] }]);
        const res = await call('POST', '/projects', { auth: maker, body: { project_name: 'by-robot' } });
        assert.equal(res.status, 201, await res.text());
        const shown = await json<ProjectJson>(await asAdmin('GET', '/projects/by-robot'));
        assert.equal(shown.owner_name, 'admin');
        assert.deepEqual(await json(await asAdmin('GET', '/projects/by-robot/members')), []);
        assert.deepEqual(await db().selectFrom('projects').select('id').where('name', '=', 'by-puller').execute(), []);
      });

      it('list public projects and those their permissions name', async () => {
        const puller = await robot('lister', [{ kind: 'project', namespace: cast.priv.name, access: [{ resource: 'repository', action: 'pull' }] }]);
        const res = await call('GET', '/projects?page_size=100', { auth: puller });
        const listed = (await json<ProjectJson[]>(res)).map((p) => p.name);
        assert.ok(listed.includes(cast.priv.name) && listed.includes(cast.pub.name) && listed.includes('library'));
        assert.ok(!listed.includes('carols') && !listed.includes('by-robot'), listed.join());
      });
    });

    describe('list', () => {
      const listNames = async (query: string, auth?: string) => {
        const res = await call('GET', `/projects${query}`, { auth });
        const items = await json<ProjectJson[]>(res);
        return { names: items.map((p) => p.name), total: Number(res.headers.get('x-total-count')), link: res.headers.get('link'), items };
      };

      it('shows anonymous visitors public projects, users also their own, admins all', async () => {
        const anon = await listNames('?page_size=100');
        assert.ok(anon.names.includes('library') && anon.names.includes(cast.pub.name) && !anon.names.includes(cast.priv.name));
        assert.equal(anon.total, anon.names.length);
        assert.deepEqual((await listNames('?public=false')).names, []);
        const outsider = await listNames('?page_size=100', cast.users.outsider.auth);
        assert.deepEqual(outsider.names, anon.names);
        const developer = await listNames('?page_size=100', cast.users.developer.auth);
        assert.ok(developer.names.includes(cast.priv.name));
        assert.deepEqual(developer.items.find((p) => p.name === cast.priv.name)?.current_user_role_ids, [2]);
        assert.equal(developer.items.find((p) => p.name === 'library')?.current_user_role_id, 0);
        assert.deepEqual((await listNames('?public=false', cast.users.developer.auth)).names, [cast.priv.name]);
        const admin = await listNames('?page_size=100', ADMIN_AUTH);
        assert.ok(admin.names.includes('carols') && admin.names.includes(cast.priv.name));
        assert.equal(admin.total, await projectCount());
      });

      it('filters by name (fuzzy), q= (exact, =~, {or}, project_id), owner and public; sorts; pages with Link', async () => {
        assert.deepEqual((await listNames('?name=carol&sort=name', ADMIN_AUTH)).names, ['carols', 'carols-2']);
        assert.deepEqual((await listNames(`?q=${encodeURIComponent('name=carols')}`, ADMIN_AUTH)).names, ['carols']);
        assert.deepEqual((await listNames(`?q=${encodeURIComponent('name=~arols-')}`, ADMIN_AUTH)).names, ['carols-2']);
        assert.deepEqual((await listNames(`?q=${encodeURIComponent('name={carols library}')}&sort=-name`, ADMIN_AUTH)).names, ['library', 'carols']);
        assert.deepEqual((await listNames('?owner=carol&public=true', ADMIN_AUTH)).names, ['carols-2']);
        assert.deepEqual((await listNames(`?q=${encodeURIComponent('owner=carol,public=false')}`, ADMIN_AUTH)).names, ['carols']);
        assert.deepEqual((await listNames(`?q=${encodeURIComponent(`project_id=${cast.pub.id}`)}`, ADMIN_AUTH)).names, [cast.pub.name]);
        const first = await listNames('?page=1&page_size=2&sort=name', ADMIN_AUTH);
        assert.equal(first.names.length, 2);
        assert.match(first.link ?? '', /page=2&page_size=2&sort=name>; rel="next"/);
        const second = await listNames('?page=2&page_size=2&sort=name', ADMIN_AUTH);
        assert.match(second.link ?? '', /rel="prev"/);
        assert.equal(second.total, first.total);
        assert.ok((first.names[1] ?? '') < (second.names[0] ?? ''));
        for (const bad of ['?page=0', '?page_size=101', '?page_size=x', '?public=maybe', '?sort=colour', '?q=colour=red', `?q=${encodeURIComponent('name=[a~b]')}`, `?q=${encodeURIComponent('project_id=x')}`]) {
          const res = await call('GET', `/projects${bad}`, { auth: ADMIN_AUTH });
          assert.equal(res.status, 400, bad);
          assert.equal(await errorCode(res), 'BAD_REQUEST');
        }
      });
    });

    describe('get, update, delete', () => {
      it('finds a project by id, by name, and by an all-digit name with X-Is-Resource-Name', async () => {
        const created = await asAdmin('POST', '/projects', { project_name: '4242' });
        assert.equal(created.status, 201);
        const id = Number(created.headers.get('location')?.split('/').pop());
        assert.equal((await json<ProjectJson>(await asAdmin('GET', `/projects/${id}`))).name, '4242');
        assert.equal((await call('GET', '/projects/4242', { auth: ADMIN_AUTH })).status, 404, 'digits are an id by default');
        const byName = await call('GET', '/projects/4242', { auth: ADMIN_AUTH, headers: { 'x-is-resource-name': 'true' } });
        assert.equal((await json<ProjectJson>(byName)).project_id, id);
        assert.equal((await call('GET', `/projects/${cast.priv.name}`, { auth: ADMIN_AUTH, headers: { 'x-is-resource-name': 'true' } })).status, 200);
        const hidden = await call('GET', '/projects/4242', { auth: cast.users.outsider.auth, headers: { 'x-is-resource-name': 'true' } });
        assert.equal(hidden.status, 404);
        const message = ((await hidden.json()) as { errors: Array<{ message: string }> }).errors[0]?.message ?? '';
        assert.ok(!message.includes(String(id)), `a hidden project's id does not leak: ${message}`);
        for (const missing of ['no-such', '0', '999999', '%20', 'x'.repeat(100)]) assert.equal((await asAdmin('GET', `/projects/${missing}`)).status, 404, missing);
        const overLong = await asAdmin('GET', `/projects/${'x'.repeat(300)}`);
        assert.ok(overLong.status >= 400 && overLong.status < 500, `over-long name: ${overLong.status}`);
      });

      it("a project admin changes the public flag and metadata; names, unknown keys and others' quotas are refused", async () => {
        const p = cast.priv.name;
        const pa = cast.users.projectAdmin.auth;
        assert.equal((await call('PUT', `/projects/${p}`, { auth: pa, body: { public: true, metadata: { severity: 'High', prevent_vul: 'true' } } })).status, 200);
        assert.equal((await call('GET', `/projects/${p}`)).status, 200, 'now public');
        let shown = await json<ProjectJson>(await call('GET', `/projects/${p}`, { auth: pa }));
        assert.equal(shown.metadata.severity, 'high');
        assert.equal(shown.metadata.prevent_vul, 'true');
        assert.equal(shown.metadata.auto_scan, 'true', 'keys not given are kept');
        assert.ok(Date.parse(shown.update_time) >= Date.parse(shown.creation_time));
        const refused: Array<[unknown, number]> = [
          [{ project_name: 'renamed' }, 400],
          [{ metadata: { colour: 'red' } }, 400],
          [{ metadata: { public: 'TRUE' } }, 400],
          [{ metadata: { auto_scan: 1 } }, 400],
          [{ public: 'false' }, 400],
          [{ storage_limit: 10 }, 403],
          [{ nonsense: true }, 400],
          [[], 400],
        ];
        for (const [body, status] of refused) assert.equal((await call('PUT', `/projects/${p}`, { auth: pa, body })).status, status, JSON.stringify(body));
        assert.equal((await call('PUT', `/projects/${p}`, { auth: pa, raw: '{"public":', headers: { 'content-type': 'application/json' } })).status, 400);
        shown = await json<ProjectJson>(await call('GET', `/projects/${p}`, { auth: pa }));
        assert.equal(shown.name, p);
        assert.equal(shown.metadata.public, 'true');
        assert.equal(shown.metadata.colour, undefined);
        assert.equal((await call('PUT', `/projects/${p}`, { auth: pa, body: { project_name: p, metadata: { public: 'false' } } })).status, 200);
        assert.equal((await call('GET', `/projects/${p}`)).status, 401, 'private again');
        assert.equal((await asAdmin('PUT', `/projects/${p}`, { storage_limit: 4096 })).status, 200);
        const summary = await json<{ quota: { hard: { storage: number } } }>(await asAdmin('GET', `/projects/${p}/summary`));
        assert.equal(summary.quota.hard.storage, 4096);
      });

      it('metadata endpoints: list, get one, add (409 when set), update one, delete; strings only', async () => {
        const p = cast.pub.name;
        const pa = cast.users.projectAdmin.auth;
        const all = await json<Record<string, string>>(await call('GET', `/projects/${p}/metadatas/`, { auth: pa }));
        assert.equal(all.public, 'true');
        assert.deepEqual(await json(await call('GET', `/projects/${p}/metadatas/public`, { auth: pa })), { public: 'true' });
        assert.equal((await call('GET', `/projects/${p}/metadatas/auto_sbom_generation`, { auth: pa })).status, 404);
        assert.equal((await call('POST', `/projects/${p}/metadatas/`, { auth: pa, body: { auto_sbom_generation: 'true' } })).status, 200);
        assert.equal((await call('POST', `/projects/${p}/metadatas`, { auth: pa, body: { auto_sbom_generation: 'false' } })).status, 409);
        assert.equal((await call('PUT', `/projects/${p}/metadatas/auto_sbom_generation`, { auth: pa, body: { auto_sbom_generation: 'false' } })).status, 200);
        assert.deepEqual(await json(await call('GET', `/projects/${p}/metadatas/auto_sbom_generation`, { auth: pa })), { auto_sbom_generation: 'false' });
        const bad: Array<[string, string, unknown]> = [
          ['POST', 'metadatas/', { colour: 'red' }],
          ['POST', 'metadatas/', { reuse_sys_cve_allowlist: true }],
          ['POST', 'metadatas/', {}],
          ['POST', 'metadatas/', ['public']],
          ['PUT', 'metadatas/auto_sbom_generation', { auto_scan: 'true' }],
          ['PUT', 'metadatas/auto_sbom_generation', { auto_sbom_generation: 'yes' }],
          ['PUT', 'metadatas/public', { public: 'maybe' }],
          ['PUT', 'metadatas/colour', { colour: 'red' }],
          ['DELETE', 'metadatas/public', undefined],
          ['DELETE', 'metadatas/colour', undefined],
        ];
        for (const [method, path, body] of bad) {
          const res = await call(method, `/projects/${p}/${path}`, { auth: pa, body });
          assert.equal(res.status, 400, `${method} ${path} ${JSON.stringify(body)}`);
        }
        assert.equal((await call('PUT', `/projects/${p}/metadatas/public`, { auth: pa, raw: '{"public":"true"', headers: { 'content-type': 'application/json' } })).status, 400);
        assert.equal((await call('DELETE', `/projects/${p}/metadatas/auto_sbom_generation`, { auth: pa })).status, 200);
        const after = await json<Record<string, string>>(await call('GET', `/projects/${p}/metadatas/`, { auth: pa }));
        assert.equal(after.auto_sbom_generation, undefined);
        assert.equal(after.public, 'true');
        assert.equal(after.colour, undefined);
      });

      it('delete is refused with 412 while the project holds repositories, then removes it with its members, robots and quota', async () => {
        const p = cast.priv;
        const pa = cast.users.projectAdmin.auth;
        const deletable = await json<{ deletable: boolean; message: string }>(await call('GET', `/projects/${p.name}/_deletable`, { auth: pa }));
        assert.equal(deletable.deletable, false);
        assert.match(deletable.message, /repositor/);
        const refused = await call('DELETE', `/projects/${p.name}`, { auth: pa });
        assert.equal(refused.status, 412);
        assert.equal(await errorCode(refused), 'PRECONDITION');
        await db().deleteFrom('repositories').where('name', '=', `${p.name}/app`).execute();
        assert.deepEqual(await json(await call('GET', `/projects/${p.name}/_deletable`, { auth: pa })), { deletable: true, message: '' });
        const now = Date.now();
        await db()
          .insertInto('robots')
          .values({
            name: `robot$${p.name}+ci`,
            description: '',
            level: 'project',
            project_id: p.id,
            secret_hash: 'x',
            disabled: 0,
            duration: -1,
            expires_at: -1,
            permissions: '[]',
            creator_type: 'local',
            creator_ref: '1',
            created_at: now,
            updated_at: now,
          })
          .execute();
        assert.equal((await call('DELETE', `/projects/${p.id}`, { auth: pa })).status, 200);
        assert.equal((await asAdmin('GET', `/projects/${p.name}`)).status, 404);
        assert.equal((await asAdmin('DELETE', `/projects/${p.name}`)).status, 404);
        for (const table of ['project_members', 'quotas', 'robots'] as const) {
          assert.deepEqual(await db().selectFrom(table).select('project_id').where('project_id', '=', p.id).execute(), [], table);
        }
        assert.equal((await asAdmin('GET', `/projects/${cast.pub.name}`)).status, 200);
      });
    });
  });

  describe(`projects API with projectCreation: adminonly (${backend})`, () => {
    let server: TestServer;
    before(async () => {
      server = await startTestServer(backend, { config: { auth: { enabled: true, projectCreation: 'adminonly' } } });
    });
    after(async () => {
      await server?.close();
    });

    it('only system admins may create projects', async () => {
      const user = await createUser(server, 'dora');
      const post = (auth: string | undefined, name: string) =>
        fetch(`${server.url}/api/v2.0/projects`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', ...(auth ? { authorization: auth } : {}) },
          body: JSON.stringify({ project_name: name }),
        });
      const refused = await post(user.auth, 'doras');
      assert.equal(refused.status, 403);
      assert.match(await refused.text(), /system admins/);
      assert.equal((await post(undefined, 'anons')).status, 401);
      assert.equal((await post(ADMIN_AUTH, 'admins')).status, 201);
      const names = (await server.app.database.db.selectFrom('projects').select('name').orderBy('name').execute()).map((r) => r.name);
      assert.deepEqual(names, ['admins', 'library']);
    });
  });
}
