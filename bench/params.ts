/** Sizes, counts and time bounds of a run: the full run and the quick one (--quick). */

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

export interface Params {
  readonly mode: 'full' | 'quick';
  /** Measured rounds per scenario and registry; the median is reported. */
  readonly rounds: number;
  /** Unmeasured warm-up per scenario and registry. */
  readonly warmupMs: number;
  /** Time bound of one request-rate measurement. */
  readonly requestMs: number;
  readonly mono1: { readonly size: number; readonly maxOps: number; readonly maxMs: number };
  readonly mono64: { readonly size: number; readonly maxOps: number; readonly maxMs: number };
  readonly chunked: { readonly size: number; readonly chunk: number; readonly maxOps: number; readonly maxMs: number };
  readonly concurrent: { readonly size: number; readonly concurrency: number; readonly maxOps: number; readonly maxMs: number };
  readonly pull: { readonly size: number; readonly maxOps: number; readonly maxMs: number };
  readonly ranged: { readonly piece: number; readonly concurrency: number };
  readonly headConcurrency: number;
  readonly manifestConcurrency: number;
  readonly manifestPutConcurrency: number;
  readonly tags: { readonly count: number; readonly n: number; readonly concurrency: number };
  readonly catalog: { readonly repos: number; readonly concurrency: number };
  readonly mixed: {
    readonly pushers: number;
    readonly pullers: number;
    readonly pushes: number;
    readonly pulls: number;
    readonly layerSizes: readonly number[];
    readonly seedImages: number;
    readonly maxMs: number;
  };
  readonly memory: { readonly size: number; readonly chunk: number };
  /**
   * The auth-overhead section (bench/auth.ts): rounds, length of one measurement and of each row's
   * warm-up. More rounds than the other rows: its goal is a 10% margin, finer than the noise of a
   * single round; a longer warm-up, as `--only auth` starts from cold servers.
   */
  readonly auth: { readonly rounds: number; readonly requestMs: number; readonly warmupMs: number };
  /** Length of each scenario's window in the profiled pass. */
  readonly profileMs: number;
  readonly seedConcurrency: number;
}

export const FULL: Params = {
  mode: 'full',
  rounds: 5,
  warmupMs: 300,
  requestMs: 1000,
  mono1: { size: 1 * MiB, maxOps: 400, maxMs: 1500 },
  mono64: { size: 64 * MiB, maxOps: 4, maxMs: 4000 },
  chunked: { size: 64 * MiB, chunk: 8 * MiB, maxOps: 4, maxMs: 4000 },
  concurrent: { size: 16 * MiB, concurrency: 8, maxOps: 16, maxMs: 6000 },
  pull: { size: 64 * MiB, maxOps: 10, maxMs: 2000 },
  ranged: { piece: 1 * MiB, concurrency: 8 },
  headConcurrency: 16,
  manifestConcurrency: 16,
  manifestPutConcurrency: 4,
  tags: { count: 500, n: 100, concurrency: 8 },
  catalog: { repos: 200, concurrency: 8 },
  mixed: { pushers: 4, pullers: 4, pushes: 32, pulls: 64, layerSizes: [32 * KiB, 256 * KiB, 1 * MiB], seedImages: 16, maxMs: 8000 },
  memory: { size: 2 * GiB, chunk: 1 * MiB },
  auth: { rounds: 24, requestMs: 400, warmupMs: 1000 },
  profileMs: 1500,
  seedConcurrency: 8,
};

export const QUICK: Params = {
  mode: 'quick',
  rounds: 2,
  warmupMs: 100,
  requestMs: 250,
  mono1: { size: 1 * MiB, maxOps: 40, maxMs: 400 },
  mono64: { size: 64 * MiB, maxOps: 1, maxMs: 2000 },
  chunked: { size: 64 * MiB, chunk: 8 * MiB, maxOps: 1, maxMs: 2000 },
  concurrent: { size: 8 * MiB, concurrency: 8, maxOps: 8, maxMs: 3000 },
  pull: { size: 64 * MiB, maxOps: 3, maxMs: 500 },
  ranged: { piece: 1 * MiB, concurrency: 8 },
  headConcurrency: 16,
  manifestConcurrency: 16,
  manifestPutConcurrency: 4,
  tags: { count: 300, n: 100, concurrency: 8 },
  catalog: { repos: 100, concurrency: 8 },
  mixed: { pushers: 4, pullers: 4, pushes: 8, pulls: 16, layerSizes: [32 * KiB, 256 * KiB, 1 * MiB], seedImages: 8, maxMs: 2000 },
  memory: { size: 256 * MiB, chunk: 1 * MiB },
  auth: { rounds: 2, requestMs: 250, warmupMs: 250 },
  profileMs: 500,
  seedConcurrency: 8,
};

export function formatBytes(bytes: number): string {
  if (bytes >= GiB && bytes % GiB === 0) return `${bytes / GiB} GiB`;
  if (bytes >= MiB && bytes % MiB === 0) return `${bytes / MiB} MiB`;
  if (bytes >= KiB && bytes % KiB === 0) return `${bytes / KiB} KiB`;
  return `${bytes} B`;
}
