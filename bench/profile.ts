/**
 * Reads a V8 .cpuprofile written by `node --cpu-prof` and summarises the samples that fall in a
 * time window: how busy the main thread was, which components appear on the stack (inclusive
 * share), and the functions with the most self time. V8 stamps samples with the monotonic clock
 * in microseconds, the same clock as process.hrtime, so windows recorded by the benchmark
 * process line up with the server's samples.
 */
import { readFileSync } from 'node:fs';

interface CallFrame {
  readonly functionName: string;
  readonly url: string;
  readonly lineNumber: number;
}

interface ProfileNode {
  readonly id: number;
  readonly callFrame: CallFrame;
  readonly children?: readonly number[];
}

interface CpuProfile {
  readonly nodes: readonly ProfileNode[];
  readonly startTime: number;
  readonly endTime: number;
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

/** Monotonic microseconds, comparable with the profile's timestamps. */
export function monotonicMicros(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

export interface Window {
  readonly startUs: number;
  readonly endUs: number;
}

export interface ProfileSummary {
  readonly samples: number;
  /** Share of samples where the main thread was not idle. */
  readonly busy: number;
  /** Inclusive share of busy samples per component (a sample counts once per component on its stack). */
  readonly components: readonly { readonly name: string; readonly share: number }[];
  /** Self time share of busy samples, top functions. */
  readonly topSelf: readonly { readonly frame: string; readonly share: number }[];
  /** With a focus: the functions it selects, by inclusive share of busy samples (a function counts once per sample). */
  readonly focus?: readonly { readonly frame: string; readonly share: number }[];
}

/** Selects the frames of a profile's focus (e.g. the auth code). */
export type FrameTest = (frame: { readonly functionName: string; readonly url: string }) => boolean;

/** Components, matched against every frame's URL (and a few special V8 frames by name). */
const COMPONENTS: readonly { readonly name: string; readonly test: (f: CallFrame) => boolean }[] = [
  { name: 'SQL: Kysely + node:sqlite (src/platform/db, kysely)', test: (f) => f.url.includes('/node_modules/kysely/') || f.url.includes('/src/platform/db/') },
  { name: 'registry store queries (src/registry/store.ts)', test: (f) => f.url.endsWith('/src/registry/store.ts') },
  { name: 'logging (pino, sonic-boom)', test: (f) => /\/node_modules\/(pino|sonic-boom|pino-std-serializers|thread-stream)\//.test(f.url) },
  { name: 'metrics (prom-client)', test: (f) => f.url.includes('/node_modules/prom-client/') },
  { name: 'fastify (routing, hooks, reply)', test: (f) => /\/node_modules\/(fastify|find-my-way|avvio|light-my-request|fast-json-stringify|@fastify)\//.test(f.url) },
  { name: 'auth: token check, logins, RBAC (src/iam, jose)', test: (f) => f.url.includes('/src/iam/') || f.url.includes('/node_modules/jose/') },
  { name: 'projects (src/projects)', test: (f) => f.url.includes('/src/projects/') },
  { name: 'registry handlers (src/registry)', test: (f) => f.url.includes('/src/registry/') },
  { name: 'http server (src/platform/http)', test: (f) => f.url.includes('/src/platform/http/') },
  { name: 'blob storage (src/platform/storage)', test: (f) => f.url.includes('/src/platform/storage/') },
  { name: 'node http/net', test: (f) => /^node:(_http_|net$|internal\/(http|stream_base_commons|net))/.test(f.url) },
  { name: 'node streams', test: (f) => f.url.startsWith('node:internal/streams/') || f.url === 'node:stream' },
  { name: 'node fs', test: (f) => f.url.startsWith('node:internal/fs/') || f.url === 'node:fs' },
  { name: 'node crypto (hashing)', test: (f) => f.url.startsWith('node:internal/crypto/') },
  { name: 'garbage collection', test: (f) => f.functionName === '(garbage collector)' },
];

const IDLE = new Set(['(idle)', '(program)', '(root)']);

function shortUrl(url: string): string {
  const nm = url.lastIndexOf('/node_modules/');
  if (nm >= 0) return url.slice(nm + '/node_modules/'.length);
  const src = url.indexOf('/src/');
  if (src >= 0) return url.slice(src + 1);
  const bench = url.indexOf('/bench/');
  if (bench >= 0) return url.slice(bench + 1);
  return url;
}

export class Profile {
  readonly #nodes = new Map<number, ProfileNode>();
  readonly #parent = new Map<number, number>();
  readonly #times: number[] = [];
  readonly #samples: readonly number[];
  /** Per node: the components on its stack (memoised). */
  readonly #componentsOf = new Map<number, readonly string[]>();

  constructor(file: string) {
    const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
    for (const node of profile.nodes) {
      this.#nodes.set(node.id, node);
      for (const child of node.children ?? []) this.#parent.set(child, node.id);
    }
    let t = profile.startTime;
    for (const delta of profile.timeDeltas) {
      t += delta;
      this.#times.push(t);
    }
    this.#samples = profile.samples;
  }

  get startUs(): number {
    return this.#times[0] ?? 0;
  }

  get endUs(): number {
    return this.#times[this.#times.length - 1] ?? 0;
  }

  #components(id: number): readonly string[] {
    const memo = this.#componentsOf.get(id);
    if (memo) return memo;
    const node = this.#nodes.get(id);
    const parent = this.#parent.get(id);
    const inherited = parent === undefined ? [] : this.#components(parent);
    const own = node ? COMPONENTS.filter((c) => c.test(node.callFrame)).map((c) => c.name) : [];
    const result = own.length === 0 ? inherited : [...new Set([...inherited, ...own])];
    this.#componentsOf.set(id, result);
    return result;
  }

  /** Self frame label: the function, or for a native frame without a URL, "native name ← caller". */
  #selfLabel(id: number): string {
    const node = this.#nodes.get(id);
    if (!node) return '?';
    const f = node.callFrame;
    const name = f.functionName || '(anonymous)';
    if (f.url) return `${name} ${shortUrl(f.url)}:${f.lineNumber + 1}`;
    if (name.startsWith('(')) return name;
    let up = this.#parent.get(id);
    while (up !== undefined) {
      const parent = this.#nodes.get(up);
      if (parent?.callFrame.url) return `${name} (native) ← ${parent.callFrame.functionName || '(anonymous)'} ${shortUrl(parent.callFrame.url)}:${parent.callFrame.lineNumber + 1}`;
      up = this.#parent.get(up);
    }
    return `${name} (native)`;
  }

  summarize(window: Window, top = 8, focus?: FrameTest): ProfileSummary {
    let total = 0;
    let busy = 0;
    const components = new Map<string, number>();
    const self = new Map<string, number>();
    const focused = new Map<string, number>();
    for (let i = 0; i < this.#samples.length; i++) {
      const t = this.#times[i] as number;
      if (t < window.startUs || t > window.endUs) continue;
      total++;
      const id = this.#samples[i] as number;
      const node = this.#nodes.get(id);
      if (node && IDLE.has(node.callFrame.functionName)) continue;
      busy++;
      for (const c of this.#components(id)) components.set(c, (components.get(c) ?? 0) + 1);
      const label = this.#selfLabel(id);
      self.set(label, (self.get(label) ?? 0) + 1);
      if (focus) {
        const seen = new Set<string>();
        for (let up: number | undefined = id; up !== undefined; up = this.#parent.get(up)) {
          const f = this.#nodes.get(up)?.callFrame;
          if (!f?.url || !focus(f)) continue;
          const frame = `${f.functionName || '(anonymous)'} ${shortUrl(f.url)}:${f.lineNumber + 1}`;
          if (seen.has(frame)) continue;
          seen.add(frame);
          focused.set(frame, (focused.get(frame) ?? 0) + 1);
        }
      }
    }
    const share = (n: number) => (busy === 0 ? 0 : n / busy);
    return {
      samples: total,
      busy: total === 0 ? 0 : busy / total,
      components: [...components.entries()].sort((a, b) => b[1] - a[1]).map(([name, n]) => ({ name, share: share(n) })),
      topSelf: [...self.entries()]
        .sort((a, b) => b[1] - a[1])
        .slice(0, top)
        .map(([frame, n]) => ({ frame, share: share(n) })),
      ...(focus
        ? {
            focus: [...focused.entries()]
              .sort((a, b) => b[1] - a[1])
              .slice(0, top)
              .map(([frame, n]) => ({ frame, share: share(n) })),
          }
        : {}),
    };
  }
}
