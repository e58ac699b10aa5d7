/**
 * Harbor's webhook policy API: create, read, list (paging, q, sort), update and delete, with the
 * signing secret write-only and sealed at rest; clear 4xx for bad input (invalid and refused
 * addresses, unknown event types and fields, malformed JSON) that change nothing; the
 * notification-policy permissions (project admins write, maintainers read, others are refused);
 * the supported events and the last-trigger view.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { BACKENDS } from '../helpers/backends.ts';
import { ADMIN, api, apiJson, assertApiError } from '../helpers/harbor-api.ts';
import { addMember, createProject, createUser, type TestUser } from '../helpers/iam.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';

const PROJECT_ADMIN = 1;
const DEVELOPER = 2;
const GUEST = 3;
const MAINTAINER = 4;

interface PolicyJson {
  id: number;
  name: string;
  description: string;
  project_id: number;
  targets: Array<{ type: string; address: string; auth_header: string; skip_cert_verify: boolean; payload_format: string }>;
  event_types: string[];
  creator: string;
  creation_time: string;
  update_time: string;
  enabled: boolean;
  secret_set: boolean;
}

const policyBody = (name: string, extra: Record<string, unknown> = {}) => ({
  name,
  description: `policy ${name}`,
  targets: [{ type: 'http', address: 'http://127.0.0.1:9/hook', auth_header: 'Bearer abc', skip_cert_verify: false, payload_format: 'Default' }],
  event_types: ['PUSH_ARTIFACT', 'PULL_ARTIFACT'],
  enabled: true,
  ...extra,
});

for (const backend of BACKENDS) {
  describe(`webhook policy API (${backend})`, () => {
    let server: TestServer;
    let projectId: number;
    let otherId: number;
    const users: Record<'pa' | 'maintainer' | 'developer' | 'guest' | 'outsider', TestUser> = {} as never;
    const base = () => server.url;
    const policies = (project = 'hooks') => `/projects/${project}/webhook/policies`;
    const count = async () => Number((await server.app.database.db.selectFrom('webhook_policies').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow()).n);

    before(async () => {
      server = await startTestServer(backend, { config: { auth: { enabled: true } } });
      projectId = await createProject(server, 'hooks');
      otherId = await createProject(server, 'elsewhere');
      for (const [key, role] of [
        ['pa', PROJECT_ADMIN],
        ['maintainer', MAINTAINER],
        ['developer', DEVELOPER],
        ['guest', GUEST],
      ] as const) {
        users[key] = await createUser(server, `wh-${key}`);
        await addMember(server, projectId, users[key], role);
      }
      users.outsider = await createUser(server, 'wh-outsider');
    });
    after(() => server.close());

    it("creates, reads, lists, updates and deletes a policy in Harbor's shape; the secret is write-only and sealed at rest", async () => {
      const created = await apiJson(base(), policies(), 201, { method: 'POST', auth: users.pa.auth, body: policyBody('ci', { secret: 'super-secret-value' }) });
      const location = created.res.headers.get('location') ?? '';
      assert.match(location, /^\/api\/v2\.0\/projects\/hooks\/webhook\/policies\/\d+$/);
      const id = Number(location.split('/').pop());

      const { body: policy } = await apiJson<PolicyJson & { secret?: unknown }>(base(), `${policies()}/${id}`, 200, { auth: users.pa.auth });
      assert.deepEqual(
        { ...policy, creation_time: undefined, update_time: undefined },
        {
          id,
          name: 'ci',
          description: 'policy ci',
          project_id: projectId,
          targets: [{ type: 'http', address: 'http://127.0.0.1:9/hook', auth_header: 'Bearer abc', skip_cert_verify: false, payload_format: 'Default' }],
          event_types: ['PUSH_ARTIFACT', 'PULL_ARTIFACT'],
          creator: 'wh-pa',
          creation_time: undefined,
          update_time: undefined,
          enabled: true,
          secret_set: true,
        },
      );
      assert.ok(!('secret' in policy), 'the secret is never returned');
      assert.ok(Math.abs(Date.parse(policy.creation_time) - Date.now()) < 60_000);
      const row = await server.app.database.db.selectFrom('webhook_policies').select('secret').where('id', '=', id).executeTakeFirstOrThrow();
      assert.ok(row.secret !== null && !row.secret.includes('super-secret-value'), 'sealed at rest');

      const listed = await apiJson<PolicyJson[]>(base(), policies(), 200, { auth: users.pa.auth });
      assert.equal(listed.res.headers.get('x-total-count'), '1');
      assert.deepEqual(
        listed.body.map((p) => p.name),
        ['ci'],
      );
      const byId = await apiJson<PolicyJson>(base(), `/projects/${projectId}/webhook/policies/${id}`, 200, { auth: users.pa.auth });
      assert.equal(byId.body.name, 'ci', 'the project by id');

      // PUT without a secret keeps it; with "" removes it.
      await apiJson(base(), `${policies()}/${id}`, 200, {
        method: 'PUT',
        auth: users.pa.auth,
        body: { ...policyBody('ci-renamed', { enabled: false, event_types: ['DELETE_ARTIFACT'] }), id, project_id: projectId, creator: 'ignored', creation_time: policy.creation_time },
      });
      const updated = (await apiJson<PolicyJson>(base(), `${policies()}/${id}`, 200, { auth: users.pa.auth })).body;
      assert.deepEqual([updated.name, updated.enabled, updated.event_types, updated.secret_set, updated.creator], ['ci-renamed', false, ['DELETE_ARTIFACT'], true, 'wh-pa']);
      assert.ok(Date.parse(updated.update_time) >= Date.parse(updated.creation_time));
      await apiJson(base(), `${policies()}/${id}`, 200, { method: 'PUT', auth: users.pa.auth, body: policyBody('ci-renamed', { secret: '' }) });
      assert.equal((await apiJson<PolicyJson>(base(), `${policies()}/${id}`, 200, { auth: users.pa.auth })).body.secret_set, false);

      await apiJson(base(), `${policies()}/${id}`, 200, { method: 'DELETE', auth: users.pa.auth });
      await assertApiError(await api(base(), `${policies()}/${id}`, { auth: users.pa.auth }), 404, 'NOT_FOUND');
      assert.equal(await count(), 0);
    });

    it('lists with paging, q=name (exact and fuzzy) and sort', async () => {
      for (const name of ['alpha', 'beta', 'gamma']) await apiJson(base(), policies(), 201, { method: 'POST', auth: ADMIN, body: policyBody(name) });
      const page = await apiJson<PolicyJson[]>(base(), `${policies()}?page=1&page_size=2&sort=-name`, 200, { auth: ADMIN });
      assert.deepEqual(
        page.body.map((p) => p.name),
        ['gamma', 'beta'],
      );
      assert.equal(page.res.headers.get('x-total-count'), '3');
      assert.match(page.res.headers.get('link') ?? '', /page=2.*rel="next"/);
      const fuzzy = await apiJson<PolicyJson[]>(base(), `${policies()}?q=${encodeURIComponent('name=~amm')}`, 200, { auth: ADMIN });
      assert.deepEqual(
        fuzzy.body.map((p) => p.name),
        ['gamma'],
      );
      const exact = await apiJson<PolicyJson[]>(base(), `${policies()}?q=name%3Dbeta`, 200, { auth: ADMIN });
      assert.deepEqual(
        exact.body.map((p) => p.name),
        ['beta'],
      );
      for (const p of (await apiJson<PolicyJson[]>(base(), policies(), 200, { auth: ADMIN })).body) await apiJson(base(), `${policies()}/${p.id}`, 200, { method: 'DELETE', auth: ADMIN });
    });

    it('refuses bad input with a clear 4xx and changes nothing', async () => {
      const { body: kept } = await apiJson<undefined>(base(), policies(), 201, { method: 'POST', auth: ADMIN, body: policyBody('kept') });
      assert.equal(kept, undefined);
      const keptId = (await apiJson<PolicyJson[]>(base(), policies(), 200, { auth: ADMIN })).body[0]?.id as number;
      const before = await count();
      const target = (extra: Record<string, unknown>) => policyBody('bad', { targets: [{ address: 'http://127.0.0.1:9/', ...extra }] });
      const cases: Array<[string, unknown, RegExp]> = [
        ['an invalid URL', target({ address: 'not a url' }), /not a valid URL/],
        ['a non-http scheme', target({ address: 'ftp://example.com/x' }), /http or https/],
        ['the metadata address', target({ address: 'http://169.254.169.254/latest/meta-data' }), /link-local/],
        ['a link-local IPv6 address', target({ address: 'http://[fe80::1]:8080/' }), /link-local/],
        ['the GCP metadata name', target({ address: 'http://metadata.google.internal/' }), /metadata/],
        ['credentials in the URL', target({ address: 'http://u:p@example.com/' }), /credentials/],
        ['an unknown event type', policyBody('bad', { event_types: ['PUSH_ARTIFACT', 'SCAN_ALL'] }), /unknown event type "SCAN_ALL"/],
        ['no event type', policyBody('bad', { event_types: [] }), /at least one event type/],
        ['no target', policyBody('bad', { targets: [] }), /at least one target/],
        ['a slack target', target({ type: 'slack' }), /only notify type is http/],
        ['an unknown payload format', target({ payload_format: 'XML' }), /payload_format/],
        ['a header with a line break', target({ auth_header: 'a\nb' }), /line breaks/],
        ['an unknown field', { ...policyBody('bad'), color: 'red' }, /unknown field "color"/],
        ['an unknown target field', target({ secret: 'x' }), /unknown field "secret"/],
        ['a wrong type', { ...policyBody('bad'), enabled: 'yes' }, /enabled/],
        ['a missing name', { targets: policyBody('x').targets, event_types: ['PUSH_ARTIFACT'] }, /name/],
        ['a too short secret', policyBody('bad', { secret: 'abc' }), /secret must have/],
        ['another project id', policyBody('bad', { project_id: otherId }), /project_id/],
      ];
      for (const [label, body, says] of cases) {
        const res = await api(base(), policies(), { method: 'POST', auth: ADMIN, body });
        const text = await res.text();
        assert.equal(res.status, 400, `${label}: ${text}`);
        const error = (JSON.parse(text) as { errors: Array<{ code: string; message: string }> }).errors[0];
        assert.equal(error?.code, 'BAD_REQUEST', label);
        assert.match(error?.message ?? '', says, label);
      }
      await assertApiError(await api(base(), policies(), { method: 'POST', auth: ADMIN, body: '{"name": "x", ' }), 400, 'BAD_REQUEST');
      await assertApiError(await api(base(), policies(), { method: 'POST', auth: ADMIN, body: policyBody('kept') }), 409, 'CONFLICT');
      await assertApiError(await api(base(), `${policies()}/${keptId}`, { method: 'PUT', auth: ADMIN, body: { ...policyBody('kept'), id: keptId + 1 } }), 400, 'BAD_REQUEST');
      await assertApiError(await api(base(), `${policies()}/abc`, { auth: ADMIN }), 400, 'BAD_REQUEST');
      await assertApiError(await api(base(), `${policies()}/0`, { auth: ADMIN }), 400, 'BAD_REQUEST');
      await assertApiError(await api(base(), `${policies()}/999999`, { auth: ADMIN }), 404, 'NOT_FOUND');
      await assertApiError(await api(base(), `${policies('elsewhere')}/${keptId}`, { auth: ADMIN }), 404, 'NOT_FOUND');
      await assertApiError(await api(base(), `${policies('nope')}`, { auth: ADMIN }), 404, 'NOT_FOUND');
      await assertApiError(await api(base(), `${policies()}?q=color%3Dred`, { auth: ADMIN }), 400, 'BAD_REQUEST');
      await assertApiError(await api(base(), `${policies()}?sort=color`, { auth: ADMIN }), 400, 'BAD_REQUEST');
      await assertApiError(await api(base(), `${policies()}?page_size=1000`, { auth: ADMIN }), 400, 'BAD_REQUEST');
      await assertApiError(await api(base(), `${policies()}/${keptId}/executions?q=status%3D%5B1~2%5D`, { auth: ADMIN }), 400, 'BAD_REQUEST');
      await assertApiError(await api(base(), `${policies()}/${keptId}/executions/x/tasks`, { auth: ADMIN }), 400, 'BAD_REQUEST');
      await assertApiError(await api(base(), `${policies()}/${keptId}/executions/1/tasks/1/log`, { auth: ADMIN }), 404, 'NOT_FOUND');
      assert.equal(await count(), before, 'nothing was created');
      const still = (await apiJson<PolicyJson>(base(), `${policies()}/${keptId}`, 200, { auth: ADMIN })).body;
      assert.equal(still.name, 'kept');
      await apiJson(base(), `${policies()}/${keptId}`, 200, { method: 'DELETE', auth: ADMIN });
    });

    it('authorises on notification-policy: project admins write, maintainers read, others are refused', async () => {
      const body = policyBody('perm');
      await assertApiError(await api(base(), policies(), { method: 'POST', auth: users.maintainer.auth, body }), 403, 'FORBIDDEN');
      await assertApiError(await api(base(), policies(), { method: 'POST', auth: users.developer.auth, body }), 403, 'FORBIDDEN');
      await assertApiError(await api(base(), policies(), { method: 'POST', body }), 401, 'UNAUTHORIZED');
      await apiJson(base(), policies(), 201, { method: 'POST', auth: users.pa.auth, body });
      const id = (await apiJson<PolicyJson[]>(base(), policies(), 200, { auth: users.maintainer.auth })).body[0]?.id as number;
      await apiJson(base(), `${policies()}/${id}`, 200, { auth: users.maintainer.auth });
      await apiJson(base(), `${policies()}/${id}/executions`, 200, { auth: users.maintainer.auth });
      await apiJson(base(), '/projects/hooks/webhook/lasttrigger', 200, { auth: users.maintainer.auth });
      await apiJson(base(), '/projects/hooks/webhook/events', 200, { auth: users.maintainer.auth });
      await assertApiError(await api(base(), `${policies()}/${id}`, { method: 'PUT', auth: users.maintainer.auth, body }), 403, 'FORBIDDEN');
      await assertApiError(await api(base(), `${policies()}/${id}`, { method: 'DELETE', auth: users.maintainer.auth }), 403, 'FORBIDDEN');
      await assertApiError(await api(base(), `${policies()}/${id}/test`, { method: 'POST', auth: users.maintainer.auth }), 403, 'FORBIDDEN');
      await assertApiError(await api(base(), `${policies()}/test`, { method: 'POST', auth: users.maintainer.auth, body }), 403, 'FORBIDDEN');
      for (const who of [users.developer, users.guest]) {
        await assertApiError(await api(base(), policies(), { auth: who.auth }), 403, 'FORBIDDEN');
        await assertApiError(await api(base(), `${policies()}/${id}`, { auth: who.auth }), 403, 'FORBIDDEN');
        await assertApiError(await api(base(), '/projects/hooks/webhook/lasttrigger', { auth: who.auth }), 403, 'FORBIDDEN');
      }
      await assertApiError(await api(base(), policies(), { auth: users.outsider.auth }), 404, 'NOT_FOUND');
      await assertApiError(await api(base(), policies()), 401, 'UNAUTHORIZED');
      await apiJson(base(), `${policies()}/${id}`, 200, { method: 'DELETE', auth: users.pa.auth });
    });

    it('lists the supported event types and formats, and each policy\u2019s last trigger', async () => {
      const { body: events } = await apiJson(base(), '/projects/hooks/webhook/events', 200, { auth: ADMIN });
      assert.deepEqual(events, {
        event_type: ['PUSH_ARTIFACT', 'PULL_ARTIFACT', 'DELETE_ARTIFACT', 'QUOTA_EXCEED', 'QUOTA_WARNING', 'SCANNING_COMPLETED', 'SCANNING_FAILED', 'SCANNING_STOPPED', 'REPLICATION', 'TAG_RETENTION'],
        notify_type: ['http'],
        payload_formats: [{ notify_type: 'http', formats: ['Default', 'CloudEvents'] }],
      });
      await apiJson(base(), policies(), 201, { method: 'POST', auth: ADMIN, body: policyBody('never-fired') });
      const { body: last } = await apiJson<Array<Record<string, unknown>>>(base(), '/projects/hooks/webhook/lasttrigger', 200, { auth: ADMIN });
      assert.deepEqual(
        last.map((l) => [l.policy_name, l.event_type, l.enabled, 'last_trigger_time' in l]),
        [
          ['never-fired', 'PUSH_ARTIFACT', true, false],
          ['never-fired', 'PULL_ARTIFACT', true, false],
        ],
      );
    });
  });
}
