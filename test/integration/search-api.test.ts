/**
 * GET /api/v2.0/search over a real socket with authentication on, on every database backend:
 * projects and repositories whose names contain the term, limited to what the caller may see,
 * in Harbor's shapes; bad input answered with Harbor's error shape.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { BACKENDS } from '../helpers/backends.ts';
import { ADMIN, addMember, api, apiJson, assertApiError, createProject, createUser, pushImage, startAuthServer } from '../helpers/harbor-api.ts';
import { assertNoServerErrors } from '../helpers/http.ts';
import type { TestServer } from '../helpers/server.ts';

interface SearchJson {
  project: Array<{ project_id: number; name: string; repo_count: number; metadata: Record<string, string>; owner_id: number; creation_time: string; deleted: boolean }>;
  repository: Array<{ project_id: number; project_name: string; project_public: boolean; repository_name: string; pull_count: number; artifact_count: number }>;
}

for (const backend of BACKENDS) {
  describe(`search API (${backend})`, () => {
    let server: TestServer;
    let base: string;
    let member: string;
    let outsider: string;
    let hiddenId: number;

    before(async () => {
      server = await startAuthServer(backend);
      base = server.url;
      hiddenId = await createProject(base, 'hidden-apps', false);
      await createProject(base, 'open-apps', true);
      member = await createUser(base, 'mia');
      outsider = await createUser(base, 'olga');
      await addMember(base, 'hidden-apps', 'mia', 3);
      await pushImage(base, 'library/nginx', { tags: ['1'] });
      await pushImage(base, 'library/nginx', { tags: ['2'] });
      await pushImage(base, 'library/tools/nginx-exporter', { tags: ['1'] });
      await pushImage(base, 'hidden-apps/nginx', { tags: ['1'] });
      await pushImage(base, 'open-apps/web', { tags: ['1'] });
    });
    after(async () => {
      assertNoServerErrors(server);
      await server.close();
    });

    const search = async (term: string, auth?: string) => (await apiJson<SearchJson>(base, `/search?q=${encodeURIComponent(term)}`, 200, auth ? { auth } : {})).body;

    it('finds repositories whose names contain the term, in Harbor’s SearchRepository shape', async () => {
      const found = await search('nginx', ADMIN);
      assert.deepEqual(found.project, []);
      assert.deepEqual(
        found.repository.map((r) => r.repository_name),
        ['hidden-apps/nginx', 'library/nginx', 'library/tools/nginx-exporter'],
      );
      assert.deepEqual(found.repository[1], {
        project_id: 1,
        project_name: 'library',
        project_public: true,
        repository_name: 'library/nginx',
        pull_count: 0,
        artifact_count: 2,
      });
      assert.equal(found.repository[0]?.project_id, hiddenId);
      assert.equal(found.repository[0]?.project_public, false);
    });

    it('finds projects whose names contain the term, with repo_count and metadata.public', async () => {
      const found = await search('apps', ADMIN);
      assert.deepEqual(
        found.project.map((p) => [p.name, p.repo_count, p.metadata.public]),
        [
          ['hidden-apps', 1, 'false'],
          ['open-apps', 1, 'true'],
        ],
      );
      assert.equal(found.project[0]?.project_id, hiddenId);
      assert.equal(found.project[0]?.deleted, false);
      assert.ok(!Number.isNaN(Date.parse(found.project[0]?.creation_time ?? '')));
      const library = await search('libr', ADMIN);
      assert.deepEqual(
        library.project.map((p) => [p.name, p.repo_count]),
        [['library', 2]],
      );
    });

    it('shows anonymous visitors and non-members only public projects and their repositories', async () => {
      for (const who of [undefined, outsider]) {
        const found = await search('apps', who);
        assert.deepEqual(
          found.project.map((p) => p.name),
          ['open-apps'],
        );
        assert.deepEqual(
          found.repository.map((r) => r.repository_name),
          ['open-apps/web'],
        );
        assert.deepEqual(
          (await search('nginx', who)).repository.map((r) => r.repository_name),
          ['library/nginx', 'library/tools/nginx-exporter'],
        );
      }
    });

    it('shows members their private projects', async () => {
      const found = await search('apps', member);
      assert.deepEqual(
        found.project.map((p) => p.name),
        ['hidden-apps', 'open-apps'],
      );
      assert.deepEqual(
        (await search('nginx', member)).repository.map((r) => r.repository_name),
        ['hidden-apps/nginx', 'library/nginx', 'library/tools/nginx-exporter'],
      );
    });

    it('matches the term literally (no LIKE wildcards) and answers nothing found with empty lists', async () => {
      assert.deepEqual(await search('%', ADMIN), { project: [], repository: [] });
      assert.deepEqual(await search('_', ADMIN), { project: [], repository: [] });
      assert.deepEqual(await search('zzz-nothing', ADMIN), { project: [], repository: [] });
      const dash = await search('-apps', ADMIN);
      assert.deepEqual(
        dash.project.map((p) => p.name),
        ['hidden-apps', 'open-apps'],
      );
    });

    it('requires q', async () => {
      await assertApiError(await api(base, '/search', { auth: ADMIN }), 400, 'BAD_REQUEST');
      await assertApiError(await api(base, '/search?q=', { auth: ADMIN }), 400, 'BAD_REQUEST');
      await assertApiError(await api(base, `/search?q=${'x'.repeat(300)}`, { auth: ADMIN }), 400, 'BAD_REQUEST');
      await assertApiError(await api(base, '/search?q=x', { auth: 'Basic bm9ib2R5Om5vcGU=' }), 401, 'UNAUTHORIZED');
    });
  });
}
