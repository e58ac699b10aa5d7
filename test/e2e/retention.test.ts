/**
 * Tag retention end to end, with token auth on, on SQLite and on PostgreSQL: skopeo pushes four
 * images (built by umoci, each its own artifact) as tags t1…t4 into a private project, one after
 * the other; a policy "retain the 2 most recently pushed" runs through the management API, first
 * as a dry run (which lists t1 and t2 and changes nothing), then for real; `skopeo list-tags`
 * then shows t3 and t4 only, a removed tag no longer resolves, and the survivors still copy out
 * whole.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { BACKENDS } from '../helpers/backends.ts';
import {
  type BerthProcess,
  buildUmociImage,
  Cleanup,
  type ContainersEnv,
  containersEnv,
  E2E_ADMIN_PASSWORD,
  json,
  type LayoutImage,
  OciLayout,
  requireTools,
  skopeoCopy,
  startBerthOn,
} from '../helpers/e2e.ts';

const TAGS = ['t1', 't2', 't3', 't4'] as const;
const CREDS = `admin:${E2E_ADMIN_PASSWORD}`;

const shared = new Cleanup();
let layout: string;
const images = new Map<string, LayoutImage>();

before(async () => {
  await requireTools('skopeo', 'umoci');
  const work = await shared.tempDir();
  layout = path.join(work, 'images');
  for (const tag of TAGS) images.set(tag, await buildUmociImage(layout, tag, { layers: [{ [`etc/${tag}.txt`]: `${tag} ${randomBytes(8).toString('hex')}\n` }] }));
  assert.equal(new Set([...images.values()].map((i) => i.digest)).size, TAGS.length, 'four distinct artifacts');
});
after(() => shared.run());

interface TaskJson {
  repository: string;
  total: number;
  retained: number;
  removed: Array<{ digest: string; tags: string[] }>;
}

for (const backend of BACKENDS) {
  describe(`tag retention with skopeo (${backend})`, () => {
    const cleanup = new Cleanup();
    let berth: BerthProcess;
    let c: ContainersEnv;
    let dir: string;
    const docker = (reference: string) => `docker://${berth.host}/${reference}`;

    /** A management-API call as admin; asserts the status; returns the response and its JSON body. */
    async function adminApi<T>(method: string, urlPath: string, body: unknown, status: number): Promise<{ res: Response; body: T }> {
      const res = await fetch(`${berth.url}/api/v2.0${urlPath}`, {
        method,
        headers: { authorization: `Basic ${Buffer.from(CREDS).toString('base64')}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        signal: AbortSignal.timeout(10_000),
      });
      const text = await res.text();
      assert.equal(res.status, status, `${method} /api/v2.0${urlPath}: ${text}`);
      return { res, body: (text ? JSON.parse(text) : undefined) as T };
    }

    async function runPolicy(policyId: number, dryRun: boolean): Promise<TaskJson[]> {
      const { res } = await adminApi('POST', `/retentions/${policyId}/executions`, { dry_run: dryRun }, 201);
      const executionId = Number(res.headers.get('location')?.split('/').pop());
      const deadline = Date.now() + 60_000;
      for (;;) {
        const { body } = await adminApi<Array<{ id: number; status: string }>>('GET', `/retentions/${policyId}/executions`, undefined, 200);
        const status = body.find((e) => e.id === executionId)?.status;
        if (status === 'Success') break;
        assert.ok(status === 'Pending' || status === 'Running', `execution ${executionId} ended ${status}`);
        assert.ok(Date.now() < deadline, `execution ${executionId} did not finish within 60 s`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      return (await adminApi<TaskJson[]>('GET', `/retentions/${policyId}/executions/${executionId}/tasks`, undefined, 200)).body;
    }

    const listTags = async (repository: string): Promise<string[]> =>
      json<{ Tags: string[] }>(await c.skopeo(['list-tags', '--tls-verify=false', '--creds', CREDS, docker(repository)])).Tags.slice().sort();

    before(async () => {
      dir = path.join(await cleanup.tempDir(), backend);
      berth = await startBerthOn(backend, dir, cleanup, { auth: true });
      cleanup.add('stop berth', () => berth.stop());
      c = await containersEnv(path.join(dir, 'containers'), [berth.host]);
    });
    after(() => cleanup.run());

    it('skopeo pushes t1…t4; "retain the 2 most recently pushed" leaves t3 and t4 for skopeo list-tags', async () => {
      await adminApi('POST', '/projects', { project_name: 'keep', metadata: { public: 'false' } }, 201);
      const { body: project } = await adminApi<{ project_id: number }>('GET', '/projects/keep', undefined, 200);
      for (const tag of TAGS) await skopeoCopy(c, `oci:${layout}:${tag}`, docker(`keep/app:${tag}`), ['--dest-creds', CREDS]);
      await skopeoCopy(c, `oci:${layout}:t1`, docker('keep/tools:only'), ['--dest-creds', CREDS]);
      assert.deepEqual(await listTags('keep/app'), [...TAGS]);

      const { res } = await adminApi(
        'POST',
        '/retentions',
        {
          algorithm: 'or',
          rules: [
            {
              disabled: false,
              action: 'retain',
              template: 'latestPushedK',
              params: { latestPushedK: 2 },
              tag_selectors: [{ kind: 'doublestar', decoration: 'matches', pattern: '**', extras: '{"untagged":true}' }],
              scope_selectors: { repository: [{ kind: 'doublestar', decoration: 'repoMatches', pattern: '**' }] },
            },
          ],
          trigger: { kind: 'Schedule', settings: { cron: '' }, references: {} },
          scope: { level: 'project', ref: project.project_id },
        },
        201,
      );
      const policyId = Number(res.headers.get('location')?.split('/').pop());

      const dry = await runPolicy(policyId, true);
      const app = dry.find((t) => t.repository === 'keep/app');
      assert.deepEqual(
        app?.removed.map((r) => r.tags).sort(),
        [['t1'], ['t2']],
      );
      assert.deepEqual(
        app?.removed.map((r) => r.digest).sort(),
        [images.get('t1')?.digest, images.get('t2')?.digest].sort(),
      );
      assert.deepEqual([app?.total, app?.retained], [4, 2]);
      assert.deepEqual(await listTags('keep/app'), [...TAGS], 'the dry run removed nothing');

      const real = await runPolicy(policyId, false);
      assert.deepEqual(
        real.flatMap((t) => t.removed.map((r) => r.digest)).sort(),
        dry.flatMap((t) => t.removed.map((r) => r.digest)).sort(),
      );
      assert.deepEqual(await listTags('keep/app'), ['t3', 't4']);
      assert.deepEqual(await listTags('keep/tools'), ['only'], 'another repository keeps its one artifact');
      await assert.rejects(c.skopeo(['inspect', '--tls-verify=false', '--raw', '--creds', CREDS, docker('keep/app:t1')]), /manifest unknown|not found|404/i);

      const out = new OciLayout(path.join(dir, 'out'));
      await skopeoCopy(c, docker('keep/app:t4'), `oci:${out.dir}:t4`, ['--src-creds', CREDS]);
      const pulled = await out.image('t4');
      assert.equal(pulled.digest, images.get('t4')?.digest);
      await out.verifyBlobs([pulled.manifest.config.digest, ...pulled.layers]);
    });
  });
}
