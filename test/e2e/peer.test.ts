/**
 * The reference registry (CNCF distribution, Debian docker-registry) as a peer: skopeo copies
 * reference → Berth → reference (another repository), and the manifests and every blob are
 * byte-identical on all three, for a multi-layer image and for a multi-arch index.
 * Runs on SQLite and on PostgreSQL.
 */
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { BACKENDS } from '../helpers/backends.ts';
import {
  type AppImage,
  ARCHES,
  type BerthProcess,
  buildAppImage,
  buildMultiArchImage,
  Cleanup,
  type ContainersEnv,
  containersEnv,
  fetchBlob,
  type ImageIndex,
  type ImageManifest,
  type MultiArchImage,
  type ReferenceRegistry,
  requireTools,
  sha256,
  skopeoCopy,
  skopeoRaw,
  skopeoTags,
  startBerthOn,
  startReferenceRegistry,
} from '../helpers/e2e.ts';

const shared = new Cleanup();
let work: string;
let app: AppImage;
let multi: MultiArchImage;
let reference: ReferenceRegistry;
let c: ContainersEnv;

before(async () => {
  await requireTools('skopeo', 'umoci', 'buildah', 'docker-registry');
  work = await shared.tempDir();
  app = await buildAppImage(path.join(work, 'app'));
  reference = await startReferenceRegistry(path.join(work, 'reference'));
  shared.add('stop the reference registry', () => reference.stop());
  c = await containersEnv(path.join(work, 'containers'), [reference.host]);
  multi = await buildMultiArchImage(c, path.join(work, 'multi'));
  // The sources live in the reference registry.
  await skopeoCopy(c, `oci:${app.layout.dir}:v2`, `docker://${reference.host}/source/app:v2`);
  await skopeoCopy(c, `oci:${multi.layout.dir}:index`, `docker://${reference.host}/source/multi:index`, ['--all']);
});
after(() => shared.run());

/** Raw manifest of `repository:reference` on a registry, checked against its digest when one is given. */
async function rawManifest(host: string, repository: string, ref: string): Promise<Buffer> {
  const bytes = await skopeoRaw(c, `docker://${host}/${repository}${ref.startsWith('sha256:') ? '@' : ':'}${ref}`);
  if (ref.startsWith('sha256:')) assert.equal(sha256(bytes), ref, `${host}/${repository}@${ref} serves other bytes`);
  return bytes;
}

/** `skopeo copy … dir:` writes the manifest and every blob as files; returns name → sha256. */
async function dirCopy(source: string, target: string): Promise<Map<string, string>> {
  await skopeoCopy(c, source, `dir:${target}`);
  const digests = new Map<string, string>();
  for (const name of await readdir(target)) digests.set(name, sha256(await readFile(path.join(target, name))));
  return digests;
}

for (const backend of BACKENDS) {
  describe(`reference registry ⇄ Berth (${backend})`, () => {
    const cleanup = new Cleanup();
    let berth: BerthProcess;
    let dir: string;

    before(async () => {
      dir = path.join(work, backend);
      berth = await startBerthOn(backend, dir, cleanup);
      cleanup.add('stop berth', () => berth.stop());
    });
    after(() => cleanup.run());

    it('copies an image reference → Berth → reference with identical manifest and blob bytes', async () => {
      const back = `${backend}/app-back`;
      await skopeoCopy(c, `docker://${reference.host}/source/app:v2`, `docker://${berth.host}/peer/app:v2`);
      await skopeoCopy(c, `docker://${berth.host}/peer/app:v2`, `docker://${reference.host}/${back}:v2`);

      const onReference = await rawManifest(reference.host, 'source/app', 'v2');
      const onBerth = await rawManifest(berth.host, 'peer/app', 'v2');
      const backOnReference = await rawManifest(reference.host, back, 'v2');
      assert.equal(sha256(onReference), app.v2.digest);
      assert.equal(sha256(onBerth), app.v2.digest);
      assert.equal(sha256(backOnReference), app.v2.digest);
      assert.deepEqual(await skopeoTags(c, `docker://${berth.host}/peer/app`), ['v2']);

      const manifest = JSON.parse(onBerth.toString('utf8')) as ImageManifest;
      for (const blob of [manifest.config, ...manifest.layers]) {
        const fromBerth = await fetchBlob(berth.url, 'peer/app', blob.digest);
        assert.equal(sha256(fromBerth), blob.digest, `Berth serves other bytes for ${blob.digest}`);
        assert.equal(fromBerth.length, blob.size);
        assert.ok(fromBerth.equals(await fetchBlob(reference.url, back, blob.digest)), `${blob.digest} differs between Berth and the reference registry`);
        assert.ok(fromBerth.equals(await app.layout.blob(blob.digest)), `${blob.digest} differs from the source layout`);
      }

      // The same through skopeo's dir: transport, which writes every blob exactly as served.
      const a = await dirCopy(`docker://${reference.host}/source/app:v2`, path.join(dir, 'dir-reference'));
      const b = await dirCopy(`docker://${berth.host}/peer/app:v2`, path.join(dir, 'dir-berth'));
      assert.deepEqual(b, a);
      assert.equal(b.get('manifest.json'), app.v2.digest);
    });

    it('copies a multi-arch index with --all reference → Berth → reference, byte-identical', async () => {
      const back = `${backend}/multi-back`;
      await skopeoCopy(c, `docker://${reference.host}/source/multi:index`, `docker://${berth.host}/peer/multi:index`, ['--all']);
      await skopeoCopy(c, `docker://${berth.host}/peer/multi:index`, `docker://${reference.host}/${back}:index`, ['--all']);

      for (const [host, repository] of [[reference.host, 'source/multi'], [berth.host, 'peer/multi'], [reference.host, back]] as const) {
        assert.equal(sha256(await rawManifest(host, repository, 'index')), multi.indexDigest, `${host}/${repository}:index`);
      }
      const index = JSON.parse(multi.indexBytes.toString('utf8')) as ImageIndex;
      assert.deepEqual(index.manifests.map((m) => m.platform?.architecture).sort(), [...ARCHES]);
      for (const child of index.manifests) {
        const onBerth = await rawManifest(berth.host, 'peer/multi', child.digest);
        assert.ok(onBerth.equals(await rawManifest(reference.host, back, child.digest)));
        assert.ok(onBerth.equals(await multi.layout.blob(child.digest)));
        const manifest = JSON.parse(onBerth.toString('utf8')) as ImageManifest;
        for (const blob of [manifest.config, ...manifest.layers]) {
          const fromBerth = await fetchBlob(berth.url, 'peer/multi', blob.digest);
          assert.equal(sha256(fromBerth), blob.digest);
          assert.ok(fromBerth.equals(await fetchBlob(reference.url, back, blob.digest)), `${blob.digest} differs between Berth and the reference registry`);
        }
      }
    });
  });
}
