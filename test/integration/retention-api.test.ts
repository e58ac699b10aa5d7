/**
 * Harbor's tag retention API over HTTP with authentication on, on every backend: metadata, a
 * policy per project (its id in the project's retention_id), dry and real runs as jobs, the
 * executions and per-repository tasks with the artifacts removed, task logs, stop, paging, pull
 * times recorded from /v2 manifest GETs and used by latestPulledN, the quota shrinking after a
 * run, bad input answered with a clear 4xx that stores nothing, and who may do what (the
 * `tag-retention` resource: project admins, maintainers and developers; not guests).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { RETENTION_RUN_JOB } from '../../src/retention/jobs.ts';
import { BACKENDS } from '../helpers/backends.ts';
import { pushImage, type Pushed } from '../helpers/harbor-api.ts';
import { assertError, assertNoServerErrors, waitUntil } from '../helpers/http.ts';
import { OCI_INDEX, OCI_MANIFEST } from '../helpers/oci.ts';
import { CALLERS, type Caller, type Cast, createCast, refusal } from '../helpers/project-roles.ts';
import { ADMIN_AUTH, startTestServer, type TestServer } from '../helpers/server.ts';

interface ExecutionJson {
  id: number;
  policy_id: number;
  start_time: string;
  end_time?: string;
  status: string;
  trigger: string;
  dry_run: boolean;
}

interface TaskJson {
  id: number;
  execution_id: number;
  repository: string;
  job_id: string;
  status: string;
  total: number;
  retained: number;
  start_time: string;
  end_time?: string;
  removed: Array<{ repository: string; digest: string; tags: string[] }>;
}

interface PolicyJson {
  id: number;
  algorithm: string;
  rules: Array<{ id: number; template: string; params: Record<string, unknown>; tag_selectors: unknown[]; scope_selectors: { repository: unknown[] } }>;
  trigger: { kind: string; settings: { cron: string } };
  scope: { level: string; ref: number };
}

const WRITERS: readonly Caller[] = ['admin', 'projectAdmin', 'maintainer', 'developer'];

function policyBody(projectId: number, template: string, params: Record<string, unknown>, options: { cron?: string; tag?: string } = {}) {
  return {
    algorithm: 'or',
    rules: [
      {
        disabled: false,
        action: 'retain',
        template,
        params,
        tag_selectors: [{ kind: 'doublestar', decoration: 'matches', pattern: options.tag ?? '**', extras: '{"untagged":true}' }],
        scope_selectors: { repository: [{ kind: 'doublestar', decoration: 'repoMatches', pattern: '**' }] },
      },
    ],
    trigger: { kind: 'Schedule', settings: { cron: options.cron ?? '' }, references: {} },
    scope: { level: 'project', ref: projectId },
  };
}

for (const backend of BACKENDS) {
  describe(`tag retention API (${backend})`, () => {
    let server: TestServer;
    let cast: Cast;

    before(async () => {
      server = await startTestServer(backend, { config: { auth: { enabled: true }, jobs: { pollIntervalMs: 50, schedulerTickMs: 50 } } });
      cast = await createCast(server, 'ret');
    });
    after(() => server.close());

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
    const as = (caller: Caller) => cast.headers(caller).authorization;
    async function json<T>(res: Response, status = 200): Promise<T> {
      const text = await res.text();
      assert.equal(res.status, status, text);
      return JSON.parse(text) as T;
    }
    async function createProject(name: string): Promise<number> {
      const res = await call('POST', '/projects', { auth: ADMIN_AUTH, body: { project_name: name, metadata: { public: 'false' } } });
      assert.equal(res.status, 201, await res.text());
      return Number(res.headers.get('location')?.split('/').pop());
    }
    async function createPolicy(body: unknown, auth = ADMIN_AUTH): Promise<number> {
      const res = await call('POST', '/retentions', { auth, body });
      assert.equal(res.status, 201, await res.text());
      const location = res.headers.get('location') ?? '';
      assert.match(location, /^\/api\/v2\.0\/retentions\/\d+$/);
      return Number(location.split('/').pop());
    }
    async function retentionIdOf(project: string): Promise<string | undefined> {
      return (await json<{ metadata: Record<string, string> }>(await call('GET', `/projects/${project}`, { auth: ADMIN_AUTH }))).metadata.retention_id;
    }
    async function runPolicy(policyId: number, dryRun: boolean): Promise<{ execution: ExecutionJson; tasks: TaskJson[] }> {
      const res = await call('POST', `/retentions/${policyId}/executions`, { auth: ADMIN_AUTH, body: { dry_run: dryRun } });
      assert.equal(res.status, 201, await res.text());
      const executionId = Number(res.headers.get('location')?.split('/').pop());
      assert.equal(res.headers.get('location'), `/api/v2.0/retentions/${policyId}/executions/${executionId}`);
      let execution: ExecutionJson | undefined;
      await waitUntil(async () => {
        const list = await json<ExecutionJson[]>(await call('GET', `/retentions/${policyId}/executions?page_size=100`, { auth: ADMIN_AUTH }));
        execution = list.find((e) => e.id === executionId);
        return execution !== undefined && ['Success', 'Error', 'Stopped'].includes(execution.status);
      }, `execution ${executionId} to finish`);
      const tasks = await json<TaskJson[]>(await call('GET', `/retentions/${policyId}/executions/${executionId}/tasks`, { auth: ADMIN_AUTH }));
      return { execution: execution as ExecutionJson, tasks };
    }
    async function v2Tags(repository: string): Promise<string[]> {
      const res = await fetch(`${server.url}/v2/${repository}/tags/list`, { headers: { authorization: ADMIN_AUTH } });
      const body = (await json<{ tags: string[] | null }>(res)) ?? { tags: [] };
      return (body.tags ?? []).slice().sort();
    }
    const removed = (tasks: readonly TaskJson[]) => tasks.flatMap((t) => t.removed.map((r) => r.digest)).sort();
    const quotaUsed = async (projectId: number) => Number((await server.app.database.db.selectFrom('quotas').select('used').where('project_id', '=', projectId).executeTakeFirstOrThrow()).used);

    it('GET /retentions/metadatas: the templates and selectors, for any logged-in caller', async () => {
      assert.equal((await call('GET', '/retentions/metadatas')).status, 401);
      const metadata = await json<{ templates: Array<{ rule_template: string; params: unknown[] }>; tag_selectors: Array<{ kind: string; decorations: string[] }>; scope_selectors: Array<{ kind: string; decorations: string[] }> }>(
        await call('GET', '/retentions/metadatas', { auth: as('guest') }),
      );
      assert.deepEqual(
        metadata.templates.map((t) => t.rule_template),
        ['latestPushedK', 'latestPulledN', 'nDaysSinceLastPush', 'nDaysSinceLastPull', 'always'],
      );
      assert.deepEqual(metadata.tag_selectors[0], { display_text: 'Tags', kind: 'doublestar', decorations: ['matches', 'excludes'] });
      assert.deepEqual(metadata.scope_selectors[0]?.decorations, ['repoMatches', 'repoExcludes']);
    });

    it('a developer creates the policy (201, Location, retention_id); GET shows Harbor’s shape; a second one is a 409', async () => {
      const projectId = await createProject('ret-shape');
      await fetch(`${server.url}/api/v2.0/projects/ret-shape/members`, {
        method: 'POST',
        headers: { authorization: ADMIN_AUTH, 'content-type': 'application/json' },
        body: JSON.stringify({ role_id: 2, member_user: { username: cast.users.developer.name } }),
      });
      const id = await createPolicy(policyBody(projectId, 'latestPushedK', { latestPushedK: 3 }, { cron: '0 0 4 * * *' }), as('developer'));
      assert.equal(await retentionIdOf('ret-shape'), String(id));
      const policy = await json<PolicyJson>(await call('GET', `/retentions/${id}`, { auth: as('developer') }));
      assert.deepEqual(
        { ...policy, rules: policy.rules.map((r) => ({ id: r.id, template: r.template, params: r.params })) },
        { id, algorithm: 'or', rules: [{ id: 1, template: 'latestPushedK', params: { latestPushedK: 3 } }], trigger: { kind: 'Schedule', settings: { cron: '0 0 4 * * *' }, references: {} }, scope: { level: 'project', ref: projectId } },
      );
      await assertError(await call('POST', '/retentions', { auth: ADMIN_AUTH, body: policyBody(projectId, 'always', {}) }), 409, 'CONFLICT');
      // A client may send the policy back as it got it (id, rule ids, references) with changes.
      const changed = { ...policy, rules: [{ ...policy.rules[0], params: { latestPushedK: 5 } }] };
      assert.equal((await call('PUT', `/retentions/${id}`, { auth: as('developer'), body: changed })).status, 200);
      assert.deepEqual((await json<PolicyJson>(await call('GET', `/retentions/${id}`, { auth: ADMIN_AUTH }))).rules[0]?.params, { latestPushedK: 5 });
      // The project's own retention_id is protected from the metadata API.
      assert.equal((await call('PUT', '/projects/ret-shape/metadatas/retention_id', { auth: ADMIN_AUTH, body: { retention_id: '1' } })).status, 400);
      assert.equal((await call('DELETE', `/retentions/${id}`, { auth: as('developer') })).status, 200);
      assert.equal(await retentionIdOf('ret-shape'), undefined);
      await assertError(await call('GET', `/retentions/${id}`, { auth: ADMIN_AUTH }), 404, 'NOT_FOUND');
    });

    it('bad input gets a clear 4xx and stores nothing', async () => {
      const projectId = await createProject('ret-bad');
      const count = async () => Number((await server.app.database.db.selectFrom('retention_policies').select((eb) => eb.fn.countAll<number | string>().as('n')).executeTakeFirstOrThrow()).n);
      const before = await count();
      const cases: Array<[unknown, number, string, RegExp]> = [
        [policyBody(projectId, 'always', {}, { cron: 'at noon' }), 400, 'BAD_REQUEST', /cron/],
        [policyBody(projectId, 'always', {}, { cron: '0 0 0 31 2 *' }), 400, 'BAD_REQUEST', /cron/],
        [{ ...policyBody(projectId, 'always', {}), rules: [{ ...policyBody(projectId, 'always', {}).rules[0], tag_selectors: [{ kind: 'regex', decoration: 'matches', pattern: '[a-' }] }] }, 400, 'BAD_REQUEST', /regular expression/],
        [policyBody(projectId, 'always', {}, { tag: 'v'.repeat(257) }), 400, 'BAD_REQUEST', /longer than 256/],
        [policyBody(projectId, 'keepAll', {}), 400, 'BAD_REQUEST', /unknown template/],
        [policyBody(projectId, 'latestPushedK', { latestPushedK: 0 }), 400, 'BAD_REQUEST', /at least 1/],
        [policyBody(projectId, 'nDaysSinceLastPush', { nDaysSinceLastPush: 1e9 }), 400, 'BAD_REQUEST', /at most/],
        [policyBody(projectId, 'latestPushedK', { latestPushedK: 1.5 }), 400, 'BAD_REQUEST', /integer/],
        [{ ...policyBody(projectId, 'always', {}), rules: Array.from({ length: 16 }, (_, i) => policyBody(projectId, 'latestPushedK', { latestPushedK: i + 1 }).rules[0]) }, 400, 'BAD_REQUEST', /at most 15 rules/],
        [{ ...policyBody(projectId, 'always', {}), colour: 'blue' }, 400, 'BAD_REQUEST', /colour/],
        [{ ...policyBody(projectId, 'always', {}), scope: { level: 'project', ref: 987654 } }, 404, 'NOT_FOUND', /project 987654 not found/],
        [{ ...policyBody(projectId, 'always', {}), scope: { level: 'system', ref: projectId } }, 400, 'BAD_REQUEST', /scope.level/],
        [{ ...policyBody(projectId, 'always', {}), algorithm: 'and' }, 400, 'BAD_REQUEST', /algorithm/],
      ];
      for (const [body, status, code, message] of cases) {
        const res = await call('POST', '/retentions', { auth: ADMIN_AUTH, body });
        const text = await res.text();
        assert.equal(res.status, status, text);
        const error = (JSON.parse(text) as { errors: Array<{ code: string; message: string }> }).errors[0];
        assert.equal(error?.code, code, text);
        assert.match(error?.message ?? '', message);
      }
      await assertError(await call('POST', '/retentions', { auth: ADMIN_AUTH, raw: '{"rules": [' }), 400, 'BAD_REQUEST');
      assert.equal(await count(), before);
      assert.equal(await retentionIdOf('ret-bad'), undefined);

      // Ids in paths, unknown executions and tasks, a stop with another action.
      const id = await createPolicy(policyBody(projectId, 'always', {}));
      await assertError(await call('GET', '/retentions/abc', { auth: ADMIN_AUTH }), 400, 'BAD_REQUEST');
      await assertError(await call('GET', '/retentions/999999', { auth: ADMIN_AUTH }), 404, 'NOT_FOUND');
      await assertError(await call('GET', `/retentions/${id}/executions/999999/tasks`, { auth: ADMIN_AUTH }), 404, 'NOT_FOUND');
      await assertError(await call('PATCH', `/retentions/${id}/executions/1`, { auth: ADMIN_AUTH, body: { action: 'pause' } }), 400, 'BAD_REQUEST');
      await assertError(await call('PUT', `/retentions/${id}`, { auth: ADMIN_AUTH, body: policyBody(projectId, 'latestPulledN', { latestPulledN: -2 }) }), 400, 'BAD_REQUEST');
      await assertError(await call('PUT', `/retentions/${id}`, { auth: ADMIN_AUTH, body: policyBody(cast.priv.id, 'always', {}) }), 400, 'BAD_REQUEST');
      assert.equal((await json<PolicyJson>(await call('GET', `/retentions/${id}`, { auth: ADMIN_AUTH }))).rules[0]?.template, 'always');
      await assertError(await call('POST', `/retentions/${id}/executions`, { auth: ADMIN_AUTH, body: { dry_run: 'yes' } }), 400, 'BAD_REQUEST');
      assert.equal((await json<ExecutionJson[]>(await call('GET', `/retentions/${id}/executions`, { auth: ADMIN_AUTH }))).length, 0);
    });

    it('dry run, then the real run: executions, tasks with the removed artifacts, the log, survivors in /v2, a smaller quota', async () => {
      const projectId = await createProject('ret-run');
      const images: Pushed[] = [];
      for (const tag of ['v1', 'v2', 'v3', 'v4']) images.push(await pushImage(server.url, 'ret-run/app', { tags: [tag] }));
      const other = await pushImage(server.url, 'ret-run/tools/cli', { tags: ['only'] });
      const used = await quotaUsed(projectId);
      assert.equal(used, [...images, other].reduce((n, i) => n + i.size, 0));
      const id = await createPolicy(policyBody(projectId, 'latestPushedK', { latestPushedK: 2 }));

      const dry = await runPolicy(id, true);
      assert.deepEqual([dry.execution.status, dry.execution.trigger, dry.execution.dry_run, dry.execution.policy_id], ['Success', 'Manual', true, id]);
      assert.ok(Date.parse(dry.execution.start_time) <= Date.parse(dry.execution.end_time ?? ''));
      assert.deepEqual(
        dry.tasks.map((t) => [t.repository, t.status, t.total, t.retained]),
        [
          ['ret-run/app', 'Success', 4, 2],
          ['ret-run/tools/cli', 'Success', 1, 1],
        ],
      );
      assert.deepEqual(dry.tasks[0]?.removed.map((r) => [r.repository, r.tags]).sort(), [
        ['ret-run/app', ['v1']],
        ['ret-run/app', ['v2']],
      ]);
      assert.deepEqual(await v2Tags('ret-run/app'), ['v1', 'v2', 'v3', 'v4'], 'the dry run changed nothing');
      assert.equal(await quotaUsed(projectId), used);
      const logRes = await call('GET', `/retentions/${id}/executions/${dry.execution.id}/tasks/${dry.tasks[0]?.id}`, { auth: ADMIN_AUTH });
      assert.equal(logRes.status, 200);
      assert.match(logRes.headers.get('content-type') ?? '', /^text\/plain/);
      const log = await logRes.text();
      assert.match(log, new RegExp(`DEL +${images[0]?.digest}.*would be removed`));
      assert.match(log, new RegExp(`RETAIN +${images[3]?.digest}`));

      const real = await runPolicy(id, false);
      assert.equal(real.execution.status, 'Success');
      assert.deepEqual(removed(real.tasks), removed(dry.tasks));
      assert.deepEqual(await v2Tags('ret-run/app'), ['v3', 'v4']);
      assert.deepEqual(await v2Tags('ret-run/tools/cli'), ['only']);
      const gone = await fetch(`${server.url}/v2/ret-run/app/manifests/${images[0]?.digest}`, { headers: { authorization: ADMIN_AUTH, accept: OCI_MANIFEST } });
      assert.equal(gone.status, 404);
      assert.equal(await quotaUsed(projectId), (images[2]?.size ?? 0) + (images[3]?.size ?? 0) + other.size);

      // History: newest first, paged with X-Total-Count and Link.
      const page = await call('GET', `/retentions/${id}/executions?page=1&page_size=1`, { auth: ADMIN_AUTH });
      assert.equal(page.headers.get('x-total-count'), '2');
      assert.match(page.headers.get('link') ?? '', /rel="next"/);
      assert.deepEqual(
        (await json<ExecutionJson[]>(page)).map((e) => e.id),
        [real.execution.id],
      );
      const tasksPage = await call('GET', `/retentions/${id}/executions/${real.execution.id}/tasks?page=2&page_size=1`, { auth: ADMIN_AUTH });
      assert.equal(tasksPage.headers.get('x-total-count'), '2');
      assert.deepEqual(
        (await json<TaskJson[]>(tasksPage)).map((t) => t.repository),
        ['ret-run/tools/cli'],
      );
    });

    it("the project's immutability rules keep their tags through a run", async () => {
      const projectId = await createProject('ret-frozen');
      for (const tag of ['r1', 'r2', 'r3']) await pushImage(server.url, 'ret-frozen/app', { tags: [tag] });
      const rule = {
        tag_selectors: [{ kind: 'doublestar', decoration: 'matches', pattern: 'r1' }],
        scope_selectors: { repository: [{ kind: 'doublestar', decoration: 'repoMatches', pattern: '**' }] },
      };
      assert.equal((await call('POST', '/projects/ret-frozen/immutabletagrules', { auth: ADMIN_AUTH, body: rule })).status, 201);
      const id = await createPolicy(policyBody(projectId, 'latestPushedK', { latestPushedK: 1 }));
      const { tasks, execution } = await runPolicy(id, false);
      assert.deepEqual([tasks[0]?.total, tasks[0]?.retained, tasks[0]?.removed.map((r) => r.tags)], [3, 2, [['r2']]]);
      assert.deepEqual(await v2Tags('ret-frozen/app'), ['r1', 'r3']);
      const log = await (await call('GET', `/retentions/${id}/executions/${execution.id}/tasks/${tasks[0]?.id}`, { auth: ADMIN_AUTH })).text();
      assert.match(log, /RETAIN .*tags=r1 .*immutable \(tag r1\)/);
    });

    it('latestPulledN uses the pulls recorded from /v2 manifest GETs (not HEADs)', async () => {
      const projectId = await createProject('ret-pull');
      const images: Pushed[] = [];
      for (const tag of ['a', 'b', 'c']) images.push(await pushImage(server.url, 'ret-pull/app', { tags: [tag] }));
      const headers = { authorization: ADMIN_AUTH, accept: `${OCI_MANIFEST}, ${OCI_INDEX}` };
      const get = await fetch(`${server.url}/v2/ret-pull/app/manifests/a`, { headers });
      assert.equal(get.status, 200);
      await get.arrayBuffer();
      const head = await fetch(`${server.url}/v2/ret-pull/app/manifests/b`, { method: 'HEAD', headers });
      assert.equal(head.status, 200);
      const pulledAt = async (digest: string) =>
        (await server.app.database.db.selectFrom('manifests').select('pulled_at').where('digest', '=', digest).executeTakeFirstOrThrow()).pulled_at;
      await waitUntil(async () => (await pulledAt(images[0]?.digest as string)) !== null, 'the pull time to be flushed');
      assert.equal(await pulledAt(images[1]?.digest as string), null, 'a HEAD is not a pull');
      const id = await createPolicy(policyBody(projectId, 'latestPulledN', { latestPulledN: 1 }));
      await runPolicy(id, false);
      assert.deepEqual(await v2Tags('ret-pull/app'), ['a']);
    });

    it('stop: a queued run stops at once; a run in progress answers 409 to a second trigger', async () => {
      const projectId = await createProject('ret-stop');
      await pushImage(server.url, 'ret-stop/app', { tags: ['x'] });
      const id = await createPolicy(policyBody(projectId, 'always', {}));
      await server.app.jobs.queue.pauseKind(RETENTION_RUN_JOB);
      try {
        const res = await call('POST', `/retentions/${id}/executions`, { auth: ADMIN_AUTH });
        assert.equal(res.status, 201, 'the body is optional');
        const executionId = Number(res.headers.get('location')?.split('/').pop());
        const [pending] = await json<ExecutionJson[]>(await call('GET', `/retentions/${id}/executions`, { auth: ADMIN_AUTH }));
        assert.deepEqual([pending?.id, pending?.status, pending?.dry_run], [executionId, 'Pending', false]);
        await assertError(await call('POST', `/retentions/${id}/executions`, { auth: ADMIN_AUTH, body: { dry_run: true } }), 409, 'CONFLICT');
        assert.equal((await call('PATCH', `/retentions/${id}/executions/${executionId}`, { auth: ADMIN_AUTH, body: { action: 'stop' } })).status, 200);
        const [stopped] = await json<ExecutionJson[]>(await call('GET', `/retentions/${id}/executions`, { auth: ADMIN_AUTH }));
        assert.equal(stopped?.status, 'Stopped');
        // Stopping a finished run is a no-op.
        assert.equal((await call('PATCH', `/retentions/${id}/executions/${executionId}`, { auth: ADMIN_AUTH, body: { action: 'stop' } })).status, 200);
      } finally {
        await server.app.jobs.queue.resumeKind(RETENTION_RUN_JOB);
      }
      assert.equal((await runPolicy(id, true)).execution.status, 'Success');
    });

    describe('who may do what (tag-retention: writers yes, guests no)', () => {
      let policyId: number;
      let executionId: number;
      let taskId: number;
      before(async () => {
        await pushImage(server.url, `${cast.priv.name}/app`, { tags: ['t1'] });
        policyId = await createPolicy(policyBody(cast.priv.id, 'always', {}));
        const run = await runPolicy(policyId, true);
        executionId = run.execution.id;
        taskId = run.tasks[0]?.id as number;
      });

      const operations: Array<{ name: string; ok: readonly number[]; call: (auth: string | undefined) => Promise<Response> }> = [
        { name: 'read the policy', ok: [200], call: (auth) => call('GET', `/retentions/${policyId}`, { auth }) },
        { name: 'list executions', ok: [200], call: (auth) => call('GET', `/retentions/${policyId}/executions`, { auth }) },
        { name: 'list tasks', ok: [200], call: (auth) => call('GET', `/retentions/${policyId}/executions/${executionId}/tasks`, { auth }) },
        { name: 'read a task log', ok: [200], call: (auth) => call('GET', `/retentions/${policyId}/executions/${executionId}/tasks/${taskId}`, { auth }) },
        { name: 'update the policy', ok: [200], call: (auth) => call('PUT', `/retentions/${policyId}`, { auth, body: policyBody(cast.priv.id, 'always', {}) }) },
        { name: 'run the policy (dry)', ok: [201, 409], call: (auth) => call('POST', `/retentions/${policyId}/executions`, { auth, body: { dry_run: true } }) },
        { name: 'stop a run', ok: [200], call: (auth) => call('PATCH', `/retentions/${policyId}/executions/${executionId}`, { auth, body: { action: 'stop' } }) },
        { name: 'create a policy (the project has one: 409 once allowed)', ok: [409], call: (auth) => call('POST', '/retentions', { auth, body: policyBody(cast.priv.id, 'always', {}) }) },
      ];
      for (const operation of operations) {
        it(operation.name, async () => {
          for (const caller of CALLERS) {
            const res = await operation.call(as(caller));
            const text = await res.text();
            const expected = WRITERS.includes(caller) ? operation.ok : [refusal(caller, cast.priv)];
            assert.ok(expected.includes(res.status), `${operation.name} as ${caller}: expected ${expected.join(' or ')}, got ${res.status}: ${text}`);
          }
        });
      }

      it('delete the policy: refused to guests and outsiders, allowed to a developer', async () => {
        for (const caller of CALLERS.filter((c) => !WRITERS.includes(c))) {
          assert.equal((await call('DELETE', `/retentions/${policyId}`, { auth: as(caller) })).status, refusal(caller, cast.priv), caller);
        }
        assert.equal((await call('DELETE', `/retentions/${policyId}`, { auth: as('developer') })).status, 200);
        assert.equal(await retentionIdOf(cast.priv.name), undefined);
      });

      it('create: a guest may not, a developer may; on a public project an outsider gets 403', async () => {
        await assertError(await call('POST', '/retentions', { auth: as('guest'), body: policyBody(cast.priv.id, 'always', {}) }), 403, 'FORBIDDEN');
        await assertError(await call('POST', '/retentions', { auth: as('outsider'), body: policyBody(cast.pub.id, 'always', {}) }), 403, 'FORBIDDEN');
        await assertError(await call('POST', '/retentions', { body: policyBody(cast.pub.id, 'always', {}) }), 401, 'UNAUTHORIZED');
        await createPolicy(policyBody(cast.priv.id, 'always', {}), as('developer'));
      });
    });

    it('deleting a project deletes its policy with its history', async () => {
      const projectId = await createProject('ret-gone');
      const id = await createPolicy(policyBody(projectId, 'always', {}, { cron: '0 0 5 * * *' }));
      await runPolicy(id, true);
      assert.equal((await call('DELETE', '/projects/ret-gone', { auth: ADMIN_AUTH })).status, 200);
      await assertError(await call('GET', `/retentions/${id}`, { auth: ADMIN_AUTH }), 404, 'NOT_FOUND');
      const executions = await server.app.database.db.selectFrom('retention_executions').select('id').where('policy_id', '=', id).execute();
      assert.deepEqual(executions, []);
    });

    it('pulls still pending when the server stops are written before the database closes', async () => {
      const image = await pushImage(server.url, 'ret-stop/flush', { tags: ['f'] });
      const res = await fetch(`${server.url}/v2/ret-stop/flush/manifests/f`, { headers: { authorization: ADMIN_AUTH, accept: OCI_MANIFEST } });
      assert.equal(res.status, 200);
      await res.arrayBuffer();
      server = await server.restart();
      const row = await server.app.database.db.selectFrom('manifests').select('pulled_at').where('digest', '=', image.digest).executeTakeFirstOrThrow();
      assert.notEqual(row.pulled_at, null);
    });

    it('answered no request with a 5xx and logged no error', () => {
      assertNoServerErrors(server);
    });
  });
}
