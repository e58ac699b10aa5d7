/**
 * The audit log's tamper evidence and retention through a real server on every backend:
 * GET /system/audit/verify and `berth audit verify` (a separate process on the same database)
 * find an entry edited and an entry deleted directly in the database; Harbor's purge API
 * (/system/purgeaudit: schedule, manual run, history, log, stop) purges the oldest entries and
 * the rest still verifies; bad purge requests are clear 400s and change nothing.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { api, apiJson, assertApiError } from '../helpers/harbor-api.ts';
import { waitUntil } from '../helpers/http.ts';
import { createUser, type TestUser } from '../helpers/iam.ts';
import { imageManifest, putManifest } from '../helpers/oci.ts';
import { BACKENDS } from '../helpers/backends.ts';
import { ADMIN_AUTH, startTestServer, type TestServer } from '../helpers/server.ts';

const MAIN = path.resolve(import.meta.dirname, '../../src/main.ts');

interface Verify {
  valid: boolean;
  checked: number;
  checkpoint: { id: number; hash: string };
  head: { id: number; hash: string };
  first_break: { id: number; kind: string; message: string } | null;
}

interface History {
  id: number;
  job_name: string;
  job_kind: string;
  job_parameters: string;
  job_status: string;
  schedule: { type: string; cron: string };
}

/** `berth audit verify` against the server's database, in its own process. */
async function cliVerify(server: TestServer): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const url = server.backend === 'postgres' ? (server.app.config.database.url as string) : '';
  const args = [MAIN, 'audit', 'verify', '--data-dir', server.dataDir, ...(url ? ['--database-url', url] : [])];
  const child = spawn(process.execPath, args, { env: { PATH: process.env.PATH ?? '' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const [code] = await once(child, 'exit');
  return { code: code as number | null, stdout, stderr };
}

for (const backend of BACKENDS) {
  describe(`audit chain and purge (${backend})`, () => {
    let server: TestServer;
    let dev: TestUser;
    const db = () => server.app.database.db;

    before(async () => {
      server = await startTestServer(backend, { config: { auth: { enabled: true }, audit: { flushIntervalMs: 10 }, jobs: { pollIntervalMs: 50 } } });
      dev = await createUser(server, 'dev');
      for (let i = 0; i < 6; i++) {
        const image = await imageManifest(server.url, 'library/app', { headers: { authorization: ADMIN_AUTH } });
        assert.equal((await putManifest(server.url, 'library/app', `v${i}`, image.bytes, undefined, { authorization: ADMIN_AUTH })).status, 201);
      }
      await waitUntil(async () => Number((await api(server.url, '/audit-logs?q=operation=create', { auth: ADMIN_AUTH })).headers.get('x-total-count')) === 6, 'six pushes logged');
    });
    after(() => server.close());

    const verify = async () => (await apiJson<Verify>(server.url, '/system/audit/verify', 200, { auth: ADMIN_AUTH })).body;

    it('verifies an untouched log, through the API and the CLI', async () => {
      const result = await verify();
      assert.equal(result.valid, true, JSON.stringify(result));
      assert.equal(result.first_break, null);
      assert.equal(result.checkpoint.id, 0);
      assert.ok(result.checked >= 7, String(result.checked));
      assert.equal(result.head.id, result.checked);
      const cli = await cliVerify(server);
      assert.equal(cli.code, 0, cli.stderr);
      assert.match(cli.stdout, /^audit log verified: entries 1 to \d+ \(\d+ checked in [0-9.]+ s\); head hash [0-9a-f]{64}\n$/);
    });

    it('finds an entry edited in the database, and one deleted', async () => {
      const target = await db().selectFrom('audit_log').selectAll().where('operation', '=', 'create').orderBy('id').limit(1).executeTakeFirstOrThrow();
      await db().updateTable('audit_log').set({ principal: 'someone-else' }).where('id', '=', target.id).execute();
      const edited = await verify();
      assert.equal(edited.valid, false);
      assert.deepEqual([edited.first_break?.id, edited.first_break?.kind], [Number(target.id), 'altered']);
      const cli = await cliVerify(server);
      assert.equal(cli.code, 1);
      assert.match(cli.stdout, new RegExp(`^audit log BROKEN at entry ${target.id}: entry ${target.id} does not match its hash`));

      await db().updateTable('audit_log').set({ principal: target.principal }).where('id', '=', target.id).execute();
      assert.equal((await verify()).valid, true, 'restored');

      const victim = Number(target.id) + 2;
      const row = await db().selectFrom('audit_log').selectAll().where('id', '=', victim).executeTakeFirstOrThrow();
      await db().deleteFrom('audit_log').where('id', '=', victim).execute();
      const deleted = await verify();
      assert.deepEqual([deleted.valid, deleted.first_break?.id, deleted.first_break?.kind], [false, victim, 'missing']);
      assert.match((await cliVerify(server)).stdout, new RegExp(`BROKEN at entry ${victim}: entry ${victim} is missing`));
      await db().insertInto('audit_log').values(row).execute();
      assert.equal((await verify()).valid, true, 'restored');
    });

    it('purges through the API: history, log, and a chain that still verifies from the checkpoint', async () => {
      const before = await verify();
      const keep = 3;
      const post = await api(server.url, '/system/purgeaudit/schedule', { method: 'POST', auth: ADMIN_AUTH, body: { schedule: { type: 'Manual' }, parameters: { audit_retention_hour: 24, max_entries: keep } } });
      assert.equal(post.status, 201, await post.text());
      const location = post.headers.get('location') ?? '';
      assert.match(location, /^\/api\/v2\.0\/system\/purgeaudit\/\d+$/);
      const id = Number(location.split('/').pop());
      let run: History | undefined;
      await waitUntil(async () => {
        run = (await apiJson<History>(server.url, `/system/purgeaudit/${id}`, 200, { auth: ADMIN_AUTH })).body;
        return run.job_status === 'Success' || run.job_status === 'Error';
      }, 'the purge');
      assert.equal(run?.job_status, 'Success');
      assert.deepEqual([run?.job_name, run?.job_kind, JSON.parse(run?.job_parameters ?? '{}')], ['PURGE_AUDIT_LOG', 'MANUAL', { audit_retention_hour: 24, max_entries: keep, dry_run: false }]);
      const history = await apiJson<History[]>(server.url, '/system/purgeaudit', 200, { auth: ADMIN_AUTH });
      assert.deepEqual(
        history.body.map((h) => h.id),
        [id],
      );
      assert.equal(history.res.headers.get('x-total-count'), '1');
      const log = await api(server.url, `/system/purgeaudit/${id}/log`, { auth: ADMIN_AUTH });
      assert.match(log.headers.get('content-type') ?? '', /^text\/plain/);
      const text = await log.text();
      // The head the job saw: this very request's entry may have been written just before it looked.
      const head = Number(/chain: entries 1 to (\d+);/.exec(text)?.[1]);
      assert.ok(head >= before.head.id && head <= before.head.id + 2, text);
      const purgedThrough = head - keep;
      assert.match(text, new RegExp(`purged ${purgedThrough} entries \\(through entry ${purgedThrough}\\); checkpoint: entry ${purgedThrough}, hash [0-9a-f]{64}`));

      const after = await verify();
      assert.equal(after.valid, true, JSON.stringify(after));
      assert.equal(after.checkpoint.id, purgedThrough);
      assert.ok(after.head.id >= before.head.id);
      const oldest = await apiJson<Array<{ id: number }>>(server.url, '/audit-logs?sort=id&page_size=1', 200, { auth: ADMIN_AUTH });
      assert.equal(oldest.body[0]?.id, purgedThrough + 1);
      assert.equal((await cliVerify(server)).code, 0);
      // The purge itself is in the log, as a run.
      await waitUntil(async () => Number((await api(server.url, `/audit-logs?q=${encodeURIComponent('operation=run,resource_type=purge_audit')}`, { auth: ADMIN_AUTH })).headers.get('x-total-count')) === 1, 'the run logged');
    });

    it('sets, shows and removes the purge schedule; refuses bad requests, and non-admins', async () => {
      const none = await apiJson<{ schedule: { type: string } }>(server.url, '/system/purgeaudit/schedule', 200, { auth: ADMIN_AUTH });
      assert.equal(none.body.schedule.type, 'None');
      await apiJson(server.url, '/system/purgeaudit/schedule', 200, {
        method: 'PUT',
        auth: ADMIN_AUTH,
        body: { schedule: { type: 'Custom', cron: '0 15 3 * * *' }, parameters: { audit_retention_hour: 168, include_event_types: 'create_artifact,pull_artifact', dry_run: true } },
      });
      const set = await apiJson<{ schedule: { type: string; cron: string; next_scheduled_time?: string }; parameters: Record<string, unknown> }>(server.url, '/system/purgeaudit/schedule', 200, { auth: ADMIN_AUTH });
      assert.deepEqual([set.body.schedule.type, set.body.schedule.cron], ['Custom', '0 15 3 * * *']);
      assert.ok(set.body.schedule.next_scheduled_time);
      assert.deepEqual(set.body.parameters, { audit_retention_hour: 168, include_event_types: 'create_artifact,pull_artifact', dry_run: true });
      await apiJson(server.url, '/system/purgeaudit/schedule', 200, { method: 'PUT', auth: ADMIN_AUTH, body: { schedule: { type: 'Daily' }, parameters: { audit_retention_hour: 48 } } });
      assert.equal((await apiJson<{ schedule: { cron: string } }>(server.url, '/system/purgeaudit/schedule', 200, { auth: ADMIN_AUTH })).body.schedule.cron, '0 0 0 * * *');

      const bad: Array<[unknown, RegExp]> = [
        [{ schedule: { type: 'Custom' }, parameters: { audit_retention_hour: 1 } }, /cron is required/],
        [{ schedule: { type: 'Custom', cron: 'every day' }, parameters: { audit_retention_hour: 1 } }, /invalid cron/],
        [{ schedule: { type: 'Daily' } }, /audit_retention_hour is required/],
        [{ schedule: { type: 'Daily' }, parameters: { audit_retention_hour: 0 } }, /audit_retention_hour/],
        [{ schedule: { type: 'Daily' }, parameters: { audit_retention_hour: '24' } }, /audit_retention_hour/],
        [{ schedule: { type: 'Sometimes' }, parameters: { audit_retention_hour: 1 } }, /type/],
        [{ schedule: { type: 'Daily' }, parameters: { audit_retention_hour: 1, keep: true } }, /unknown field "keep"/],
        ['{"schedule":', /malformed JSON/],
      ];
      for (const [body, message] of bad) {
        const res = await api(server.url, '/system/purgeaudit/schedule', { method: 'PUT', auth: ADMIN_AUTH, body });
        const text = await res.text();
        assert.equal(res.status, 400, `${JSON.stringify(body)}: ${text}`);
        assert.match((JSON.parse(text) as { errors: Array<{ message: string }> }).errors[0]?.message ?? '', message);
      }
      assert.equal((await apiJson<{ schedule: { cron: string } }>(server.url, '/system/purgeaudit/schedule', 200, { auth: ADMIN_AUTH })).body.schedule.cron, '0 0 0 * * *', 'unchanged');

      await assertApiError(await api(server.url, '/system/purgeaudit/schedule', { method: 'PUT', auth: dev.auth, body: { schedule: { type: 'None' } } }), 403, 'FORBIDDEN');
      await assertApiError(await api(server.url, '/system/purgeaudit', { auth: dev.auth }), 403, 'FORBIDDEN');
      await assertApiError(await api(server.url, '/system/purgeaudit/abc', { auth: ADMIN_AUTH }), 400, 'BAD_REQUEST');
      await assertApiError(await api(server.url, '/system/purgeaudit/999999', { auth: ADMIN_AUTH }), 404, 'NOT_FOUND');
      await assertApiError(await api(server.url, '/system/purgeaudit/999999/log', { auth: ADMIN_AUTH }), 404, 'NOT_FOUND');

      await apiJson(server.url, '/system/purgeaudit/schedule', 200, { method: 'PUT', auth: ADMIN_AUTH, body: { schedule: { type: 'None' } } });
      assert.equal((await apiJson<{ schedule: { type: string } }>(server.url, '/system/purgeaudit/schedule', 200, { auth: ADMIN_AUTH })).body.schedule.type, 'None');
    });

    it('a dry run counts and deletes nothing; a purge stops before an entry that does not verify', async () => {
      const before = await verify();
      const dry = await api(server.url, '/system/purgeaudit/schedule', { method: 'POST', auth: ADMIN_AUTH, body: { schedule: { type: 'Manual' }, parameters: { max_entries: 1, dry_run: true } } });
      assert.equal(dry.status, 201);
      const dryId = Number((dry.headers.get('location') ?? '').split('/').pop());
      await waitUntil(async () => (await apiJson<History>(server.url, `/system/purgeaudit/${dryId}`, 200, { auth: ADMIN_AUTH })).body.job_status === 'Success', 'the dry run');
      assert.match(await (await api(server.url, `/system/purgeaudit/${dryId}/log`, { auth: ADMIN_AUTH })).text(), /would purge \d+ entries/);
      assert.equal((await verify()).checkpoint.id, before.checkpoint.id);

      const target = before.checkpoint.id + 2;
      await db().updateTable('audit_log').set({ resource: 'forged' }).where('id', '=', target).execute();
      const real = await api(server.url, '/system/purgeaudit/schedule', { method: 'POST', auth: ADMIN_AUTH, body: { schedule: { type: 'Manual' }, parameters: { max_entries: 1 } } });
      const realId = Number((real.headers.get('location') ?? '').split('/').pop());
      await waitUntil(async () => ['Success', 'Error'].includes((await apiJson<History>(server.url, `/system/purgeaudit/${realId}`, 200, { auth: ADMIN_AUTH })).body.job_status), 'the refused purge', 30_000);
      assert.equal((await apiJson<History>(server.url, `/system/purgeaudit/${realId}`, 200, { auth: ADMIN_AUTH })).body.job_status, 'Error');
      assert.match(await (await api(server.url, `/system/purgeaudit/${realId}/log`, { auth: ADMIN_AUTH })).text(), new RegExp(`entry ${target} does not match its hash; the purge stops before it`));
      const after = await verify();
      assert.equal(after.checkpoint.id, before.checkpoint.id + 1, 'purged up to the break, not past it');
      assert.deepEqual([after.first_break?.id, after.first_break?.kind], [target, 'altered']);
    });
  });
}
