/**
 * /api/v2.0/quotas over HTTP on every backend: who may list, read and change quotas, Harbor's
 * Quota JSON, filters, sorting and paging, usage from real pushes shown in quotas and project
 * summaries, a hard limit below usage (accepted; it blocks further pushes), and bad input
 * answered with a 4xx that changes nothing.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { BACKENDS } from '../helpers/backends.ts';
import { OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, randomBlob, sha256 } from '../helpers/oci.ts';
import { CALLERS, type Caller, type Cast, createCast, refusal, type TestProject } from '../helpers/project-roles.ts';
import { ADMIN_AUTH, startTestServer, type TestServer } from '../helpers/server.ts';

interface QuotaJson {
  id: number;
  ref: { id: number; name: string; owner_name: string };
  hard: { storage: number };
  used: { storage: number };
  creation_time: string;
  update_time: string;
}

const PROJECT_READERS: readonly Caller[] = ['admin', 'projectAdmin', 'maintainer', 'developer', 'guest', 'limitedGuest'];

for (const backend of BACKENDS) {
  describe(`quotas API (${backend})`, () => {
    let server: TestServer;
    let cast: Cast;
    const quotaIds = new Map<number, number>();

    async function call(method: string, path: string, options: { auth?: string | undefined; body?: unknown; raw?: string } = {}): Promise<Response> {
      const headers: Record<string, string> = {};
      if (options.auth) headers.authorization = options.auth;
      let body: string | undefined;
      if (options.raw !== undefined || options.body !== undefined) {
        body = options.raw ?? JSON.stringify(options.body);
        headers['content-type'] = 'application/json';
      }
      return fetch(`${server.url}/api/v2.0${path}`, { method, headers, ...(body !== undefined ? { body } : {}) });
    }
    const json = async <T>(res: Response, status = 200): Promise<T> => {
      const text = await res.text();
      assert.equal(res.status, status, text);
      return JSON.parse(text) as T;
    };
    const hardOf = async (projectId: number) => (await server.app.database.db.selectFrom('quotas').select('hard').where('project_id', '=', projectId).executeTakeFirstOrThrow()).hard;

    /** Pushes an image (config + one layer of `layerBytes`) with admin Basic credentials; returns the manifest PUT status. */
    async function pushImage(repository: string, tag: string, layerBytes: number): Promise<Response> {
      const headers = { authorization: ADMIN_AUTH };
      const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', tag }));
      const layer = randomBlob(layerBytes);
      for (const blob of [config, layer]) {
        const res = await fetch(`${server.url}/v2/${repository}/blobs/uploads/?digest=${sha256(blob)}`, { method: 'POST', body: blob, headers });
        if (res.status !== 201) return res;
      }
      const manifest = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: OCI_MANIFEST,
          config: { mediaType: OCI_CONFIG, digest: sha256(config), size: config.length },
          layers: [{ mediaType: OCI_LAYER, digest: sha256(layer), size: layer.length }],
        }),
      );
      return fetch(`${server.url}/v2/${repository}/manifests/${tag}`, { method: 'PUT', body: manifest, headers: { ...headers, 'content-type': OCI_MANIFEST } });
    }

    before(async () => {
      server = await startTestServer(backend, { config: { auth: { enabled: true } } });
      cast = await createCast(server, 'qq');
      for (const p of [cast.priv, cast.pub]) {
        const [quota] = await json<QuotaJson[]>(await call('GET', `/quotas?reference=project&reference_id=${p.id}`, { auth: ADMIN_AUTH }));
        assert.ok(quota);
        quotaIds.set(p.id, quota.id);
      }
    });

    after(async () => {
      await server?.close();
    });

    describe('permissions', () => {
      it('GET /quotas: system admins only (401 anonymous, 403 everyone else)', async () => {
        for (const caller of CALLERS) {
          const res = await call('GET', '/quotas', { auth: cast.headers(caller).authorization });
          await res.arrayBuffer();
          assert.equal(res.status, caller === 'admin' ? 200 : caller === 'anonymous' ? 401 : 403, caller);
        }
      });

      it("GET /quotas/{id}: system admins and every member of the quota's project", async () => {
        const got: string[] = [];
        const want: string[] = [];
        for (const project of [cast.priv, cast.pub]) {
          for (const caller of CALLERS) {
            const res = await call('GET', `/quotas/${quotaIds.get(project.id)}`, { auth: cast.headers(caller).authorization });
            await res.arrayBuffer();
            const label = `${project.public ? 'public' : 'private'} ${caller}`;
            const allowed = PROJECT_READERS.includes(caller);
            got.push(`${label}: ${allowed && res.status === 200 ? 'allowed' : res.status}`);
            want.push(`${label}: ${allowed ? 'allowed' : refusal(caller, project)}`);
          }
        }
        assert.deepEqual(got, want);
        assert.equal((await call('GET', '/quotas/999999', { auth: ADMIN_AUTH })).status, 404);
        assert.equal((await call('GET', '/quotas/999999', { auth: cast.users.developer.auth })).status, 404);
        assert.equal((await call('GET', '/quotas/999999')).status, 401);
      });

      it('PUT /quotas/{id}: system admins only; refusals change nothing', async () => {
        for (const project of [cast.priv, cast.pub]) {
          const before = await hardOf(project.id);
          for (const caller of CALLERS) {
            if (caller === 'admin') continue;
            const res = await call('PUT', `/quotas/${quotaIds.get(project.id)}`, { auth: cast.headers(caller).authorization, body: { hard: { storage: 123 } } });
            assert.equal(res.status, caller === 'anonymous' ? 401 : 403, caller);
          }
          assert.equal(await hardOf(project.id), before);
          assert.equal((await call('PUT', `/quotas/${quotaIds.get(project.id)}`, { auth: ADMIN_AUTH, body: { hard: { storage: 1 << 30 } } })).status, 200);
          assert.equal(await hardOf(project.id), 1 << 30);
        }
      });
    });

    it('lists quotas in Harbor’s shape, filtered by reference, sorted and paged', async () => {
      const res = await call('GET', '/quotas?page_size=100', { auth: ADMIN_AUTH });
      const all = await json<QuotaJson[]>(res);
      const projects = await server.app.database.db.selectFrom('projects').select('id').execute();
      assert.equal(all.length, projects.length);
      assert.equal(Number(res.headers.get('x-total-count')), projects.length);
      const priv = all.find((q) => q.ref.id === cast.priv.id);
      assert.ok(priv);
      assert.deepEqual(Object.keys(priv).sort(), ['creation_time', 'hard', 'id', 'ref', 'update_time', 'used']);
      assert.deepEqual(priv.ref, { id: cast.priv.id, name: cast.priv.name, owner_name: 'admin' });
      assert.equal(priv.used.storage, 0);
      assert.ok(Date.parse(priv.update_time) >= Date.parse(priv.creation_time));
      assert.equal(all.find((q) => q.ref.name === 'library')?.hard.storage, -1, 'the default quota is unlimited');

      const one = await json<QuotaJson[]>(await call('GET', `/quotas?reference=project&reference_id=${cast.pub.id}`, { auth: ADMIN_AUTH }));
      assert.deepEqual(
        one.map((q) => q.ref.name),
        [cast.pub.name],
      );
      assert.deepEqual(await json(await call('GET', '/quotas?reference=user', { auth: ADMIN_AUTH })), []);
      assert.deepEqual(await json(await call('GET', '/quotas?reference_id=abc', { auth: ADMIN_AUTH })), []);
      await call('PUT', `/quotas/${quotaIds.get(cast.pub.id)}`, { auth: ADMIN_AUTH, body: { hard: { storage: 5 } } });
      const ascending = await json<QuotaJson[]>(await call('GET', '/quotas?sort=hard.storage,id&page_size=100', { auth: ADMIN_AUTH }));
      const hards = ascending.map((q) => q.hard.storage);
      assert.deepEqual(hards, [...hards].sort((a, b) => a - b));
      const paged = await call('GET', '/quotas?sort=-id&page=1&page_size=1', { auth: ADMIN_AUTH });
      const [newest] = await json<QuotaJson[]>(paged);
      assert.equal(newest?.id, Math.max(...all.map((q) => q.id)));
      assert.match(paged.headers.get('link') ?? '', /rel="next"/);
      for (const bad of ['?sort=colour', '?page=0', '?page_size=101', '?page_size=abc']) assert.equal((await call('GET', `/quotas${bad}`, { auth: ADMIN_AUTH })).status, 400, bad);
    });

    it('bad quota updates are 400 (404 for an unknown quota) and change nothing', async () => {
      const id = quotaIds.get(cast.priv.id);
      const before = await hardOf(cast.priv.id);
      const bodies: unknown[] = [
        { hard: { storage: -2 } },
        { hard: { storage: 0 } },
        { hard: { storage: '100' } },
        { hard: { storage: 1.5 } },
        { hard: { storage: null } },
        { hard: {} },
        { hard: { storage: 10, count: 1 } },
        { hard: 10 },
        {},
        { hard: { storage: 10 }, used: { storage: 0 } },
        [],
      ];
      for (const body of bodies) {
        const res = await call('PUT', `/quotas/${id}`, { auth: ADMIN_AUTH, body });
        assert.equal(res.status, 400, JSON.stringify(body));
        assert.match(await res.text(), /"code":"BAD_REQUEST"/);
      }
      assert.equal((await call('PUT', `/quotas/${id}`, { auth: ADMIN_AUTH, raw: '{"hard": {"storage": 1' })).status, 400);
      assert.equal((await call('PUT', '/quotas/abc', { auth: ADMIN_AUTH, body: { hard: { storage: 10 } } })).status, 400);
      assert.equal((await call('PUT', '/quotas/999999', { auth: ADMIN_AUTH, body: { hard: { storage: 10 } } })).status, 404);
      assert.equal(await hardOf(cast.priv.id), before);
    });

    it('usage from pushes shows in the quota and the summary; a limit below usage is accepted and blocks new content', async () => {
      const p: TestProject = cast.priv;
      const id = quotaIds.get(p.id);
      assert.equal((await call('PUT', `/quotas/${id}`, { auth: ADMIN_AUTH, body: { hard: { storage: -1 } } })).status, 200);
      const pushed = await pushImage(`${p.name}/app`, 'v1', 4096);
      assert.equal(pushed.status, 201, await pushed.text());
      const quota = await json<QuotaJson>(await call('GET', `/quotas/${id}`, { auth: cast.users.guest.auth }));
      assert.ok(quota.used.storage > 4096, `used ${quota.used.storage}`);
      const summary = await json<{ repo_count: number; quota: { used: { storage: number } } }>(await call('GET', `/projects/${p.name}/summary`, { auth: cast.users.developer.auth }));
      assert.equal(summary.repo_count, 1);
      assert.equal(summary.quota.used.storage, quota.used.storage);

      assert.equal((await call('PUT', `/quotas/${id}`, { auth: ADMIN_AUTH, body: { hard: { storage: 1024 } } })).status, 200, 'below usage is accepted');
      const after = await json<QuotaJson>(await call('GET', `/quotas/${id}`, { auth: ADMIN_AUTH }));
      assert.deepEqual([after.hard.storage, after.used.storage], [1024, quota.used.storage]);
      const blocked = await pushImage(`${p.name}/app`, 'v2', 2048);
      assert.equal(blocked.status, 403);
      assert.match(await blocked.text(), /quota/);
      assert.equal((await call('PUT', `/quotas/${id}`, { auth: ADMIN_AUTH, body: { hard: { storage: -1 } } })).status, 200);
      assert.equal((await pushImage(`${p.name}/app`, 'v2', 2048)).status, 201);

      const refused = await call('DELETE', `/projects/${p.name}`, { auth: ADMIN_AUTH });
      assert.equal(refused.status, 412, 'a project holding pushed repositories is not deleted');
      assert.equal((await call('GET', `/quotas/${id}`, { auth: ADMIN_AUTH })).status, 200);
    });
  });
}
