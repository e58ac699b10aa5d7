/**
 * A server restart between push and pull loses nothing: push with skopeo, stop Berth with
 * SIGTERM (it must exit 0), start it again on the same data folder and database, pull.
 * Runs on SQLite and on PostgreSQL.
 */
import assert from 'node:assert/strict';
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
  type MultiArchImage,
  OciLayout,
  requireTools,
  restartBerth,
  sha256,
  skopeoCopy,
  skopeoRaw,
  skopeoTags,
  startBerthOn,
  unpackImage,
} from '../helpers/e2e.ts';

const shared = new Cleanup();
let work: string;
let app: AppImage;
let multi: MultiArchImage;

before(async () => {
  await requireTools('skopeo', 'umoci', 'buildah');
  work = await shared.tempDir();
  app = await buildAppImage(path.join(work, 'app'));
  multi = await buildMultiArchImage(await containersEnv(path.join(work, 'builder'), []), path.join(work, 'multi'));
});
after(() => shared.run());

for (const backend of BACKENDS) {
  describe(`Berth restart between push and pull (${backend})`, () => {
    const cleanup = new Cleanup();
    let berth: BerthProcess;
    let c: ContainersEnv;
    let dir: string;
    const registry = (reference: string) => `docker://${berth.host}/${reference}`;

    before(async () => {
      dir = path.join(work, backend);
      berth = await startBerthOn(backend, dir, cleanup);
      // `berth` is reassigned by the restart; stop whichever process is current.
      cleanup.add('stop berth', () => berth.stop());
      c = await containersEnv(path.join(dir, 'containers'), [berth.host]);
    });
    after(() => cleanup.run());

    it('serves every tag, manifest and blob pushed before a SIGTERM restart', async () => {
      await skopeoCopy(c, `oci:${app.layout.dir}:v1`, registry('e2e/app:v1'));
      await skopeoCopy(c, `oci:${app.layout.dir}:v2`, registry('e2e/app:v2'));
      await skopeoCopy(c, `oci:${multi.layout.dir}:index`, registry('e2e/multi:index'), ['--all']);
      const port = berth.port;

      berth = await restartBerth(berth);
      assert.equal(berth.port, port);

      assert.deepEqual(await skopeoTags(c, registry('e2e/app')), ['v1', 'v2']);
      assert.deepEqual(await skopeoTags(c, registry('e2e/multi')), ['index']);
      assert.ok((await skopeoRaw(c, registry('e2e/app:v1'))).equals(app.v1.manifestBytes));
      assert.ok((await skopeoRaw(c, registry('e2e/multi:index'))).equals(multi.indexBytes));

      const out = new OciLayout(path.join(dir, 'after-restart'));
      await skopeoCopy(c, registry('e2e/app:v2'), `oci:${out.dir}:v2`);
      const pulled = await out.image('v2');
      assert.equal(pulled.digest, app.v2.digest);
      assert.ok(pulled.configBytes.equals(app.v2.configBytes));
      for (const layer of pulled.layers) assert.ok((await out.blob(layer)).equals(await app.layout.blob(layer)), `layer ${layer} differs`);
      await assertFiles(await unpackImage(out.dir, 'v2', path.join(dir, 'after-restart-bundle')), app.files.v2);

      const multiOut = new OciLayout(path.join(dir, 'multi-after-restart'));
      await skopeoCopy(c, registry('e2e/multi:index'), `oci:${multiOut.dir}:index`, ['--all']);
      assert.equal((await multiOut.descriptor('index')).digest, multi.indexDigest);
      for (const arch of ARCHES) {
        const child = await multiOut.imageAt(multi.children[arch]);
        await multiOut.verifyBlobs([child.manifest.config.digest, ...child.layers]);
      }
    });

    it('accepts pushes after the restart and survives a second one', async () => {
      await skopeoCopy(c, registry('e2e/app:v1'), registry('e2e/copied:after-restart'));
      await skopeoCopy(c, `oci:${app.layout.dir}:v2`, registry('e2e/app:v3'));
      berth = await restartBerth(berth);
      assert.deepEqual(await skopeoTags(c, registry('e2e/copied')), ['after-restart']);
      assert.deepEqual(await skopeoTags(c, registry('e2e/app')), ['v1', 'v2', 'v3']);
      assert.equal(sha256(await skopeoRaw(c, registry('e2e/copied:after-restart'))), app.v1.digest);
      assert.equal(sha256(await skopeoRaw(c, registry('e2e/app:v3'))), app.v2.digest);
    });
  });
}
