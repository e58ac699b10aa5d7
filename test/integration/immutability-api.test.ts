/**
 * Harbor's immutable-tag-rule API (/api/v2.0/projects/{p}/immutabletagrules…) over a real socket
 * with authentication on, on every database backend: create (201 + Location), list (Harbor's
 * ImmutableRule shape, paging headers, sort), update (also enable/disable), delete; project by
 * name, by id and with X-Is-Resource-Name; bad input (invalid patterns, unknown fields, wrong
 * action, mismatched ids, the 15-rule limit, duplicates) answered with Harbor's error shape and
 * changing nothing; permissions per role (project admins and maintainers; robots with the
 * permission) with 401 for anonymous callers and 404 for projects the caller cannot see.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { MAX_IMMUTABLE_RULES } from '../../src/retention/immutability.ts';
import { BACKENDS } from '../helpers/backends.ts';
import { ADMIN, addMember, api, apiJson, assertApiError, basic, createProject, createUser, links, startAuthServer } from '../helpers/harbor-api.ts';
import { assertNoServerErrors } from '../helpers/http.ts';
import type { TestServer } from '../helpers/server.ts';

interface RuleJson {
  id: number;
  project_id: number;
  priority: number;
  disabled: boolean;
  action: string;
  template: string;
  params: Record<string, unknown>;
  tag_selectors: Array<{ kind: string; decoration: string; pattern: string; extras?: unknown }>;
  scope_selectors: { repository: Array<{ kind: string; decoration: string; pattern: string }> };
}

/** A rule body as Harbor's UI sends it. */
function harborRule(repoPattern: string, tagPattern: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    disabled: false,
    action: 'immutable',
    template: 'immutable_template',
    params: {},
    tag_selectors: [{ kind: 'doublestar', decoration: 'matches', pattern: tagPattern }],
    scope_selectors: { repository: [{ kind: 'doublestar', decoration: 'repoMatches', pattern: repoPattern }] },
    ...extra,
  };
}

const ROLE = { projectAdmin: 1, developer: 2, guest: 3, maintainer: 4, limitedGuest: 5 } as const;

for (const backend of BACKENDS) {
  describe(`immutable tag rule API (${backend})`, () => {
    let server: TestServer;
    let base: string;
    let projectId: number;
    const users: Record<string, string> = {};
    const rules = (project = 'imm') => `/projects/${project}/immutabletagrules`;
    const list = async (project = 'imm', auth = ADMIN) => (await apiJson<RuleJson[]>(base, rules(project), 200, { auth })).body;

    before(async () => {
      server = await startAuthServer(backend);
      base = server.url;
      projectId = await createProject(base, 'imm', false);
      await createProject(base, 'other', false);
      for (const [name, role] of Object.entries(ROLE)) {
        users[name] = await createUser(base, `imm-${name.toLowerCase()}`);
        await addMember(base, 'imm', `imm-${name.toLowerCase()}`, role);
      }
      users.outsider = await createUser(base, 'imm-outsider');
    });
    after(() => server.close());

    it('creates a rule (201 with Location), lists it in Harbor shape, updates, disables and deletes it', async () => {
      const { res } = await apiJson(base, rules(), 201, { method: 'POST', auth: ADMIN, body: harborRule('**', 'v*', { priority: 2 }) });
      const location = res.headers.get('location') ?? '';
      assert.match(location, /^\/api\/v2\.0\/projects\/imm\/immutabletagrules\/\d+$/);
      const id = Number(location.split('/').at(-1));
      assert.deepEqual(await list(), [
        {
          id,
          project_id: projectId,
          priority: 2,
          disabled: false,
          action: 'immutable',
          template: 'immutable_template',
          params: {},
          tag_selectors: [{ kind: 'doublestar', decoration: 'matches', pattern: 'v*' }],
          scope_selectors: { repository: [{ kind: 'doublestar', decoration: 'repoMatches', pattern: '**' }] },
        },
      ]);

      // Harbor's UI sends the whole rule back, id and project_id included.
      const current = (await list())[0] as RuleJson;
      await apiJson(base, `${rules()}/${id}`, 200, { method: 'PUT', auth: ADMIN, body: { ...current, disabled: true } });
      assert.equal((await list())[0]?.disabled, true);
      await apiJson(base, `${rules()}/${id}`, 200, {
        method: 'PUT',
        auth: ADMIN,
        body: harborRule('team/**', 'release-*', { tag_selectors: [{ kind: 'regex', decoration: 'excludes', pattern: 'release-\\d+-rc' }] }),
      });
      const updated = (await list())[0] as RuleJson;
      assert.deepEqual([updated.id, updated.disabled, updated.priority, updated.tag_selectors, updated.scope_selectors.repository[0]?.pattern], [
        id,
        false,
        0,
        [{ kind: 'regex', decoration: 'excludes', pattern: 'release-\\d+-rc' }],
        'team/**',
      ]);

      await apiJson(base, `${rules()}/${id}`, 200, { method: 'DELETE', auth: ADMIN });
      assert.deepEqual(await list(), []);
      await assertApiError(await api(base, `${rules()}/${id}`, { method: 'DELETE', auth: ADMIN }), 404, 'NOT_FOUND');
      assertNoServerErrors(server);
    });

    it('addresses the project by name, by id, and by an all-digit name with X-Is-Resource-Name', async () => {
      await createProject(base, '4242', false);
      await apiJson(base, rules('4242'), 201, { method: 'POST', auth: ADMIN, body: harborRule('**', 'by-name'), headers: { 'x-is-resource-name': 'true' } });
      await apiJson(base, rules(String(projectId)), 201, { method: 'POST', auth: ADMIN, body: harborRule('**', 'by-id') });
      assert.deepEqual(
        (await apiJson<RuleJson[]>(base, rules('4242'), 200, { auth: ADMIN, headers: { 'x-is-resource-name': 'true' } })).body.map((r) => r.tag_selectors[0]?.pattern),
        ['by-name'],
      );
      const mine = await list();
      assert.deepEqual(
        mine.map((r) => r.tag_selectors[0]?.pattern),
        ['by-id'],
      );
      for (const r of mine) await apiJson(base, `${rules()}/${r.id}`, 200, { method: 'DELETE', auth: ADMIN });
      await assertApiError(await api(base, rules('no-such-project'), { auth: ADMIN }), 404, 'NOT_FOUND');
      await assertApiError(await api(base, rules('no-such-project'), { method: 'POST', auth: ADMIN, body: harborRule('**', '**') }), 404, 'NOT_FOUND');
    });

    it('pages and sorts: X-Total-Count, Link, sort=priority and -id', async () => {
      for (let i = 0; i < 5; i++) await apiJson(base, rules('other'), 201, { method: 'POST', auth: ADMIN, body: harborRule('**', `p${i}`, { priority: 10 - i }) });
      const { body, res } = await apiJson<RuleJson[]>(base, `${rules('other')}?page=2&page_size=2`, 200, { auth: ADMIN });
      assert.equal(res.headers.get('x-total-count'), '5');
      assert.deepEqual(
        body.map((r) => r.tag_selectors[0]?.pattern),
        ['p2', 'p3'],
      );
      assert.ok(links(res).next && links(res).prev);
      const byPriority = (await apiJson<RuleJson[]>(base, `${rules('other')}?sort=priority`, 200, { auth: ADMIN })).body;
      assert.deepEqual(
        byPriority.map((r) => r.tag_selectors[0]?.pattern),
        ['p4', 'p3', 'p2', 'p1', 'p0'],
      );
      const newestFirst = (await apiJson<RuleJson[]>(base, `${rules('other')}?sort=-id`, 200, { auth: ADMIN })).body;
      assert.deepEqual(
        newestFirst.map((r) => r.tag_selectors[0]?.pattern),
        ['p4', 'p3', 'p2', 'p1', 'p0'],
      );
      await assertApiError(await api(base, `${rules('other')}?sort=name`, { auth: ADMIN }), 400, 'BAD_REQUEST');
      await assertApiError(await api(base, `${rules('other')}?page_size=1000`, { auth: ADMIN }), 400, 'BAD_REQUEST');
      for (const r of newestFirst) await apiJson(base, `${rules('other')}/${r.id}`, 200, { method: 'DELETE', auth: ADMIN });
    });

    it(`refuses bad input with Harbor's error shape, and changes nothing`, async () => {
      const { res } = await apiJson(base, rules(), 201, { method: 'POST', auth: ADMIN, body: harborRule('app', 'keep') });
      const id = Number((res.headers.get('location') ?? '').split('/').at(-1));
      const before = await list();
      const badBodies: Array<[string, unknown]> = [
        ['an invalid doublestar pattern', harborRule('**', 'v[1')],
        ['an invalid regular expression', harborRule('**', '**', { tag_selectors: [{ kind: 'regex', decoration: 'matches', pattern: '(unclosed' }] })],
        ['an invalid repository pattern', harborRule('{a,b', '**')],
        ['an unknown selector kind', harborRule('**', '**', { tag_selectors: [{ kind: 'glob', decoration: 'matches', pattern: '*' }] })],
        ['a repository decoration on a tag selector', harborRule('**', '**', { tag_selectors: [{ kind: 'doublestar', decoration: 'repoMatches', pattern: '*' }] })],
        ['a tag decoration on a repository selector', harborRule('**', '**', { scope_selectors: { repository: [{ kind: 'doublestar', decoration: 'matches', pattern: '*' }] } })],
        ['no tag selector', harborRule('**', '**', { tag_selectors: [] })],
        ['no repository selector', harborRule('**', '**', { scope_selectors: { repository: [] } })],
        ['scope selectors other than repository', harborRule('**', '**', { scope_selectors: { repository: [{ kind: 'doublestar', decoration: 'repoMatches', pattern: '**' }], label: [] } })],
        ['an unknown field', harborRule('**', '**', { colour: 'red' })],
        ['another action', harborRule('**', '**', { action: 'retain' })],
        ['another template', harborRule('**', '**', { template: 'latestPushedK' })],
        ['a pattern over 256 characters', harborRule('**', 'x'.repeat(257))],
        ['disabled as a string', harborRule('**', '**', { disabled: 'true' })],
        ['another project in project_id', harborRule('**', '**', { project_id: projectId + 1000 })],
        ['malformed JSON', '{"tag_selectors": ['],
        ['no body', undefined],
      ];
      for (const [what, body] of badBodies) {
        const res = await api(base, rules(), { method: 'POST', auth: ADMIN, ...(body !== undefined ? { body } : {}) });
        await assertApiError(res, 400, 'BAD_REQUEST').catch((err: Error) => assert.fail(`${what}: ${err.message}`));
        const update = await api(base, `${rules()}/${id}`, { method: 'PUT', auth: ADMIN, ...(body !== undefined ? { body } : {}) });
        await assertApiError(update, 400, 'BAD_REQUEST').catch((err: Error) => assert.fail(`${what} (update): ${err.message}`));
      }
      await assertApiError(await api(base, `${rules()}/${id}`, { method: 'PUT', auth: ADMIN, body: harborRule('**', '**', { id: id + 1 }) }), 400, 'BAD_REQUEST');
      await assertApiError(await api(base, `${rules()}/abc`, { method: 'PUT', auth: ADMIN, body: harborRule('**', '**') }), 400, 'BAD_REQUEST');
      await assertApiError(await api(base, `${rules()}/abc`, { method: 'DELETE', auth: ADMIN }), 400, 'BAD_REQUEST');
      await assertApiError(await api(base, `${rules()}/987654`, { method: 'PUT', auth: ADMIN, body: harborRule('**', '**') }), 404, 'NOT_FOUND');
      // A rule of another project is not reachable through this one.
      const { res: otherRes } = await apiJson(base, rules('other'), 201, { method: 'POST', auth: ADMIN, body: harborRule('**', 'theirs') });
      const otherId = Number((otherRes.headers.get('location') ?? '').split('/').at(-1));
      await assertApiError(await api(base, `${rules()}/${otherId}`, { method: 'PUT', auth: ADMIN, body: harborRule('**', 'x') }), 404, 'NOT_FOUND');
      await assertApiError(await api(base, `${rules()}/${otherId}`, { method: 'DELETE', auth: ADMIN }), 404, 'NOT_FOUND');
      await apiJson(base, `${rules('other')}/${otherId}`, 200, { method: 'DELETE', auth: ADMIN });
      // The same selectors twice: 409.
      await assertApiError(await api(base, rules(), { method: 'POST', auth: ADMIN, body: harborRule('app', 'keep', { priority: 7 }) }), 409, 'CONFLICT');
      assert.deepEqual(await list(), before);
      await apiJson(base, `${rules()}/${id}`, 200, { method: 'DELETE', auth: ADMIN });
      assertNoServerErrors(server);
    });

    it(`allows ${MAX_IMMUTABLE_RULES} rules per project and refuses one more with a 400`, async () => {
      for (let i = 0; i < MAX_IMMUTABLE_RULES; i++) await apiJson(base, rules(), 201, { method: 'POST', auth: ADMIN, body: harborRule('**', `n${i}`) });
      const res = await api(base, rules(), { method: 'POST', auth: ADMIN, body: harborRule('**', 'one-more') });
      const text = await res.clone().text();
      await assertApiError(res, 400, 'BAD_REQUEST');
      assert.match(text, new RegExp(`\\(${MAX_IMMUTABLE_RULES}\\)`));
      const all = (await apiJson<RuleJson[]>(base, `${rules()}?page_size=100`, 200, { auth: ADMIN })).body;
      assert.equal(all.length, MAX_IMMUTABLE_RULES);
      for (const r of all) await apiJson(base, `${rules()}/${r.id}`, 200, { method: 'DELETE', auth: ADMIN });
    });

    it('project admins and maintainers manage rules; developers, guests and limited guests get 403; outsiders 404; anonymous 401', async () => {
      for (const role of ['projectAdmin', 'maintainer'] as const) {
        const auth = users[role] as string;
        const { res } = await apiJson(base, rules(), 201, { method: 'POST', auth, body: harborRule('**', `by-${role}`) });
        const id = Number((res.headers.get('location') ?? '').split('/').at(-1));
        assert.ok((await list('imm', auth)).some((r) => r.id === id));
        await apiJson(base, `${rules()}/${id}`, 200, { method: 'PUT', auth, body: harborRule('**', `by-${role}`, { disabled: true }) });
        await apiJson(base, `${rules()}/${id}`, 200, { method: 'DELETE', auth });
      }
      const { res } = await apiJson(base, rules(), 201, { method: 'POST', auth: ADMIN, body: harborRule('**', 'admins-only') });
      const id = Number((res.headers.get('location') ?? '').split('/').at(-1));
      const calls = (auth: string | undefined) => [
        api(base, rules(), { ...(auth ? { auth } : {}) }),
        api(base, rules(), { method: 'POST', ...(auth ? { auth } : {}), body: harborRule('**', 'nope') }),
        api(base, `${rules()}/${id}`, { method: 'PUT', ...(auth ? { auth } : {}), body: harborRule('**', 'nope') }),
        api(base, `${rules()}/${id}`, { method: 'DELETE', ...(auth ? { auth } : {}) }),
      ];
      for (const role of ['developer', 'guest', 'limitedGuest'] as const) for (const call of calls(users[role])) await assertApiError(await call, 403, 'FORBIDDEN');
      for (const call of calls(users.outsider)) await assertApiError(await call, 404, 'NOT_FOUND');
      for (const call of calls(undefined)) await assertApiError(await call, 401, 'UNAUTHORIZED');
      // Bad input from an anonymous caller is still told to log in first.
      await assertApiError(await api(base, `${rules()}/abc`, { method: 'PUT', body: { colour: 'red' } }), 401, 'UNAUTHORIZED');
      assert.deepEqual(
        (await list()).map((r) => r.id),
        [id],
      );
      await apiJson(base, `${rules()}/${id}`, 200, { method: 'DELETE', auth: ADMIN });
    });

    it('a robot with immutable-tag permissions in the project manages its rules, and nothing else', async () => {
      const { body } = await apiJson<{ name: string; secret: string }>(base, '/robots', 201, {
        method: 'POST',
        auth: ADMIN,
        body: {
          name: 'immbot',
          level: 'project',
          duration: -1,
          permissions: [
            {
              kind: 'project',
              namespace: 'imm',
              access: [
                { resource: 'immutable-tag', action: 'list' },
                { resource: 'immutable-tag', action: 'create' },
              ],
            },
          ],
        },
      });
      const robot = basic(body.name, body.secret);
      const { res } = await apiJson(base, rules(), 201, { method: 'POST', auth: robot, body: harborRule('**', 'robot-made') });
      const id = Number((res.headers.get('location') ?? '').split('/').at(-1));
      assert.deepEqual(
        (await list('imm', robot)).map((r) => r.id),
        [id],
      );
      await assertApiError(await api(base, `${rules()}/${id}`, { method: 'DELETE', auth: robot }), 403, 'FORBIDDEN');
      await assertApiError(await api(base, rules('other'), { auth: robot }), 404, 'NOT_FOUND');
      await apiJson(base, `${rules()}/${id}`, 200, { method: 'DELETE', auth: ADMIN });
      assertNoServerErrors(server);
    });

    it('the routes are in the OpenAPI document with their operationIds', async () => {
      const { body } = await apiJson<{ paths: Record<string, Record<string, { operationId?: string }>> }>(base, '/openapi.json', 200, { auth: ADMIN });
      const ops = Object.values(body.paths).flatMap((p) => Object.values(p).map((o) => o.operationId));
      for (const id of ['ListImmuRules', 'CreateImmuRule', 'UpdateImmuRule', 'DeleteImmuRule']) assert.ok(ops.includes(id), id);
    });
  });
}
