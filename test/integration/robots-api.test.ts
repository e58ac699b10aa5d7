/**
 * Harbor's robot API over a real socket: create (secret in the 201 only), get, list with q= and
 * paging, update, refresh, delete; the secret logging in with HTTP Basic on the API and at the
 * token service; disabled and expired robots refused at once (no cached login survives);
 * escalation refused; bad input answered with Harbor's error shape and nothing stored.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { BACKENDS } from '../helpers/backends.ts';
import { assertError } from '../helpers/http.ts';
import { addMember, createProject, createUser, registryToken, type TestUser, tokenAccess } from '../helpers/iam.ts';
import { ADMIN_AUTH, basicAuth, startTestServer, type TestServer } from '../helpers/server.ts';

const DAY_S = 86_400;
const pullPush = [
  { resource: 'repository', action: 'pull' },
  { resource: 'repository', action: 'push' },
];

interface RobotCreated {
  id: number;
  name: string;
  secret: string;
  creation_time: string;
  expires_at: number;
}

for (const backend of BACKENDS) {
  describe(`robot API (${backend})`, () => {
    let server: TestServer;
    let alice: TestUser;
    let bob: TestUser;
    let alphaId: number;
    let betaId: number;

    const api = (path: string) => `${server.url}/api/v2.0${path}`;
    const json = (auth: string | undefined, body: unknown, method = 'POST'): RequestInit => ({
      method,
      headers: { ...(auth ? { authorization: auth } : {}), 'content-type': 'application/json' },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    });
    const countRobots = async () =>
      Number((await server.app.database.db.selectFrom('robots').select((eb) => eb.fn.countAll<number | string>().as('n')).executeTakeFirstOrThrow()).n);

    async function create(auth: string, body: Record<string, unknown>): Promise<RobotCreated> {
      const res = await fetch(api('/robots'), json(auth, body));
      const text = await res.text();
      assert.equal(res.status, 201, text);
      return JSON.parse(text) as RobotCreated;
    }

    before(async () => {
      server = await startTestServer(backend, { config: { auth: { enabled: true } } });
      alice = await createUser(server, 'alice');
      bob = await createUser(server, 'bob');
      alphaId = await createProject(server, 'alpha');
      betaId = await createProject(server, 'beta');
      await addMember(server, alphaId, alice, 1);
      await addMember(server, alphaId, bob, 2);
    });
    after(() => server.close());

    it('creates a project robot: 201 with Location and the secret, which GET never shows', async () => {
      const started = Math.floor(Date.now() / 1000);
      const res = await fetch(api('/robots'), json(alice.auth, { name: 'ci', level: 'project', description: 'CI', permissions: [{ kind: 'project', namespace: 'alpha', access: pullPush }] }));
      const text = await res.text();
      assert.equal(res.status, 201, text);
      const created = JSON.parse(text) as RobotCreated;
      assert.deepEqual(Object.keys(created).sort(), ['creation_time', 'expires_at', 'id', 'name', 'secret']);
      assert.equal(res.headers.get('location'), `/api/v2.0/robots/${created.id}`);
      assert.equal(created.name, 'robot$alpha+ci');
      assert.match(created.secret, /^[A-Za-z0-9]{32}$/);
      assert.ok(created.expires_at >= started + 30 * DAY_S && created.expires_at <= started + 30 * DAY_S + 5, 'epoch seconds, 30 days on');
      assert.ok(!Number.isNaN(Date.parse(created.creation_time)));

      const got = await fetch(api(`/robots/${created.id}`), { headers: { authorization: alice.auth } });
      const robot = (await got.json()) as Record<string, unknown>;
      assert.equal(got.status, 200);
      assert.equal(robot.secret, undefined);
      assert.ok(!JSON.stringify(robot).includes(created.secret));
      assert.deepEqual(
        { ...robot, creation_time: undefined, update_time: undefined },
        {
          id: created.id,
          name: 'robot$alpha+ci',
          description: 'CI',
          level: 'project',
          duration: 30,
          editable: true,
          disable: false,
          expires_at: created.expires_at,
          permissions: [
            {
              kind: 'project',
              namespace: 'alpha',
              access: [
                { resource: 'repository', action: 'pull', effect: 'allow' },
                { resource: 'repository', action: 'push', effect: 'allow' },
              ],
            },
          ],
          creator_type: 'local',
          creator_ref: alice.id,
          creation_time: undefined,
          update_time: undefined,
        },
      );
      assert.equal(robot.creation_time, created.creation_time);
    });

    it('the secret logs in with HTTP Basic on the API and at the token service; a wrong one is 401', async () => {
      const made = await create(alice.auth, {
        name: 'lister',
        level: 'project',
        duration: -1,
        permissions: [{ kind: 'project', namespace: 'alpha', access: [...pullPush, { resource: 'robot', action: 'list' }] }],
      });
      assert.equal(made.expires_at, -1);
      const robotAuth = basicAuth(made.name, made.secret);
      const list = await fetch(api(`/robots?q=Level=project,ProjectID=${alphaId}`), { headers: { authorization: robotAuth } });
      assert.equal(list.status, 200, await list.clone().text());
      const names = ((await list.json()) as Array<{ name: string }>).map((r) => r.name);
      assert.ok(names.includes('robot$alpha+lister'));
      // It holds nothing in beta, nor may it read system robots.
      await assertError(await fetch(api(`/robots?q=Level=project,ProjectID=${betaId}`), { headers: { authorization: robotAuth } }), 404, 'NOT_FOUND');
      await assertError(await fetch(api('/robots'), { headers: { authorization: robotAuth } }), 403, 'FORBIDDEN');
      await assertError(await fetch(api('/robots'), { headers: { authorization: basicAuth(made.name, `${made.secret}x`) } }), 401, 'UNAUTHORIZED');
      const perms = await fetch(api('/permissions'), { headers: { authorization: robotAuth } });
      assert.equal(perms.status, 200);

      const token = await registryToken(server, ['repository:alpha/app:pull,push', 'repository:beta/app:pull'], robotAuth);
      assert.deepEqual(tokenAccess(token), [{ type: 'repository', name: 'alpha/app', actions: ['pull', 'push'] }]);
    });

    it('lists with Harbor paging and q=; a non-admin must name a project it may see', async () => {
      for (const name of ['p1', 'p2', 'p3']) await create(ADMIN_AUTH, { name, level: 'project', permissions: [{ kind: 'project', namespace: 'beta', access: pullPush }] });
      const res = await fetch(api(`/robots?q=Level%3Dproject%2CProjectID%3D${betaId}&page=2&page_size=2`), { headers: { authorization: ADMIN_AUTH } });
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('x-total-count'), '3');
      assert.match(res.headers.get('link') ?? '', /rel="prev"/);
      assert.deepEqual(((await res.json()) as Array<{ name: string }>).map((r) => r.name), ['robot$beta+p3']);
      const fuzzy = await fetch(api(`/robots?q=${encodeURIComponent(`Level=project,ProjectID=${betaId},name=~p2`)}`), { headers: { authorization: ADMIN_AUTH } });
      assert.deepEqual(((await fuzzy.json()) as Array<{ name: string }>).map((r) => r.name), ['robot$beta+p2']);
      const sorted = await fetch(api(`/robots?q=ProjectID=${betaId}&sort=-name`), { headers: { authorization: ADMIN_AUTH } });
      assert.deepEqual(((await sorted.json()) as Array<{ name: string }>).map((r) => r.name), ['robot$beta+p3', 'robot$beta+p2', 'robot$beta+p1']);

      await assertError(await fetch(api('/robots'), { headers: { authorization: bob.auth } }), 403, 'FORBIDDEN');
      await assertError(await fetch(api(`/robots?q=Level=project,ProjectID=${betaId}`), { headers: { authorization: bob.auth } }), 404, 'NOT_FOUND');
      const mine = await fetch(api(`/robots?q=Level=project,ProjectID=${alphaId}`), { headers: { authorization: bob.auth } });
      assert.equal(mine.status, 200, 'a developer may list the robots of its project');
      for (const bad of ['Level=project', 'Level=global', 'ProjectID=abc', 'Owner=1', 'Level=system,ProjectID=1']) {
        await assertError(await fetch(api(`/robots?q=${encodeURIComponent(bad)}`), { headers: { authorization: ADMIN_AUTH } }), 400, 'BAD_REQUEST');
      }
      await assertError(await fetch(api('/robots?sort=secret'), { headers: { authorization: ADMIN_AUTH } }), 400, 'BAD_REQUEST');
      await assertError(await fetch(api('/robots?page_size=1000'), { headers: { authorization: ADMIN_AUTH } }), 400, 'BAD_REQUEST');
      await assertError(await fetch(api('/robots')), 401, 'UNAUTHORIZED');
    });

    it('creates a system robot as the admin, which is refused to others', async () => {
      const body = {
        name: 'ops',
        level: 'system',
        permissions: [
          { kind: 'system', namespace: '/', access: [{ resource: 'catalog', action: 'read' }] },
          { kind: 'project', namespace: '*', access: [{ resource: 'repository', action: 'pull' }] },
        ],
      };
      await assertError(await fetch(api('/robots'), json(alice.auth, body)), 403, 'FORBIDDEN');
      const made = await create(ADMIN_AUTH, body);
      assert.equal(made.name, 'robot$ops');
      const list = await fetch(api('/robots?q=Level=system'), { headers: { authorization: ADMIN_AUTH } });
      assert.ok(((await list.json()) as Array<{ name: string }>).some((r) => r.name === 'robot$ops'));
      await assertError(await fetch(api(`/robots/${made.id}`), { headers: { authorization: alice.auth } }), 403, 'FORBIDDEN');
      // It can pull anywhere.
      const token = await registryToken(server, ['repository:beta/app:pull'], basicAuth(made.name, made.secret));
      assert.deepEqual(tokenAccess(token), [{ type: 'repository', name: 'beta/app', actions: ['pull'] }]);
    });

    it('refuses escalation: a developer, another project, more than the creator holds', async () => {
      const before = await countRobots();
      await assertError(
        await fetch(api('/robots'), json(bob.auth, { name: 'x', level: 'project', permissions: [{ kind: 'project', namespace: 'alpha', access: [...pullPush, { resource: 'repository', action: 'delete' }] }] })),
        403,
        'FORBIDDEN',
      );
      await assertError(await fetch(api('/robots'), json(alice.auth, { name: 'x', level: 'project', permissions: [{ kind: 'project', namespace: 'beta', access: pullPush }] })), 404, 'NOT_FOUND');
      // A robot allowed to create robots in alpha cannot give one delete.
      const maker = await create(alice.auth, { name: 'maker', level: 'project', permissions: [{ kind: 'project', namespace: 'alpha', access: [...pullPush, { resource: 'robot', action: 'create' }] }] });
      const res = await fetch(
        api('/robots'),
        json(basicAuth(maker.name, maker.secret), { name: 'x', level: 'project', permissions: [{ kind: 'project', namespace: 'alpha', access: [...pullPush, { resource: 'repository', action: 'delete' }] }] }),
      );
      const text = await res.text();
      assert.equal(res.status, 403, text);
      assert.match(text, /delete on repository in project alpha/);
      assert.equal(await countRobots(), before + 1, 'only the maker was stored');
    });

    it('refuses bad input with a 400 (415 for another media type) in Harbor\'s error shape and stores nothing', async () => {
      const before = await countRobots();
      const ok = { name: 'fine', level: 'project', permissions: [{ kind: 'project', namespace: 'alpha', access: [{ resource: 'repository', action: 'pull' }] }] };
      const access = (a: unknown) => ({ ...ok, permissions: [{ kind: 'project', namespace: 'alpha', access: [a] }] });
      const cases: Array<[string, unknown]> = [
        ['malformed JSON', '{"name": "x",'],
        ['not an object', '[]'],
        ['unknown field', { ...ok, owner: 'me' }],
        ['unknown permission field', { ...ok, permissions: [{ kind: 'project', namespace: 'alpha', scope: 'x', access: [{ resource: 'repository', action: 'pull' }] }] }],
        ['unknown access field', access({ resource: 'repository', action: 'pull', when: 'always' })],
        ['name is a number', { ...ok, name: 5 }],
        ['missing name', { level: ok.level, permissions: ok.permissions }],
        ['missing permissions', { name: 'x', level: 'project' }],
        ['uppercase name', { ...ok, name: 'Fine' }],
        ['plus in name', { ...ok, name: 'a+b' }],
        ['too long name', { ...ok, name: 'a'.repeat(256) }],
        ['duration 0', { ...ok, duration: 0 }],
        ['duration as text', { ...ok, duration: '30' }],
        ['duration fraction', { ...ok, duration: 1.5 }],
        ['disable as text', { ...ok, disable: 'true' }],
        ['bad level', { ...ok, level: 'global' }],
        ['unknown resource', access({ resource: 'helm-chart', action: 'read' })],
        ['unknown action', access({ resource: 'repository', action: 'destroy' })],
        ['deny', access({ resource: 'repository', action: 'pull', effect: 'deny' })],
        ['push without pull', access({ resource: 'repository', action: 'push' })],
        ['weak secret', { ...ok, secret: 'weak' }],
        ['empty permissions', { ...ok, permissions: [] }],
      ];
      for (const [what, body] of cases) {
        const res = await fetch(api('/robots'), json(ADMIN_AUTH, body));
        const text = await res.text();
        assert.equal(res.status, 400, `${what}: ${text}`);
        const errors = (JSON.parse(text) as { errors: Array<{ code: string; message: string }> }).errors;
        assert.equal(errors[0]?.code, 'BAD_REQUEST', what);
        assert.ok((errors[0]?.message ?? '').length > 0, what);
      }
      const xml = await fetch(api('/robots'), { method: 'POST', headers: { authorization: ADMIN_AUTH, 'content-type': 'application/xml' }, body: '<robot/>' });
      await assertError(xml, 415, 'UNSUPPORTED_MEDIA_TYPE');
      const text = await fetch(api('/robots'), { method: 'POST', headers: { authorization: ADMIN_AUTH, 'content-type': 'text/plain' }, body: 'name=x' });
      await assertError(text, 400, 'BAD_REQUEST');
      await assertError(await fetch(api('/robots'), json(ADMIN_AUTH, { ...ok, permissions: [{ kind: 'project', namespace: 'nosuch', access: pullPush }] })), 404, 'NOT_FOUND');
      await assertError(await fetch(api('/robots/abc'), { headers: { authorization: ADMIN_AUTH } }), 400, 'BAD_REQUEST');
      await assertError(await fetch(api('/robots/987654'), { headers: { authorization: ADMIN_AUTH } }), 404, 'NOT_FOUND');
      // Anonymous callers hear 401 whatever they send.
      await assertError(await fetch(api('/robots'), json(undefined, ok)), 401, 'UNAUTHORIZED');
      await assertError(await fetch(api('/robots'), json(undefined, '{"name":')), 401, 'UNAUTHORIZED');
      await assertError(await fetch(api('/robots?q=Level=nope')), 401, 'UNAUTHORIZED');
      for (const method of ['GET', 'PUT', 'PATCH', 'DELETE']) {
        await assertError(await fetch(api('/robots/abc'), method === 'GET' || method === 'DELETE' ? { method } : json(undefined, { x: 1 }, method)), 401, 'UNAUTHORIZED');
      }
      assert.equal(await countRobots(), before);
      // The same name twice.
      await create(ADMIN_AUTH, { ...ok, name: 'twice' });
      await assertError(await fetch(api('/robots'), json(ADMIN_AUTH, { ...ok, name: 'twice' })), 409, 'CONFLICT');
    });

    it('updates with PUT (Harbor clients send the whole robot back); disabling takes effect at once', async () => {
      const made = await create(alice.auth, { name: 'upd', level: 'project', permissions: [{ kind: 'project', namespace: 'alpha', access: pullPush }] });
      const robotAuth = basicAuth(made.name, made.secret);
      const whoami = () => fetch(api('/permissions'), { headers: { authorization: robotAuth } });
      assert.equal((await whoami()).status, 200, 'logged in (and remembered by the login cache)');

      const current = (await (await fetch(api(`/robots/${made.id}`), { headers: { authorization: alice.auth } })).json()) as Record<string, unknown>;
      const res = await fetch(
        api(`/robots/${made.id}`),
        json(alice.auth, { ...current, description: 'updated', disable: true, duration: 7, permissions: [{ kind: 'project', namespace: 'alpha', access: [...pullPush, { resource: 'artifact', action: 'delete' }] }] }, 'PUT'),
      );
      const text = await res.text();
      assert.equal(res.status, 200, text);
      const updated = JSON.parse(text) as Record<string, unknown> & { permissions: Array<{ access: unknown[] }> };
      assert.equal(updated.description, 'updated');
      assert.equal(updated.disable, true);
      assert.equal(updated.duration, 7);
      assert.equal(updated.expires_at, Math.floor(Date.parse(String(current.creation_time)) / 1000) + 7 * DAY_S);
      assert.equal(updated.permissions[0]?.access.length, 3);
      await assertError(await whoami(), 401, 'UNAUTHORIZED');

      await assertError(await fetch(api(`/robots/${made.id}`), json(alice.auth, { name: 'robot$alpha+renamed' }, 'PUT')), 400, 'BAD_REQUEST');
      await assertError(await fetch(api(`/robots/${made.id}`), json(alice.auth, { level: 'system' }, 'PUT')), 400, 'BAD_REQUEST');
      await assertError(await fetch(api(`/robots/${made.id}`), json(alice.auth, { secret: 'NewSecret123' }, 'PUT')), 400, 'BAD_REQUEST');
      await assertError(await fetch(api(`/robots/${made.id}`), json(alice.auth, { id: made.id + 1 }, 'PUT')), 400, 'BAD_REQUEST');
      await assertError(await fetch(api(`/robots/${made.id}`), json(alice.auth, { colour: 'red' }, 'PUT')), 400, 'BAD_REQUEST');
      await assertError(await fetch(api(`/robots/${made.id}`), json(alice.auth, { duration: 0 }, 'PUT')), 400, 'BAD_REQUEST');
      await assertError(await fetch(api(`/robots/${made.id}`), json(bob.auth, { disable: false }, 'PUT')), 403, 'FORBIDDEN');

      const enabled = await fetch(api(`/robots/${made.id}`), json(alice.auth, { disable: false }, 'PUT'));
      assert.equal(enabled.status, 200);
      assert.equal((await whoami()).status, 200);
    });

    it('an expired robot is refused', async () => {
      const made = await create(alice.auth, { name: 'old', level: 'project', duration: 1, permissions: [{ kind: 'project', namespace: 'alpha', access: pullPush }] });
      const robotAuth = basicAuth(made.name, made.secret);
      assert.equal((await fetch(api('/permissions'), { headers: { authorization: robotAuth } })).status, 200);
      await server.app.database.db.updateTable('robots').set({ expires_at: Date.now() - 1000 }).where('id', '=', made.id).execute();
      // A fresh login (another secret would not be cached): refresh it, then try the new secret.
      const refreshed = await fetch(api(`/robots/${made.id}`), json(alice.auth, {}, 'PATCH'));
      const { secret } = (await refreshed.json()) as { secret: string };
      await assertError(await fetch(api('/permissions'), { headers: { authorization: basicAuth(made.name, secret) } }), 401, 'UNAUTHORIZED');
    });

    it('refreshes the secret with PATCH: generated or chosen, the old one stops working', async () => {
      const made = await create(alice.auth, { name: 'rot', level: 'project', permissions: [{ kind: 'project', namespace: 'alpha', access: pullPush }] });
      const login = (secret: string) => fetch(api('/permissions'), { headers: { authorization: basicAuth(made.name, secret) } });
      assert.equal((await login(made.secret)).status, 200);
      const res = await fetch(api(`/robots/${made.id}`), json(alice.auth, {}, 'PATCH'));
      assert.equal(res.status, 200);
      const { secret } = (await res.json()) as { secret: string };
      assert.match(secret, /^[A-Za-z0-9]{32}$/);
      await assertError(await login(made.secret), 401, 'UNAUTHORIZED');
      assert.equal((await login(secret)).status, 200);

      const bodiless = await fetch(api(`/robots/${made.id}`), { method: 'PATCH', headers: { authorization: alice.auth } });
      assert.equal(bodiless.status, 200, 'no body: a generated secret');
      const third = ((await bodiless.json()) as { secret: string }).secret;
      assert.notEqual(third, secret);
      assert.equal((await login(third)).status, 200);

      const chosen = await fetch(api(`/robots/${made.id}`), json(alice.auth, { secret: 'Chosen12345' }, 'PATCH'));
      assert.deepEqual(await chosen.json(), { secret: 'Chosen12345' });
      assert.equal((await login('Chosen12345')).status, 200);
      await assertError(await fetch(api(`/robots/${made.id}`), json(alice.auth, { secret: 'weak' }, 'PATCH')), 400, 'BAD_REQUEST');
      await assertError(await fetch(api(`/robots/${made.id}`), json(alice.auth, { secret: 'Chosen12345', x: 1 }, 'PATCH')), 400, 'BAD_REQUEST');
      await assertError(await fetch(api(`/robots/${made.id}`), json(bob.auth, {}, 'PATCH')), 403, 'FORBIDDEN');
      assert.equal((await login('Chosen12345')).status, 200, 'refused refreshes change nothing');
    });

    it('deletes: 200, then 404, and the robot no longer logs in', async () => {
      const made = await create(alice.auth, { name: 'del', level: 'project', permissions: [{ kind: 'project', namespace: 'alpha', access: pullPush }] });
      const robotAuth = basicAuth(made.name, made.secret);
      assert.equal((await fetch(api('/permissions'), { headers: { authorization: robotAuth } })).status, 200);
      await assertError(await fetch(api(`/robots/${made.id}`), { method: 'DELETE', headers: { authorization: bob.auth } }), 403, 'FORBIDDEN');
      const res = await fetch(api(`/robots/${made.id}`), { method: 'DELETE', headers: { authorization: alice.auth } });
      assert.equal(res.status, 200);
      await assertError(await fetch(api(`/robots/${made.id}`), { headers: { authorization: alice.auth } }), 404, 'NOT_FOUND');
      await assertError(await fetch(api('/permissions'), { headers: { authorization: robotAuth } }), 401, 'UNAUTHORIZED');
    });

    it('GET /permissions is the catalogue for any logged-in caller', async () => {
      const res = await fetch(api('/permissions'), { headers: { authorization: bob.auth } });
      assert.equal(res.status, 200);
      const body = (await res.json()) as { system: Array<{ resource: string; action: string }>; project: Array<{ resource: string; action: string }> };
      assert.ok(body.project.some((p) => p.resource === 'repository' && p.action === 'push'));
      assert.ok(body.system.some((p) => p.resource === 'robot' && p.action === 'create'));
      await assertError(await fetch(api('/permissions')), 401, 'UNAUTHORIZED');
    });

    it('the routes are in the OpenAPI document', async () => {
      const res = await fetch(api('/openapi.json'));
      assert.equal(res.status, 200);
      const doc = (await res.json()) as { paths: Record<string, Record<string, { operationId?: string }>> };
      const ops = Object.values(doc.paths).flatMap((p) => Object.values(p).map((o) => o.operationId));
      for (const id of ['ListRobot', 'CreateRobot', 'GetRobotByID', 'UpdateRobot', 'RefreshSec', 'DeleteRobot', 'GetPermissions']) assert.ok(ops.includes(id), id);
    });
  });
}
