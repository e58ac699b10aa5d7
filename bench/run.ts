/**
 * `npm run bench [-- flags]`: Berth against the reference registry (Debian's docker-registry),
 * both on loopback, the same scenarios interleaved round by round. Prints a Markdown report on
 * stdout (progress goes to stderr); --write also (re)writes BENCHMARKS.md.
 *
 *   --quick          short run: fewer rounds, small counts, a smaller memory blob, no profile pass
 *   --no-memory      skip the large-blob memory scenario
 *   --no-profile     skip the profiled pass over rows below goal
 *   --profile-all    profile every row, not only those below goal
 *   --only a,b       run only these: scenario ids (see bench/scenarios.ts), `auth` (the auth-overhead
 *                    section, bench/auth.ts), `memory` (the large-blob scenario); default all of them
 *   --rounds N       measured rounds per scenario and registry (also of the auth section)
 *   --write          write BENCHMARKS.md: the whole file when scenarios against the reference ran
 *                    (keeping the auth section of the file when this run had none); only the auth
 *                    section when that is all that ran (`--only auth --write`)
 *   --keep           keep the temporary folder (data, logs, profile) instead of deleting it
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { ADMIN_BASIC, AUTH_FRAMES, AUTH_HEADING, AUTH_SECTION_ID, type AuthRow, type AuthRun, type AuthServer, authBelowGoal, authScenarios, checkAuthSetup, measureAuth, pullToken, seedAuth } from './auth.ts';
import { Client } from './http.ts';
import { pushStreamed } from './oci.ts';
import { FULL, formatBytes, type Params, QUICK } from './params.ts';
import { cpuSeconds, machineBusySeconds, rssBytes, sampleRss, selfCpuSeconds } from './procfs.ts';
import { monotonicMicros, Profile, type Window } from './profile.ts';
import { loadAverage, type Machine, machineInfo, renderAuthSection, renderReport } from './report.ts';
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
const params: Params = flags.rounds ? { ...base, rounds: Number(flags.rounds), auth: { ...base.auth, rounds: Number(flags.rounds) } } : base;
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
      const endUs = monotonicMicros();
      windows.set(row, { startUs, endUs });
      log(`  ${row.scenario.id}: ${load.ops} operations profiled (monotonic window ${startUs}–${endUs} µs)`);
    }
  } finally {
    await stopped(berth);
  }
  const profile = readProfile(profileDir);
  if (!profile) return false;
  for (const [row, window] of windows) row.profile = profile.summarize(window);
  return true;
}

function readProfile(profileDir: string): Profile | undefined {
  const file = existsSync(profileDir) ? readdirSync(profileDir).find((f) => f.endsWith('.cpuprofile')) : undefined;
  if (!file) {
    log('  no .cpuprofile was written (did Berth exit gracefully?)');
    return undefined;
  }
  return new Profile(path.join(profileDir, file));
}

/**
 * The auth section, on fresh servers (the same start for all, whatever ran before): a Berth without
 * auth (the baseline), a second one (the control) and one with auth on, seeded alike, rows interleaved.
 */
async function authSection(ctx: Context): Promise<{ run: AuthRun; checks: string[]; machine: Machine; seconds: number }> {
  const machine = machineInfo();
  const t0 = performance.now();
  const servers: Partial<Record<AuthServer, Server>> = {};
  try {
    servers.plain = await started(startBerth(workDir, { label: 'berth-noauth' }));
    servers.control = await started(startBerth(workDir, { label: 'berth-control' }));
    servers.auth = await started(startBerth(workDir, { label: 'berth-auth', auth: true }));
    const all = servers as Record<AuthServer, Server>;
    log(`auth overhead: berth-noauth pid ${all.plain.pid}, berth-control pid ${all.control.pid}, berth-auth pid ${all.auth.pid}`);
    const digests = {
      plain: await seedAuth(all.plain.baseUrl, ctx, false),
      control: await seedAuth(all.control.baseUrl, ctx, false),
      auth: await seedAuth(all.auth.baseUrl, ctx, true),
    };
    const { lines: checks, token } = await checkAuthSetup(all, digests);
    const run = await measureAuth({
      scenarios: authScenarios(params.manifestConcurrency),
      servers: all,
      tokens: { plain: '', control: '', auth: token },
      busyPids: [...running].map((s) => s.pid),
      rounds: params.auth.rounds,
      requestMs: params.auth.requestMs,
      warmupMs: params.auth.warmupMs,
      log,
    });
    for (const row of run.rows) {
      const t = row.summary;
      log(
        `${row.scenario.id.padEnd(22)} req/s ${fmt(t?.value ?? Number.NaN).padStart(7)}  vs no-auth ${row.pairedRatio.toFixed(2)} (ratio of medians ${row.ratio.toFixed(2)})  CPU ${t?.cpuPerUnitUs.toFixed(0)} µs/req${(t?.errors ?? 0) > 0 ? `  ERRORS: ${t?.errors} ${t?.firstError}` : ''}`,
      );
      log(`    rounds: ${row.perRound.map((r) => `${fmt(r.value)}/${r.cpuUs.toFixed(0)}µs`).join(' ')}`);
    }
    machine.loadEnd = loadAverage();
    return { run, checks, machine, seconds: (performance.now() - t0) / 1000 };
  } finally {
    await Promise.all(Object.values(servers).map((s) => stopped(s)));
  }
}

/**
 * Runs the authenticated manifest GETs (every row with auth on, with --profile-all; and any row
 * below goal) once more against a Berth with auth started with --cpu-prof: where the time goes.
 */
async function profileAuth(rows: readonly AuthRow[], ctx: Context): Promise<boolean> {
  const chosen = rows.filter((r) => r.scenario.server === 'auth' && (flags['profile-all'] || r.scenario.goal !== undefined || authBelowGoal(r)));
  if (chosen.length === 0) return false;
  const profileDir = path.join(workDir, 'cpu-profile-auth');
  log(`profiled pass: ${chosen.length} auth row(s) against a Berth with auth started with --cpu-prof`);
  const berth = await started(startBerth(workDir, { label: 'berth-auth-profiled', auth: true, nodeArgs: ['--cpu-prof', '--cpu-prof-dir', profileDir, '--cpu-prof-interval', '250'] }));
  const windows = new Map<AuthRow, Window>();
  try {
    await seedAuth(berth.baseUrl, ctx, true);
    const token = await pullToken(berth.baseUrl, ADMIN_BASIC);
    for (const row of chosen) {
      await row.scenario.run(berth.baseUrl, token, params.auth.warmupMs);
      const startUs = monotonicMicros();
      const load = await row.scenario.run(berth.baseUrl, token, params.profileMs);
      const endUs = monotonicMicros();
      windows.set(row, { startUs, endUs });
      log(`  ${row.scenario.id}: ${load.ops} operations profiled (monotonic window ${startUs}–${endUs} µs)`);
    }
  } finally {
    await stopped(berth);
  }
  const profile = readProfile(profileDir);
  if (!profile) return false;
  for (const [row, window] of windows) row.profile = profile.summarize(window, 8, AUTH_FRAMES);
  return true;
}

/** The section of a Markdown document from its `## ` heading to the next one (or the end), or undefined. */
function sectionOf(doc: string, heading: string): { start: number; end: number } | undefined {
  const start = doc.startsWith(`${heading}\n`) ? 0 : doc.indexOf(`\n${heading}\n`) + 1;
  if (start <= 0 && !doc.startsWith(`${heading}\n`)) return undefined;
  const next = doc.indexOf('\n## ', start + heading.length);
  return { start, end: next < 0 ? doc.length : next + 1 };
}

/**
 * `doc` with every section of `old` that `doc` lacks appended: sections other scripts write
 * (bench/gc.ts, bench/audit.ts) survive a full rewrite by this one.
 */
function withOtherSections(doc: string, old: string): string {
  let out = doc;
  for (const match of old.matchAll(/^## .*$/gm)) {
    const heading = match[0];
    if (sectionOf(out, heading)) continue;
    const at = sectionOf(old, heading);
    if (at) out = `${out.replace(/\n*$/, '\n\n')}${old.slice(at.start, at.end).replace(/\n+$/, '\n')}`;
  }
  return out;
}

/** `doc` with its auth section replaced by `section` (inserted before "## Below goal", or appended, when it has none). */
function withAuthSection(doc: string, section: string): string {
  const body = section.endsWith('\n') ? section : `${section}\n`;
  const at = sectionOf(doc, AUTH_HEADING);
  if (at) return `${doc.slice(0, at.start)}${body}${at.end < doc.length ? '\n' : ''}${doc.slice(at.end).replace(/^\n+/, '')}`;
  const below = doc.indexOf('\n## Below goal\n');
  if (below >= 0) return `${doc.slice(0, below + 1)}${body}\n${doc.slice(below + 1)}`;
  return `${doc.replace(/\n*$/, '\n\n')}${body}`;
}

async function main(): Promise<void> {
  const t0 = performance.now();
  const machine = machineInfo();
  const ctx = new Context(params);
  const all = scenarios(params);
  const only = flags.only ? new Set(flags.only.split(',').map((s) => s.trim())) : undefined;
  const known = [...all.map((s) => s.id), AUTH_SECTION_ID, 'memory'];
  if (only) {
    const unknown = [...only].filter((id) => !known.includes(id));
    if (unknown.length > 0) throw new Error(`unknown scenario(s) ${unknown.join(', ')}; known: ${known.join(', ')}`);
  }
  const selected = only ? all.filter((s) => only.has(s.id)) : all;
  const runAuth = !only || only.has(AUTH_SECTION_ID);
  const runMemory = !flags['no-memory'] && (!only || only.has('memory'));
  log(
    `berth bench (${params.mode}): ${selected.length} scenarios × ${params.rounds} rounds${runAuth ? `, auth section × ${params.auth.rounds} rounds` : ''}${runMemory ? ', memory' : ''}, work folder ${workDir}`,
  );

  const rows: Row[] = [];
  let berth: Server | undefined;
  let reference: Server | undefined;
  const rssAfter: Record<TargetName, number | undefined> = { reference: undefined, berth: undefined };
  if (selected.length > 0) {
    const ref = await started(startReference(workDir));
    const b = await started(startBerth(workDir));
    reference = ref;
    berth = b;
    log(`reference ${ref.baseUrl} (pid ${ref.pid}), berth ${b.baseUrl} (pid ${b.pid})`);
    rows.push(...(await referenceScenarios(selected, { reference: ref, berth: b }, ctx)));
    rssAfter.reference = safeRss(ref.pid);
    rssAfter.berth = safeRss(b.pid);
  }

  machine.loadEnd = loadAverage();
  if (reference) await stopped(reference);
  if (berth) await stopped(berth);

  const auth = runAuth ? await authSection(ctx) : undefined;

  // The large blob goes to freshly started servers, so the peak shows the streaming path rather than
  // what the scenarios above left in the heap; the long-running servers' RSS is reported beside it.
  const memory: MemoryResult[] = [];
  if (runMemory) {
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

  const profiling = !flags['no-profile'] && !flags.quick;
  const profiled = profiling ? await profilePass(rows, ctx) : false;
  const authProfiled = profiling && auth ? await profileAuth(auth.run.rows, ctx) : false;

  const authText = auth
    ? renderAuthSection({ machine: auth.machine, command: commandLine(), run: auth.run, checks: auth.checks, durationSeconds: auth.seconds, profiled: authProfiled })
    : undefined;
  const ranReference = selected.length > 0 || memory.length > 0;
  const report = ranReference
    ? renderReport({
        machine,
        params,
        rows,
        memory,
        durationSeconds: (performance.now() - t0) / 1000,
        profiled,
        authSection: authText,
      })
    : authText;
  log('report rendered');
  if (report !== undefined) process.stdout.write(report);
  if (flags.write) {
    const file = path.join(REPO_ROOT, 'BENCHMARKS.md');
    const old = existsSync(file) ? readFileSync(file, 'utf8') : '';
    if (ranReference) {
      // Keep the file's auth section when this run did not measure one.
      const kept = authText === undefined ? sectionOf(old, AUTH_HEADING) : undefined;
      const rewritten = kept ? withAuthSection(report as string, old.slice(kept.start, kept.end).replace(/\n+$/, '\n')) : (report as string);
      writeFileSync(file, withOtherSections(rewritten, old));
      log('wrote BENCHMARKS.md');
    } else if (authText !== undefined) {
      writeFileSync(file, withAuthSection(old, authText));
      log('wrote the auth section of BENCHMARKS.md (the rest is unchanged)');
    }
  }
}

/** How this run was started, for the report. */
function commandLine(): string {
  return ['node bench/run.ts', ...process.argv.slice(2)].join(' ');
}

/** The scenarios against the reference: seeding both registries, then every row interleaved round by round. */
async function referenceScenarios(selected: readonly Scenario[], servers: Record<TargetName, Server>, ctx: Context): Promise<Row[]> {
  const targets = {} as Record<TargetName, SeededTarget>;
  for (const server of [servers.reference, servers.berth]) {
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

  return rows;
}

try {
  await main();
} catch (err) {
  if (!interrupted) log(`bench failed: ${(err as Error).stack ?? String(err)}`);
  process.exitCode = 1;
} finally {
  await cleanup();
}
