/**
 * `npm run bench [-- flags]`: Berth against the reference registry (Debian's docker-registry),
 * both on loopback, the same scenarios interleaved round by round. Prints a Markdown report on
 * stdout (progress goes to stderr); --write also (re)writes BENCHMARKS.md.
 *
 *   --quick          short run: fewer rounds, small counts, a smaller memory blob, no profile pass
 *   --no-memory      skip the large-blob memory scenario
 *   --no-profile     skip the profiled pass over rows below goal
 *   --profile-all    profile every row, not only those below goal
 *   --only a,b       run only these scenario ids (see bench/scenarios.ts)
 *   --rounds N       measured rounds per scenario and registry
 *   --write          write BENCHMARKS.md
 *   --keep           keep the temporary folder (data, logs, profile) instead of deleting it
 */
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Client } from './http.ts';
import { pushStreamed } from './oci.ts';
import { FULL, formatBytes, type Params, QUICK } from './params.ts';
import { cpuSeconds, machineBusySeconds, rssBytes, sampleRss, selfCpuSeconds } from './procfs.ts';
import { monotonicMicros, Profile, type Window } from './profile.ts';
import { loadAverage, machineInfo, renderReport } from './report.ts';
import { belowGoal, type MemoryPhase, type MemoryResult, type Measurement, type Row, ratioOf, summarize, toMeasurement } from './results.ts';
import { Context, type Scenario, type SeededTarget, scenarios, seed } from './scenarios.ts';
import { type Server, startBerth, startReference, type TargetName } from './servers.ts';

const { values: flags } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    'no-memory': { type: 'boolean', default: false },
    'no-profile': { type: 'boolean', default: false },
    'profile-all': { type: 'boolean', default: false },
    only: { type: 'string' },
    rounds: { type: 'string' },
    write: { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
  },
});

const REPO_ROOT = path.resolve(import.meta.dirname, '..');
const base: Params = flags.quick ? QUICK : FULL;
if (flags.rounds !== undefined && !/^[1-9]\d*$/.test(flags.rounds)) {
  process.stderr.write(`--rounds must be a positive integer, got ${flags.rounds}\n`);
  process.exit(2);
}
const params: Params = flags.rounds ? { ...base, rounds: Number(flags.rounds) } : base;
const began = performance.now();
const log = (line: string) => process.stderr.write(`[${((performance.now() - began) / 1000).toFixed(0).padStart(3)} s] ${line}\n`);

const workDir = mkdtempSync(path.join(os.tmpdir(), 'berth-bench-'));
const running = new Set<Server>();
let cleaned = false;
let interrupted = false;

async function cleanup(): Promise<void> {
  if (cleaned) return;
  cleaned = true;
  await Promise.allSettled([...running].map((s) => s.stop()));
  running.clear();
  if (flags.keep) log(`kept ${workDir}`);
  else rmSync(workDir, { recursive: true, force: true });
  log('done');
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    interrupted = true;
    log(`${signal}: stopping the registries`);
    void cleanup().finally(() => process.exit(130));
  });
}

async function started(server: Promise<Server>): Promise<Server> {
  const s = await server;
  running.add(s);
  return s;
}

async function stopped(server: Server): Promise<void> {
  await server.stop();
  running.delete(server);
}

async function measure(scenario: Scenario, target: SeededTarget, servers: Record<TargetName, Server>, ctx: Context, round: number): Promise<Measurement> {
  const snapshot = () => ({
    reference: cpuSeconds(servers.reference.pid),
    berth: cpuSeconds(servers.berth.pid),
    client: selfCpuSeconds(),
    machine: machineBusySeconds(),
  });
  const before = snapshot();
  const load = await scenario.run(target, ctx);
  const after = snapshot();
  const d = (k: keyof typeof before) => after[k] - before[k];
  const cpu = { server: d(target.name), client: d('client'), other: d('machine') - d('reference') - d('berth') - d('client') };
  return toMeasurement(target.name, round, scenario.unit, load, cpu);
}

function safeRss(pid: number): number | undefined {
  try {
    return rssBytes(pid);
  } catch {
    return undefined;
  }
}

function fmt(v: number): string {
  return Number.isFinite(v) ? (v >= 100 ? v.toFixed(0) : v.toFixed(1)) : 'n/a';
}

async function memoryPhase(server: Server, fn: () => Promise<number>): Promise<MemoryPhase> {
  const sampler = sampleRss(server.pid, 50);
  const t0 = performance.now();
  let bytes = 0;
  try {
    bytes = await fn();
  } catch (err) {
    sampler.stop();
    throw err;
  }
  const peak = sampler.stop();
  const seconds = (performance.now() - t0) / 1000;
  return { peak, bytes, mbPerSecond: bytes / 1e6 / seconds };
}

async function memoryScenario(server: Server, ctx: Context, afterScenarios: number | undefined): Promise<MemoryResult> {
  const { size, chunk } = ctx.params.memory;
  const piece = ctx.pool.subarray(0, chunk);
  async function* source(): AsyncGenerator<Buffer> {
    for (let sent = 0; sent < size; sent += chunk) yield size - sent >= chunk ? piece : piece.subarray(0, size - sent);
  }
  const client = new Client(server.baseUrl, 1);
  try {
    let digest = '';
    const push = await memoryPhase(server, async () => {
      const pushed = await pushStreamed(client, 'bench/memory', source());
      digest = pushed.digest;
      return pushed.bytes;
    });
    const pull = await memoryPhase(server, async () => {
      const res = await client.request('GET', `/v2/bench/memory/blobs/${digest}`, { expect: [200] });
      if (res.bytes !== size) throw new Error(`pulled ${res.bytes} of ${size} bytes`);
      return res.bytes;
    });
    return { target: server.name, afterScenarios, push, pull };
  } finally {
    client.close();
  }
}

async function profilePass(rows: Row[], ctx: Context): Promise<boolean> {
  const chosen = flags['profile-all'] ? rows.filter((r) => r.scenario.only !== 'reference') : rows.filter(belowGoal);
  if (chosen.length === 0) return false;
  const profileDir = path.join(workDir, 'cpu-profile');
  log(`profiled pass: ${chosen.length} scenario(s) against a Berth started with --cpu-prof`);
  const berth = await started(startBerth(workDir, { label: 'berth-profiled', nodeArgs: ['--cpu-prof', '--cpu-prof-dir', profileDir, '--cpu-prof-interval', '250'] }));
  const windows = new Map<Row, Window>();
  try {
    const seeded: SeededTarget = { name: 'berth', baseUrl: berth.baseUrl, seed: await seed(berth.baseUrl, ctx, log) };
    for (const row of chosen) {
      await row.scenario.run(seeded, ctx, params.warmupMs);
      const startUs = monotonicMicros();
      const load = await row.scenario.run(seeded, ctx, params.profileMs);
      windows.set(row, { startUs, endUs: monotonicMicros() });
      log(`  ${row.scenario.id}: ${load.ops} operations profiled`);
    }
  } finally {
    await stopped(berth);
  }
  const file = readdirSync(profileDir).find((f) => f.endsWith('.cpuprofile'));
  if (!file) {
    log('  no .cpuprofile was written (did Berth exit gracefully?)');
    return false;
  }
  const profile = new Profile(path.join(profileDir, file));
  for (const [row, window] of windows) row.profile = profile.summarize(window);
  return true;
}

async function main(): Promise<void> {
  const t0 = performance.now();
  const machine = machineInfo();
  const ctx = new Context(params);
  const all = scenarios(params);
  const only = flags.only ? new Set(flags.only.split(',').map((s) => s.trim())) : undefined;
  if (only) {
    const unknown = [...only].filter((id) => !all.some((s) => s.id === id));
    if (unknown.length > 0) throw new Error(`unknown scenario(s) ${unknown.join(', ')}; known: ${all.map((s) => s.id).join(', ')}`);
  }
  const selected = only ? all.filter((s) => only.has(s.id)) : all;
  log(`berth bench (${params.mode}): ${selected.length} scenarios × ${params.rounds} rounds, work folder ${workDir}`);

  const reference = await started(startReference(workDir));
  const berth = await started(startBerth(workDir));
  log(`reference ${reference.baseUrl} (pid ${reference.pid}), berth ${berth.baseUrl} (pid ${berth.pid})`);

  const servers: Record<TargetName, Server> = { reference, berth };
  const targets = {} as Record<TargetName, SeededTarget>;
  for (const server of [reference, berth]) {
    log(`seeding ${server.name}`);
    targets[server.name] = { name: server.name, baseUrl: server.baseUrl, seed: await seed(server.baseUrl, ctx, log) };
  }

  const rows: Row[] = [];
  for (const scenario of selected) {
    const names: TargetName[] = scenario.only ? [scenario.only] : ['reference', 'berth'];
    const notes: Partial<Record<TargetName, string>> = {};
    if (scenario.describe) for (const name of names) notes[name] = await scenario.describe(targets[name], ctx);
    for (const name of names) await scenario.run(targets[name], ctx, params.warmupMs);
    const measured: Record<TargetName, Measurement[]> = { reference: [], berth: [] };
    for (let round = 0; round < params.rounds; round++) {
      const order = round % 2 === 0 ? names : [...names].reverse();
      for (const name of order) measured[name].push(await measure(scenario, targets[name], servers, ctx, round));
    }
    const row: Row = { scenario, reference: summarize(measured.reference), berth: summarize(measured.berth), notes };
    rows.push(row);
    const errors = [row.reference, row.berth].filter((s) => s && s.errors > 0).map((s) => s?.firstError);
    log(
      `${scenario.id.padEnd(20)} ${scenario.unit.padEnd(5)} ref ${fmt(row.reference?.value ?? Number.NaN).padStart(7)}  berth ${fmt(row.berth?.value ?? Number.NaN).padStart(7)}  ratio ${ratioOf(row).toFixed(2)}${errors.length ? `  ERRORS: ${errors.join(' | ')}` : ''}`,
    );
  }

  machine.loadEnd = loadAverage();
  const rssAfter: Record<TargetName, number | undefined> = { reference: safeRss(reference.pid), berth: safeRss(berth.pid) };
  await stopped(reference);
  await stopped(berth);

  // The large blob goes to freshly started servers, so the peak shows the streaming path rather than
  // what the scenarios above left in the heap; the long-running servers' RSS is reported beside it.
  const memory: MemoryResult[] = [];
  if (!flags['no-memory']) {
    for (const start of [() => startReference(workDir, { label: 'reference-memory' }), () => startBerth(workDir, { label: 'berth-memory' })]) {
      const server = await started(start());
      try {
        log(`memory: ${formatBytes(params.memory.size)} push + pull on a fresh ${server.name}`);
        const result = await memoryScenario(server, ctx, rssAfter[server.name]);
        memory.push(result);
        const mib = (n: number) => (n / 1024 / 1024).toFixed(0);
        log(`  push peak ${mib(result.push.peak.sampledPeak)} MiB (${fmt(result.push.mbPerSecond)} MB/s), pull peak ${mib(result.pull.peak.sampledPeak)} MiB (${fmt(result.pull.mbPerSecond)} MB/s)`);
      } finally {
        await stopped(server);
      }
    }
  }

  const profiled = !flags['no-profile'] && !flags.quick ? await profilePass(rows, ctx) : false;

  const report = renderReport({
    machine,
    params,
    rows,
    memory,
    durationSeconds: (performance.now() - t0) / 1000,
    profiled,
  });
  log('report rendered');
  process.stdout.write(report);
  if (flags.write) {
    writeFileSync(path.join(REPO_ROOT, 'BENCHMARKS.md'), report);
    log('wrote BENCHMARKS.md');
  }
}

try {
  await main();
} catch (err) {
  if (!interrupted) log(`bench failed: ${(err as Error).stack ?? String(err)}`);
  process.exitCode = 1;
} finally {
  await cleanup();
}
