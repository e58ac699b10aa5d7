/**
 * The race proof: several pushers reuse and add layers (and delete manifests, and move tags so
 * that artifacts fall untagged) while garbage collection runs again and again with a time window
 * of 0. Afterwards every manifest pulls completely (each referenced blob is there and hashes
 * right), no unreferenced blob is left once a last run went over the quiet registry, and quotas
 * equal the ledger recomputed from scratch. No request may fail with a 5xx; a manifest PUT may be
 * refused with MANIFEST_BLOB_UNKNOWN when the collector took a blob the push had uploaded but not
 * yet referenced (the client then pushes again, as real clients do).
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { BACKENDS } from '../helpers/backends.ts';
import { checkIntegrity, checkQuotas, collectorFor, storageRoot } from '../helpers/gc.ts';
import { ADMIN, startAuthServer } from '../helpers/harbor-api.ts';
import { createProject } from '../helpers/iam.ts';
import { OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST, sha256 } from '../helpers/oci.ts';
import type { TestServer } from '../helpers/server.ts';

const PUSHERS = 4;
const ITERATIONS = 24;
const BASE_LAYERS = 6;
const GC_PAUSE_MS = 250;
const ATTEMPTS = 10;

interface Descriptor {
  readonly mediaType: string;
  readonly digest: string;
  readonly size: number;
}

interface Tally {
  pushes: number;
  refusedManifests: number;
  retriedPushes: number;
  deletes: number;
  mounts: number;
  uploads: number;
  skippedUploads: number;
  unexpected: string[];
}

class Client {
  readonly #base: string;
  readonly #tally: Tally;
  readonly project: string;
  constructor(base: string, tally: Tally, project: string) {
    this.#base = base;
    this.#tally = tally;
    this.project = project;
  }

  async #call(method: string, path: string, body?: Buffer, headers: Record<string, string> = {}): Promise<Response> {
    const res = await fetch(`${this.#base}${path}`, { method, headers: { authorization: ADMIN, ...headers }, ...(body ? { body } : {}) });
    if (res.status >= 500) this.#tally.unexpected.push(`${method} ${path}: ${res.status} ${await res.clone().text()}`);
    return res;
  }

  /** As docker does: HEAD first, then mount from `from` or upload. */
  async ensureBlob(repository: string, bytes: Buffer, from?: string): Promise<Descriptor> {
    const digest = sha256(bytes);
    const head = await this.#call('HEAD', `/v2/${repository}/blobs/${digest}`);
    if (head.status === 200) {
      this.#tally.skippedUploads++;
      return { mediaType: OCI_LAYER, digest, size: bytes.length };
    }
    if (from) {
      const mount = await this.#call('POST', `/v2/${repository}/blobs/uploads/?mount=${encodeURIComponent(digest)}&from=${encodeURIComponent(from)}`);
      await mount.arrayBuffer();
      if (mount.status === 201) {
        this.#tally.mounts++;
        return { mediaType: OCI_LAYER, digest, size: bytes.length };
      }
      // 202: nothing to mount (collected meanwhile): the client uploads instead.
      const location = mount.headers.get('location');
      if (mount.status === 202 && location) {
        const put = await this.#call('PUT', `${location}${location.includes('?') ? '&' : '?'}digest=${encodeURIComponent(digest)}`, bytes, { 'content-type': 'application/octet-stream' });
        await put.arrayBuffer();
        assert.equal(put.status, 201, `upload after a refused mount: ${put.status}`);
        this.#tally.uploads++;
        return { mediaType: OCI_LAYER, digest, size: bytes.length };
      }
      assert.fail(`mount answered ${mount.status}`);
    }
    const res = await this.#call('POST', `/v2/${repository}/blobs/uploads/?digest=${encodeURIComponent(digest)}`, bytes, { 'content-type': 'application/octet-stream' });
    const text = await res.text();
    assert.equal(res.status, 201, `blob upload: ${res.status} ${text}`);
    this.#tally.uploads++;
    return { mediaType: OCI_LAYER, digest, size: bytes.length };
  }

  /** PUT; true when stored, false when refused because a referenced blob or child is gone. */
  async putManifest(repository: string, reference: string, bytes: Buffer, mediaType: string): Promise<boolean> {
    const res = await this.#call('PUT', `/v2/${repository}/manifests/${reference}`, bytes, { 'content-type': mediaType });
    const text = await res.text();
    if (res.status === 201) return true;
    if (res.status >= 500) return false;
    assert.equal(res.status, 400, `manifest PUT ${repository}:${reference}: ${res.status} ${text}`);
    assert.match(text, /MANIFEST_BLOB_UNKNOWN/);
    this.#tally.refusedManifests++;
    return false;
  }

  async deleteManifest(repository: string, digest: string): Promise<void> {
    const res = await this.#call('DELETE', `/v2/${repository}/manifests/${digest}`);
    await res.arrayBuffer();
    assert.ok(res.status === 202 || res.status === 404, `manifest DELETE: ${res.status}`);
    if (res.status === 202) this.#tally.deletes++;
  }
}

function manifestOf(config: Descriptor, layers: Descriptor[]): Buffer {
  return Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: { ...config, mediaType: OCI_CONFIG }, layers }));
}

/** One pusher: images of shared base layers (mounted), its own earlier layers (reused) and a new one. */
async function pusher(client: Client, tally: Tally, index: number, baseLayers: Buffer[], options: { iterations: number; attempts: number; mustSucceed: boolean }): Promise<void> {
  const repository = `${client.project}/app-${index}`;
  const own: Buffer[] = [];
  const pushed: string[] = [];
  const inIndex = new Set<string>();
  for (let i = 0; i < options.iterations; i++) {
    const fresh = randomBytes(700 + i);
    own.push(fresh);
    const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', pusher: index, i, nonce: randomBytes(4).toString('hex') }));
    const chosen = [baseLayers[(index + i) % baseLayers.length] as Buffer, baseLayers[(index + 2 * i + 1) % baseLayers.length] as Buffer];
    const reused = own.length > 2 ? [own[(i * 7) % (own.length - 1)] as Buffer] : [];
    let stored = false;
    for (let attempt = 0; attempt < options.attempts && !stored; attempt++) {
      if (attempt > 0) tally.retriedPushes++;
      const configDescriptor = await client.ensureBlob(repository, config);
      const layers: Descriptor[] = [];
      for (const base of chosen) layers.push(await client.ensureBlob(repository, base, `${client.project}/base`));
      for (const layer of [...reused, fresh]) layers.push(await client.ensureBlob(repository, layer));
      const bytes = manifestOf(configDescriptor, layers);
      stored = await client.putManifest(repository, `t${i % 3}`, bytes, OCI_MANIFEST);
      if (stored) pushed.push(sha256(bytes));
    }
    if (options.mustSucceed) assert.ok(stored, `pusher ${index} could not push image ${i} in ${options.attempts} attempts`);
    if (!stored) continue;
    tally.pushes++;
    // Now and then an index of the last two images (its children stay untagged), and a delete.
    if (i % 5 === 4 && pushed.length >= 2) {
      const children = pushed.slice(-2);
      for (const child of children) inIndex.add(child);
      const index_ = Buffer.from(
        JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: children.map((digest) => ({ mediaType: OCI_MANIFEST, digest, size: 1, platform: { architecture: 'amd64', os: 'linux' } })) }),
      );
      await client.putManifest(repository, 'multi', index_, OCI_INDEX);
    }
    // (Never a child of an index: deleting one of those would break the index whatever the collector does.)
    const doomed = pushed[pushed.length - 4];
    if (i % 4 === 3 && doomed !== undefined && !inIndex.has(doomed)) await client.deleteManifest(repository, doomed);
  }
}

interface RaceOptions {
  readonly pauseMs: number;
  /** The collector's own pause after each batch (GcService option; 0 sweeps flat out). */
  readonly sweepPause?: number;
  readonly batchSize: number;
  readonly iterations: number;
  readonly attempts: number;
  readonly mustSucceed: boolean;
}

/** Pushers against repeated collections in project `project`, then the checks; returns a summary. */
async function race(server: TestServer, project: string, options: RaceOptions): Promise<string> {
  await createProject(server, project);
  const tally: Tally = { pushes: 0, refusedManifests: 0, retriedPushes: 0, deletes: 0, mounts: 0, uploads: 0, skippedUploads: 0, unexpected: [] };
  const client = new Client(server.url, tally, project);
  const baseLayers = Array.from({ length: BASE_LAYERS }, () => randomBytes(900));
  // The base image that the pushers mount from; it stays tagged.
  const baseDescriptors: Descriptor[] = [];
  for (const layer of baseLayers) baseDescriptors.push(await client.ensureBlob(`${project}/base`, layer));
  const baseConfig = await client.ensureBlob(`${project}/base`, Buffer.from('{"architecture":"amd64","os":"linux"}'));
  assert.ok(await client.putManifest(`${project}/base`, 'latest', manifestOf(baseConfig, baseDescriptors), OCI_MANIFEST));

  const gc = collectorFor(server, { batchSize: options.batchSize, ...(options.sweepPause !== undefined ? { pause: options.sweepPause } : {}) });
  let pushing = true;
  let runs = 0;
  let deleted = 0;
  let deletedArtifacts = 0;
  const collecting = (async () => {
    while (pushing) {
      const result = await gc.run({ timeWindowHours: 0, deleteUntagged: runs % 2 === 1, workers: 2 });
      runs++;
      deleted += result.deletedBlobs;
      deletedArtifacts += result.deletedArtifacts;
      // Back to back, a collection with no window takes every blob uploaded before it started and
      // not yet referenced, again and again: in the main test runs come at intervals, as from a schedule.
      await new Promise((resolve) => setTimeout(resolve, options.pauseMs));
    }
  })();
  try {
    await Promise.all(Array.from({ length: PUSHERS }, (_, i) => pusher(client, tally, i, baseLayers, options)));
  } finally {
    pushing = false;
    await collecting;
  }
  // A last run over the quiet registry.
  const last = await gc.run({ timeWindowHours: 0, workers: 2 });
  deleted += last.deletedBlobs;
  const serverErrors = () => server.logs.filter((l) => l.includes('"level":50')).join('\n');
  assert.deepEqual(tally.unexpected, [], `no request may fail with a 5xx; the server logged:\n${tally.unexpected.length > 0 ? serverErrors() : ''}`);
  assert.ok(runs >= 2, `only ${runs} collections ran during the pushes`);
  assert.ok(deleted > 0, 'the collections deleted nothing: the test proves nothing');
  assert.ok(tally.pushes > 0, 'no push got through');
  if (options.mustSucceed) assert.equal(tally.pushes, PUSHERS * options.iterations);

  // Every manifest in the registry pulls completely (the check reads each blob's bytes and hashes them).
  const db = server.app.database.db;
  const report = await checkIntegrity(db, storageRoot(server));
  assert.deepEqual(report.unreferenced, [], 'unreferenced blobs older than the last run are left');
  assert.deepEqual(report.strayFiles, [], 'files that no row names are left');
  assert.equal(report.trashed, 0);
  await checkQuotas(db);
  // And through the API, as a client pulls: each tag's manifest, then each of its blobs.
  const tags = await db
    .selectFrom('tags as t')
    .innerJoin('repositories as r', 'r.id', 't.repository_id')
    .select(['r.name', 't.name as tag'])
    .where('r.name', '>=', `${project}/`)
    .where('r.name', '<', `${project}0`)
    .execute();
  assert.ok(tags.length > 1);
  for (const { name, tag } of tags) {
    const res = await fetch(`${server.url}/v2/${name}/manifests/${tag}`, { headers: { authorization: ADMIN, accept: `${OCI_MANIFEST}, ${OCI_INDEX}` } });
    assert.equal(res.status, 200, `${name}:${tag}`);
    const manifest = (await res.json()) as { config?: Descriptor; layers?: Descriptor[]; manifests?: Descriptor[] };
    for (const blob of [...(manifest.config ? [manifest.config] : []), ...(manifest.layers ?? [])]) {
      const got = await fetch(`${server.url}/v2/${name}/blobs/${blob.digest}`, { headers: { authorization: ADMIN } });
      assert.equal(got.status, 200, `${name}:${tag} blob ${blob.digest}`);
      assert.equal(`sha256:${createHash('sha256').update(Buffer.from(await got.arrayBuffer())).digest('hex')}`, blob.digest);
    }
    for (const child of manifest.manifests ?? []) {
      const got = await fetch(`${server.url}/v2/${name}/manifests/${child.digest}`, { headers: { authorization: ADMIN, accept: OCI_MANIFEST } });
      await got.arrayBuffer();
      assert.equal(got.status, 200, `${name}:${tag} child ${child.digest}`);
    }
  }
  return `${runs} collections during ${tally.pushes} image pushes: ${deleted} blobs and ${deletedArtifacts} untagged artifacts deleted; ${tally.refusedManifests} manifest PUTs refused (a blob or child collected first), ${tally.retriedPushes} pushes retried; ${tally.mounts} mounts, ${tally.uploads} uploads, ${tally.skippedUploads} uploads skipped after HEAD; ${tally.deletes} manifest deletes; ${report.manifests} manifests and ${report.blobs} blobs checked whole`;
}

for (const backend of BACKENDS) {
  describe(`garbage collection races with pushes (${backend})`, () => {
    let server: TestServer;
    before(async () => {
      server = await startAuthServer(backend);
    });
    after(() => server.close());

    it('loses nothing referenced, leaves nothing unreferenced, and keeps quotas exact', async (t) => {
      const tally = await race(server, 'stress', { pauseMs: GC_PAUSE_MS, batchSize: 8, iterations: ITERATIONS, attempts: ATTEMPTS, mustSucceed: true });
      t.diagnostic(tally);
    });

    it('stays consistent with a collection every few milliseconds, sweeping flat out three blobs per transaction', async (t) => {
      // Here many pushes lose the race (each run takes what they uploaded before it started but had
      // not referenced yet) and are pushed again; what counts is that whatever was stored is whole.
      const tally = await race(server, 'hostile', { pauseMs: 40, sweepPause: 0, batchSize: 3, iterations: 12, attempts: 6, mustSucceed: false });
      t.diagnostic(tally);
    });
  });
}
