/**
 * The audit log end to end on every backend, through a real server with auth on: each kind of
 * operation (registry push, pull, refused push, tag and artifact deletes on /v2 and through the
 * API, repository delete, project create/update/delete, members, robots, users, logins and failed
 * logins) leaves one entry with every field right; who may read which log (system admins all,
 * project admins their project's, developers and others refused); the q= syntax with its errors;
 * paging and sorting; CSV and JSON-lines exports; the AuditLogExt shape.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { api, apiJson, assertApiError } from '../helpers/harbor-api.ts';
import { waitUntil } from '../helpers/http.ts';
import { addMember, createProject, createUser, type TestUser } from '../helpers/iam.ts';
import { imageManifest, putManifest, sha256 } from '../helpers/oci.ts';
import { BACKENDS } from '../helpers/backends.ts';
import { ADMIN_AUTH, basicAuth, startTestServer, type TestServer } from '../helpers/server.ts';

interface Entry {
  id: number;
  username: string;
  resource: string;
  resource_type: string;
  operation: string;
  op_time: string;
  description: string | null;
  principal_kind: string;
  project: string | null;
  result: string;
  reason: string | null;
  status: number | null;
  client_address: string | null;
  user_agent: string | null;
  request_id: string | null;
  hash: string;
}

const AGENT = 'audit-test/1.0';

for (const backend of BACKENDS) {
  describe(`audit log API (${backend})`, () => {
    let server: TestServer;
    let padmin: TestUser;
    let dev: TestUser;
    let outsider: TestUser;
    let teamId: number;
    let requestNo = 0;
    const startedAt = Date.now();

    before(async () => {
      server = await startTestServer(backend, { config: { auth: { enabled: true }, audit: { flushIntervalMs: 10 } } });
      padmin = await createUser(server, 'padmin');
      dev = await createUser(server, 'dev');
      outsider = await createUser(server, 'outsider');
      teamId = await createProject(server, 'team');
      const otherId = await createProject(server, 'other');
      await addMember(server, teamId, padmin, 1);
      await addMember(server, teamId, dev, 2);
      await addMember(server, otherId, outsider, 1);
    });
    after(() => server.close());

    /** Headers that identify one request: its id (what the entry is found by) and our user agent. */
    const tagged = (auth: string | undefined, extra: Record<string, string> = {}) => {
      const id = `audit-${backend}-${++requestNo}`;
      return { id, headers: { ...(auth ? { authorization: auth } : {}), 'user-agent': AGENT, 'x-request-id': id, ...extra } };
    };

    async function entriesOf(requestId: string, count = 1): Promise<Entry[]> {
      let found: Entry[] = [];
      await waitUntil(async () => {
        const { body } = await apiJson<Entry[]>(server.url, `/audit-logs?q=${encodeURIComponent(`request_id=${requestId}`)}&sort=id`, 200, { auth: ADMIN_AUTH });
        // A request whose Basic credentials were checked (not remembered) also leaves a login entry with its id: not the one wanted here.
        found = body.filter((e) => e.operation !== 'login');
        return found.length >= count;
      }, `audit entry of ${requestId}`);
      assert.equal(found.length, count, `entries of ${requestId}: ${JSON.stringify(found)}`);
      return found;
    }
    async function entryOf(requestId: string): Promise<Entry> {
      return (await entriesOf(requestId))[0] as Entry;
    }

    /** The fields every request-made entry has the same way. */
    function assertCommon(entry: Entry, requestId: string, principal: string) {
      assert.equal(entry.username, principal);
      assert.equal(entry.principal_kind, principal.startsWith('robot$') ? 'robot' : 'user');
      assert.equal(entry.client_address, '127.0.0.1');
      assert.equal(entry.user_agent, AGENT);
      assert.equal(entry.request_id, requestId);
      assert.match(entry.hash, /^[0-9a-f]{64}$/);
      const at = Date.parse(entry.op_time);
      assert.ok(at >= startedAt - 1000 && at <= Date.now() + 1000, entry.op_time);
    }

    async function pushImage(repository: string, tag: string, auth: string) {
      const image = await imageManifest(server.url, repository, { headers: { authorization: auth } });
      const { id, headers } = tagged(auth);
      const res = await putManifest(server.url, repository, tag, image.bytes, undefined, headers);
      await res.arrayBuffer();
      return { id, status: res.status, digest: sha256(image.bytes), size: image.bytes.length };
    }

    describe('one entry per operation, every field right', () => {
      it('push, pull, a refused push, tag and artifact deletes through /v2', async () => {
        const push = await pushImage('team/app', 'v1', padmin.auth);
        assert.equal(push.status, 201);
        const pushed = await entryOf(push.id);
        assertCommon(pushed, push.id, 'padmin');
        assert.deepEqual([pushed.operation, pushed.resource_type, pushed.resource, pushed.project, pushed.result, pushed.reason, pushed.status], [
          'create',
          'artifact',
          'team/app:v1',
          'team',
          'success',
          null,
          201,
        ]);
        assert.equal(pushed.description, `push artifact (${push.digest}, application/vnd.oci.image.manifest.v1+json, ${push.size} bytes)`);

        const pull = tagged(dev.auth);
        assert.equal((await fetch(`${server.url}/v2/team/app/manifests/${push.digest}`, { headers: pull.headers }).then((r) => r.status)), 200);
        const pulled = await entryOf(pull.id);
        assertCommon(pulled, pull.id, 'dev');
        assert.deepEqual([pulled.operation, pulled.resource_type, pulled.resource, pulled.project, pulled.result, pulled.status], ['pull', 'artifact', `team/app@${push.digest}`, 'team', 'success', 200]);

        const foreign = await imageManifest(server.url, 'team/app', { headers: { authorization: ADMIN_AUTH } });
        const attempt = tagged(outsider.auth);
        const refusedRes = await putManifest(server.url, 'team/app', 'bad', foreign.bytes, undefined, attempt.headers);
        await refusedRes.arrayBuffer();
        const refused = { id: attempt.id, status: refusedRes.status };
        assert.ok(refused.status === 403 || refused.status === 401 || refused.status === 404, String(refused.status));
        const failed = await entryOf(refused.id);
        assertCommon(failed, refused.id, 'outsider');
        assert.deepEqual([failed.operation, failed.resource, failed.result, failed.status], ['create', 'team/app:bad', 'failure', refused.status]);
        assert.match(failed.reason ?? '', /^(DENIED|UNAUTHORIZED|NAME_UNKNOWN|NOT_FOUND)/);

        const untag = tagged(ADMIN_AUTH);
        assert.equal(await fetch(`${server.url}/v2/team/app/manifests/v1`, { method: 'DELETE', headers: untag.headers }).then((r) => r.status), 202);
        const tagDeleted = await entryOf(untag.id);
        assertCommon(tagDeleted, untag.id, 'admin');
        assert.deepEqual([tagDeleted.operation, tagDeleted.resource_type, tagDeleted.resource, tagDeleted.project, tagDeleted.result, tagDeleted.status], ['delete', 'tag', 'team/app:v1', 'team', 'success', 202]);

        const remove = tagged(ADMIN_AUTH);
        assert.equal(await fetch(`${server.url}/v2/team/app/manifests/${push.digest}`, { method: 'DELETE', headers: remove.headers }).then((r) => r.status), 202);
        const artifactDeleted = await entryOf(remove.id);
        assertCommon(artifactDeleted, remove.id, 'admin');
        assert.deepEqual([artifactDeleted.operation, artifactDeleted.resource_type, artifactDeleted.resource, artifactDeleted.result], ['delete', 'artifact', `team/app@${push.digest}`, 'success']);
      });

      it('artifact, tag and repository deletes through the API (repository names with slashes too)', async () => {
        const push = await pushImage('team/a/b', 'v1', ADMIN_AUTH);
        const second = await pushImage('team/a/b', 'v2', ADMIN_AUTH);
        const repo = 'a%252Fb';
        const untag = tagged(ADMIN_AUTH);
        assert.equal((await api(server.url, `/projects/team/repositories/${repo}/artifacts/${push.digest}/tags/v1`, { method: 'DELETE', headers: untag.headers })).status, 200);
        const tagDeleted = await entryOf(untag.id);
        assertCommon(tagDeleted, untag.id, 'admin');
        assert.deepEqual([tagDeleted.operation, tagDeleted.resource_type, tagDeleted.resource, tagDeleted.project, tagDeleted.result, tagDeleted.status], ['delete', 'tag', 'team/a/b:v1', 'team', 'success', 200]);

        const remove = tagged(ADMIN_AUTH);
        assert.equal((await api(server.url, `/projects/team/repositories/${repo}/artifacts/${second.digest}`, { method: 'DELETE', headers: remove.headers })).status, 200);
        const artifactDeleted = await entryOf(remove.id);
        assert.deepEqual([artifactDeleted.operation, artifactDeleted.resource_type, artifactDeleted.resource, artifactDeleted.project], ['delete', 'artifact', `team/a/b@${second.digest}`, 'team']);

        const drop = tagged(ADMIN_AUTH);
        assert.equal((await api(server.url, `/projects/team/repositories/${repo}`, { method: 'DELETE', headers: drop.headers })).status, 200);
        const repositoryDeleted = await entryOf(drop.id);
        assertCommon(repositoryDeleted, drop.id, 'admin');
        assert.deepEqual([repositoryDeleted.operation, repositoryDeleted.resource_type, repositoryDeleted.resource, repositoryDeleted.project, repositoryDeleted.result], ['delete', 'repository', 'team/a/b', 'team', 'success']);

        const missing = tagged(ADMIN_AUTH);
        assert.equal((await api(server.url, `/projects/team/repositories/${repo}`, { method: 'DELETE', headers: missing.headers })).status, 404);
        const failed = await entryOf(missing.id);
        assert.deepEqual([failed.operation, failed.resource, failed.result, failed.status], ['delete', 'team/a/b', 'failure', 404]);
        assert.match(failed.reason ?? '', /^NOT_FOUND: /);
      });

      it('project create, update and delete', async () => {
        const create = tagged(ADMIN_AUTH);
        const created = await api(server.url, '/projects', { method: 'POST', headers: create.headers, body: { project_name: 'fresh', metadata: { public: 'false' } } });
        assert.equal(created.status, 201);
        const createdEntry = await entryOf(create.id);
        assertCommon(createdEntry, create.id, 'admin');
        assert.deepEqual([createdEntry.operation, createdEntry.resource_type, createdEntry.result, createdEntry.status], ['create', 'project', 'success', 201]);
        // The project itself (from the response's Location, by id, resolved to the name), in the project's log.
        assert.deepEqual([createdEntry.resource, createdEntry.project], ['fresh', 'fresh']);

        const update = tagged(ADMIN_AUTH);
        assert.equal((await api(server.url, '/projects/fresh', { method: 'PUT', headers: update.headers, body: { metadata: { public: 'true' } } })).status, 200);
        const updated = await entryOf(update.id);
        assertCommon(updated, update.id, 'admin');
        assert.deepEqual([updated.operation, updated.resource_type, updated.resource, updated.project, updated.result, updated.status], ['update', 'project', 'fresh', 'fresh', 'success', 200]);

        // By id: the log keeps the name, so the project's log finds it.
        const id = Number((created.headers.get('location') ?? '').split('/').pop());
        const byId = tagged(ADMIN_AUTH);
        assert.equal((await api(server.url, `/projects/${id}`, { method: 'PUT', headers: byId.headers, body: { metadata: { public: 'false' } } })).status, 200);
        const updatedById = await entryOf(byId.id);
        assert.deepEqual([updatedById.resource, updatedById.project], ['fresh', 'fresh']);

        const remove = tagged(ADMIN_AUTH);
        assert.equal((await api(server.url, '/projects/fresh', { method: 'DELETE', headers: remove.headers })).status, 200);
        const deleted = await entryOf(remove.id);
        assert.deepEqual([deleted.operation, deleted.resource_type, deleted.resource, deleted.project, deleted.result], ['delete', 'project', 'fresh', 'fresh', 'success']);
      });

      it('member, robot and user changes', async () => {
        await createUser(server, 'newbie');
        const add = tagged(padmin.auth);
        const added = await api(server.url, '/projects/team/members', { method: 'POST', headers: add.headers, body: { role_id: 3, member_user: { username: 'newbie' } } });
        assert.equal(added.status, 201);
        const memberId = (added.headers.get('location') ?? '').split('/').pop();
        const addedEntry = await entryOf(add.id);
        assertCommon(addedEntry, add.id, 'padmin');
        assert.deepEqual([addedEntry.operation, addedEntry.resource_type, addedEntry.resource, addedEntry.project, addedEntry.result, addedEntry.status], [
          'create',
          'member',
          `projects/team/members/${memberId}`,
          'team',
          'success',
          201,
        ]);
        const change = tagged(padmin.auth);
        assert.equal((await api(server.url, `/projects/team/members/${memberId}`, { method: 'PUT', headers: change.headers, body: { role_id: 2 } })).status, 200);
        assert.deepEqual(
          await entryOf(change.id).then((e) => [e.operation, e.resource_type, e.resource, e.project]),
          ['update', 'member', `projects/team/members/${memberId}`, 'team'],
        );
        const drop = tagged(padmin.auth);
        assert.equal((await api(server.url, `/projects/team/members/${memberId}`, { method: 'DELETE', headers: drop.headers })).status, 200);
        assert.deepEqual(
          await entryOf(drop.id).then((e) => [e.operation, e.resource_type, e.resource]),
          ['delete', 'member', `projects/team/members/${memberId}`],
        );

        const robot = tagged(ADMIN_AUTH);
        const robotRes = await api(server.url, '/robots', {
          method: 'POST',
          headers: robot.headers,
          body: { name: 'ci', level: 'project', duration: -1, permissions: [{ kind: 'project', namespace: 'team', access: [{ resource: 'repository', action: 'pull' }] }] },
        });
        assert.equal(robotRes.status, 201);
        const robotBody = (await robotRes.json()) as { id: number; name: string; secret: string };
        assert.deepEqual(
          await entryOf(robot.id).then((e) => [e.operation, e.resource_type, e.resource, e.project, e.result]),
          ['create', 'robot', `robots/${robotBody.id}`, 'team', 'success'],
        );
        // The robot itself shows as a robot principal.
        const robotPull = tagged(basicAuth(robotBody.name, robotBody.secret));
        const robotRead = await fetch(`${server.url}/v2/team/nothing/manifests/v1`, { headers: robotPull.headers });
        await robotRead.arrayBuffer();
        const robotEntry = await entryOf(robotPull.id);
        assertCommon(robotEntry, robotPull.id, robotBody.name);
        assert.deepEqual([robotEntry.operation, robotEntry.resource, robotEntry.project, robotEntry.result, robotEntry.status], ['pull', 'team/nothing:v1', 'team', 'failure', robotRead.status]);
        const refresh = tagged(ADMIN_AUTH);
        assert.equal((await api(server.url, `/robots/${robotBody.id}`, { method: 'PATCH', headers: refresh.headers, body: {} })).status, 200);
        assert.deepEqual(
          await entryOf(refresh.id).then((e) => [e.operation, e.resource_type, e.resource, e.project]),
          ['update', 'robot', `robots/${robotBody.id}`, 'team'],
        );
        const robotDrop = tagged(ADMIN_AUTH);
        assert.equal((await api(server.url, `/robots/${robotBody.id}`, { method: 'DELETE', headers: robotDrop.headers })).status, 200);
        assert.deepEqual(
          await entryOf(robotDrop.id).then((e) => [e.operation, e.resource_type, e.resource, e.project]),
          ['delete', 'robot', `robots/${robotBody.id}`, 'team'],
        );

        const user = tagged(ADMIN_AUTH);
        const userRes = await api(server.url, '/users', { method: 'POST', headers: user.headers, body: { username: 'carol', password: 'Carol-pass1', email: 'carol@example.com', realname: 'Carol' } });
        assert.equal(userRes.status, 201);
        const userId = (userRes.headers.get('location') ?? '').split('/').pop();
        assert.deepEqual(
          await entryOf(user.id).then((e) => [e.operation, e.resource_type, e.resource, e.result, e.status]),
          ['create', 'user', `users/${userId}`, 'success', 201],
        );
        const password = tagged(ADMIN_AUTH);
        assert.equal((await api(server.url, `/users/${userId}/password`, { method: 'PUT', headers: password.headers, body: { new_password: 'Carol-pass2' } })).status, 200);
        assert.deepEqual(
          await entryOf(password.id).then((e) => [e.operation, e.resource_type, e.resource]),
          ['update', 'user', `users/${userId}/password`],
        );
        const promote = tagged(ADMIN_AUTH);
        assert.equal((await api(server.url, `/users/${userId}/sysadmin`, { method: 'PUT', headers: promote.headers, body: { sysadmin_flag: true } })).status, 200);
        assert.deepEqual(
          await entryOf(promote.id).then((e) => [e.operation, e.resource_type, e.resource]),
          ['update', 'user', `users/${userId}/sysadmin`],
        );
        const remove = tagged(ADMIN_AUTH);
        assert.equal((await api(server.url, `/users/${userId}`, { method: 'DELETE', headers: remove.headers })).status, 200);
        assert.deepEqual(
          await entryOf(remove.id).then((e) => [e.operation, e.resource_type, e.resource, e.result]),
          ['delete', 'user', `users/${userId}`, 'success'],
        );
        const refused = tagged(dev.auth);
        assert.equal((await api(server.url, '/users', { method: 'POST', headers: refused.headers, body: { username: 'eve', password: 'Eve-pass11' } })).status, 403);
        const refusedEntry = await entryOf(refused.id);
        assertCommon(refusedEntry, refused.id, 'dev');
        assert.deepEqual([refusedEntry.operation, refusedEntry.resource_type, refusedEntry.result, refusedEntry.status], ['create', 'user', 'failure', 403]);
        assert.match(refusedEntry.reason ?? '', /^FORBIDDEN: /);
      });

      it('logins and failed logins, with the name tried, the address, the user agent and the request id', async () => {
        const fresh = await createUser(server, 'logger');
        const agent = `login-agent/${backend} (audit test)`;
        /** One Basic login; the request id is the one the server answered with (it makes one when the client sends none). */
        const login = async (url: string, auth: string, requestId?: string): Promise<string> => {
          const res = await fetch(url, { headers: { authorization: auth, 'user-agent': agent, ...(requestId ? { 'x-request-id': requestId } : {}) } });
          await res.arrayBuffer();
          const id = res.headers.get('x-request-id');
          assert.ok(id, 'the server answers with a request id');
          if (requestId) assert.equal(id, requestId);
          return id;
        };
        const ids = [
          await login(`${server.url}/api/v2.0/users/current`, fresh.auth),
          await login(`${server.url}/api/v2.0/users/current`, basicAuth('logger', 'Wrong-pass9')),
          await login(`${server.url}/service/token?service=berth`, basicAuth('ghost', 'Wrong-pass9'), `login-${backend}-ghost`),
        ];
        let logins: Entry[] = [];
        await waitUntil(async () => {
          const { body } = await apiJson<Entry[]>(server.url, `/audit-logs?q=${encodeURIComponent('operation=login,username={logger ghost}')}&sort=id`, 200, { auth: ADMIN_AUTH });
          logins = body;
          return logins.length >= 3;
        }, 'login entries');
        assert.deepEqual(
          logins.map((e) => [e.username, e.operation, e.resource_type, e.resource, e.project, e.result, e.client_address, e.principal_kind, e.user_agent, e.request_id]),
          [
            ['logger', 'login', 'user', 'logger', null, 'success', '127.0.0.1', 'user', agent, ids[0]],
            ['logger', 'login', 'user', 'logger', null, 'failure', '127.0.0.1', 'user', agent, ids[1]],
            ['ghost', 'login', 'user', 'ghost', null, 'failure', '127.0.0.1', 'user', agent, `login-${backend}-ghost`],
          ],
        );
        // Made by the server (a UUID) when the client sent none.
        assert.match(ids[0] ?? '', /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
        assert.notEqual(ids[0], ids[1]);
        assert.equal(logins[0]?.reason, null);
        assert.ok((logins[1]?.reason ?? '').length > 0, 'a failed login says why');
      });
    });

    describe('who may read which log', () => {
      before(async () => {
        const push = await pushImage('other/db', 'v1', outsider.auth);
        await entryOf(push.id);
      });

      it('system admins read the whole log; project admins only their project’s; developers and others are refused', async () => {
        const all = await apiJson<Entry[]>(server.url, '/audit-logs?page_size=100', 200, { auth: ADMIN_AUTH });
        const projects = new Set(all.body.map((e) => e.project));
        assert.ok(projects.has('team') && projects.has('other') && projects.has(null), [...projects].join());

        const team = await apiJson<Entry[]>(server.url, '/projects/team/logs?page_size=100', 200, { auth: padmin.auth });
        assert.ok(team.body.length > 0);
        assert.deepEqual([...new Set(team.body.map((e) => e.project))], ['team']);
        const adminView = await api(server.url, `/audit-logs?q=${encodeURIComponent('project=team')}`, { auth: ADMIN_AUTH });
        assert.equal(team.res.headers.get('x-total-count'), adminView.headers.get('x-total-count'));
        // A project filter in q= cannot widen a project log.
        const widened = await apiJson<Entry[]>(server.url, `/projects/team/logs?q=project=other`, 200, { auth: padmin.auth });
        assert.deepEqual(widened.body, []);

        await assertApiError(await api(server.url, '/projects/team/logs', { auth: dev.auth }), 403, 'FORBIDDEN');
        await assertApiError(await api(server.url, '/projects/team/auditlog-exts', { auth: dev.auth }), 403, 'FORBIDDEN');
        await assertApiError(await api(server.url, '/projects/team/logs/export?format=csv', { auth: dev.auth }), 403, 'FORBIDDEN');
        await assertApiError(await api(server.url, '/projects/other/logs', { auth: padmin.auth }), 404, 'NOT_FOUND');
        await assertApiError(await api(server.url, '/projects/team/logs'), 401, 'UNAUTHORIZED');
        for (const path of ['/audit-logs', '/auditlog-exts', '/auditlog-exts/events', '/audit-logs/export?format=csv', '/system/audit/verify']) {
          await assertApiError(await api(server.url, path, { auth: padmin.auth }), 403, 'FORBIDDEN');
          await assertApiError(await api(server.url, path), 401, 'UNAUTHORIZED');
        }
        const theirs = await apiJson<Entry[]>(server.url, '/projects/other/logs', 200, { auth: outsider.auth });
        assert.deepEqual([...new Set(theirs.body.map((e) => e.project))], ['other']);
      });

      it('serves the AuditLogExt shape and the event types', async () => {
        const { body } = await apiJson<Array<Record<string, unknown>>>(server.url, '/projects/team/auditlog-exts?q=result=failure&page_size=1', 200, { auth: padmin.auth });
        assert.equal(body.length, 1);
        const entry = body[0] as Record<string, unknown>;
        assert.equal(entry.operation_result, false);
        assert.equal(typeof entry.operation_description, 'string');
        for (const key of ['id', 'username', 'resource', 'resource_type', 'operation', 'op_time']) assert.ok(key in entry, key);
        const events = await apiJson<Array<{ event_type: string }>>(server.url, '/auditlog-exts/events', 200, { auth: ADMIN_AUTH });
        assert.ok(events.body.some((e) => e.event_type === 'create_artifact'));
        assert.ok(events.body.some((e) => e.event_type === 'login_user'));
      });
    });

    describe('search: q=, sort, paging', () => {
      it('filters by exact, fuzzy, range (both time formats) and list, and pages with X-Total-Count and Link', async () => {
        const q = (expression: string, extra = '') => apiJson<Entry[]>(server.url, `/audit-logs?q=${encodeURIComponent(expression)}${extra}`, 200, { auth: ADMIN_AUTH });
        const exact = await q('username=padmin');
        assert.ok(exact.body.length > 0 && exact.body.every((e) => e.username === 'padmin'));
        const fuzzy = await q('resource=~A/B');
        assert.ok(fuzzy.body.length > 0 && fuzzy.body.every((e) => e.resource.toLowerCase().includes('a/b')));
        const now = new Date();
        const hourAgo = new Date(now.getTime() - 3_600_000);
        const harbor = (d: Date) => d.toISOString().slice(0, 19).replace('T', ' ');
        const ranged = await q(`op_time=[${harbor(hourAgo)}~${harbor(new Date(now.getTime() + 60_000))}]`);
        const total = Number(ranged.res.headers.get('x-total-count'));
        assert.ok(total > 0);
        const rfc = await q(`op_time=[${hourAgo.toISOString()}~${new Date(now.getTime() + 60_000).toISOString()}]`);
        assert.equal(Number(rfc.res.headers.get('x-total-count')), total);
        assert.equal(Number((await q(`op_time=[~${harbor(hourAgo)}]`)).res.headers.get('x-total-count')), 0);
        const list = await q('operation={pull delete}');
        assert.ok(list.body.length > 0 && list.body.every((e) => e.operation === 'pull' || e.operation === 'delete'));

        const page1 = await apiJson<Entry[]>(server.url, '/audit-logs?page=1&page_size=3&sort=id', 200, { auth: ADMIN_AUTH });
        const page2 = await apiJson<Entry[]>(server.url, '/audit-logs?page=2&page_size=3&sort=id', 200, { auth: ADMIN_AUTH });
        assert.deepEqual(
          page1.body.map((e) => e.id),
          [1, 2, 3],
        );
        assert.deepEqual(
          page2.body.map((e) => e.id),
          [4, 5, 6],
        );
        assert.match(page2.res.headers.get('link') ?? '', /rel="prev".*rel="next"/);
        const newest = await apiJson<Entry[]>(server.url, '/audit-logs?page_size=2', 200, { auth: ADMIN_AUTH });
        assert.ok(Date.parse(newest.body[0]?.op_time ?? '') >= Date.parse(newest.body[1]?.op_time ?? ''));
        const byUser = await apiJson<Entry[]>(server.url, '/audit-logs?sort=username,-op_time&page_size=100', 200, { auth: ADMIN_AUTH });
        const names = byUser.body.map((e) => e.username);
        assert.deepEqual(names, [...names].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)));
      });

      it('refuses malformed q=, sort and paging with a 400 that names the problem', async () => {
        const cases: Array<[string, RegExp]> = [
          ['q=username', /not key=value/],
          ['q=nosuch=1', /unknown key "nosuch"/],
          ['q=op_time=[2020-01-01 00:00:00~', /unterminated range/],
          ['q=op_time=[2020-01-01]', /needs min~max/],
          ['q=op_time=~2020', /does not take a fuzzy/],
          ['q=op_time=[2021-01-01~2020-01-01]', /minimum after its maximum/],
          ['q=op_time=[2020-13-01 00:00:00~]', /takes a time/],
          ['q=op_time=[2020-02-30 00:00:00~]', /takes a time/],
          ['q=op_time=[yesterday~today]', /takes a time/],
          ['q=op_time=[~]', /needs a minimum, a maximum or both/],
          ['q=username=[a~b]', /only op_time and id take a range/],
          ['q=id=[a~9]', /takes a whole number/],
          ['q=result=maybe', /success or failure/],
          ['q=operation_result=yes', /true or false/],
          ['q=username={}', /list of username is empty/],
          ['q=bad key=1', /bad key/],
          ['q=username=', /needs a value/],
          ['sort=bogus', /unknown field "bogus"/],
          ['sort=id,id', /given twice/],
          ['page=0', /page must be/],
          ['page_size=101', /page_size must be/],
        ];
        for (const [query, message] of cases) {
          const [key, ...rest] = query.split('=');
          const res = await api(server.url, `/audit-logs?${key}=${encodeURIComponent(rest.join('='))}`, { auth: ADMIN_AUTH });
          const text = await res.text();
          assert.equal(res.status, 400, `${query}: ${text}`);
          const body = JSON.parse(text) as { errors: Array<{ code: string; message: string }> };
          assert.equal(body.errors[0]?.code, 'BAD_REQUEST', query);
          assert.match(body.errors[0]?.message ?? '', message, query);
        }
        await assertApiError(await api(server.url, `/projects/team/logs?q=${encodeURIComponent('op_time=~x')}`, { auth: padmin.auth }), 400, 'BAD_REQUEST');
        await assertApiError(await api(server.url, '/audit-logs/export', { auth: ADMIN_AUTH }), 400, 'BAD_REQUEST');
        await assertApiError(await api(server.url, '/audit-logs/export?format=xml', { auth: ADMIN_AUTH }), 400, 'BAD_REQUEST');
        await assertApiError(await api(server.url, '/audit-logs/export?format=csv&sort=username', { auth: ADMIN_AUTH }), 400, 'BAD_REQUEST');
        await assertApiError(await api(server.url, `/audit-logs/export?format=csv&q=${encodeURIComponent('op_time=[x~]')}`, { auth: ADMIN_AUTH }), 400, 'BAD_REQUEST');
      });
    });

    describe('export', () => {
      it('streams a search as CSV and as JSON lines, the same entries as the search', async () => {
        const filter = encodeURIComponent('project=team');
        const total = Number((await api(server.url, `/audit-logs?q=${filter}`, { auth: ADMIN_AUTH })).headers.get('x-total-count'));
        assert.ok(total > 5);
        const csv = await api(server.url, `/audit-logs/export?format=csv&q=${filter}`, { auth: ADMIN_AUTH });
        assert.equal(csv.status, 200);
        assert.match(csv.headers.get('content-type') ?? '', /^text\/csv/);
        assert.match(csv.headers.get('content-disposition') ?? '', /^attachment; filename="audit-log-.*\.csv"$/);
        const lines = (await csv.text()).trimEnd().split('\r\n');
        assert.equal(lines[0], 'id,op_time,username,principal_kind,operation,resource_type,resource,project,result,reason,status,client_address,user_agent,request_id,description,hash');
        assert.equal(lines.length, total + 1);
        const jsonl = await api(server.url, `/audit-logs/export?format=jsonl&q=${filter}&sort=-id`, { auth: ADMIN_AUTH });
        assert.match(jsonl.headers.get('content-type') ?? '', /^application\/x-ndjson/);
        const rows = (await jsonl.text())
          .trimEnd()
          .split('\n')
          .map((l) => JSON.parse(l) as Entry);
        assert.equal(rows.length, total);
        assert.ok(rows.every((r) => r.project === 'team'));
        const ids = rows.map((r) => r.id);
        assert.deepEqual(
          ids,
          [...ids].sort((a, b) => b - a),
        );
        const search = await apiJson<Entry[]>(server.url, `/audit-logs?q=${filter}&sort=-id&page_size=100`, 200, { auth: ADMIN_AUTH });
        assert.deepEqual(
          rows.slice(0, search.body.length).map((r) => [r.id, r.hash, r.resource]),
          search.body.map((e) => [e.id, e.hash, e.resource]),
        );
        const theirs = await api(server.url, '/projects/team/logs/export?format=jsonl', { auth: padmin.auth });
        assert.equal(theirs.status, 200);
        const projectRows = (await theirs.text()).trimEnd().split('\n');
        assert.equal(projectRows.length, total);
      });

      it('quotes CSV fields and defuses spreadsheet formulas', async () => {
        const { headers } = tagged(ADMIN_AUTH, { 'user-agent': '=HYPERLINK("x","y"), "quoted"' });
        await api(server.url, '/projects', { method: 'POST', headers, body: { project_name: 'csvtest' } }).then((r) => r.arrayBuffer());
        const requestId = headers['x-request-id'];
        await entryOf(requestId);
        const csv = await (await api(server.url, `/audit-logs/export?format=csv&q=${encodeURIComponent(`request_id=${requestId}`)}`, { auth: ADMIN_AUTH })).text();
        assert.ok(csv.includes(`,"'=HYPERLINK(""x"",""y""), ""quoted""",${requestId},`), csv);
      });
    });
  });
}
