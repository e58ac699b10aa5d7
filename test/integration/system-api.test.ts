/**
 * The system endpoints of the management API (ping, health, systeminfo), the generated OpenAPI
 * document and its reference page, the API's error shape, and login rate limiting over HTTP.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { BACKENDS } from '../helpers/backends.ts';
import { createUser } from '../helpers/iam.ts';
import { ADMIN_AUTH, basicAuth, startTestServer, type TestServer } from '../helpers/server.ts';

for (const backend of BACKENDS) {
  describe(`system API (${backend})`, () => {
    let server: TestServer;
    before(async () => {
      server = await startTestServer(backend, { config: { auth: { enabled: true } } });
    });
    after(() => server.close());
    const api = (path: string, init: RequestInit = {}) => fetch(`${server.url}/api/v2.0${path}`, init);

    it('answers ping with Pong and health with each component', async () => {
      const ping = await api('/ping');
      assert.equal(ping.status, 200);
      assert.equal(await ping.text(), 'Pong');
      const health = await api('/health');
      assert.equal(health.status, 200);
      assert.deepEqual(await health.json(), {
        status: 'healthy',
        components: [
          { name: 'core', status: 'healthy' },
          { name: 'database', status: 'healthy' },
        ],
      });
    });

    it('shows systeminfo details only to logged-in callers', async () => {
      const anonymous = (await (await api('/systeminfo')).json()) as Record<string, unknown>;
      assert.equal(anonymous.auth_mode, 'db_auth');
      assert.equal(anonymous.external_url, undefined);
      const admin = (await (await api('/systeminfo', { headers: { authorization: ADMIN_AUTH } })).json()) as Record<string, unknown>;
      assert.equal(admin.external_url, server.url);
      assert.equal(admin.database, backend);
      assert.equal(admin.registry_url, new URL(server.url).host);
    });

    it('serves an OpenAPI 3 document generated from the route schemas, covering every group', async () => {
      const res = await api('/openapi.json');
      assert.equal(res.status, 200);
      const doc = (await res.json()) as { openapi: string; paths: Record<string, Record<string, { operationId?: string; tags?: string[] }>> };
      assert.match(doc.openapi, /^3\./);
      const operations = Object.entries(doc.paths).flatMap(([path, methods]) => Object.entries(methods).map(([method, op]) => ({ path, method, op })));
      for (const { path, method, op } of operations) {
        assert.ok(op.operationId, `${method} ${path} has an operationId`);
        assert.ok(op.tags && op.tags.length > 0, `${method} ${path} has a tag`);
      }
      const ids = new Set(operations.map((o) => o.op.operationId));
      assert.equal(ids.size, operations.length, 'operationIds are unique');
      const tags = new Set(operations.flatMap((o) => o.op.tags ?? []));
      for (const group of ['ping', 'health', 'systeminfo', 'user', 'project', 'member', 'robot', 'quota', 'repository', 'artifact', 'search']) {
        assert.ok(
          [...tags].some((t) => t.toLowerCase().startsWith(group)),
          `group ${group} is documented (tags: ${[...tags].join(', ')})`,
        );
      }
      for (const path of ['/api/v2.0/projects', '/api/v2.0/users', '/api/v2.0/robots', '/api/v2.0/quotas']) assert.ok(doc.paths[path], `${path} is documented`);
      const page = await api('/docs');
      assert.equal(page.status, 200);
      assert.match(page.headers.get('content-type') ?? '', /text\/html/);
      assert.match(await page.text(), /\/api\/v2\.0\/projects/);
    });

    it("answers unknown routes, malformed JSON and a wrong media type in Harbor's error shape", async () => {
      const missing = await api('/no/such/thing');
      assert.equal(missing.status, 404);
      assert.deepEqual(Object.keys(((await missing.json()) as { errors: Array<Record<string, string>> }).errors[0] ?? {}), ['code', 'message']);
      const malformed = await api('/projects', { method: 'POST', headers: { authorization: ADMIN_AUTH, 'content-type': 'application/json' }, body: '{"project_name": ' });
      assert.equal(malformed.status, 400);
      assert.equal(((await malformed.json()) as { errors: Array<{ code: string }> }).errors[0]?.code, 'BAD_REQUEST');
      const wrongType = await api('/projects', { method: 'POST', headers: { authorization: ADMIN_AUTH, 'content-type': 'text/plain' }, body: 'hello' });
      assert.ok([400, 415].includes(wrongType.status), `status ${wrongType.status}`);
      const bearer = await api('/projects', { headers: { authorization: 'Bearer abc' } });
      assert.equal(bearer.status, 401);
      await bearer.arrayBuffer();
    });

    it('rate-limits failed logins per user with a clear 429, the same for unknown users, without locking others out', async () => {
      const victim = await createUser(server, 'victim');
      for (let i = 0; i < 5; i++) {
        const res = await api('/users/current', { headers: { authorization: basicAuth('victim', `wrong-${i}`) } });
        assert.equal(res.status, 401, `attempt ${i}`);
        await res.arrayBuffer();
      }
      const locked = await api('/users/current', { headers: { authorization: victim.auth } });
      assert.equal(locked.status, 429, 'even the right password waits while the name is locked');
      assert.ok(Number(locked.headers.get('retry-after')) >= 1);
      assert.equal(((await locked.json()) as { errors: Array<{ code: string }> }).errors[0]?.code, 'TOO_MANY_REQUESTS');
      // The same for a name that does not exist: nothing tells the two apart.
      for (let i = 0; i < 5; i++) await (await api('/users/current', { headers: { authorization: basicAuth('ghost', `wrong-${i}`) } })).arrayBuffer();
      assert.equal((await api('/users/current', { headers: { authorization: basicAuth('ghost', 'wrong') } })).status, 429);
      // Another user is not affected (the address limit is higher than one user's).
      assert.equal((await api('/users/current', { headers: { authorization: ADMIN_AUTH } })).status, 200);
      // The registry's token endpoint shares the limiter.
      const token = await fetch(`${server.url}/service/token?service=berth`, { headers: { authorization: victim.auth } });
      assert.equal(token.status, 429);
      await token.arrayBuffer();
    });
  });
}
