/** The Markdown report: machine, method, results table, CPU detail, memory, rows below goal. */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { ANALYSIS, GENERAL_NOTES } from './analysis.ts';
import { formatBytes, type Params } from './params.ts';
import { belowGoal, MEMORY_GOAL_MIB, type MemoryResult, ratioOf, type Row, type TargetSummary } from './results.ts';
import { REFERENCE_BINARY } from './servers.ts';

export interface Machine {
  readonly date: string;
  readonly nproc: string;
  readonly cpu: string;
  readonly memory: string;
  readonly kernel: string;
  readonly node: string;
  readonly reference: string;
  readonly loadStart: string;
  loadEnd: string;
}

function run(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return 'unknown';
  }
}

export function loadAverage(): string {
  return os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(' / ');
}

export function machineInfo(): Machine {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  const meminfo = readFileSync('/proc/meminfo', 'utf8');
  const memKb = Number(/^MemTotal:\s+(\d+)/m.exec(meminfo)?.[1] ?? Number.NaN);
  return {
    date: run('date', []),
    nproc: run('nproc', []),
    cpu: /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1]?.trim() ?? 'unknown',
    memory: `${(memKb / 1024 / 1024).toFixed(1)} GiB`,
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    reference: run(REFERENCE_BINARY, ['--version']),
    loadStart: loadAverage(),
    loadEnd: '',
  };
}

function num(value: number, unit: string): string {
  if (!Number.isFinite(value)) return 'n/a';
  if (unit === 'MB/s') return value >= 100 ? value.toFixed(0) : value.toFixed(1);
  if (unit === 'img/s') return value.toFixed(1);
  return value >= 100 ? value.toFixed(0) : value.toFixed(1);
}

function ms(value: number): string {
  if (!Number.isFinite(value)) return 'n/a';
  return value < 10 ? value.toFixed(2) : value < 100 ? value.toFixed(1) : value.toFixed(0);
}

function ratio(value: number): string {
  return Number.isFinite(value) ? `${value.toFixed(2)}×` : 'n/a';
}

function pct(value: number): string {
  return Number.isFinite(value) ? `${(value * 100).toFixed(0)}%` : 'n/a';
}

function mib(bytes: number | undefined): string {
  return bytes === undefined || !Number.isFinite(bytes) ? 'n/a' : (bytes / 1024 / 1024).toFixed(0);
}

function latency(s: TargetSummary | undefined): string {
  return s ? `${ms(s.p50)} / ${ms(s.p99)}` : 'n/a';
}

function value(s: TargetSummary | undefined, unit: string, unsupportedNote?: string): string {
  if (!s) return unsupportedNote ?? 'n/a';
  const v = num(s.value, unit);
  return s.errors > 0 ? `${v} (${s.errors} errors)` : v;
}

export function resultsTable(rows: readonly Row[]): string {
  const lines = [
    '| # | scenario | c | unit | reference | Berth | Berth/ref | goal | ref p50 / p99 ms | Berth p50 / p99 ms |',
    '|---|---|---|---|---|---|---|---|---|---|',
  ];
  rows.forEach((row, i) => {
    const s = row.scenario;
    const r = ratioOf(row);
    const below = belowGoal(row);
    const ratioText = s.goal === undefined ? '—' : below ? `**${ratio(r)}**` : ratio(r);
    lines.push(
      `| ${i + 1} | ${s.title} | ${s.concurrency} | ${s.unit} | ${value(row.reference, s.unit, s.only === 'berth' ? 'unsupported¹' : undefined)} | ${value(row.berth, s.unit)} | ${ratioText} | ${s.goal === undefined ? 'info' : `≥ ${s.goal.toFixed(1)}×`} | ${latency(row.reference)} | ${latency(row.berth)} |`,
    );
  });
  return lines.join('\n');
}

export function detailTable(rows: readonly Row[]): string {
  const lines = [
    '| # | scenario | server CPU per unit, ref / Berth | server cores busy, ref / Berth | load generator cores, ref / Berth runs | other processes cores, ref / Berth runs | spread of rounds, ref / Berth | operations measured, ref / Berth | what the registries answered |',
    '|---|---|---|---|---|---|---|---|---|',
  ];
  rows.forEach((row, i) => {
    const s = row.scenario;
    const per = s.unit === 'MB/s' ? 'µs/MB' : s.unit === 'img/s' ? 'µs/image' : 'µs/req';
    const f = (t: TargetSummary | undefined, g: (t: TargetSummary) => string) => (t ? g(t) : '—');
    const notes = [row.notes.reference ? `ref: ${row.notes.reference}` : '', row.notes.berth ? `Berth: ${row.notes.berth}` : ''].filter(Boolean).join('; ');
    lines.push(
      `| ${i + 1} | ${s.title} | ${f(row.reference, (t) => t.cpuPerUnitUs.toFixed(0))} / ${f(row.berth, (t) => t.cpuPerUnitUs.toFixed(0))} ${per} | ${f(row.reference, (t) => t.cores.toFixed(2))} / ${f(row.berth, (t) => t.cores.toFixed(2))} | ${f(row.reference, (t) => t.clientCores.toFixed(2))} / ${f(row.berth, (t) => t.clientCores.toFixed(2))} | ${f(row.reference, (t) => t.otherCores.toFixed(2))} / ${f(row.berth, (t) => t.otherCores.toFixed(2))} | ${f(row.reference, (t) => pct(t.spread))} / ${f(row.berth, (t) => pct(t.spread))} | ${f(row.reference, (t) => String(t.ops))} / ${f(row.berth, (t) => String(t.ops))} | ${notes || '—'} |`,
    );
  });
  return lines.join('\n');
}

export function memoryTable(results: readonly MemoryResult[], size: number): string {
  const ref = results.find((r) => r.target === 'reference');
  const berth = results.find((r) => r.target === 'berth');
  const lines = [
    `| ${formatBytes(size)} blob, fresh servers | reference peak RSS MiB | Berth peak RSS MiB | Berth goal | Berth RSS at start of phase MiB | Berth peak − start MiB | reference MB/s | Berth MB/s |`,
    '|---|---|---|---|---|---|---|---|',
  ];
  for (const phase of ['push', 'pull'] as const) {
    const r = ref?.[phase];
    const b = berth?.[phase];
    const peak = (p: typeof r) => (p ? `${mib(p.peak.sampledPeak)}${p.peak.hwm !== undefined ? ` (VmHWM ${mib(p.peak.hwm)})` : ''}` : 'n/a');
    const bPeak = b ? Math.max(b.peak.sampledPeak, b.peak.hwm ?? 0) : Number.NaN;
    const met = b ? (bPeak / 1024 / 1024 < MEMORY_GOAL_MIB ? `< ${MEMORY_GOAL_MIB}: met` : `< ${MEMORY_GOAL_MIB}: **missed**`) : 'n/a';
    const label = phase === 'push' ? 'push (POST, one streamed PATCH, PUT ?digest=)' : 'pull (GET, streamed to the client)';
    lines.push(
      `| ${label} | ${peak(r)} | ${peak(b)} | ${met} | ${b ? mib(b.peak.baseline) : 'n/a'} | ${b ? mib(bPeak - b.peak.baseline) : 'n/a'} | ${r ? num(r.mbPerSecond, 'MB/s') : 'n/a'} | ${b ? num(b.mbPerSecond, 'MB/s') : 'n/a'} |`,
    );
  }
  lines.push(`| for comparison: RSS of the long-running servers after all the scenarios above | ${mib(ref?.afterScenarios)} | ${mib(berth?.afterScenarios)} | | | | | |`);
  return lines.join('\n');
}

export function memoryBelowGoal(results: readonly MemoryResult[]): string[] {
  const berth = results.find((r) => r.target === 'berth');
  if (!berth) return [];
  return (['push', 'pull'] as const).filter((phase) => Math.max(berth[phase].peak.sampledPeak, berth[phase].peak.hwm ?? 0) / 1024 / 1024 >= MEMORY_GOAL_MIB);
}

/** Whether Berth was less efficient, or only given less CPU: from the measured CPU per unit and the cores others used. */
function efficiencyText(row: Row, per: string): string {
  const r = row.reference;
  const b = row.berth;
  if (!r || !b || !Number.isFinite(r.cpuPerUnitUs) || !Number.isFinite(b.cpuPerUnitUs) || b.cpuPerUnitUs <= 0) return 'CPU figures unavailable.';
  const context = `During Berth's runs the load generator used ${b.clientCores.toFixed(2)} cores and other processes ${b.otherCores.toFixed(2)} cores; Berth itself ${b.cores.toFixed(2)}.`;
  if (b.cpuPerUnitUs < r.cpuPerUnitUs) {
    return `Berth spent ${(r.cpuPerUnitUs / b.cpuPerUnitUs).toFixed(1)}× less server CPU ${per.replace('µs ', '')} than the reference, so this row is bound by the CPU Berth was given rather than by its own cost. ${context}`;
  }
  return `Berth spent ${(b.cpuPerUnitUs / r.cpuPerUnitUs).toFixed(1)}× more server CPU ${per.replace('µs ', '')} than the reference. ${context}`;
}

function profileText(row: Row): string[] {
  const p = row.profile;
  if (!p) return [];
  const lines = [
    `  - Profile of Berth during this scenario (separate profiled pass, \`node --cpu-prof\`): ${p.samples} samples, main thread busy ${pct(p.busy)} of the window.`,
    `    - On the stack (inclusive share of busy samples): ${p.components.slice(0, 9).map((c) => `${c.name} ${pct(c.share)}`).join('; ')}.`,
    `    - Most self time: ${p.topSelf.map((f) => `\`${f.frame}\` ${pct(f.share)}`).join('; ')}.`,
  ];
  return lines;
}

export function belowGoalSection(rows: readonly Row[], memory: readonly MemoryResult[]): string {
  const below = rows.filter(belowGoal);
  const memBelow = memoryBelowGoal(memory);
  if (below.length === 0 && memBelow.length === 0) return 'Every row met its goal in this run.';
  const out: string[] = [];
  for (const row of below) {
    const s = row.scenario;
    const per = s.unit === 'MB/s' ? 'µs per MB' : s.unit === 'img/s' ? 'µs per image' : 'µs per request';
    out.push(
      `- **${s.title}**: ${ratio(ratioOf(row))} (goal ≥ ${s.goal?.toFixed(1)}×); reference ${num(row.reference?.value ?? Number.NaN, s.unit)} ${s.unit}, Berth ${num(row.berth?.value ?? Number.NaN, s.unit)} ${s.unit}.` +
        ` Server CPU: reference ${row.reference?.cpuPerUnitUs.toFixed(0)} ${per} on ${row.reference?.cores.toFixed(2)} cores, Berth ${row.berth?.cpuPerUnitUs.toFixed(0)} ${per} on ${row.berth?.cores.toFixed(2)} cores.` +
        ((row.berth?.errors ?? 0) > 0 ? ` Berth errors: ${row.berth?.errors} (first: ${row.berth?.firstError}).` : ''),
    );
    out.push(`  - ${efficiencyText(row, per)}`);
    out.push(...profileText(row));
    const analysis = ANALYSIS[s.id];
    if (analysis) {
      out.push(`  - Why: ${analysis.why}`);
      out.push(`  - Fix: ${analysis.fix}`);
    }
  }
  for (const phase of memBelow) {
    const analysis = ANALYSIS[`memory-${phase}`];
    out.push(`- **Memory, ${phase}**: Berth's peak RSS reached the goal's limit of ${MEMORY_GOAL_MIB} MiB.`);
    if (analysis) {
      out.push(`  - Why: ${analysis.why}`);
      out.push(`  - Fix: ${analysis.fix}`);
    }
  }
  return out.join('\n');
}

/** Profiles of rows that met their goal (present with --profile-all). */
function profileAppendix(rows: readonly Row[]): string {
  const extra = rows.filter((row) => row.profile && !belowGoal(row));
  if (extra.length === 0) return '';
  const out = ['## Profiles of the other rows', ''];
  for (const row of extra) {
    out.push(`- **${row.scenario.title}** (${ratio(ratioOf(row))})`);
    out.push(...profileText(row));
  }
  return `${out.join('\n')}\n\n`;
}

export interface Report {
  readonly machine: Machine;
  readonly params: Params;
  readonly rows: readonly Row[];
  readonly memory: readonly MemoryResult[];
  readonly durationSeconds: number;
  readonly profiled: boolean;
}

export function renderReport(r: Report): string {
  const p = r.params;
  const m = r.machine;
  const memorySection =
    r.memory.length > 0
      ? [
          memoryTable(r.memory, p.memory.size),
          '',
          `The blob is produced by a generator in ${formatBytes(p.memory.chunk)} pieces and hashed on the fly by the client; the pull is counted and dropped. Both registries are started afresh for this scenario (same configuration as above), so the peak reflects the streaming path rather than what the earlier scenarios left in the heap; the last line shows the long-running servers for comparison. The server's VmRSS (/proc/<pid>/status) was sampled every 50 ms; VmHWM, reset through /proc/<pid>/clear_refs before each phase, is the kernel's exact peak.`,
        ].join('\n')
      : 'Skipped (`--no-memory`).';
  return `# Benchmarks: Berth vs the reference registry

Generated by \`npm run bench${p.mode === 'quick' ? ' -- --quick' : ''}\` (bench/run.ts). Every figure below comes from that run; rerun with \`npm run bench -- --write\` to refresh this file.

## Machine

| | |
|---|---|
| date | ${m.date} |
| CPUs (nproc) | ${m.nproc} |
| CPU model | ${m.cpu} |
| memory | ${m.memory} |
| kernel | ${m.kernel} |
| node | ${m.node} |
| reference registry | ${m.reference} |
| load average (1/5/15 min) at start / end | ${m.loadStart} — ${m.loadEnd} |
| run mode, duration | ${p.mode}, ${r.durationSeconds.toFixed(0)} s |

## Method

- Both registries run side by side as child processes on 127.0.0.1, each with a fresh temporary data folder, both logging at info level to a file (Berth's JSON request log on stdout, the reference's text log and access log on stderr; \`--keep\` keeps the folder with the logs).
  - Reference: Debian's \`docker-registry\` with filesystem storage, delete enabled, redirect disabled, no auth, upload purging off, in-memory blob descriptor cache.
  - Berth: \`node src/main.ts serve\` with the default configuration (SQLite and a local folder).
- The load generator is bench/load.ts, in the same Node process as the orchestrator: node:http with a keep-alive Agent (one socket per concurrent worker), a closed loop of \`c\` workers bounded both in operation count and in time.
- Each scenario first runs an unmeasured warm-up on each registry, then ${p.rounds} measured rounds, interleaved and alternating the order (reference then Berth, then Berth then reference, …). The table shows the median of the rounds; p50 / p99 are per-operation latencies (the median of the rounds' percentiles). One request-rate measurement lasts ${(p.requestMs / 1000).toFixed(1)} s.
- Ratio = Berth / reference: above 1 means Berth is faster. MB/s is 10⁶ bytes per second of blob payload.
- Blob contents come from one random pool with a unique tail per upload, so every push uploads content that the registry has never seen.
- Monolithic upload: the reference registry does not implement a single-request \`POST …/blobs/uploads/?digest=\` (it answers 202 and opens an empty session). The monolithic rows therefore use \`POST\` then \`PUT <Location>?digest=\` with the whole body for both registries; Berth's single-request form is an extra, informational row.
- The reference registry ignores \`n\` and \`last\` on tags/list, so on the \`?n=\` row it still returns the whole list (see "what the registries answered").
- Server CPU comes from /proc/<pid>/stat (user + system, all threads) around each measurement; "cores busy" is CPU seconds per wall second.
- The mixed workload: pushers each push a new image (HEAD each blob, POST + PUT when missing, then PUT the manifest by tag); pullers each GET a manifest by tag, then its config and layers, from ${p.mixed.seedImages} seeded images; at most ${p.mixed.pushes} pushes and ${p.mixed.pulls} pulls per measurement.
${r.profiled ? '- Profile: after the measured run, a second Berth is started with `node --cpu-prof`, seeded the same way, and every row below goal is run once more against it. Its samples are cut to each scenario\'s time window (V8 and the benchmark share the monotonic clock). The profiled pass is not part of the measured figures.\n' : ''}- Noise: the machine has ${m.nproc} cores shared by both servers, the load generator, and whatever else runs (other jobs were running during this run; see the load average). Interleaving spreads that noise evenly over both registries, but single rows can move by the "spread" shown in the detail table between runs.

## Results

${resultsTable(r.rows)}

${r.rows.some((row) => row.scenario.only === 'berth') ? '¹ The reference registry does not support a single-request monolithic upload.\n' : ''}
### Detail

${detailTable(r.rows)}

## Memory: ${formatBytes(p.memory.size)} blob

${memorySection}

## Below goal

Goals: Berth/reference ≥ 1.0× on every row; ≥ 2.0× on manifest GET/HEAD by tag and by digest, HEAD blob and tags list; Berth's peak RSS under ${MEMORY_GOAL_MIB} MiB while pushing and pulling the ${formatBytes(p.memory.size)} blob.

${belowGoalSection(r.rows, r.memory)}

${profileAppendix(r.rows)}${GENERAL_NOTES}
`;
}
