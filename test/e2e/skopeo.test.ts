/**
 * skopeo against the real Berth server (a child process), on SQLite and on PostgreSQL:
 * OCI layout → Berth → OCI layout / docker-archive, docker-archive → Berth, --format v2s2,
 * a multi-arch index with --all, list-tags and delete, parallel pushes.
 */
import assert from 'node:assert/strict';
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { BACKENDS } from '../helpers/backends.ts';
import {
  type AppImage,
  ARCHES,
  assertFiles,
  type BerthProcess,
  buildAppImage,
  buildMultiArchImage,
  Cleanup,
  type ContainersEnv,
  containersEnv,
  fetchBlob,
  type ImageManifest,
  type MultiArchImage,
  OciLayout,
  requireTools,
  run,
  sha256,
  skopeoCopy,
  skopeoInspect,
  skopeoRaw,
  skopeoTags,
  startBerthOn,
  unpackImage,
} from '../helpers/e2e.ts';

const files = new Cleanup();
let work: string;
let app: AppImage;
let multi: MultiArchImage;

before(async () => {
  await requireTools('skopeo', 'umoci', 'buildah', 'tar');
  work = await files.tempDir();
  const builder = await containersEnv(path.join(work, 'builder'), []);
  app = await buildAppImage(path.join(work, 'app'));
  multi = await buildMultiArchImage(builder, path.join(work, 'multi'));
});
after(() => files.run());

for (const backend of BACKENDS) {
  describe(`skopeo ⇄ Berth (${backend})`, () => {
    const cleanup = new Cleanup();
    let berth: BerthProcess;
    let c: ContainersEnv;
    let dir: string;
    const registry = (reference: string) => `docker://${berth.host}/${reference}`;

    before(async () => {
      dir = path.join(work, backend);
      berth = await startBerthOn(backend, dir, cleanup);
      cleanup.add('stop berth', () => berth.stop());
      c = await containersEnv(path.join(dir, 'containers'), [berth.host]);
    });
    after(() => cleanup.run());

    it('copies an OCI layout in; inspect, the raw manifest, the config and list-tags match the source', async () => {
      for (const [tag, image] of [['v1', app.v1], ['v2', app.v2]] as const) {
        await skopeoCopy(c, `oci:${app.layout.dir}:${tag}`, registry(`e2e/app:${tag}`));
        const inspected = await skopeoInspect(c, registry(`e2e/app:${tag}`));
        assert.equal(inspected.Digest, image.digest);
        assert.deepEqual(inspected.Layers, image.layers);
        assert.equal(inspected.Architecture, 'amd64');
        assert.ok((await skopeoRaw(c, registry(`e2e/app:${tag}`))).equals(image.manifestBytes), 'the raw manifest differs from the source');
        const config = (await c.skopeo(['inspect', '--tls-verify=false', '--config', '--raw', registry(`e2e/app:${tag}`)])).stdout;
        assert.ok(config.equals(image.configBytes), 'the config blob differs from the source');
      }
      assert.deepEqual(await skopeoTags(c, registry('e2e/app')), ['v1', 'v2']);
    });

    it('copies out to an OCI layout and to a docker-archive with the source digests and files', async () => {
      const out = new OciLayout(path.join(dir, 'out'));
      await skopeoCopy(c, registry('e2e/app:v2'), `oci:${out.dir}:v2`);
      const pulled = await out.image('v2');
      assert.equal(pulled.digest, app.v2.digest);
      assert.ok(pulled.manifestBytes.equals(app.v2.manifestBytes));
      assert.deepEqual(pulled.layers, app.v2.layers);
      await out.verifyBlobs([pulled.manifest.config.digest, ...pulled.layers]);
      for (const layer of pulled.layers) assert.ok((await out.blob(layer)).equals(await app.layout.blob(layer)), `layer ${layer} differs`);
      await assertFiles(await unpackImage(out.dir, 'v2', path.join(dir, 'out-bundle')), app.files.v2);

      const archive = path.join(dir, 'app-v1.tar');
      await skopeoCopy(c, registry('e2e/app:v1'), `docker-archive:${archive}:e2e/app:v1`);
      const extracted = path.join(dir, 'app-v1-tar');
      await mkdir(extracted);
      await run('tar', ['-xf', archive, '-C', extracted]);
      const [entry, ...more] = JSON.parse(await readFile(path.join(extracted, 'manifest.json'), 'utf8')) as Array<{ Config: string; RepoTags: string[]; Layers: string[] }>;
      assert.ok(entry);
      assert.equal(more.length, 0);
      assert.ok(entry.RepoTags.some((t) => t.endsWith('e2e/app:v1')), `RepoTags: ${entry.RepoTags.join(', ')}`);
      assert.equal(sha256(await readFile(path.join(extracted, entry.Config))), app.v1.manifest.config.digest, 'docker-archive config differs');
      // docker-archive stores layers uncompressed: their digests are the config's diff_ids.
      const layerDigests = await Promise.all(entry.Layers.map(async (file) => sha256(await readFile(path.join(extracted, file)))));
      assert.deepEqual(layerDigests, app.v1.config.rootfs.diff_ids);
    });

    it('copies a docker-archive in; the image keeps its config and files', async () => {
      const archive = path.join(dir, 'app-v1.tar');
      await skopeoCopy(c, `docker-archive:${archive}`, registry('e2e/from-archive:v1'));
      const manifest = JSON.parse((await skopeoRaw(c, registry('e2e/from-archive:v1'))).toString('utf8')) as ImageManifest;
      assert.equal(manifest.config.digest, app.v1.manifest.config.digest);
      assert.equal(manifest.layers.length, 2);
      for (const layer of manifest.layers) assert.equal(sha256(await fetchBlob(berth.url, 'e2e/from-archive', layer.digest)), layer.digest);
      assert.deepEqual(await skopeoTags(c, registry('e2e/from-archive')), ['v1']);
      const out = new OciLayout(path.join(dir, 'from-archive-out'));
      await skopeoCopy(c, registry('e2e/from-archive:v1'), `oci:${out.dir}:v1`);
      await assertFiles(await unpackImage(out.dir, 'v1', path.join(dir, 'from-archive-bundle')), app.files.v1);
    });

    it('copies with --format v2s2: a Docker schema 2 manifest over the same config and layers', async () => {
      await skopeoCopy(c, registry('e2e/app:v1'), registry('e2e/app-v2s2:v1'), ['--format', 'v2s2']);
      const raw = await skopeoRaw(c, registry('e2e/app-v2s2:v1'));
      const manifest = JSON.parse(raw.toString('utf8')) as ImageManifest;
      assert.equal(manifest.mediaType, 'application/vnd.docker.distribution.manifest.v2+json');
      assert.equal(manifest.config.mediaType, 'application/vnd.docker.container.image.v1+json');
      assert.equal(manifest.config.digest, app.v1.manifest.config.digest);
      assert.deepEqual(
        manifest.layers.map((l) => l.digest),
        app.v1.layers,
      );
      assert.ok(manifest.layers.every((l) => l.mediaType === 'application/vnd.docker.image.rootfs.diff.tar.gzip'));
      const inspected = await skopeoInspect(c, registry('e2e/app-v2s2:v1'));
      assert.equal(inspected.Digest, sha256(raw));
      const res = await fetch(`${berth.url}/v2/e2e/app-v2s2/manifests/v1`, { method: 'HEAD', headers: { accept: 'application/vnd.docker.distribution.manifest.v2+json' } });
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('content-type'), 'application/vnd.docker.distribution.manifest.v2+json');
      assert.equal(res.headers.get('docker-content-digest'), sha256(raw));
    });

    it('copies a multi-arch OCI index with --all and pulls every platform back', async () => {
      await skopeoCopy(c, `oci:${multi.layout.dir}:index`, registry('e2e/multi:index'), ['--all']);
      assert.ok((await skopeoRaw(c, registry('e2e/multi:index'))).equals(multi.indexBytes), 'the raw index differs from the source');
      for (const arch of ARCHES) {
        const child = multi.children[arch];
        assert.ok((await skopeoRaw(c, registry(`e2e/multi@${child}`))).equals(await multi.layout.blob(child)));
        // skopeo picks the platform's manifest from the index (Digest stays the index's own).
        const inspected = await skopeoInspect(c, registry('e2e/multi:index'), ['--override-arch', arch]);
        assert.equal(inspected.Digest, multi.indexDigest);
        assert.equal(inspected.Architecture, arch);
        assert.deepEqual(inspected.Layers, (await multi.layout.imageAt(child)).layers);
      }

      const out = new OciLayout(path.join(dir, 'multi-out'));
      await skopeoCopy(c, registry('e2e/multi:index'), `oci:${out.dir}:index`, ['--all']);
      assert.equal((await out.descriptor('index')).digest, multi.indexDigest);
      assert.ok((await out.blob(multi.indexDigest)).equals(multi.indexBytes));
      for (const arch of ARCHES) {
        const pulled = await out.imageAt(multi.children[arch]);
        const source = await multi.layout.imageAt(multi.children[arch]);
        assert.equal(pulled.config.architecture, arch);
        assert.ok(pulled.configBytes.equals(source.configBytes));
        assert.deepEqual(pulled.layers, source.layers);
        await out.verifyBlobs(pulled.layers);
      }

      // One platform picked from the index Berth serves, unpacked: the arm64 files.
      const arm = path.join(dir, 'multi-arm64');
      await c.skopeo(['--override-arch', 'arm64', 'copy', '--src-tls-verify=false', registry('e2e/multi:index'), `oci:${arm}:arm64`]);
      assert.equal((await new OciLayout(arm).descriptor('arm64')).digest, multi.children.arm64);
      await assertFiles(await unpackImage(arm, 'arm64', path.join(dir, 'multi-arm64-bundle')), multi.files.arm64);
    });

    it('skopeo delete removes the manifest and every tag on it, and nothing else', async () => {
      await skopeoCopy(c, registry('e2e/app:v2'), registry('e2e/app:v2-alias'));
      assert.deepEqual(await skopeoTags(c, registry('e2e/app')), ['v1', 'v2', 'v2-alias']);
      await c.skopeo(['delete', '--tls-verify=false', registry('e2e/app:v2-alias')]);
      assert.deepEqual(await skopeoTags(c, registry('e2e/app')), ['v1']);
      await assert.rejects(skopeoRaw(c, registry(`e2e/app@${app.v2.digest}`)), /manifest unknown/i);
      const v1 = await skopeoInspect(c, registry('e2e/app:v1'));
      assert.equal(v1.Digest, app.v1.digest);
      // The other repositories that share v1's blobs are untouched.
      assert.equal((await skopeoInspect(c, registry('e2e/app-v2s2:v1'))).Layers.length, 2);
    });

    it('parallel skopeo pushes of one image into one repository and into several all succeed', async () => {
      // Six clients at once: repository rows, blob links (mounts or uploads) and tags are created concurrently.
      const targets = [...['p1', 'p2', 'p3', 'p4'].map((tag) => `e2e/parallel:${tag}`), 'e2e/parallel-a:v1', 'e2e/parallel-b:v1'];
      await Promise.all(targets.map((target) => skopeoCopy(c, `oci:${app.layout.dir}:v2`, registry(target))));
      assert.deepEqual(await skopeoTags(c, registry('e2e/parallel')), ['p1', 'p2', 'p3', 'p4']);
      for (const target of targets) assert.ok((await skopeoRaw(c, registry(target))).equals(app.v2.manifestBytes), target);
      for (const repository of ['e2e/parallel', 'e2e/parallel-a', 'e2e/parallel-b']) {
        for (const layer of app.v2.layers) assert.equal(sha256(await fetchBlob(berth.url, repository, layer)), layer);
      }
    });
  });
}
