/**
 * The docker CLI and daemon (Debian docker.io 20.10, a private dockerd) against the reference
 * registry with htpasswd basic auth. Proves the private-daemon helper works: login with a wrong
 * password is refused, push without login is refused, login stores credentials in the private
 * DOCKER_CONFIG only, push → rmi → pull round-trips the same manifest digest, image ID, layer and
 * file, and logout makes the registry refuse pulls again.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { after, before, describe, it } from 'node:test';
import { type DockerDaemon, importTinyImage, type TinyImage, startDockerDaemon } from '../helpers/docker.ts';
import { Cleanup, type ImageManifest, type ReferenceRegistry, requireTools, sha256, startReferenceRegistry } from '../helpers/e2e.ts';

const USER = 'e2e-user';
const PASSWORD = `pw-${randomBytes(6).toString('hex')}`;
const DOCKER_V2 = 'application/vnd.docker.distribution.manifest.v2+json';

describe('docker (Debian docker.io 20.10, private dockerd) ⇄ reference registry with basic auth', () => {
  const cleanup = new Cleanup();
  let work: string;
  let registry: ReferenceRegistry;
  let docker: DockerDaemon;
  let tiny: TinyImage;
  let ref: string;

  /** GET from the registry as USER (the registry allows no anonymous access). */
  const get = async (urlPath: string, accept?: string) => {
    const headers: Record<string, string> = { authorization: `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString('base64')}` };
    if (accept) headers.accept = accept;
    const res = await fetch(`${registry.url}${urlPath}`, { headers, signal: AbortSignal.timeout(10_000) });
    const body = Buffer.from(await res.arrayBuffer());
    assert.equal(res.status, 200, `GET ${urlPath}: ${body.toString('utf8')}`);
    return { res, body };
  };

  before(async () => {
    await requireTools('containerd', 'ctr', 'docker-registry', 'htpasswd');
    work = await cleanup.tempDir();
    registry = await startReferenceRegistry(path.join(work, 'reference'), { users: { [USER]: PASSWORD } });
    cleanup.add('stop the reference registry', () => registry.stop());
    docker = await startDockerDaemon({ insecureRegistries: [registry.host] });
    cleanup.add('stop the docker daemon', () => docker.stop());
    ref = `${registry.host}/e2e/tiny:v1`;
    tiny = await importTinyImage(docker, ref);
  });
  after(() => cleanup.run());

  it('login with a wrong password is refused and stores nothing', async () => {
    const result = await docker.login(registry.host, USER, 'not-the-password');
    assert.notEqual(result.code, 0, `login should fail: ${result.stdout}`);
    assert.match(result.stderr, /unauthorized/i);
    assert.deepEqual(await docker.auths(), {});
  });

  it('push before login is refused by the registry', async () => {
    const result = await docker.run(['push', ref]);
    assert.notEqual(result.code, 0, `push should fail: ${result.stdout}`);
    assert.match(result.stderr, /no basic auth credentials/);
  });

  it('login with the right password succeeds and stores the credentials in the private DOCKER_CONFIG', async () => {
    const result = await docker.login(registry.host, USER, PASSWORD);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /Login Succeeded/);
    const auths = await docker.auths();
    assert.deepEqual(Object.keys(auths), [registry.host]);
    assert.equal(Buffer.from(auths[registry.host]?.auth ?? '', 'base64').toString('utf8'), `${USER}:${PASSWORD}`);
  });

  it('push, rmi, pull: same manifest digest, image ID, layer and file', async () => {
    assert.equal((await docker.login(registry.host, USER, PASSWORD)).code, 0);
    const pushed = await docker.ok(['push', ref]);
    const digest = /^v1: digest: (sha256:[0-9a-f]{64}) size: \d+$/m.exec(pushed.stdout)?.[1];
    assert.ok(digest, `no digest in the push output: ${pushed.stdout}`);

    // What the registry holds: a Docker schema 2 manifest with those bytes, our config and our layer.
    const manifest = await get(`/v2/e2e/tiny/manifests/v1`, DOCKER_V2);
    assert.equal(manifest.res.headers.get('docker-content-digest'), digest);
    assert.equal(sha256(manifest.body), digest);
    const parsed = JSON.parse(manifest.body.toString('utf8')) as ImageManifest;
    assert.equal(parsed.mediaType, DOCKER_V2);
    assert.equal(parsed.config.digest, tiny.id, 'the config blob is the image ID');
    assert.equal(parsed.layers.length, 1);
    const layer = (await get(`/v2/e2e/tiny/blobs/${parsed.layers[0]?.digest}`)).body;
    assert.equal(sha256(layer), parsed.layers[0]?.digest);
    assert.equal(sha256(gunzipSync(layer)), tiny.diffId, 'docker gzips the imported tar, byte for byte');

    await docker.ok(['rmi', ref]);
    assert.notEqual((await docker.run(['image', 'inspect', tiny.id])).code, 0, 'the image should be gone after rmi');

    const pulled = await docker.ok(['pull', ref]);
    assert.match(pulled.stdout, new RegExp(`^Digest: ${digest}$`, 'm'));
    const inspect = await docker.ok(['image', 'inspect', '--format', '{{.Id}} {{index .RepoDigests 0}} {{json .RootFS.Layers}}', ref]);
    assert.equal(inspect.stdout.trim(), `${tiny.id} ${registry.host}/e2e/tiny@${digest} ${JSON.stringify([tiny.diffId])}`);

    // The file itself: copied out of a created (never started) container.
    const container = `tiny-${randomBytes(4).toString('hex')}`;
    await docker.ok(['create', '--network', 'none', '--name', container, ref]);
    const out = path.join(work, 'copied.txt');
    await docker.ok(['cp', `${container}:/${tiny.file}`, out]);
    await docker.ok(['rm', container]);
    assert.equal(await readFile(out, 'utf8'), tiny.content);
  });

  it('logout forgets the credentials and the registry refuses the pull again', async () => {
    const result = await docker.logout(registry.host);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, new RegExp(`Removing login credentials for ${registry.host.replace(/\./g, '\\.')}`));
    assert.deepEqual(await docker.auths(), {});
    await docker.run(['rmi', ref]);
    const pull = await docker.run(['pull', ref]);
    assert.notEqual(pull.code, 0, `pull should fail: ${pull.stdout}`);
    assert.match(pull.stderr, /no basic auth credentials/);
  });
});
