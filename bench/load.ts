/**
 * An autocannon-like closed loop: `concurrency` workers each run one operation at a time until
 * `maxOps` operations were started or `maxMs` went by, whichever comes first. Every operation's
 * latency is recorded; errors are counted (and the first one kept) rather than thrown, so one bad
 * reply cannot lose a whole measurement.
 */

export interface LoadOptions {
  readonly concurrency: number;
  readonly maxOps: number;
  readonly maxMs: number;
  /** One operation; resolves to the payload bytes it moved (0 for request-count scenarios). */
  readonly op: (index: number, worker: number) => Promise<number>;
}

export interface LoadResult {
  readonly ops: number;
  readonly errors: number;
  readonly firstError: string | undefined;
  readonly elapsedMs: number;
  readonly bytes: number;
  readonly latenciesMs: number[];
}

export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  const started = performance.now();
  const deadline = started + options.maxMs;
  const latencies: number[] = [];
  let next = 0;
  let errors = 0;
  let bytes = 0;
  let firstError: string | undefined;
  const worker = async (w: number) => {
    while (next < options.maxOps && performance.now() < deadline) {
      const index = next++;
      const t0 = performance.now();
      try {
        // Not `bytes += await …`: that reads `bytes` before the await and loses other workers' bytes.
        const moved = await options.op(index, w);
        bytes += moved;
        latencies.push(performance.now() - t0);
      } catch (err) {
        errors++;
        firstError ??= (err as Error).message;
      }
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, (_, w) => worker(w)));
  return { ops: latencies.length, errors, firstError, elapsedMs: performance.now() - started, bytes, latenciesMs: latencies };
}

/** Runs several loads at once (e.g. pushers and pullers) and merges them into one result. */
export async function runMixed(loads: readonly LoadOptions[]): Promise<LoadResult> {
  const started = performance.now();
  const results = await Promise.all(loads.map((l) => runLoad(l)));
  return {
    ops: results.reduce((n, r) => n + r.ops, 0),
    errors: results.reduce((n, r) => n + r.errors, 0),
    firstError: results.find((r) => r.firstError)?.firstError,
    elapsedMs: performance.now() - started,
    bytes: results.reduce((n, r) => n + r.bytes, 0),
    latenciesMs: results.flatMap((r) => r.latenciesMs),
  };
}

/** The q-quantile (0..1) of the values, nearest-rank. */
export function quantile(values: readonly number[], q: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[rank] as number;
}

export function median(values: readonly number[]): number {
  const finite = values.filter((v) => Number.isFinite(v));
  if (finite.length === 0) return Number.NaN;
  const sorted = [...finite].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}
