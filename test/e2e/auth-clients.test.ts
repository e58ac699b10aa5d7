/**
 * Real clients against Berth with token auth on (auth.enabled), on SQLite and on PostgreSQL.
 * Fixtures come from the management API as admin: a private project `priv` with a developer and
 * a guest, a project `other` with its own developer (the outsider), and two robots of `priv`
 * (push+pull, pull only). The public project `library` exists from the first start.
 *
 * - skopeo --creds: the developer pushes, the guest reads but cannot push, the outsider and
 *   anonymous callers cannot read `priv`; anonymous callers read `library`.
 * - podman and buildah login/push/pull/logout through the auth file.
 * - robot$priv+ci (the `$` goes through argv, never a shell) with skopeo and podman; the
 *   pull-only robot cannot push.
 * - docker login (bad and good credentials), push → rmi → pull with the same digest, anonymous
 *   pull from `library` after logout (a private dockerd, test/helpers/docker.ts).
 * - containerd's ctr pull --user from `priv` and without credentials from `library`.
 *
 * Every client goes through Berth's token flow: 401 with a Bearer challenge on /v2, then
 * GET /service/token with Basic credentials or none.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { BACKENDS } from '../helpers/backends.ts';
import { type DockerDaemon, importTinyImage, requireDocker, startDockerDaemon } from '../helpers/docker.ts';
import {
  type AppImage,
  assertFiles,
  type BerthProcess,
  buildAppImage,
  buildahBud,
  Cleanup,
  type Containerd,
  type ContainersEnv,
  containersEnv,
  E2E_ADMIN_PASSWORD,
  type Files,
  type ImageConfig,
  json,
  OciLayout,
  type RunResult,
  requireTools,
  type SkopeoInspect,
  skopeoCopy,
  startBerthOn,
  startContainerd,
  unpackImage,
} from '../helpers/e2e.ts';

/** Someone who logs in: a user or a robot. */
interface Account {
  readonly name: string;
  readonly password: string;
}

const ROLE_DEVELOPER = 2;
const ROLE_GUEST = 3;
const ADMIN: Account = { name: 'admin', password: E2E_ADMIN_PASSWORD };
const DEV: Account = { name: 'e2e-dev', password: 'Dev-passw0rd' };
const GUEST: Account = { name: 'e2e-guest', password: 'Guest-passw0rd' };
const OUTSIDER: Account = { name: 'e2e-outsider', password: 'Outsider-passw0rd' };

const creds = (account: Account) => `${account.name}:${account.password}`;

/** The stderr part of a run() rejection (its message also holds the command line). */
function stderrOf(err: unknown): string {
  const message = (err as Error).message;
  const start = message.indexOf('--- stderr ---');
  const end = message.indexOf('--- stdout ---');
  return start >= 0 ? message.slice(start, end > start ? end : undefined) : message;
}

/**
 * Asserts that a client command fails with a refusal on stderr. containers/image reports a
 * refused HEAD (no body) only as "403 (Forbidden)", so `forbidden` counts as a refusal too.
 */
async function refused(command: Promise<unknown>, what: string, pattern: RegExp = /denied|unauthorized|forbidden/i): Promise<string> {
  let error: unknown;
  await command.then(
    () => assert.fail(`${what} should have been refused`),
    (err: unknown) => {
      error = err;
    },
  );
  const stderr = stderrOf(error);
  assert.match(stderr, pattern, `${what}: unexpected failure:\n${(error as Error).message}`);
  return stderr;
}

interface PodmanImage {
  Id: string;
  Digest: string;
  RepoDigests: string[];
  RootFS: { Layers: string[] };
}

const files = new Cleanup();
let work: string;
let app: AppImage;

before(async () => {
  await requireTools('skopeo', 'umoci', 'podman', 'buildah', 'containerd', 'ctr');
  await requireDocker();
  work = await files.tempDir();
  app = await buildAppImage(path.join(work, 'app'));
});
after(() => files.run());

for (const backend of BACKENDS) {
  describe(`real clients ⇄ Berth with token auth (${backend})`, () => {
    const cleanup = new Cleanup();
    let dir: string;
    let berth: BerthProcess;
    /** skopeo with an always-empty auth file: every call names its credentials (or none). */
    let c: ContainersEnv;
    let robotCi: Account;
    let robotReader: Account;
    const ref = (reference: string) => `${berth.host}/${reference}`;
    const docker = (reference: string) => `docker://${berth.host}/${reference}`;

    /** A management-API call as admin (Basic); asserts the status and returns the JSON body. */
    const adminApi = async <T>(method: string, urlPath: string, body: unknown, status = 201): Promise<T> => {
      const res = await fetch(`${berth.url}/api/v2.0${urlPath}`, {
        method,
        headers: { authorization: `Basic ${Buffer.from(creds(ADMIN)).toString('base64')}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(10_000),
      });
      const text = await res.text();
      assert.equal(res.status, status, `${method} /api/v2.0${urlPath}: ${text}`);
      return (text ? JSON.parse(text) : undefined) as T;
    };

    const createRobot = async (name: string, actions: readonly string[]): Promise<Account> => {
      const robot = await adminApi<{ name: string; secret: string }>('POST', '/robots', {
        name,
        level: 'project',
        duration: -1,
        permissions: [{ kind: 'project', namespace: 'priv', access: actions.map((action) => ({ resource: 'repository', action })) }],
      });
      assert.equal(robot.name, `robot$priv+${name}`);
      assert.equal(typeof robot.secret, 'string');
      return { name: robot.name, password: robot.secret };
    };

    const inspectAs = async (account: Account | undefined, reference: string): Promise<SkopeoInspect> =>
      json<SkopeoInspect>(await c.skopeo(['inspect', '--tls-verify=false', ...(account ? ['--creds', creds(account)] : ['--no-creds']), docker(reference)]));

    const tagsAs = async (account: Account, repository: string): Promise<string[]> =>
      json<{ Tags: string[] }>(await c.skopeo(['list-tags', '--tls-verify=false', '--creds', creds(account), docker(repository)])).Tags.slice().sort();

    /** skopeo copy from the app layout into Berth as `account`. */
    const pushAs = (account: Account, tag: 'v1' | 'v2', reference: string): Promise<RunResult> =>
      skopeoCopy(c, `oci:${app.layout.dir}:${tag}`, docker(reference), ['--dest-creds', creds(account)]);

    before(async () => {
      dir = path.join(work, backend);
      berth = await startBerthOn(backend, dir, cleanup, { auth: true });
      cleanup.add('stop berth', () => berth.stop());
      c = await containersEnv(path.join(dir, 'skopeo'), [berth.host]);

      for (const user of [DEV, GUEST, OUTSIDER]) {
        await adminApi('POST', '/users', { username: user.name, email: `${user.name}@example.com`, realname: user.name, password: user.password, comment: 'auth-clients e2e' });
      }
      for (const project of ['priv', 'other']) await adminApi('POST', '/projects', { project_name: project, public: false, metadata: { public: 'false' } });
      await adminApi('POST', '/projects/priv/members', { role_id: ROLE_DEVELOPER, member_user: { username: DEV.name } });
      await adminApi('POST', '/projects/priv/members', { role_id: ROLE_GUEST, member_user: { username: GUEST.name } });
      await adminApi('POST', '/projects/other/members', { role_id: ROLE_DEVELOPER, member_user: { username: OUTSIDER.name } });
      robotCi = await createRobot('ci', ['pull', 'push']);
      robotReader = await createRobot('reader', ['pull']);
    });
    after(() => cleanup.run());

    it('/v2 challenges with a Bearer realm on /service/token; anonymous tokens only cover public projects', async () => {
      const res = await fetch(`${berth.url}/v2/priv/app/manifests/v1`, { signal: AbortSignal.timeout(10_000) });
      await res.arrayBuffer();
      assert.equal(res.status, 401);
      assert.equal(res.headers.get('www-authenticate'), `Bearer realm="${berth.url}/service/token",service="berth",scope="repository:priv/app:pull"`);
      const token = await fetch(`${berth.url}/service/token?service=berth&scope=repository:priv/app:pull&scope=repository:library/app:pull`, { signal: AbortSignal.timeout(10_000) });
      assert.equal(token.status, 200);
      const { token: jwt } = (await token.json()) as { token: string };
      const claims = JSON.parse(Buffer.from(jwt.split('.')[1] ?? '', 'base64url').toString('utf8')) as { access: unknown };
      assert.deepEqual(claims.access, [{ type: 'repository', name: 'library/app', actions: ['pull'] }]);
    });

    it('skopeo --creds: a developer pushes to the private project, a guest reads but cannot push, an outsider and anonymous cannot read it', async () => {
      // The developer: push both tags, inspect them.
      await pushAs(DEV, 'v1', 'priv/app:v1');
      await pushAs(DEV, 'v2', 'priv/app:v2');
      const asDev = await inspectAs(DEV, 'priv/app:v1');
      assert.equal(asDev.Digest, app.v1.digest);
      assert.deepEqual(asDev.Layers, app.v1.layers);
      assert.deepEqual(await tagsAs(DEV, 'priv/app'), ['v1', 'v2']);

      // The guest: inspect and copy out work, a push is refused and leaves no tag.
      assert.equal((await inspectAs(GUEST, 'priv/app:v2')).Digest, app.v2.digest);
      const out = new OciLayout(path.join(dir, 'guest-out'));
      await skopeoCopy(c, docker('priv/app:v2'), `oci:${out.dir}:v2`, ['--src-creds', creds(GUEST)]);
      const pulled = await out.image('v2');
      assert.ok(pulled.manifestBytes.equals(app.v2.manifestBytes));
      await out.verifyBlobs([pulled.manifest.config.digest, ...pulled.layers]);
      await assertFiles(await unpackImage(out.dir, 'v2', path.join(dir, 'guest-bundle')), app.files.v2);
      await refused(pushAs(GUEST, 'v1', 'priv/app:guest'), 'a push by a guest');
      await refused(skopeoCopy(c, docker('priv/app:v1'), docker('priv/guest-copy:v1'), ['--src-creds', creds(GUEST), '--dest-creds', creds(GUEST)]), 'a copy within the project by a guest');
      assert.deepEqual(await tagsAs(GUEST, 'priv/app'), ['v1', 'v2']);

      // The outsider (developer of `other`): its credentials are good, but `priv` is not its project.
      await refused(inspectAs(OUTSIDER, 'priv/app:v1'), 'an inspect by a member of another project');
      await refused(skopeoCopy(c, docker('priv/app:v1'), `oci:${path.join(dir, 'outsider-out')}:v1`, ['--src-creds', creds(OUTSIDER)]), 'a copy out by a member of another project');
      await pushAs(OUTSIDER, 'v1', 'other/app:v1');
      assert.equal((await inspectAs(OUTSIDER, 'other/app:v1')).Digest, app.v1.digest);
      await refused(pushAs(OUTSIDER, 'v1', 'priv/outsider:v1'), 'a push by a member of another project');

      // Anonymous: reads library (admin pushed there), not the private project.
      await pushAs(ADMIN, 'v1', 'library/app:v1');
      const anonymous = new OciLayout(path.join(dir, 'anonymous-out'));
      await skopeoCopy(c, docker('library/app:v1'), `oci:${anonymous.dir}:v1`, ['--src-no-creds']);
      assert.equal((await anonymous.image('v1')).digest, app.v1.digest);
      assert.equal((await inspectAs(undefined, 'library/app:v1')).Digest, app.v1.digest);
      await refused(skopeoCopy(c, docker('priv/app:v1'), `oci:${path.join(dir, 'anonymous-priv')}:v1`, ['--src-no-creds']), 'an anonymous copy out of the private project');
      await refused(inspectAs(undefined, 'priv/app:v1'), 'an anonymous inspect of the private project');
      await refused(pushAs({ name: OUTSIDER.name, password: 'Wrong-passw0rd' }, 'v1', 'other/app:wrong'), 'a push with a wrong password');

    });

    it('podman login, push and pull; logout takes the access away again', async () => {
      const p = await containersEnv(path.join(dir, 'podman'), [berth.host]);
      const authFile = p.env.REGISTRY_AUTH_FILE as string;
      await refused(p.podman(['pull', ref('priv/app:v1')]), 'an anonymous podman pull from the private project');

      const login = await p.podman(['login', '--tls-verify=false', '--username', DEV.name, '--password', DEV.password, berth.host]);
      assert.match(login.text, /Login Succeeded/);
      const stored = JSON.parse(await readFile(authFile, 'utf8')) as { auths: Record<string, { auth: string }> };
      assert.equal(Buffer.from(stored.auths[berth.host]?.auth ?? '', 'base64').toString('utf8'), creds(DEV));

      await p.podman(['pull', ref('priv/app:v1')]);
      const [image] = json<PodmanImage[]>(await p.podman(['image', 'inspect', ref('priv/app:v1')]));
      assert.ok(image);
      assert.equal(image.Digest, app.v1.digest);
      assert.equal(image.Id, app.v1.manifest.config.digest.replace(/^sha256:/, ''));

      await p.podman(['tag', ref('priv/app:v1'), ref('priv/podman:v1')]);
      await p.podman(['push', ref('priv/podman:v1')]);
      const config = json<ImageConfig>(await c.skopeo(['inspect', '--tls-verify=false', '--config', '--raw', '--creds', creds(DEV), docker('priv/podman:v1')]));
      assert.deepEqual(config.rootfs.diff_ids, app.v1.config.rootfs.diff_ids);

      await p.podman(['rmi', ref('priv/podman:v1'), ref('priv/app:v1')]);
      await p.podman(['pull', ref('priv/podman:v1')]);
      const [back] = json<PodmanImage[]>(await p.podman(['image', 'inspect', ref('priv/podman:v1')]));
      assert.deepEqual(back?.RootFS.Layers, app.v1.config.rootfs.diff_ids);

      await p.podman(['logout', berth.host]);
      const afterLogout = JSON.parse(await readFile(authFile, 'utf8')) as { auths?: Record<string, unknown> };
      assert.equal(afterLogout.auths?.[berth.host], undefined, 'logout left the credentials in the auth file');
      await refused(p.podman(['push', ref('priv/podman:v1')]), 'a podman push after logout');
      await p.podman(['rmi', ref('priv/podman:v1')]);
      await refused(p.podman(['pull', ref('priv/podman:v1')]), 'a podman pull from the private project after logout');
      // Anonymous pulls from the public project still work.
      await p.podman(['pull', ref('library/app:v1')]);
      const [library] = json<PodmanImage[]>(await p.podman(['image', 'inspect', ref('library/app:v1')]));
      assert.equal(library?.Digest, app.v1.digest);
    });

    it('buildah login and push of a built image; logout takes the access away again', async () => {
      const b = await containersEnv(path.join(dir, 'buildah'), [berth.host]);
      const built = 'localhost/berth-e2e/built:v1';
      const content: Files = { 'built.txt': `built by buildah for ${backend}\n` };
      await buildahBud(b, path.join(dir, 'buildah-context'), built, content, { label: `auth-${backend}` });
      await refused(b.buildah(['push', '--tls-verify=false', built, docker('priv/buildah:v1')]), 'an anonymous buildah push');

      const login = await b.buildah(['login', '--tls-verify=false', '--username', DEV.name, '--password', DEV.password, berth.host]);
      assert.match(login.text, /Login Succeeded/);
      await b.buildah(['push', '--tls-verify=false', built, docker('priv/buildah:v1')]);
      const inspected = await inspectAs(DEV, 'priv/buildah:v1');
      assert.equal(inspected.Labels?.['org.berth.e2e'], `auth-${backend}`);
      const out = path.join(dir, 'buildah-out');
      await skopeoCopy(c, docker('priv/buildah:v1'), `oci:${out}:v1`, ['--src-creds', creds(GUEST)]);
      await assertFiles(await unpackImage(out, 'v1', path.join(dir, 'buildah-bundle')), content);

      await b.buildah(['logout', berth.host]);
      await refused(b.buildah(['push', '--tls-verify=false', built, docker('priv/buildah:v2')]), 'a buildah push after logout');
      assert.deepEqual(await tagsAs(DEV, 'priv/buildah'), ['v1']);
    });

    it('robot accounts: robot$priv+ci pushes and pulls with skopeo --creds and podman login; a pull-only robot cannot push', async () => {
      assert.equal(robotCi.name, 'robot$priv+ci');
      // skopeo: push and read back as the robot.
      await pushAs(robotCi, 'v2', 'priv/robot:v2');
      assert.equal((await inspectAs(robotCi, 'priv/robot:v2')).Digest, app.v2.digest);
      assert.deepEqual(await tagsAs(robotCi, 'priv/robot'), ['v2']);
      // Its permissions name `priv` only.
      await refused(inspectAs(robotCi, 'other/app:v1'), 'a robot of priv reading another project');
      await refused(pushAs(robotCi, 'v1', 'other/robot:v1'), 'a robot of priv pushing into another project');

      // podman: log in as the robot (the `$` reaches podman untouched: no shell), pull, push.
      const p = await containersEnv(path.join(dir, 'podman-robot'), [berth.host]);
      const login = await p.podman(['login', '--tls-verify=false', '--username', robotCi.name, '--password', robotCi.password, berth.host]);
      assert.match(login.text, /Login Succeeded/);
      await p.podman(['pull', ref('priv/robot:v2')]);
      const [image] = json<PodmanImage[]>(await p.podman(['image', 'inspect', ref('priv/robot:v2')]));
      assert.equal(image?.Digest, app.v2.digest);
      await p.podman(['tag', ref('priv/robot:v2'), ref('priv/robot:podman')]);
      await p.podman(['push', ref('priv/robot:podman')]);
      assert.deepEqual(await tagsAs(robotReader, 'priv/robot'), ['podman', 'v2']);
      await p.podman(['logout', berth.host]);

      // The pull-only robot: reads, and is refused a push with skopeo and with podman.
      assert.equal((await inspectAs(robotReader, 'priv/robot:v2')).Digest, app.v2.digest);
      const out = new OciLayout(path.join(dir, 'reader-out'));
      await skopeoCopy(c, docker('priv/robot:v2'), `oci:${out.dir}:v2`, ['--src-creds', creds(robotReader)]);
      assert.ok((await out.image('v2')).manifestBytes.equals(app.v2.manifestBytes));
      await refused(pushAs(robotReader, 'v1', 'priv/reader:v1'), 'a push by a pull-only robot');
      await p.podman(['login', '--tls-verify=false', '--username', robotReader.name, '--password', robotReader.password, berth.host]);
      await p.podman(['tag', ref('priv/robot:v2'), ref('priv/reader:v1')]);
      await refused(p.podman(['push', ref('priv/reader:v1')]), 'a podman push by a pull-only robot');
      await p.podman(['logout', berth.host]);
      await refused(inspectAs(robotReader, 'priv/reader:v1'), 'the refused pushes left a tag', /manifest unknown|name unknown/i);
      // A wrong secret is no robot at all.
      await refused(inspectAs({ name: robotCi.name, password: 'Wrong-secret-1' }, 'priv/robot:v2'), 'a robot with a wrong secret');
    });

    describe('docker (private dockerd)', () => {
      let d: DockerDaemon;
      before(async () => {
        d = await startDockerDaemon({ insecureRegistries: [berth.host] });
        cleanup.add('stop the docker daemon', () => d.stop());
      });

      it('docker login: bad credentials are refused and stored nowhere, good ones succeed through /service/token', async () => {
        const bad = await d.login(berth.host, DEV.name, 'Wrong-passw0rd');
        assert.notEqual(bad.code, 0, `login with a wrong password should fail: ${bad.stdout}`);
        assert.match(bad.stderr, /unauthorized/i);
        assert.deepEqual(await d.auths(), {});
        const unknown = await d.login(berth.host, 'nobody-here', 'Nobody-passw0rd');
        assert.notEqual(unknown.code, 0, `login of an unknown user should fail: ${unknown.stdout}`);

        const good = await d.login(berth.host, DEV.name, DEV.password);
        assert.equal(good.code, 0, good.stderr);
        assert.match(good.stdout, /Login Succeeded/);
        assert.deepEqual(Object.keys(await d.auths()), [berth.host]);
        const requests = (await berth.requests()).filter((r) => r.ua?.startsWith('docker/'));
        const token = requests.findLastIndex((r) => r.method === 'GET' && r.url.startsWith('/service/token?') && !r.url.includes('scope=') && r.status === 200);
        assert.ok(token >= 0, `docker login should fetch a token without scope: ${JSON.stringify(requests)}`);
        assert.ok(
          requests.slice(token + 1).some((r) => r.method === 'GET' && r.url === '/v2/' && r.status === 200),
          `docker login should then GET /v2/ with the token: ${JSON.stringify(requests)}`,
        );
      });

      it('docker push into the private project as the developer, rmi, pull back: same digest; a guest cannot push', async () => {
        assert.equal((await d.login(berth.host, DEV.name, DEV.password)).code, 0);
        const image = ref('priv/tiny:v1');
        const tiny = await importTinyImage(d, image);
        const pushed = await d.ok(['push', image]);
        const digest = /^v1: digest: (sha256:[0-9a-f]{64}) size: \d+$/m.exec(pushed.stdout)?.[1];
        assert.ok(digest, `no digest in the push output: ${pushed.stdout}`);
        assert.equal((await inspectAs(GUEST, 'priv/tiny:v1')).Digest, digest);

        await d.ok(['rmi', image]);
        assert.notEqual((await d.run(['image', 'inspect', tiny.id])).code, 0, 'the image should be gone after rmi');
        const pulled = await d.ok(['pull', image]);
        assert.match(pulled.stdout, new RegExp(`^Digest: ${digest}$`, 'm'));
        const inspect = await d.ok(['image', 'inspect', '--format', '{{.Id}} {{index .RepoDigests 0}}', image]);
        assert.equal(inspect.stdout.trim(), `${tiny.id} ${berth.host}/priv/tiny@${digest}`);

        // The guest may pull but not push.
        assert.equal((await d.login(berth.host, GUEST.name, GUEST.password)).code, 0);
        await d.ok(['tag', image, ref('priv/tiny:guest')]);
        const push = await d.run(['push', ref('priv/tiny:guest')]);
        assert.notEqual(push.code, 0, `a push by a guest should fail: ${push.stdout}`);
        assert.match(push.stderr, /denied|unauthorized/i);
        await d.ok(['rmi', ref('priv/tiny:guest')]);
        assert.equal((await d.logout(berth.host)).code, 0);
      });

      it('after logout docker pulls from library anonymously, but not from the private project', async () => {
        // The admin puts an image into library.
        assert.equal((await d.login(berth.host, ADMIN.name, ADMIN.password)).code, 0);
        const image = ref('library/tiny:v1');
        const tiny = await importTinyImage(d, image);
        const pushed = await d.ok(['push', image]);
        const digest = /^v1: digest: (sha256:[0-9a-f]{64}) size: \d+$/m.exec(pushed.stdout)?.[1];
        assert.ok(digest, pushed.stdout);
        const logout = await d.logout(berth.host);
        assert.equal(logout.code, 0, logout.stderr);
        assert.deepEqual(await d.auths(), {});

        await d.ok(['rmi', image]);
        const pulled = await d.ok(['pull', image]);
        assert.match(pulled.stdout, new RegExp(`^Digest: ${digest}$`, 'm'));
        assert.equal((await d.ok(['image', 'inspect', '--format', '{{.Id}}', image])).stdout.trim(), tiny.id);

        await d.run(['rmi', ref('priv/tiny:v1')]);
        const denied = await d.run(['pull', ref('priv/tiny:v1')]);
        assert.notEqual(denied.code, 0, `an anonymous pull from the private project should fail: ${denied.stdout}`);
        assert.match(denied.stderr, /denied|unauthorized/i);
        const push = await d.run(['push', image]);
        assert.notEqual(push.code, 0, `an anonymous push to library should fail: ${push.stdout}`);
        assert.match(push.stderr, /denied|unauthorized|authentication required/i);
      });
    });

    describe('containerd ctr', () => {
      let containerd: Containerd;
      before(async () => {
        containerd = await startContainerd(path.join(dir, 'containerd'));
        cleanup.add('stop containerd', () => containerd.stop());
      });

      const listed = async (image: string) => (await containerd.ctr(['images', 'ls'])).text.split('\n').find((line) => line.startsWith(`${image} `));

      it('ctr images pull without credentials from library, with --user from the private project', async () => {
        const library = ref('library/app:v1');
        await containerd.ctr(['images', 'pull', '--plain-http', '--snapshotter', 'native', library]);
        assert.match((await listed(library)) ?? '', new RegExp(`\\s${app.v1.digest}\\s`));

        const image = ref('priv/robot:v2');
        await refused(containerd.ctr(['images', 'pull', '--plain-http', '--snapshotter', 'native', image]), 'an anonymous ctr pull from the private project', /denied|unauthorized|401|403/i);
        await refused(
          containerd.ctr(['images', 'pull', '--plain-http', '--snapshotter', 'native', '--user', `${OUTSIDER.name}:${OUTSIDER.password}`, image]),
          'a ctr pull by a member of another project',
          /denied|unauthorized|401|403/i,
        );
        await containerd.ctr(['images', 'pull', '--plain-http', '--snapshotter', 'native', '--user', `${DEV.name}:${DEV.password}`, image]);
        assert.match((await listed(image)) ?? '', new RegExp(`\\s${app.v2.digest}\\s`));
        // The layer only v2 has came from Berth, as the developer.
        const layer = app.v2.layers[2] as string;
        assert.ok((await containerd.ctr(['content', 'get', layer])).stdout.equals(await app.layout.blob(layer)));
        const robot = ref('priv/robot:podman');
        await containerd.ctr(['images', 'pull', '--plain-http', '--snapshotter', 'native', '--user', `${robotReader.name}:${robotReader.password}`, robot]);
        assert.ok(await listed(robot), 'ctr images ls does not list the image the robot pulled');
      });
    });

    it('every client went through /service/token, and no request failed with a server error', async () => {
      const requests = await berth.requests();
      // User agents: skopeo/…, containers/… (podman), Buildah/…, docker/…, containerd/…
      for (const client of ['skopeo/', 'containers/', 'Buildah/', 'docker/', 'containerd/']) {
        assert.ok(
          requests.some((r) => r.method === 'GET' && r.url.startsWith('/service/token?') && r.status === 200 && r.ua?.startsWith(client)),
          `${client} never got a token from /service/token`,
        );
      }
      assert.deepEqual(
        requests.filter((r) => r.status >= 500),
        [],
        'no request may fail with a server error',
      );
    });
  });
}
