/**
 * podman (vfs) against the real Berth server: pull an image skopeo pushed, tag it, push it to
 * another repository, remove it locally and pull that back; `podman search` and skopeo
 * list-tags through paginated listings (Berth runs with pages of 2 entries).
 */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  type AppImage,
  assertFiles,
  type BerthProcess,
  buildAppImage,
  Cleanup,
  type ContainersEnv,
  containersEnv,
  type ImageConfig,
  json,
  OciLayout,
  requireTools,
  skopeoCopy,
  skopeoInspect,
  skopeoTags,
  startBerth,
  unpackImage,
} from '../helpers/e2e.ts';

interface PodmanImage {
  Id: string;
  Digest: string;
  RepoTags: string[];
  RepoDigests: string[];
  Architecture: string;
  RootFS: { Layers: string[] };
}

describe('podman ⇄ Berth (sqlite)', () => {
  const cleanup = new Cleanup();
  let work: string;
  let berth: BerthProcess;
  let c: ContainersEnv;
  let app: AppImage;

  const inspect = async (image: string) => {
    const [found] = json<PodmanImage[]>(await c.podman(['image', 'inspect', image]));
    assert.ok(found, `podman has no image ${image}`);
    return found;
  };
  const hex = (digest: string) => digest.replace(/^sha256:/, '');

  before(async () => {
    await requireTools('podman', 'skopeo', 'umoci');
    work = await cleanup.tempDir();
    app = await buildAppImage(path.join(work, 'app'));
    // Small listing pages, so that the clients must follow Link headers.
    const configFile = path.join(work, 'berth.yaml');
    await writeFile(configFile, 'registry:\n  tagsPageMax: 2\n  catalogPageMax: 2\n');
    berth = await startBerth({ dataDir: path.join(work, 'data'), configFile });
    cleanup.add('stop berth', () => berth.stop());
    c = await containersEnv(path.join(work, 'containers'), [berth.host]);
    await skopeoCopy(c, `oci:${app.layout.dir}:v2`, `docker://${berth.host}/e2e/app:v2`);
  });
  after(() => cleanup.run());

  it('pulls from Berth: the image id is the config digest, the digest the manifest digest', async () => {
    // Plain HTTP comes from registries.conf (CONTAINERS_REGISTRIES_CONF), not a flag.
    await c.podman(['pull', `${berth.host}/e2e/app:v2`]);
    const image = await inspect(`${berth.host}/e2e/app:v2`);
    assert.equal(image.Id, hex(app.v2.manifest.config.digest));
    assert.equal(image.Digest, app.v2.digest);
    assert.deepEqual(image.RootFS.Layers, app.v2.config.rootfs.diff_ids);
    assert.ok(image.RepoDigests.includes(`${berth.host}/e2e/app@${app.v2.digest}`), `RepoDigests: ${image.RepoDigests.join(', ')}`);
  });

  it('tags and pushes to another repository, then pulls that back after removing it locally', async () => {
    const copy = `${berth.host}/e2e/podman-pushed:v1`;
    await c.podman(['tag', `${berth.host}/e2e/app:v2`, copy]);
    await c.podman(['push', copy]);
    assert.deepEqual(await skopeoTags(c, `docker://${berth.host}/e2e/podman-pushed`), ['v1']);
    const pushed = await skopeoInspect(c, `docker://${copy}`);
    assert.equal(pushed.Layers.length, 3);
    const config = JSON.parse((await c.skopeo(['inspect', '--tls-verify=false', '--config', '--raw', `docker://${copy}`])).text) as ImageConfig;
    // podman may recompress layers from its store, so compare what they hold: the diff_ids.
    assert.deepEqual(config.rootfs.diff_ids, app.v2.config.rootfs.diff_ids);

    await c.podman(['rmi', copy, `${berth.host}/e2e/app:v2`]);
    await assert.rejects(c.podman(['image', 'exists', copy]));
    await c.podman(['pull', copy]);
    const pulled = await inspect(copy);
    assert.equal(pulled.Digest, pushed.Digest);
    assert.deepEqual(pulled.RootFS.Layers, app.v2.config.rootfs.diff_ids);

    const out = path.join(work, 'podman-out');
    await skopeoCopy(c, `docker://${copy}`, `oci:${out}:v1`);
    assert.equal((await new OciLayout(out).image('v1')).digest, pushed.Digest);
    await assertFiles(await unpackImage(out, 'v1', path.join(work, 'podman-bundle')), app.files.v2);
  });

  it('search and list-tags follow the Link header through every page of the catalog and the tags', async () => {
    for (const tag of ['a', 'b', 'c', 'd']) await skopeoCopy(c, `docker://${berth.host}/e2e/app:v2`, `docker://${berth.host}/e2e/paged:${tag}`);
    await skopeoCopy(c, `docker://${berth.host}/e2e/app:v2`, `docker://${berth.host}/zz/last:v1`);
    assert.deepEqual(await skopeoTags(c, `docker://${berth.host}/e2e/paged`), ['a', 'b', 'c', 'd']);
    const tags = json<Array<{ Name: string; Tags: string[] }>>(await c.podman(['search', '--list-tags', '--limit', '100', '--format', 'json', `${berth.host}/e2e/paged`]));
    assert.deepEqual(tags.flatMap((t) => t.Tags).sort(), ['a', 'b', 'c', 'd']);
    const found = json<Array<{ Name: string }>>(await c.podman(['search', '--limit', '100', '--format', 'json', `${berth.host}/`]));
    assert.deepEqual(
      found.map((r) => r.Name).sort(),
      ['e2e/app', 'e2e/paged', 'e2e/podman-pushed', 'zz/last'].map((name) => `${berth.host}/${name}`),
    );
    const followed = (await berth.requests()).filter((r) => r.status === 200 && /^\/v2\/(_catalog|e2e\/paged\/tags\/list)\?n=2&last=/.test(r.url));
    assert.ok(followed.some((r) => r.url.startsWith('/v2/_catalog')), 'podman search did not follow a catalog page link');
    assert.ok(followed.some((r) => r.url.startsWith('/v2/e2e/paged/tags/list')), 'no client followed a tags page link');
  });
});
