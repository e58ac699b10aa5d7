/**
 * buildah against the real Berth server: `bud` FROM scratch and push; a two-architecture list
 * with `manifest create/add` pushed with `manifest push --all --format oci`.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  ARCHES,
  assertFiles,
  type BerthProcess,
  buildahBud,
  Cleanup,
  type ContainersEnv,
  containersEnv,
  type Files,
  fetchBlob,
  type ImageConfig,
  type ImageIndex,
  type ImageManifest,
  OciLayout,
  requireTools,
  sha256,
  skopeoCopy,
  skopeoInspect,
  skopeoRaw,
  skopeoTags,
  startBerth,
  unpackImage,
} from '../helpers/e2e.ts';

describe('buildah ⇄ Berth (sqlite)', () => {
  const cleanup = new Cleanup();
  let work: string;
  let berth: BerthProcess;
  let c: ContainersEnv;

  before(async () => {
    await requireTools('buildah', 'skopeo', 'umoci');
    work = await cleanup.tempDir();
    berth = await startBerth({ dataDir: path.join(work, 'data') });
    cleanup.add('stop berth', () => berth.stop());
    c = await containersEnv(path.join(work, 'containers'), [berth.host]);
  });
  after(() => cleanup.run());

  it('builds FROM scratch with bud, pushes, and the pulled image has the files', async () => {
    const image = `${berth.host}/e2e/bud:v1`;
    const files: Files = { 'hello.txt': 'hello from buildah bud\n', 'data/numbers.txt': `${Array.from({ length: 5000 }, (_, i) => i).join('\n')}\n` };
    await buildahBud(c, path.join(work, 'ctx-bud'), image, files, { label: 'bud-v1' });
    const digestFile = path.join(work, 'bud.digest');
    // Plain HTTP here comes from registries.conf (CONTAINERS_REGISTRIES_CONF), not a flag.
    await c.buildah(['push', '--digestfile', digestFile, image]);
    const pushed = (await readFile(digestFile, 'utf8')).trim();

    const inspected = await skopeoInspect(c, `docker://${image}`);
    assert.equal(inspected.Digest, pushed);
    assert.equal(inspected.Labels?.['org.berth.e2e'], 'bud-v1');
    assert.equal(sha256(await skopeoRaw(c, `docker://${image}`)), pushed);
    assert.deepEqual(await skopeoTags(c, `docker://${berth.host}/e2e/bud`), ['v1']);

    const out = path.join(work, 'bud-out');
    await skopeoCopy(c, `docker://${image}`, `oci:${out}:v1`);
    const pulled = await new OciLayout(out).image('v1');
    assert.equal(pulled.digest, pushed);
    assert.deepEqual(pulled.config.config?.Cmd, ['/bin/true']);
    await assertFiles(await unpackImage(out, 'v1', path.join(work, 'bud-bundle')), files);
  });

  it('pushes a two-architecture list with manifest push --all --format oci; the index lists both', async () => {
    const list = `${berth.host}/e2e/bmulti:index`;
    const files = {} as Record<(typeof ARCHES)[number], Files>;
    await c.buildah(['manifest', 'create', list]);
    for (const arch of ARCHES) {
      files[arch] = { 'arch.txt': `buildah manifest for ${arch}\n` };
      const tag = `localhost/e2e/bmulti:${arch}`;
      await buildahBud(c, path.join(work, `ctx-${arch}`), tag, files[arch], { arch });
      await c.buildah(['manifest', 'add', list, tag]);
    }
    // `buildah manifest push` does not take plain HTTP from registries.conf in 1.28: the flag is needed.
    await c.buildah(['manifest', 'push', '--tls-verify=false', '--all', '--format', 'oci', list, `docker://${list}`]);

    const raw = await skopeoRaw(c, `docker://${list}`);
    const index = JSON.parse(raw.toString('utf8')) as ImageIndex;
    assert.equal(index.mediaType, 'application/vnd.oci.image.index.v1+json');
    assert.deepEqual(index.manifests.map((m) => `${m.platform?.os}/${m.platform?.architecture}`).sort(), ['linux/amd64', 'linux/arm64']);
    for (const child of index.manifests) {
      assert.equal(child.mediaType, 'application/vnd.oci.image.manifest.v1+json');
      const childRaw = await skopeoRaw(c, `docker://${berth.host}/e2e/bmulti@${child.digest}`);
      assert.equal(sha256(childRaw), child.digest);
      assert.equal(childRaw.length, child.size);
      const manifest = JSON.parse(childRaw.toString('utf8')) as ImageManifest;
      const config = JSON.parse((await fetchBlob(berth.url, 'e2e/bmulti', manifest.config.digest)).toString('utf8')) as ImageConfig;
      assert.equal(config.architecture, child.platform?.architecture);
      for (const layer of manifest.layers) assert.equal(sha256(await fetchBlob(berth.url, 'e2e/bmulti', layer.digest)), layer.digest);
    }
    assert.deepEqual(await skopeoTags(c, `docker://${berth.host}/e2e/bmulti`), ['index']);

    for (const arch of ARCHES) {
      const out = path.join(work, `bmulti-${arch}`);
      await c.skopeo(['--override-arch', arch, 'copy', '--src-tls-verify=false', `docker://${list}`, `oci:${out}:${arch}`]);
      const pulled = await new OciLayout(out).image(arch);
      assert.equal(pulled.digest, index.manifests.find((m) => m.platform?.architecture === arch)?.digest);
      await assertFiles(await unpackImage(out, arch, path.join(work, `bmulti-${arch}-bundle`)), files[arch]);
    }
  });
});
