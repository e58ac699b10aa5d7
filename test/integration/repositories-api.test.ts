/**
 * Harbor's repository API (/api/v2.0/repositories, /api/v2.0/projects/{p}/repositories…) over a
 * real socket with authentication on, on every database backend: the Repository shape, artifact
 * counts, q/sort/paging, double-encoded names, description updates, deletion (seen through /v2),
 * visibility and permissions per role, and bad input answered with Harbor's error shape.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { BACKENDS } from '../helpers/backends.ts';
import {
  ADMIN,
  addMember,
  basic,
  api,
  apiJson,
  assertApiError,
  createProject,
  createUser,
  links,
  type Pushed,
  pushImage,
  pushIndex,
  startAuthServer,
  v2ManifestStatus,
} from '../helpers/harbor-api.ts';
import { assertNoServerErrors } from '../helpers/http.ts';
import type { TestServer } from '../helpers/server.ts';
import type { RepositoryJson } from '../../src/registry/artifact-model.ts';


const names = (repos: RepositoryJson[]) => repos.map((r) => r.name);

for (const backend of BACKENDS) {
  describe(`repository API (${backend})`, () => {
    let server: TestServer;
    let base: string;
    let secretId: number;
    let guest: string;
    let developer: string;
    let maintainer: string;
    let outsider: string;
    let redis: Pushed;

    before(async () => {
      server = await startAuthServer(backend);
      base = server.url;
      secretId = await createProject(base, 'secret', false);
      guest = await createUser(base, 'gus');
      developer = await createUser(base, 'dev');
      maintainer = await createUser(base, 'mae');
      outsider = await createUser(base, 'olga');
      await addMember(base, 'secret', 'gus', 3);
      await addMember(base, 'secret', 'dev', 2);
      await addMember(base, 'secret', 'mae', 4);
      await pushImage(base, 'library/nginx', { tags: ['1.25'] });
      await pushImage(base, 'library/a/b', { tags: ['latest'] });
      redis = await pushImage(base, 'library/redis', { tags: ['7'] });
      const amd = await pushImage(base, 'library/redis', { architecture: 'amd64' });
      const arm = await pushImage(base, 'library/redis', { architecture: 'arm64' });
      await pushIndex(
        base,
        'library/redis',
        [
          { image: amd, architecture: 'amd64' },
          { image: arm, architecture: 'arm64' },
        ],
        ['multi'],
      );
      await pushImage(base, 'secret/app', { tags: ['v1'] });
    });
    after(async () => {
      assertNoServerErrors(server);
      await server.close();
    });

    it("lists a project's repositories in Harbor's shape, newest first, with artifact counts", async () => {
      const { body, res } = await apiJson<RepositoryJson[]>(base, '/projects/library/repositories', 200, { auth: ADMIN });
      assert.deepEqual(names(body), ['library/redis', 'library/a/b', 'library/nginx']);
      assert.equal(res.headers.get('x-total-count'), '3');
      const redisRepo = body[0] as RepositoryJson;
      assert.deepEqual(Object.keys(redisRepo).sort(), ['artifact_count', 'creation_time', 'description', 'id', 'name', 'project_id', 'pull_count', 'update_time']);
      // Two artifacts shown: the tagged image and the index (its untagged children are not counted, as in Harbor).
      assert.equal(redisRepo.artifact_count, 2);
      assert.equal(redisRepo.project_id, 1);
      assert.equal(redisRepo.pull_count, 0);
      assert.equal(redisRepo.description, '');
      assert.ok(Date.parse(redisRepo.update_time) >= Date.parse(redisRepo.creation_time));
      assert.ok(body.every((r) => r.artifact_count >= 1));
    });

    it('filters by q=name (contains, exact full or relative name), sorts and pages', async () => {
      const q = async (query: string) => names((await apiJson<RepositoryJson[]>(base, `/projects/library/repositories?q=${encodeURIComponent(query)}`, 200, { auth: ADMIN })).body);
      assert.deepEqual(await q('name=~ngi'), ['library/nginx']);
      assert.deepEqual(await q('name=nginx'), ['library/nginx']);
      assert.deepEqual(await q('name=library/a/b'), ['library/a/b']);
      assert.deepEqual(await q('name=~%'), [], 'LIKE wildcards are matched literally');
      assert.deepEqual(await q('name=~_'), []);

      const byCount = await apiJson<RepositoryJson[]>(base, '/projects/library/repositories?sort=-artifact_count,name', 200, { auth: ADMIN });
      assert.deepEqual(names(byCount.body), ['library/redis', 'library/a/b', 'library/nginx']);
      const sorted = await apiJson<RepositoryJson[]>(base, '/projects/library/repositories?sort=name', 200, { auth: ADMIN });
      assert.deepEqual(names(sorted.body), ['library/a/b', 'library/nginx', 'library/redis']);
      const desc = await apiJson<RepositoryJson[]>(base, '/projects/library/repositories?sort=-name&page_size=2', 200, { auth: ADMIN });
      assert.deepEqual(names(desc.body), ['library/redis', 'library/nginx']);
      assert.equal(desc.res.headers.get('x-total-count'), '3');
      const next = links(desc.res).next;
      assert.ok(next);
      const page2 = await apiJson<RepositoryJson[]>(base, next.replace('/api/v2.0', ''), 200, { auth: ADMIN });
      assert.deepEqual(names(page2.body), ['library/a/b']);
      assert.ok(links(page2.res).prev);
    });

    it('gets one repository by its double-encoded name', async () => {
      const { body } = await apiJson<RepositoryJson>(base, '/projects/library/repositories/a%252Fb', 200, { auth: ADMIN });
      assert.equal(body.name, 'library/a/b');
      assert.equal(body.artifact_count, 1);
      const byId = await apiJson<RepositoryJson>(base, '/projects/library/repositories/nginx', 200, { auth: ADMIN });
      assert.equal(byId.body.name, 'library/nginx');
    });

    it('takes a project name made of digits as a name, not as a project id', async () => {
      const id = await createProject(base, '1', true);
      assert.notEqual(id, 1);
      await pushImage(base, '1/numeric', { tags: ['v1'] });
      const { body } = await apiJson<RepositoryJson[]>(base, '/projects/1/repositories', 200, { auth: ADMIN });
      assert.deepEqual(names(body), ['1/numeric']);
      assert.equal(body[0]?.project_id, id);
      await apiJson(base, '/projects/1/repositories/numeric/artifacts/v1', 200);
      await apiJson(base, '/projects/1/repositories/numeric', 200, { method: 'DELETE', auth: ADMIN });
      await assertApiError(await api(base, '/projects/999/repositories', { auth: ADMIN }), 404, 'NOT_FOUND');
    });

    it('sets the description (Harbor clients may send the whole Repository object)', async () => {
      await apiJson(base, '/projects/library/repositories/nginx', 200, { method: 'PUT', auth: ADMIN, body: { description: 'The web server' } });
      assert.equal((await apiJson<RepositoryJson>(base, '/projects/library/repositories/nginx', 200, { auth: ADMIN })).body.description, 'The web server');
      const current = (await apiJson<RepositoryJson>(base, '/projects/library/repositories/a%252Fb', 200, { auth: ADMIN })).body;
      await apiJson(base, '/projects/library/repositories/a%252Fb', 200, { method: 'PUT', auth: ADMIN, body: { ...current, description: 'nested' } });
      assert.equal((await apiJson<RepositoryJson>(base, '/projects/library/repositories/a%252Fb', 200, { auth: ADMIN })).body.description, 'nested');
    });

    it('refuses bad bodies, names and parameters with Harbor errors and changes nothing', async () => {
      const bodies: Array<[unknown, string]> = [
        ['{"description":', 'malformed JSON'],
        [{ description: 5 }, 'wrong type'],
        [{ description: 'x', colour: 'red' }, 'unknown field'],
        [{}, 'missing description'],
        [[], 'not an object'],
      ];
      for (const [body, why] of bodies) {
        const res = await api(base, '/projects/library/repositories/nginx', { method: 'PUT', auth: ADMIN, body });
        assert.equal(res.status, 400, `${why}: ${res.status}`);
        await assertApiError(res, 400, 'BAD_REQUEST');
      }
      assert.equal((await apiJson<RepositoryJson>(base, '/projects/library/repositories/nginx', 200, { auth: ADMIN })).body.description, 'The web server');

      const cases: Array<[string, string, number, string]> = [
        ['GET', '/projects/library/repositories/missing', 404, 'NOT_FOUND'],
        ['PUT', '/projects/library/repositories/missing', 404, 'NOT_FOUND'],
        ['DELETE', '/projects/library/repositories/missing', 404, 'NOT_FOUND'],
        ['GET', '/projects/library/repositories/Bad%252FName', 400, 'BAD_REQUEST'],
        ['GET', '/projects/library/repositories/a%25ZZ', 400, 'BAD_REQUEST'],
        ['GET', '/projects/nosuch/repositories', 404, 'NOT_FOUND'],
        ['GET', '/projects/nosuch/repositories/nginx', 404, 'NOT_FOUND'],
        ['GET', '/projects/library/repositories?page_size=500', 400, 'BAD_REQUEST'],
        ['GET', '/projects/library/repositories?page=0', 400, 'BAD_REQUEST'],
        ['GET', '/projects/library/repositories?sort=size', 400, 'BAD_REQUEST'],
        ['GET', `/projects/library/repositories?q=${encodeURIComponent('name=[a~b]')}`, 400, 'BAD_REQUEST'],
        ['GET', `/repositories?q=${encodeURIComponent('project_id=abc')}`, 400, 'BAD_REQUEST'],
      ];
      for (const [method, path, status, code] of cases) {
        const res = await api(base, path, { method, auth: ADMIN, ...(method === 'PUT' ? { body: { description: 'x' } } : {}) });
        assert.equal(res.status, status, `${method} ${path}: ${res.status}`);
        await assertApiError(res, status, code);
      }
    });

    it('GET /repositories shows what the caller may see: all for admins, public and member projects otherwise', async () => {
      const all = async (auth?: string, query = '') => names((await apiJson<RepositoryJson[]>(base, `/repositories?page_size=100${query}`, 200, auth ? { auth } : {})).body).sort();
      const everything = ['library/a/b', 'library/nginx', 'library/redis', 'secret/app'];
      assert.deepEqual(await all(ADMIN), everything);
      assert.deepEqual(await all(), everything.slice(0, 3));
      assert.deepEqual(await all(outsider), everything.slice(0, 3));
      assert.deepEqual(await all(guest), everything);
      assert.deepEqual(await all(ADMIN, `&q=${encodeURIComponent(`project_id=${secretId}`)}`), ['secret/app']);
      assert.deepEqual(await all(outsider, `&q=${encodeURIComponent(`project_id=${secretId}`)}`), []);
      assert.deepEqual(await all(ADMIN, `&q=${encodeURIComponent('name=~/a')}`), ['library/a/b', 'secret/app']);
      const res = await api(base, '/repositories?page_size=1', { auth: ADMIN });
      assert.equal(res.headers.get('x-total-count'), '4');
      assert.ok(links(res).next);
      await res.arrayBuffer();
    });

    it('a project robot sees and acts on exactly what it was granted', async () => {
      const { body } = await apiJson<{ name: string; secret: string }>(base, '/robots', 201, {
        method: 'POST',
        auth: ADMIN,
        body: {
          name: 'reader',
          level: 'project',
          duration: -1,
          permissions: [
            {
              kind: 'project',
              namespace: 'secret',
              access: [
                { resource: 'project', action: 'read' },
                { resource: 'repository', action: 'list' },
                { resource: 'artifact', action: 'list' },
                { resource: 'artifact', action: 'read' },
              ],
            },
          ],
        },
      });
      const robot = basic(body.name, body.secret);
      const all = (await apiJson<RepositoryJson[]>(base, '/repositories?page_size=100', 200, { auth: robot })).body;
      assert.deepEqual(names(all).sort(), ['library/a/b', 'library/nginx', 'library/redis', 'secret/app']);
      await apiJson(base, '/projects/secret/repositories/app/artifacts/v1', 200, { auth: robot });
      await assertApiError(await api(base, '/projects/secret/repositories/app', { method: 'PUT', auth: robot, body: { description: 'r' } }), 403, 'FORBIDDEN');
      await assertApiError(await api(base, '/projects/secret/repositories/app/artifacts/v1', { method: 'DELETE', auth: robot }), 403, 'FORBIDDEN');
    });

    it('a private project: anonymous 401, non-members 404; members by role', async () => {
      const SECRET = '/projects/secret/repositories/app';
      await assertApiError(await api(base, '/projects/secret/repositories'), 401, 'UNAUTHORIZED');
      await assertApiError(await api(base, SECRET), 401, 'UNAUTHORIZED');
      await assertApiError(await api(base, '/projects/secret/repositories', { auth: outsider }), 404, 'NOT_FOUND');
      await assertApiError(await api(base, SECRET, { auth: outsider }), 404, 'NOT_FOUND');
      await assertApiError(await api(base, SECRET, { method: 'DELETE', auth: outsider }), 404, 'NOT_FOUND');

      await apiJson(base, '/projects/secret/repositories', 200, { auth: guest });
      await apiJson(base, SECRET, 200, { auth: guest });
      await assertApiError(await api(base, SECRET, { method: 'PUT', auth: guest, body: { description: 'g' } }), 403, 'FORBIDDEN');
      await apiJson(base, SECRET, 200, { method: 'PUT', auth: developer, body: { description: 'by dev' } });
      await assertApiError(await api(base, SECRET, { method: 'DELETE', auth: developer }), 403, 'FORBIDDEN');
      assert.equal((await apiJson<RepositoryJson>(base, SECRET, 200, { auth: maintainer })).body.description, 'by dev');
    });

    it('anonymous visitors may list and read repositories of a public project, not change them', async () => {
      await apiJson(base, '/projects/library/repositories', 200);
      await apiJson(base, '/projects/library/repositories/nginx', 200);
      await assertApiError(await api(base, '/projects/library/repositories/nginx', { method: 'PUT', body: { description: 'x' } }), 401, 'UNAUTHORIZED');
      await assertApiError(await api(base, '/projects/library/repositories/nginx', { method: 'DELETE' }), 401, 'UNAUTHORIZED');
      await assertApiError(await api(base, '/projects/library/repositories/nginx', { method: 'DELETE', auth: outsider }), 403, 'FORBIDDEN');
      assert.equal(await v2ManifestStatus(base, 'library/nginx', '1.25'), 200);
    });

    it('deletes a repository with every artifact and tag; /v2 forgets it, and the name can be pushed again', async () => {
      await apiJson(base, '/projects/library/repositories/redis', 200, { method: 'DELETE', auth: ADMIN });
      await assertApiError(await api(base, '/projects/library/repositories/redis', { auth: ADMIN }), 404, 'NOT_FOUND');
      for (const ref of ['7', 'multi', redis.digest]) assert.equal(await v2ManifestStatus(base, 'library/redis', ref), 404, ref);
      const tags = await fetch(`${base}/v2/library/redis/tags/list`, { headers: { authorization: ADMIN } });
      assert.equal(tags.status, 404);
      await tags.arrayBuffer();
      const catalog = (await (await fetch(`${base}/v2/_catalog`, { headers: { authorization: ADMIN } })).json()) as { repositories: string[] };
      assert.ok(!catalog.repositories.includes('library/redis'));
      assert.deepEqual(names((await apiJson<RepositoryJson[]>(base, '/projects/library/repositories?sort=name', 200, { auth: ADMIN })).body), ['library/a/b', 'library/nginx']);

      await pushImage(base, 'library/redis', { tags: ['8'] });
      const again = await apiJson<RepositoryJson>(base, '/projects/library/repositories/redis', 200, { auth: ADMIN });
      assert.equal(again.body.artifact_count, 1);
      assert.equal(again.body.description, '');

      await apiJson(base, '/projects/secret/repositories/app', 200, { method: 'DELETE', auth: maintainer });
      assert.equal(await v2ManifestStatus(base, 'secret/app', 'v1'), 404);
    });
  });
}
