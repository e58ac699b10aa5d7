/**
 * Tag immutability with a real client, on SQLite and on PostgreSQL, with auth on: skopeo pushes
 * v1, a rule from the management API makes v*-tags immutable, a second skopeo push of another
 * image to v1 fails with the registry's message on stderr and v1 keeps its first digest; pushing
 * v2 works; `skopeo delete` of v1 is refused too; list-tags shows both tags.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { BACKENDS } from '../helpers/backends.ts';
import {
  type AppImage,
  type BerthProcess,
  buildAppImage,
  Cleanup,
  type ContainersEnv,
  containersEnv,
  E2E_ADMIN_PASSWORD,
  json,
  requireTools,
  type SkopeoInspect,
  skopeoCopy,
  startBerthOn,
} from '../helpers/e2e.ts';

const CREDS = `admin:${E2E_ADMIN_PASSWORD}`;
const ADMIN = `Basic ${Buffer.from(CREDS).toString('base64')}`;

/** The stderr part of a run() rejection (its message also holds the command line). */
function stderrOf(err: unknown): string {
  const message = (err as Error).message;
  const start = message.indexOf('--- stderr ---');
  const end = message.indexOf('--- stdout ---');
  return start >= 0 ? message.slice(start, end > start ? end : undefined) : message;
}

async function fails(command: Promise<unknown>, what: string): Promise<string> {
  let error: unknown;
  await command.then(
    () => assert.fail(`${what} should have failed`),
    (err: unknown) => {
      error = err;
    },
  );
  return stderrOf(error);
}

const files = new Cleanup();
let work: string;
let app: AppImage;

before(async () => {
  await requireTools('skopeo', 'umoci', 'tar');
  work = await files.tempDir();
  app = await buildAppImage(path.join(work, 'app'));
  assert.notEqual(app.v1.digest, app.v2.digest);
});
after(() => files.run());

for (const backend of BACKENDS) {
  describe(`tag immutability with skopeo (${backend})`, () => {
    const cleanup = new Cleanup();
    let berth: BerthProcess;
    let c: ContainersEnv;
    const ref = (reference: string) => `docker://${berth.host}/immu/app:${reference}`;
    const apiCall = async (method: string, apiPath: string, body?: unknown) => {
      const res = await fetch(`${berth.url}/api/v2.0${apiPath}`, {
        method,
        headers: { authorization: ADMIN, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
      const text = await res.text();
      return { status: res.status, text, location: res.headers.get('location') };
    };
    const inspect = async (reference: string) => json<SkopeoInspect>(await c.skopeo(['inspect', '--tls-verify=false', '--creds', CREDS, ref(reference)]));

    before(async () => {
      const dir = path.join(work, backend);
      berth = await startBerthOn(backend, dir, cleanup, { auth: true });
      cleanup.add('stop berth', () => berth.stop());
      c = await containersEnv(path.join(dir, 'containers'), [berth.host]);
      const project = await apiCall('POST', '/projects', { project_name: 'immu', metadata: { public: 'false' } });
      assert.equal(project.status, 201, project.text);
    });
    after(() => cleanup.run());

    it('an immutable tag cannot be pushed over or deleted with skopeo; a new tag can be pushed', async () => {
      await skopeoCopy(c, `oci:${app.layout.dir}:v1`, ref('v1'), ['--dest-creds', CREDS]);
      assert.equal((await inspect('v1')).Digest, app.v1.digest);

      const rule = await apiCall('POST', '/projects/immu/immutabletagrules', {
        action: 'immutable',
        template: 'immutable_template',
        tag_selectors: [{ kind: 'doublestar', decoration: 'matches', pattern: 'v*' }],
        scope_selectors: { repository: [{ kind: 'doublestar', decoration: 'repoMatches', pattern: '**' }] },
      });
      assert.equal(rule.status, 201, rule.text);
      const ruleId = rule.location?.split('/').at(-1);

      const stderr = await fails(skopeoCopy(c, `oci:${app.layout.dir}:v2`, ref('v1'), ['--dest-creds', CREDS]), 'pushing another image to the immutable tag v1');
      assert.match(stderr, new RegExp(`denied: tag v1 is immutable \\(rule ${ruleId} of project immu\\)`), stderr);
      assert.equal((await inspect('v1')).Digest, app.v1.digest, 'v1 still points at the first image');

      const deleted = await fails(c.skopeo(['delete', '--tls-verify=false', '--creds', CREDS, ref('v1')]), 'deleting the immutable tag v1');
      // skopeo 1.9 prints a refused DELETE's body as it came.
      assert.match(deleted, /"code\\?":\\?"DENIED\\?".*tag v1 is immutable \(rule \d+ of project immu\).*cannot be deleted.*403 Forbidden/, deleted);

      await skopeoCopy(c, `oci:${app.layout.dir}:v2`, ref('v2'), ['--dest-creds', CREDS]);
      assert.equal((await inspect('v2')).Digest, app.v2.digest);
      // Pushing v1's own image to v1 again is fine.
      await skopeoCopy(c, `oci:${app.layout.dir}:v1`, ref('v1'), ['--dest-creds', CREDS]);
      const tags = json<{ Tags: string[] }>(await c.skopeo(['list-tags', '--tls-verify=false', '--creds', CREDS, `docker://${berth.host}/immu/app`])).Tags.slice().sort();
      assert.deepEqual(tags, ['v1', 'v2']);
      assert.equal((await inspect('v1')).Digest, app.v1.digest);
    });
  });
}
