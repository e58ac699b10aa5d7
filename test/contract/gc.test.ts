import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseDigest } from '../../src/platform/oci/digest.ts';
import { type JobContext, JobAbortedError } from '../../src/platform/jobs/worker.ts';
import { blobKey } from '../../src/platform/storage/layout.ts';
import { BACKENDS } from '../helpers/backends.ts';
import { checkIntegrity, checkQuotas, type Collector, collectorFor, runsFor, storageRoot } from '../helpers/gc.ts';
import { ADMIN, type Pushed, pushBlob, pushImage, pushIndex, putManifest, startAuthServer, v2ManifestStatus } from '../helpers/harbor-api.ts';
import { createProject } from '../helpers/iam.ts';
import { OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, sha256 } from '../helpers/oci.ts';
import type { TestServer } from '../helpers/server.ts';

interface Descriptor {
  readonly mediaType: string;
  readonly digest: string;
  readonly size: number;
}

function descriptorsOf(image: Pushed): { config: Descriptor; layers: Descriptor[] } {
  return JSON.parse(image.bytes.toString()) as { config: Descriptor; layers: Descriptor[] };
}

function blobsOf(image: Pushed): Descriptor[] {
  const m = descriptorsOf(image);
  return [m.config, ...m.layers];
}

/** Puts a manifest made of these blobs (already in the repository) under `reference`; returns its digest. */
async function putImageOf(server: TestServer, repository: string, reference: string, config: Descriptor, layers: Descriptor[]): Promise<string> {
  const bytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config, layers }));
  await putManifest(server.url, repository, reference, bytes, OCI_MANIFEST);
  return sha256(bytes);
}

async function blobRow(server: TestServer, digest: string) {
  return server.app.database.db.selectFrom('blobs').select(['digest', 'size']).where('digest', '=', digest).executeTakeFirst();
}

async function deleteManifest(server: TestServer, repository: string, digest: string): Promise<void> {
  const res = await fetch(`${server.url}/v2/${repository}/manifests/${digest}`, { method: 'DELETE', headers: { authorization: ADMIN } });
  assert.equal(res.status, 202, await res.text());
}

async function blobStatus(server: TestServer, repository: string, digest: string): Promise<number> {
  const res = await fetch(`${server.url}/v2/${repository}/blobs/${digest}`, { headers: { authorization: ADMIN } });
  await res.arrayBuffer();
  return res.status;
}

async function manifestExists(server: TestServer, digest: string): Promise<boolean> {
  return (await server.app.database.db.selectFrom('manifests').select('digest').where('digest', '=', digest).executeTakeFirst()) !== undefined;
}

/** Nothing referenced is missing, nothing unreferenced or stray is left, the trash is empty, quotas are exact. */
async function assertClean(server: TestServer): Promise<void> {
  const report = await checkIntegrity(server.app.database.db, storageRoot(server));
  assert.deepEqual(report.unreferenced, [], 'unreferenced blobs left');
  assert.deepEqual(report.strayFiles, [], 'files without rows left');
  assert.equal(report.trashed, 0, 'trash not empty');
  await checkQuotas(server.app.database.db);
}

for (const backend of BACKENDS) {
  describe(`garbage collection (${backend})`, () => {
    let server: TestServer;
    let gc: Collector;
    before(async () => {
      server = await startAuthServer(backend);
      gc = collectorFor(server);
      await createProject(server, 'gc');
      // Settle what server start-up left (nothing) so that each test sees only its own candidates.
      await gc.run({});
    });
    after(() => server.close());

    it('deletes the blobs of a deleted image, keeps those another manifest references, and keeps quotas exact', async () => {
      const doomed = await pushImage(server.url, 'gc/app', { tags: ['old'], layers: 2 });
      const kept = await pushImage(server.url, 'gc/app', { tags: ['new'], layers: 1 });
      const [, sharedLayer, onlyDoomed] = blobsOf(doomed) as [Descriptor, Descriptor, Descriptor];
      // A third image shares the doomed image's first layer.
      await putImageOf(server, 'gc/app', 'sharer', descriptorsOf(kept).config, [sharedLayer]);
      await deleteManifest(server, 'gc/app', doomed.digest);

      const result = await gc.run({});
      const gone = [descriptorsOf(doomed).config, onlyDoomed];
      for (const blob of gone) {
        assert.equal(await blobRow(server, blob.digest), undefined, `${blob.digest} should be deleted`);
        assert.equal(await blobStatus(server, 'gc/app', blob.digest), 404);
      }
      for (const blob of [...blobsOf(kept), sharedLayer]) assert.equal(await blobStatus(server, 'gc/app', blob.digest), 200, `${blob.digest} should be kept`);
      assert.equal(result.deletedBlobs, 2);
      assert.equal(result.freedBytes, gone.reduce((sum, blob) => sum + blob.size, 0));
      assert.equal(await v2ManifestStatus(server.url, 'gc/app', 'new'), 200);
      await assertClean(server);
    });

    it('examines only what changed since the last run', async () => {
      await pushImage(server.url, 'gc/steady', { tags: ['v1'], layers: 2 });
      const first = await gc.run({});
      assert.equal(first.examinedBlobs, 3, 'the new config and layers are the candidates');
      assert.equal(first.deletedBlobs, 0);
      const second = await gc.run({});
      assert.equal(second.examinedBlobs, 0, 'nothing changed, nothing examined');
    });

    it('keeps blobs newer than the time window and collects them once older; the manifest PUT then fails cleanly', async () => {
      const config = await pushBlob(server.url, 'gc/window', Buffer.from(JSON.stringify({ architecture: 'arm64', os: 'linux', n: randomBytes(4).toString('hex') })));
      const layer = await pushBlob(server.url, 'gc/window', randomBytes(500));
      const kept = await gc.run({ timeWindowHours: 2 });
      assert.equal(kept.deletedBlobs, 0);
      assert.equal(kept.keptRecent, 2);
      assert.ok(await blobRow(server, layer.digest));
      // With a window of 0 the unreferenced uploads go; the push that uploaded them is then refused, not corrupted.
      const collected = await gc.run({ timeWindowHours: 0 });
      assert.equal(collected.deletedBlobs, 2);
      const bytes = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: OCI_MANIFEST,
          config: { mediaType: OCI_CONFIG, digest: config.digest, size: config.size },
          layers: [{ mediaType: OCI_LAYER, digest: layer.digest, size: layer.size }],
        }),
      );
      const res = await fetch(`${server.url}/v2/gc/window/manifests/v1`, { method: 'PUT', body: bytes, headers: { authorization: ADMIN, 'content-type': OCI_MANIFEST } });
      assert.equal(res.status, 400);
      assert.equal(((await res.json()) as { errors: Array<{ code: string }> }).errors[0]?.code, 'MANIFEST_BLOB_UNKNOWN');
      assert.equal(await manifestExists(server, sha256(bytes)), false);
      await assertClean(server);
    });

    it('a blob pushed again counts as recent for the time window', async () => {
      const bytes = randomBytes(321);
      const blob = await pushBlob(server.url, 'gc/again', bytes);
      // As if pushed three hours ago and never referenced.
      const threeHoursAgo = Date.now() - 3 * 3_600_000;
      await server.app.database.db.updateTable('blobs').set({ created_at: threeHoursAgo }).where('digest', '=', blob.digest).execute();
      await server.app.database.db.updateTable('repository_blobs').set({ created_at: threeHoursAgo }).where('digest', '=', blob.digest).execute();
      await pushBlob(server.url, 'gc/again', bytes);
      assert.equal((await gc.run({ timeWindowHours: 2 })).deletedBlobs, 0);
      assert.equal(await blobStatus(server, 'gc/again', blob.digest), 200);
      assert.equal((await gc.run({ timeWindowHours: 0 })).deletedBlobs, 1);
      await assertClean(server);
    });

    it('delete_untagged removes untagged artifacts, keeps index children and signatures of kept artifacts, and frees their blobs in the same run', async () => {
      const repo = 'gc/untagged';
      const tagged = await pushImage(server.url, repo, { tags: ['keep'] });
      const untagged = await pushImage(server.url, repo, {});
      const signatureOfKept = await pushImage(server.url, repo, { subject: tagged, artifactType: 'application/vnd.dev.cosign.artifact.sig.v1+json' });
      const signatureOfUntagged = await pushImage(server.url, repo, { subject: untagged, artifactType: 'application/vnd.dev.cosign.artifact.sig.v1+json' });
      const childA = await pushImage(server.url, repo, { architecture: 'amd64' });
      const childB = await pushImage(server.url, repo, { architecture: 'arm64' });
      const keptIndex = await pushIndex(server.url, repo, [{ image: childA, architecture: 'amd64' }], ['multi']);
      const goneIndex = await pushIndex(server.url, repo, [{ image: childB, architecture: 'arm64' }], []);

      const dry = await gc.run({ deleteUntagged: true, dryRun: true });
      const result = await gc.run({ deleteUntagged: true });
      for (const kept of [tagged, signatureOfKept, childA, keptIndex]) assert.ok(await manifestExists(server, kept.digest), `${kept.digest} should be kept`);
      for (const gone of [untagged, signatureOfUntagged, childB, goneIndex]) assert.equal(await manifestExists(server, gone.digest), false, `${gone.digest} should be deleted`);
      assert.equal(result.deletedArtifacts, 4);
      const freedBlobs = [untagged, signatureOfUntagged, childB].flatMap(blobsOf);
      assert.equal(result.deletedBlobs, freedBlobs.length);
      for (const blob of freedBlobs) assert.equal(await blobRow(server, blob.digest), undefined);
      for (const blob of [tagged, signatureOfKept, childA].flatMap(blobsOf)) assert.ok(await blobRow(server, blob.digest));
      // The dry run predicted exactly that.
      assert.equal(dry.dryRun, true);
      assert.equal(dry.deletedArtifacts, result.deletedArtifacts);
      assert.equal(dry.deletedBlobs, result.deletedBlobs);
      assert.equal(dry.freedBytes, result.freedBytes);
      assert.equal(await v2ManifestStatus(server.url, repo, 'multi'), 200);
      await assertClean(server);
    });

    it('a dry run reports what would be freed and changes nothing', async () => {
      const image = await pushImage(server.url, 'gc/dry', { tags: ['x'], layers: 2 });
      await gc.run({});
      await deleteManifest(server, 'gc/dry', image.digest);
      const db = server.app.database.db;
      const snapshot = async () => ({
        blobs: await db.selectFrom('blobs').select('digest').orderBy('digest').execute(),
        links: await db.selectFrom('repository_blobs').select(['repository_id', 'digest']).orderBy('digest').execute(),
        candidates: await db.selectFrom('gc_candidates').select(['digest', 'version']).orderBy('digest').execute(),
        quotas: await db.selectFrom('quotas').select(['project_id', 'used']).orderBy('project_id').execute(),
      });
      const before = await snapshot();
      const dry = await gc.run({ dryRun: true });
      assert.deepEqual(await snapshot(), before);
      const expected = blobsOf(image);
      assert.equal(dry.deletedBlobs, expected.length);
      assert.equal(
        dry.freedBytes,
        expected.reduce((sum, b) => sum + b.size, 0),
      );
      // Deleting the manifest left its blobs linked (served, like distribution) until collected.
      for (const blob of expected) assert.equal(await blobStatus(server, 'gc/dry', blob.digest), 200);
      const real = await gc.run({});
      for (const blob of expected) assert.equal(await blobStatus(server, 'gc/dry', blob.digest), 404);
      assert.equal(real.deletedBlobs, dry.deletedBlobs);
      assert.equal(real.freedBytes, dry.freedBytes);
      await assertClean(server);
    });

    it('a stop between batches leaves everything consistent and the next run completes', async () => {
      const small = collectorFor(server, { batchSize: 2 });
      const images: Pushed[] = [];
      for (let i = 0; i < 6; i++) images.push(await pushImage(server.url, 'gc/stop', { tags: [`t${i}`], layers: 2 }));
      await small.run({});
      for (const image of images) await deleteManifest(server, 'gc/stop', image.digest);
      let batches = 0;
      const stopped = await small.run({}, { progress: () => void batches++, shouldStop: () => batches >= 2 });
      assert.equal(stopped.stopped, true);
      assert.ok(stopped.deletedBlobs > 0 && stopped.deletedBlobs < images.length * 3, `deleted ${stopped.deletedBlobs}`);
      const midway = await checkIntegrity(server.app.database.db, storageRoot(server));
      assert.equal(midway.trashed, 0);
      assert.deepEqual(midway.strayFiles, []);
      assert.equal(midway.unreferenced.length, images.length * 3 - stopped.deletedBlobs);
      await checkQuotas(server.app.database.db);
      const rest = await small.run({});
      assert.equal(rest.stopped, false);
      assert.equal(stopped.deletedBlobs + rest.deletedBlobs, images.length * 3);
      await assertClean(server);
    });

    it('puts back trashed blobs whose rows survived a crash, and drops the others', async () => {
      const image = await pushImage(server.url, 'gc/crash', { tags: ['x'] });
      await gc.run({});
      const [config] = blobsOf(image) as [Descriptor];
      // A run that crashed between its trash move and its commit: the row is there, the file in the trash.
      assert.equal(await gc.blobs.trashBlob(parseDigest(config.digest), 'run-crashed'), true);
      assert.equal(await blobStatus(server, 'gc/crash', config.digest), 404);
      // One that crashed after its commit: no row, the file in the trash.
      const deadBytes = randomBytes(100);
      const dead = parseDigest(sha256(deadBytes));
      const deadFile = path.join(storageRoot(server), 'trash', 'run-committed', dead.algorithm, dead.hex);
      await mkdir(path.dirname(deadFile), { recursive: true });
      await writeFile(deadFile, deadBytes);
      assert.deepEqual(await gc.service.recoverTrash(), { restored: 1, dropped: 1 });
      assert.equal(await blobStatus(server, 'gc/crash', config.digest), 200);
      assert.deepEqual(await gc.blobs.listTrashBins(), []);
      await assertClean(server);
    });

    it('a full run examines every blob and removes files no row names', async () => {
      const image = await pushImage(server.url, 'gc/full', { tags: ['x'] });
      await gc.run({});
      // An unreferenced blob that is no candidate (as if noted before candidates existed), and a stray file.
      await deleteManifest(server, 'gc/full', image.digest);
      await server.app.database.db.deleteFrom('gc_candidates').execute();
      const strayBytes = randomBytes(123);
      const stray = parseDigest(sha256(strayBytes));
      const strayFile = path.join(storageRoot(server), blobKey(stray));
      await mkdir(path.dirname(strayFile), { recursive: true });
      await writeFile(strayFile, strayBytes);
      const incremental = await gc.run({});
      assert.equal(incremental.deletedBlobs, 0, 'an incremental run does not see them');
      const dry = await gc.run({ full: true, dryRun: true });
      assert.equal(dry.strayFiles, 1);
      const full = await gc.run({ full: true });
      assert.equal(full.deletedBlobs, blobsOf(image).length);
      assert.equal(full.strayFiles, 1);
      assert.equal(full.freedBytes, dry.freedBytes);
      assert.ok(full.examinedBlobs >= full.deletedBlobs);
      await assertClean(server);
    });

    it('a run stopped through its job ends Stopped, one cut short by a shutdown goes back to Pending', async () => {
      const runs = runsFor(server, gc);
      for (const [reason, expected] of [
        [new JobAbortedError('cancelled'), 'Stopped'],
        [new JobAbortedError('stopping'), 'Pending'],
      ] as const) {
        const image = await pushImage(server.url, 'gc/job', { tags: ['x'] });
        await deleteManifest(server, 'gc/job', image.digest);
        const runId = await gc.store.createRun({ trigger: 'MANUAL', parameters: { time_window: 0 }, status: 'Pending' });
        const controller = new AbortController();
        const job = { id: 0 } as JobContext['job'];
        // The stop comes as the sweep begins: the run ends between two phases, consistent.
        const log = (message: string) => {
          if (message.startsWith('examining')) controller.abort(reason);
        };
        await runs.execute(runId, { job, signal: controller.signal, log });
        const run = await gc.store.getRun(runId);
        assert.equal(run?.status, expected);
        assert.equal(run?.deleted_blobs, 0);
        const report = await checkIntegrity(server.app.database.db, storageRoot(server));
        assert.equal(report.trashed, 0);
        await checkQuotas(server.app.database.db);
      }
      await gc.run({});
      await assertClean(server);
    });

    it('deleting a repository makes its blobs candidates', async () => {
      const image = await pushImage(server.url, 'gc/doomed-repo', { tags: ['x'], layers: 2 });
      await gc.run({});
      const res = await fetch(`${server.url}/api/v2.0/projects/gc/repositories/doomed-repo`, { method: 'DELETE', headers: { authorization: ADMIN } });
      assert.equal(res.status, 200, await res.text());
      const result = await gc.run({});
      assert.equal(result.deletedBlobs, blobsOf(image).length);
      await assertClean(server);
    });
  });
}
