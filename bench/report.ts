/** The Markdown report: machine, method, results table, CPU detail, memory, rows below goal. */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { ANALYSIS, GENERAL_NOTES } from './analysis.ts';
import { AUTH_HEADING, AUTH_REPO, type AuthRun, authBelowGoal } from './auth.ts';
import { formatBytes, type Params } from './params.ts';
import { belowGoal, MEMORY_GOAL_MIB, type MemoryResult, ratioOf, type Row, type TargetSummary } from './results.ts';
import type { ProfileSummary } from './profile.ts';
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

function profileText(row: { readonly profile?: ProfileSummary | undefined }): string[] {
  const p = row.profile;
  if (!p) return [];
  const lines = [
    `  - Profile of Berth during this scenario (separate profiled pass, \`node --cpu-prof\`): ${p.samples} samples, main thread busy ${pct(p.busy)} of the window.`,
    `    - On the stack (inclusive share of busy samples): ${p.components.slice(0, 9).map((c) => `${c.name} ${pct(c.share)}`).join('; ')}.`,
    `    - Most self time: ${p.topSelf.map((f) => `\`${f.frame}\` ${pct(f.share)}`).join('; ')}.`,
  ];
  const focus = p.focus?.filter((f) => f.share >= 0.005);
  if (focus) {
    const list = focus.map((f) => `\`${f.frame}\` ${pct(f.share)}`).join('; ');
    lines.push(`    - Auth code on the stack (src/iam, src/projects, jose; inclusive share of busy samples, from 1%): ${list || 'none sampled'}.`);
  }
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

export interface AuthReport {
  /** Machine and date at the start of the section; loadEnd at its end. */
  readonly machine: Machine;
  /** The command line of the run, as the reader would type it. */
  readonly command: string;
  readonly run: AuthRun;
  /** What the untimed checks before the section found (auth really on, same content on both). */
  readonly checks: readonly string[];
  readonly durationSeconds: number;
  readonly profiled: boolean;
}

/**
 * The auth-overhead section, self-contained (its own date, machine and command) so that a run of
 * `--only auth --write` can replace it in BENCHMARKS.md without touching the rest.
 */
export function renderAuthSection(a: AuthReport): string {
  const m = a.machine;
  const rows = a.run.rows;
  const base = rows.find((r) => r.scenario.baseline);
  const table = [
    '| # | row | Berth | c | req/s | vs no-auth manifest GET (median of per-round ratios) | ratio of medians | goal | p50 / p99 ms | server CPU µs/req | CPU µs/req over baseline | spread of rounds | requests measured |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  rows.forEach((row, i) => {
    const s = row.scenario;
    const t = row.summary;
    const below = authBelowGoal(row);
    const rt = s.baseline ? '1.00× (baseline)' : below ? `**${ratio(row.pairedRatio)}**` : ratio(row.pairedRatio);
    const extra = s.baseline || !Number.isFinite(row.extraCpuUs) ? '—' : `${row.extraCpuUs >= 0 ? '+' : '−'}${Math.abs(row.extraCpuUs).toFixed(0)}`;
    table.push(
      `| ${i + 1} | ${s.title} | ${s.server === 'auth' ? 'auth on' : s.server === 'control' ? 'auth off (a second one)' : 'auth off'} | ${s.concurrency} | ${value(t, 'req/s')} | ${rt} | ${s.baseline ? '—' : ratio(row.ratio)} | ${s.goal === undefined ? 'info' : `≥ ${s.goal.toFixed(2)}×`} | ${latency(t)} | ${t ? t.cpuPerUnitUs.toFixed(0) : 'n/a'} | ${extra} | ${t ? pct(t.spread) : 'n/a'} | ${t?.ops ?? 'n/a'} |`,
    );
  });
  const below = rows.filter(authBelowGoal);
  const verdict: string[] = [];
  const control = rows.find((r) => r.scenario.server === 'control');
  if (control && Number.isFinite(control.pairedRatio)) {
    verdict.push(
      `Noise floor of this run: the control, a second Berth without auth, ran at ${ratio(control.pairedRatio)} of the baseline (ratio of medians ${ratio(control.ratio)}, server CPU ${control.extraCpuUs >= 0 ? '+' : '−'}${Math.abs(control.extraCpuUs).toFixed(0)} µs per request). Two identical servers differed by that much, so a gap of that size between an authenticated row and the baseline says nothing about auth; the profile lines below measure auth's share inside one process, which the machine's load does not skew.`,
      '',
    );
  }
  if (below.length === 0) {
    verdict.push('Both authenticated manifest GETs met the goal (at most 10% slower than without auth) in this run.');
  } else {
    for (const row of below) {
      const t = row.summary;
      verdict.push(
        `- **${row.scenario.title}**: ${ratio(row.pairedRatio)} of the no-auth rate (median of per-round ratios; goal ≥ ${row.scenario.goal?.toFixed(2)}×); ${num(t?.value ?? Number.NaN, 'req/s')} against ${num(base?.summary?.value ?? Number.NaN, 'req/s')} req/s; server CPU ${t?.cpuPerUnitUs.toFixed(0)} against ${base?.summary?.cpuPerUnitUs.toFixed(0)} µs per request.` +
          ((t?.errors ?? 0) > 0 ? ` Errors: ${t?.errors} (first: ${t?.firstError}).` : ''),
      );
      verdict.push(...profileText(row));
      const analysis = ANALYSIS[row.scenario.id];
      if (analysis) {
        verdict.push(`  - Why: ${analysis.why}`);
        verdict.push(`  - Fix: ${analysis.fix}`);
      }
    }
  }
  const others = rows.filter((r) => r.profile && !authBelowGoal(r));
  if (others.length > 0) {
    verdict.push('', `Where Berth's time goes${below.length > 0 ? ' on the other profiled rows' : ''} (a Berth with auth started with \`node --cpu-prof\` after the measured rounds, seeded the same way, each row run once more; not part of the figures above):`, '');
    for (const row of others) {
      verdict.push(`- **${row.scenario.title}** (${ratio(row.pairedRatio)} of the no-auth rate)`);
      verdict.push(...profileText(row));
      const analysis = ANALYSIS[row.scenario.id];
      if (analysis) verdict.push(`  - Why: ${analysis.why}`, `  - Fix: ${analysis.fix}`);
    }
  }
  return `${AUTH_HEADING}

Issue 3: authorisation adds at most 10% to a manifest GET against the no-auth figure. Generated by \`${a.command}\` (bench/run.ts, bench/auth.ts); every figure in this section comes from that run.

| | |
|---|---|
| date | ${m.date} |
| machine | ${m.nproc} CPUs (${m.cpu}), ${m.memory}, ${m.kernel} |
| node | ${m.node} |
| load average (1/5/15 min) at start / end of the section | ${m.loadStart} — ${m.loadEnd} |
| rounds, length of one measurement, duration | ${a.run.rounds} × ${(a.run.requestMs / 1000).toFixed(2)} s per row, ${a.durationSeconds.toFixed(0)} s |

- Three Berths side by side on 127.0.0.1, started for this section, each with a fresh data folder and the default configuration (SQLite and a local folder): one with auth off (the baseline, configured as in the comparison with the reference registry), a second one with auth off (the control: what two identical Berths differ by in this run) and one with auth on (\`BERTH_AUTH_ENABLED=true\`: Docker token auth on /v2, ES256 tokens from \`GET /service/token\`). All hold the same image, pushed before the section: a config blob, a 1 KiB layer and an OCI manifest tagged \`${AUTH_REPO}:latest\` (with admin Basic credentials on the Berth with auth).
- Checked before measuring: ${a.checks.join('; ')}.
- Rows: a manifest GET by tag (as in the row "manifest GET by tag" of the comparison with the reference, with the same concurrency), once without auth (the baseline), once on the control, once on the Berth with auth carrying a pull token obtained once before the section with admin credentials (what docker and containerd do after a login), once carrying admin Basic credentials on every request (clients that send Basic directly rather than following the bearer challenge, such as curl in CI scripts; Berth remembers a verified login for about a minute, so argon2 runs once, but the grant is worked out on every request); then the token endpoint itself, with admin Basic credentials and with none (anonymous pull on the public project \`library\`), one pull scope each.
- All rows run in every round, one after the other against their server (the other Berths idle), in alternating order, the baseline between the two authenticated manifest GETs so that it runs next to both; an unmeasured warm-up of each row comes first. Rates, latencies and CPU are medians over the rounds. The goal is judged on the median of per-round ratios: each round's rate divided by the baseline's of the same round, measured moments apart, which cancels the drifts of the machine's load from round to round; the ratio of the two medians is shown beside it. The load generator and the servers share the machine's ${m.nproc} cores with whatever else runs (see the load average).
- Server CPU comes from /proc/<pid>/stat of the server the row ran against; the difference to the baseline is what auth costs per request, independent of how the cores were shared.

${table.join('\n')}

${verdict.join('\n')}
`;
}

export interface Report {
  readonly machine: Machine;
  readonly params: Params;
  readonly rows: readonly Row[];
  readonly memory: readonly MemoryResult[];
  readonly durationSeconds: number;
  readonly profiled: boolean;
  /** The auth-overhead section, rendered, when the run included it. */
  readonly authSection?: string | undefined;
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

Generated by \`npm run bench${p.mode === 'quick' ? ' -- --quick' : ''}\` (bench/run.ts). Every figure below comes from that run, except the auth-overhead section when it names another command and date (\`npm run bench -- --only auth --write\` refreshes that section alone); rerun with \`npm run bench -- --write\` to refresh this file.

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
  - Berth: \`node src/main.ts serve\` with the default configuration (SQLite and a local folder), except that auth is off (\`BERTH_AUTH_ENABLED=false\`), as the reference runs without auth; the auth-overhead section measures what auth adds.
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

${r.authSection ? `${r.authSection}\n` : ''}## Below goal

Goals: Berth/reference ≥ 1.0× on every row; ≥ 2.0× on manifest GET/HEAD by tag and by digest, HEAD blob and tags list; Berth's peak RSS under ${MEMORY_GOAL_MIB} MiB while pushing and pulling the ${formatBytes(p.memory.size)} blob.

${belowGoalSection(r.rows, r.memory)}

${profileAppendix(r.rows)}${GENERAL_NOTES}
`;
}
