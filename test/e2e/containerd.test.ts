/**
 * containerd's ctr (with a private containerd daemon) against the real Berth server:
 * images pull (HEAD by tag, then GET by digest), images push (mounts first, then real uploads
 * for blobs Berth lacks), imports of an OCI archive and a docker-archive (uncompressed Docker
 * layers) pushed to Berth, content fetch of a multi-arch index, and an index pulled with
 * --all-platforms and pushed elsewhere (children by digest, index by tag).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  type AppImage,
  ARCHES,
  assertFiles,
  type BerthProcess,
  buildAppImage,
  buildMultiArchImage,
  buildUmociImage,
  Cleanup,
  type Containerd,
  type ContainersEnv,
  containersEnv,
  type Files,
  fetchBlob,
  type ImageManifest,
  type LayoutImage,
  type MultiArchImage,
  OciLayout,
  requireTools,
  sha256,
  skopeoCopy,
  skopeoInspect,
  skopeoRaw,
  startBerth,
  startContainerd,
  unpackImage,
} from '../helpers/e2e.ts';

describe('containerd ctr ⇄ Berth (sqlite)', () => {
  const cleanup = new Cleanup();
  let work: string;
  let berth: BerthProcess;
  let containerd: Containerd;
  let c: ContainersEnv;
  let app: AppImage;
  let multi: MultiArchImage;

  /** The content store's digests (ctr content ls -q). */
  const contentDigests = async () => new Set((await containerd.ctr(['content', 'ls', '--quiet'])).text.split('\n').filter(Boolean));
  /** Berth's access log entries for one repository by containerd. */
  const ctrRequests = async (repository: string) => (await berth.requests()).filter((r) => r.ua?.startsWith('containerd/') && r.url.startsWith(`/v2/${repository}/`));

  before(async () => {
    await requireTools('containerd', 'ctr', 'skopeo', 'umoci', 'buildah');
    work = await cleanup.tempDir();
    berth = await startBerth({ dataDir: path.join(work, 'data') });
    cleanup.add('stop berth', () => berth.stop());
    containerd = await startContainerd(path.join(work, 'containerd'));
    cleanup.add('stop containerd', () => containerd.stop());
    c = await containersEnv(path.join(work, 'containers'), [berth.host]);
    app = await buildAppImage(path.join(work, 'app'));
    multi = await buildMultiArchImage(c, path.join(work, 'multi'));
    await skopeoCopy(c, `oci:${app.layout.dir}:v1`, `docker://${berth.host}/e2e/app:v1`);
    await skopeoCopy(c, `oci:${multi.layout.dir}:index`, `docker://${berth.host}/e2e/multi:index`, ['--all']);
  });
  after(() => cleanup.run());

  it('images pull --plain-http --snapshotter native: HEAD by tag, GET by digest, every blob stored', async () => {
    const image = `${berth.host}/e2e/app:v1`;
    await containerd.ctr(['images', 'pull', '--plain-http', '--snapshotter', 'native', image]);
    const listed = (await containerd.ctr(['images', 'ls'])).text.split('\n').find((line) => line.startsWith(`${image} `));
    assert.ok(listed, 'ctr images ls does not list the image');
    assert.match(listed, new RegExp(`\\s${app.v1.digest}\\s`));

    const requests = await ctrRequests('e2e/app');
    const head = requests.findIndex((r) => r.method === 'HEAD' && r.url === '/v2/e2e/app/manifests/v1' && r.status === 200);
    const get = requests.findIndex((r) => r.method === 'GET' && r.url === `/v2/e2e/app/manifests/${app.v1.digest}` && r.status === 200);
    assert.ok(head >= 0 && get > head, `containerd should resolve by HEAD on the tag, then GET by digest: ${JSON.stringify(requests)}`);

    const stored = await contentDigests();
    for (const digest of [app.v1.digest, app.v1.manifest.config.digest, ...app.v1.layers]) {
      assert.ok(stored.has(digest), `content store lacks ${digest}`);
      const bytes = (await containerd.ctr(['content', 'get', digest])).stdout;
      assert.equal(sha256(bytes), digest);
      assert.ok(bytes.equals(await app.layout.blob(digest)));
    }
    // Unpacked into the native snapshotter: one committed snapshot per layer.
    const snapshots = (await containerd.ctr(['snapshots', '--snapshotter', 'native', 'ls'])).text.split('\n').filter((l) => l.includes('Committed'));
    assert.equal(snapshots.length, app.v1.layers.length);
  });

  it('images push --plain-http of a tagged pull: mounts from the source repository, same digest', async () => {
    const target = `${berth.host}/e2e/ctr-tagged:v1`;
    await containerd.ctr(['images', 'tag', `${berth.host}/e2e/app:v1`, target]);
    await containerd.ctr(['images', 'push', '--plain-http', target]);
    const requests = await ctrRequests('e2e/ctr-tagged');
    const mounts = requests.filter((r) => r.method === 'POST' && r.url.includes('mount=') && r.status === 201);
    assert.equal(mounts.length, app.v1.layers.length + 1, `every blob should be mounted: ${JSON.stringify(requests)}`);
    assert.ok(mounts.every((r) => r.url.includes('from=e2e/app')));
    assert.ok(requests.some((r) => r.method === 'PUT' && r.url === '/v2/e2e/ctr-tagged/manifests/v1' && r.status === 201));
    assert.ok((await skopeoRaw(c, `docker://${target}`)).equals(app.v1.manifestBytes));
  });

  it('images push --plain-http of an imported image Berth has never seen: real uploads', async () => {
    // A fresh image: umoci → oci-archive (skopeo) → ctr images import → push.
    const freshFiles: Files = { 'fresh.txt': `imported into containerd ${Date.now()}\n`, 'bin/blob': randomBytes(300 * 1024) };
    const fresh: LayoutImage = await buildUmociImage(path.join(work, 'fresh'), 'v1', { layers: [freshFiles] });
    const archive = path.join(work, 'fresh.tar');
    await skopeoCopy(c, `oci:${path.join(work, 'fresh')}:v1`, `oci-archive:${archive}:v1`);
    await containerd.ctr(['images', 'import', '--snapshotter', 'native', '--base-name', `${berth.host}/e2e/ctr-upload`, archive]);
    const target = `${berth.host}/e2e/ctr-upload:v1`;
    await containerd.ctr(['images', 'push', '--plain-http', target]);

    const requests = await ctrRequests('e2e/ctr-upload');
    for (const digest of [fresh.manifest.config.digest, ...fresh.layers]) {
      assert.ok(
        requests.some((r) => r.method === 'PUT' && r.url.startsWith('/v2/e2e/ctr-upload/blobs/uploads/') && r.url.includes(`digest=${encodeURIComponent(digest)}`) && r.status === 201),
        `${digest} should have been uploaded: ${JSON.stringify(requests)}`,
      );
    }
    const inspected = await skopeoInspect(c, `docker://${target}`);
    assert.equal(inspected.Digest, fresh.digest);
    const out = path.join(work, 'ctr-upload-out');
    await skopeoCopy(c, `docker://${target}`, `oci:${out}:v1`);
    assert.ok((await new OciLayout(out).image('v1')).manifestBytes.equals(fresh.manifestBytes));
    await assertFiles(await unpackImage(out, 'v1', path.join(work, 'ctr-upload-bundle')), freshFiles);
  });

  it('images import of a docker-archive, then push: Docker schema 2 with uncompressed layers, same files', async () => {
    // An image containerd has never seen (it would otherwise reuse the gzip layers it pulled).
    const files: Files = { 'archived.txt': `via docker-archive ${Date.now()}\n`, 'bin/data': randomBytes(200 * 1024) };
    const image = await buildUmociImage(path.join(work, 'archived'), 'v1', { layers: [files] });
    const archive = path.join(work, 'archived-docker.tar');
    await skopeoCopy(c, `oci:${path.join(work, 'archived')}:v1`, `docker-archive:${archive}:e2e/archived:v1`);
    await containerd.ctr(['images', 'import', '--snapshotter', 'native', archive]);
    const target = `${berth.host}/e2e/ctr-archived:v1`;
    await containerd.ctr(['images', 'tag', 'docker.io/e2e/archived:v1', target]);
    await containerd.ctr(['images', 'push', '--plain-http', target]);

    const manifest = JSON.parse((await skopeoRaw(c, `docker://${target}`)).toString('utf8')) as ImageManifest;
    assert.equal(manifest.mediaType, 'application/vnd.docker.distribution.manifest.v2+json');
    assert.equal(manifest.config.digest, image.manifest.config.digest);
    assert.ok(manifest.layers.every((l) => l.mediaType === 'application/vnd.docker.image.rootfs.diff.tar'), JSON.stringify(manifest));
    assert.deepEqual(
      manifest.layers.map((l) => l.digest),
      image.config.rootfs.diff_ids,
    );
    for (const layer of manifest.layers) assert.equal(sha256(await fetchBlob(berth.url, 'e2e/ctr-archived', layer.digest)), layer.digest);
    const out = path.join(work, 'ctr-archived-out');
    await skopeoCopy(c, `docker://${target}`, `oci:${out}:v1`);
    await assertFiles(await unpackImage(out, 'v1', path.join(work, 'ctr-archived-bundle')), files);
  });

  it('content fetch --all-platforms of a multi-arch index stores the index, both manifests and their blobs', async () => {
    await containerd.ctr(['content', 'fetch', '--plain-http', '--all-platforms', `${berth.host}/e2e/multi:index`]);
    const stored = await contentDigests();
    assert.ok(stored.has(multi.indexDigest));
    assert.ok((await containerd.ctr(['content', 'get', multi.indexDigest])).stdout.equals(multi.indexBytes));
    for (const arch of ARCHES) {
      const child = await multi.layout.imageAt(multi.children[arch]);
      for (const digest of [child.digest, child.manifest.config.digest, ...child.layers]) {
        assert.ok(stored.has(digest), `${arch}: content store lacks ${digest}`);
        assert.equal(sha256((await containerd.ctr(['content', 'get', digest])).stdout), digest);
      }
    }
  });

  it('images pull --all-platforms of an index, then push it elsewhere: children by digest, index by tag, same bytes', async () => {
    const source = `${berth.host}/e2e/multi:index`;
    const target = `${berth.host}/e2e/ctr-multi:index`;
    await containerd.ctr(['images', 'pull', '--plain-http', '--all-platforms', '--snapshotter', 'native', source]);
    await containerd.ctr(['images', 'tag', source, target]);
    await containerd.ctr(['images', 'push', '--plain-http', target]);
    const requests = await ctrRequests('e2e/ctr-multi');
    for (const arch of ARCHES) {
      const url = `/v2/e2e/ctr-multi/manifests/${multi.children[arch]}`;
      assert.ok(requests.some((r) => r.method === 'PUT' && r.url === url && r.status === 201), `${arch} manifest should be PUT by digest: ${JSON.stringify(requests)}`);
    }
    assert.ok(requests.some((r) => r.method === 'PUT' && r.url === '/v2/e2e/ctr-multi/manifests/index' && r.status === 201));
    assert.ok((await skopeoRaw(c, `docker://${target}`)).equals(multi.indexBytes));
    for (const arch of ARCHES) {
      const out = path.join(work, `ctr-multi-${arch}`);
      await c.skopeo(['--override-arch', arch, 'copy', '--src-tls-verify=false', `docker://${target}`, `oci:${out}:${arch}`]);
      assert.equal((await new OciLayout(out).descriptor(arch)).digest, multi.children[arch]);
      await assertFiles(await unpackImage(out, arch, path.join(work, `ctr-multi-${arch}-bundle`)), multi.files[arch]);
    }
  });
});
