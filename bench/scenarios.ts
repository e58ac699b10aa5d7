/**
 * The scenarios, run identically against both registries. `seed` prepares each registry once
 * (untimed); each scenario's `run` is one measurement, bounded in count and time.
 */
import { Client } from './http.ts';
import { type LoadResult, runLoad, runMixed } from './load.ts';
import {
  BlobFamily,
  type Blob,
  configBlob,
  descriptor,
  imageManifest,
  MANIFEST_ACCEPT,
  mountBlob,
  OCI_CONFIG,
  OCI_LAYER,
  pushChunked,
  pushPostDigest,
  pushPostPut,
  putManifest,
  randomPool,
} from './oci.ts';
import { formatBytes, type Params } from './params.ts';
import type { TargetName } from './servers.ts';

export type Unit = 'MB/s' | 'req/s' | 'img/s';

export interface Scenario {
  readonly id: string;
  readonly title: string;
  readonly unit: Unit;
  /** Goal for Berth/reference; undefined for informational rows. */
  readonly goal: number | undefined;
  readonly concurrency: number;
  /** Rows that only one registry can run (e.g. a request the reference does not support). */
  readonly only?: TargetName;
  readonly run: (target: SeededTarget, ctx: Context, maxMs?: number) => Promise<LoadResult>;
  /** An untimed look at what the registry answers (e.g. how many entries a list holds). */
  readonly describe?: (target: SeededTarget, ctx: Context) => Promise<string>;
}

export interface Seed {
  readonly pullBlob: Blob;
  readonly metaConfig: Blob;
  readonly metaLayer: Blob;
  readonly metaManifestDigest: string;
  readonly mixedImages: readonly string[];
}

export interface SeededTarget {
  readonly name: TargetName;
  readonly baseUrl: string;
  readonly seed: Seed;
}

/** Per-run state shared by both registries, so both get the same content. */
export class Context {
  readonly params: Params;
  readonly families: {
    readonly mono1: BlobFamily;
    readonly big: BlobFamily;
    readonly concurrent: BlobFamily;
    readonly tiny: BlobFamily;
    readonly layers: readonly BlobFamily[];
  };
  readonly pool: Buffer;
  #seq = 0;

  constructor(params: Params) {
    this.params = params;
    const nonce = `${process.pid}-${Date.now()}`;
    const biggest = Math.max(params.mono64.size, params.chunked.size, params.pull.size, params.concurrent.size, params.mono1.size, params.memory.chunk);
    this.pool = randomPool(biggest);
    const bigSize = Math.max(params.mono64.size, params.chunked.size, params.pull.size);
    this.families = {
      mono1: new BlobFamily(this.pool, params.mono1.size, nonce),
      big: new BlobFamily(this.pool, bigSize, nonce),
      concurrent: new BlobFamily(this.pool, params.concurrent.size, nonce, 1),
      tiny: new BlobFamily(this.pool, 1024, nonce, 7),
      layers: params.mixed.layerSizes.map((size, i) => new BlobFamily(this.pool, size, nonce, 11 + i)),
    };
  }

  /** A number never used before in this run: makes tags and blob contents unique. */
  seq(): number {
    return this.#seq++;
  }
}

const META_REPO = 'bench/meta';
const PULL_REPO = 'bench/pull';
const TAGS_REPO = 'bench/tags';
const MPUT_REPO = 'bench/mput';
const MIXED_REPO = 'bench/mixed';

async function parallel(count: number, concurrency: number, fn: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, count) }, async () => {
      while (next < count) await fn(next++);
    }),
  );
}

async function pushImage(client: Client, ctx: Context, repo: string, tag: string, label: string): Promise<number> {
  const layers = ctx.families.layers.map((f) => f.variant(`${label}-layer-${f.size}`));
  const config = configBlob(label);
  let bytes = 0;
  for (const blob of [...layers, config]) {
    // What real clients do first: HEAD the blob, upload only when missing.
    const head = await client.request('HEAD', `/v2/${repo}/blobs/${blob.digest}`, { expect: [200, 404] });
    if (head.status === 404) {
      const pushed = await pushPostPut(client, repo, blob);
      bytes += pushed;
    }
  }
  const manifest = imageManifest(
    descriptor(OCI_CONFIG, config),
    layers.map((l) => descriptor(OCI_LAYER, l)),
  );
  await putManifest(client, repo, tag, manifest);
  return bytes + manifest.length;
}

async function pullImage(client: Client, repo: string, tag: string): Promise<number> {
  const res = await client.request('GET', `/v2/${repo}/manifests/${tag}`, { headers: { accept: MANIFEST_ACCEPT }, keepBody: true, expect: [200] });
  const manifest = JSON.parse((res.body as Buffer).toString('utf8')) as { config: { digest: string; size: number }; layers: { digest: string; size: number }[] };
  let bytes = res.bytes;
  for (const d of [manifest.config, ...manifest.layers]) {
    const blob = await client.request('GET', `/v2/${repo}/blobs/${d.digest}`, { expect: [200] });
    if (blob.bytes !== d.size) throw new Error(`short blob ${d.digest}: ${blob.bytes} of ${d.size}`);
    bytes += blob.bytes;
  }
  return bytes;
}

/** Prepares one registry: the blobs, manifests, tags and repositories the read scenarios use. */
export async function seed(baseUrl: string, ctx: Context, log: (line: string) => void): Promise<Seed> {
  const p = ctx.params;
  const client = new Client(baseUrl, p.seedConcurrency);
  try {
    const pullBlob = ctx.families.big.variant('pull');
    await pushPostPut(client, PULL_REPO, pullBlob);

    const metaConfig = configBlob('meta');
    const metaLayer = ctx.families.tiny.variant('meta-layer');
    await pushPostPut(client, META_REPO, metaConfig);
    await pushPostPut(client, META_REPO, metaLayer);
    const metaManifest = imageManifest(descriptor(OCI_CONFIG, metaConfig), [descriptor(OCI_LAYER, metaLayer)]);
    const metaManifestDigest = await putManifest(client, META_REPO, 'latest', metaManifest);

    for (const repo of [TAGS_REPO, MPUT_REPO]) {
      await mountBlob(client, repo, META_REPO, metaConfig.digest);
      await mountBlob(client, repo, META_REPO, metaLayer.digest);
    }
    log(`  ${p.tags.count} tags in ${TAGS_REPO}`);
    await parallel(p.tags.count, p.seedConcurrency, (i) => putManifest(client, TAGS_REPO, `t${String(i).padStart(4, '0')}`, metaManifest));

    log(`  ${p.catalog.repos} repositories for the catalog`);
    await parallel(p.catalog.repos, p.seedConcurrency, async (i) => {
      const repo = `bench/catalog/r${String(i).padStart(4, '0')}`;
      await mountBlob(client, repo, META_REPO, metaConfig.digest);
      await mountBlob(client, repo, META_REPO, metaLayer.digest);
      await putManifest(client, repo, 'latest', metaManifest);
    });

    log(`  ${p.mixed.seedImages} images for the mixed workload's pullers`);
    const mixedImages = Array.from({ length: p.mixed.seedImages }, (_, i) => `img${i}`);
    await parallel(mixedImages.length, p.seedConcurrency, (i) => pushImage(client, ctx, `${MIXED_REPO}/pull`, mixedImages[i] as string, `seed-${i}`));

    return { pullBlob, metaConfig, metaLayer, metaManifestDigest, mixedImages };
  } finally {
    client.close();
  }
}

/** Runs `op` with a fresh keep-alive client of `concurrency` sockets, closed afterwards. */
/** One client, one operation at a time, within the scenario's budget (or the given time). */
function oneAtATime(target: SeededTarget, budget: { readonly maxOps: number; readonly maxMs: number }, maxMs: number | undefined, op: (client: Client) => Promise<number>): Promise<LoadResult> {
  return withClient(target, 1, (client) => runLoad({ concurrency: 1, maxOps: budget.maxOps, maxMs: maxMs ?? budget.maxMs, op: () => op(client) }));
}

async function withClient(target: SeededTarget, concurrency: number, fn: (client: Client) => Promise<LoadResult>): Promise<LoadResult> {
  const client = new Client(target.baseUrl, concurrency);
  try {
    return await fn(client);
  } finally {
    client.close();
  }
}

function requestScenario(
  id: string,
  title: string,
  goal: number,
  concurrency: number,
  op: (client: Client, target: SeededTarget, ctx: Context, i: number) => Promise<unknown>,
  describe?: Scenario['describe'],
): Scenario {
  return {
    id,
    title,
    unit: 'req/s',
    goal,
    concurrency,
    run: (target, ctx, maxMs) =>
      withClient(target, concurrency, (client) =>
        runLoad({
          concurrency,
          maxOps: 1_000_000,
          maxMs: maxMs ?? ctx.params.requestMs,
          op: async (i) => {
            await op(client, target, ctx, i);
            return 0;
          },
        }),
      ),
    ...(describe ? { describe } : {}),
  };
}

async function countEntries(target: SeededTarget, path: string, key: string): Promise<string> {
  const client = new Client(target.baseUrl, 1);
  try {
    const res = await client.request('GET', path, { keepBody: true, expect: [200] });
    const list = (JSON.parse((res.body as Buffer).toString('utf8')) as Record<string, unknown>)[key];
    const link = res.headers.link ? ', Link: next page' : '';
    return `${Array.isArray(list) ? list.length : 0} entries, ${res.bytes} B${link}`;
  } finally {
    client.close();
  }
}

export function scenarios(p: Params): Scenario[] {
  const monoTitle = `blob push monolithic ${formatBytes(p.mono1.size)} (POST + PUT with body)`;
  return [
    {
      id: 'push-mono-small',
      title: monoTitle,
      unit: 'MB/s',
      goal: 1,
      concurrency: 1,
      run: (target, ctx, maxMs) => oneAtATime(target, ctx.params.mono1, maxMs, (client) => pushPostPut(client, 'bench/push-mono', ctx.families.mono1.variant(`mono1-${ctx.seq()}`))),
    },
    {
      id: 'push-post-digest',
      title: `blob push single request ${formatBytes(p.mono1.size)} (POST ?digest= with body; Berth only)`,
      unit: 'MB/s',
      goal: undefined,
      concurrency: 1,
      only: 'berth',
      run: (target, ctx, maxMs) => oneAtATime(target, ctx.params.mono1, maxMs, (client) => pushPostDigest(client, 'bench/push-post-digest', ctx.families.mono1.variant(`postdigest-${ctx.seq()}`))),
    },
    {
      id: 'push-mono-big',
      title: `blob push monolithic ${formatBytes(p.mono64.size)} (POST + PUT with body)`,
      unit: 'MB/s',
      goal: 1,
      concurrency: 1,
      run: (target, ctx, maxMs) => oneAtATime(target, ctx.params.mono64, maxMs, (client) => pushPostPut(client, 'bench/push-mono', ctx.families.big.variant(`mono64-${ctx.seq()}`))),
    },
    {
      id: 'push-chunked',
      title: `blob push chunked ${formatBytes(p.chunked.size)} (POST, PATCH ${formatBytes(p.chunked.chunk)} with Content-Range, PUT)`,
      unit: 'MB/s',
      goal: 1,
      concurrency: 1,
      run: (target, ctx, maxMs) => oneAtATime(target, ctx.params.chunked, maxMs, (client) => pushChunked(client, 'bench/push-chunked', ctx.families.big.variant(`chunked-${ctx.seq()}`), ctx.params.chunked.chunk)),
    },
    {
      id: 'push-concurrent',
      title: `blob push concurrent ${p.concurrent.concurrency} × ${formatBytes(p.concurrent.size)} (POST + PUT)`,
      unit: 'MB/s',
      goal: 1,
      concurrency: p.concurrent.concurrency,
      run: (target, ctx, maxMs) =>
        withClient(target, ctx.params.concurrent.concurrency, (client) =>
          runLoad({
            concurrency: ctx.params.concurrent.concurrency,
            maxOps: ctx.params.concurrent.maxOps,
            maxMs: maxMs ?? ctx.params.concurrent.maxMs,
            op: () => pushPostPut(client, 'bench/push-concurrent', ctx.families.concurrent.variant(`conc-${ctx.seq()}`)),
          }),
        ),
    },
    {
      id: 'pull-full',
      title: `blob pull full ${formatBytes(p.pull.size)} (GET)`,
      unit: 'MB/s',
      goal: 1,
      concurrency: 1,
      run: (target, ctx, maxMs) =>
        withClient(target, 1, (client) =>
          runLoad({
            concurrency: 1,
            maxOps: ctx.params.pull.maxOps,
            maxMs: maxMs ?? ctx.params.pull.maxMs,
            op: async () => {
              const blob = target.seed.pullBlob;
              const res = await client.request('GET', `/v2/${PULL_REPO}/blobs/${blob.digest}`, { expect: [200] });
              if (res.bytes !== blob.size) throw new Error(`pulled ${res.bytes} of ${blob.size} bytes`);
              return res.bytes;
            },
          }),
        ),
    },
    requestScenario(
      'pull-ranged',
      `blob pull ranged (GET Range of ${formatBytes(p.ranged.piece)} pieces of the ${formatBytes(p.pull.size)} blob)`,
      1,
      p.ranged.concurrency,
      async (client, target, ctx, i) => {
        const blob = target.seed.pullBlob;
        const piece = ctx.params.ranged.piece;
        const pieces = Math.floor(blob.size / piece);
        const start = ((i * 7919) % pieces) * piece;
        const res = await client.request('GET', `/v2/${PULL_REPO}/blobs/${blob.digest}`, { headers: { range: `bytes=${start}-${start + piece - 1}` }, expect: [206] });
        if (res.bytes !== piece) throw new Error(`ranged GET returned ${res.bytes} of ${piece} bytes`);
      },
    ),
    requestScenario('head-blob', 'HEAD blob', 2, p.headConcurrency, (client, target) =>
      client.request('HEAD', `/v2/${META_REPO}/blobs/${target.seed.metaLayer.digest}`, { expect: [200] }),
    ),
    requestScenario('manifest-get-tag', 'manifest GET by tag', 2, p.manifestConcurrency, (client) =>
      client.request('GET', `/v2/${META_REPO}/manifests/latest`, { headers: { accept: MANIFEST_ACCEPT }, expect: [200] }),
    ),
    requestScenario('manifest-get-digest', 'manifest GET by digest', 2, p.manifestConcurrency, (client, target) =>
      client.request('GET', `/v2/${META_REPO}/manifests/${target.seed.metaManifestDigest}`, { headers: { accept: MANIFEST_ACCEPT }, expect: [200] }),
    ),
    requestScenario('manifest-head-tag', 'manifest HEAD by tag', 2, p.manifestConcurrency, (client) =>
      client.request('HEAD', `/v2/${META_REPO}/manifests/latest`, { headers: { accept: MANIFEST_ACCEPT }, expect: [200] }),
    ),
    requestScenario('manifest-head-digest', 'manifest HEAD by digest', 2, p.manifestConcurrency, (client, target) =>
      client.request('HEAD', `/v2/${META_REPO}/manifests/${target.seed.metaManifestDigest}`, { headers: { accept: MANIFEST_ACCEPT }, expect: [200] }),
    ),
    requestScenario('manifest-put', 'manifest PUT (new manifest and tag each time)', 1, p.manifestPutConcurrency, (client, target, ctx) => {
      const n = ctx.seq();
      const manifest = imageManifest(descriptor(OCI_CONFIG, target.seed.metaConfig), [descriptor(OCI_LAYER, target.seed.metaLayer)], { 'bench.seq': String(n) });
      return putManifest(client, MPUT_REPO, `m${n}`, manifest);
    }),
    requestScenario(
      'tags-list-n',
      `tags list, ${p.tags.count} tags, ?n=${p.tags.n}`,
      2,
      p.tags.concurrency,
      (client, _target, ctx) => client.request('GET', `/v2/${TAGS_REPO}/tags/list?n=${ctx.params.tags.n}`, { expect: [200] }),
      (target, ctx) => countEntries(target, `/v2/${TAGS_REPO}/tags/list?n=${ctx.params.tags.n}`, 'tags'),
    ),
    requestScenario(
      'tags-list-all',
      `tags list, ${p.tags.count} tags, whole list`,
      2,
      p.tags.concurrency,
      (client) => client.request('GET', `/v2/${TAGS_REPO}/tags/list`, { expect: [200] }),
      (target) => countEntries(target, `/v2/${TAGS_REPO}/tags/list`, 'tags'),
    ),
    requestScenario(
      'catalog',
      `catalog, ~${p.catalog.repos} repositories (?n=1000)`,
      1,
      p.catalog.concurrency,
      (client) => client.request('GET', '/v2/_catalog?n=1000', { expect: [200] }),
      (target) => countEntries(target, '/v2/_catalog?n=1000', 'repositories'),
    ),
    {
      id: 'mixed',
      title: `mixed: ${p.mixed.pushers} pushers + ${p.mixed.pullers} pullers of small images (${p.mixed.layerSizes.length} layers of ${p.mixed.layerSizes.map(formatBytes).join(', ')} + config + manifest)`,
      unit: 'img/s',
      goal: 1,
      concurrency: p.mixed.pushers + p.mixed.pullers,
      run: (target, ctx, maxMs) => {
        const m = ctx.params.mixed;
        return withClient(target, m.pushers + m.pullers, (client) =>
          runMixed([
            {
              concurrency: m.pushers,
              maxOps: m.pushes,
              maxMs: maxMs ?? m.maxMs,
              op: () => {
                const n = ctx.seq();
                return pushImage(client, ctx, `${MIXED_REPO}/push`, `i${n}`, `mixed-${n}`);
              },
            },
            {
              concurrency: m.pullers,
              maxOps: m.pulls,
              maxMs: maxMs ?? m.maxMs,
              op: (i) => pullImage(client, `${MIXED_REPO}/pull`, target.seed.mixedImages[i % target.seed.mixedImages.length] as string),
            },
          ]),
        );
      },
    },
  ];
}
