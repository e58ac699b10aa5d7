/** Measurements and their per-row summaries (medians over the rounds). */
import { type LoadResult, median, quantile } from './load.ts';
import type { Scenario, Unit } from './scenarios.ts';
import type { TargetName } from './servers.ts';
import type { ProfileSummary } from './profile.ts';
import type { RssPeak } from './procfs.ts';

export interface Measurement {
  readonly target: TargetName;
  readonly round: number;
  /** In the scenario's unit. */
  readonly value: number;
  readonly p50: number;
  readonly p99: number;
  readonly ops: number;
  readonly errors: number;
  readonly firstError: string | undefined;
  readonly elapsedMs: number;
  /** Server CPU seconds (all threads) during the measurement. */
  readonly cpuSeconds: number;
  /** How many units the measurement moved: MB for MB/s rows, operations otherwise. */
  readonly units: number;
  /** CPU seconds of the load generator (this process). */
  readonly clientCpuSeconds: number;
  /** CPU seconds used by everything else on the machine (other jobs), from /proc/stat. */
  readonly otherCpuSeconds: number;
}

export interface CpuUse {
  /** CPU seconds of the server under test. */
  readonly server: number;
  readonly client: number;
  readonly other: number;
}

export function toMeasurement(target: TargetName, round: number, unit: Unit, load: LoadResult, cpu: CpuUse): Measurement {
  const seconds = load.elapsedMs / 1000;
  const units = unit === 'MB/s' ? load.bytes / 1e6 : load.ops;
  return {
    target,
    round,
    value: seconds > 0 ? units / seconds : Number.NaN,
    p50: quantile(load.latenciesMs, 0.5),
    p99: quantile(load.latenciesMs, 0.99),
    ops: load.ops,
    errors: load.errors,
    firstError: load.firstError,
    elapsedMs: load.elapsedMs,
    cpuSeconds: cpu.server,
    units,
    clientCpuSeconds: cpu.client,
    otherCpuSeconds: cpu.other,
  };
}

export interface TargetSummary {
  readonly value: number;
  readonly p50: number;
  readonly p99: number;
  readonly ops: number;
  readonly errors: number;
  readonly firstError: string | undefined;
  /** Server CPU microseconds per unit (per MB, per request, per image). */
  readonly cpuPerUnitUs: number;
  /** Server CPU seconds per wall second: how many cores it kept busy. */
  readonly cores: number;
  /** Cores used by the load generator and by other processes during the measurement. */
  readonly clientCores: number;
  readonly otherCores: number;
  /** (max − min) / median of the rounds' values. */
  readonly spread: number;
  readonly rounds: number;
}

export function summarize(ms: readonly Measurement[]): TargetSummary | undefined {
  if (ms.length === 0) return undefined;
  const values = ms.map((m) => m.value);
  const med = median(values);
  return {
    value: med,
    p50: median(ms.map((m) => m.p50)),
    p99: median(ms.map((m) => m.p99)),
    ops: ms.reduce((n, m) => n + m.ops, 0),
    errors: ms.reduce((n, m) => n + m.errors, 0),
    firstError: ms.find((m) => m.firstError)?.firstError,
    cpuPerUnitUs: median(ms.map((m) => (m.units > 0 ? (m.cpuSeconds * 1e6) / m.units : Number.NaN))),
    cores: median(ms.map((m) => (m.elapsedMs > 0 ? m.cpuSeconds / (m.elapsedMs / 1000) : Number.NaN))),
    clientCores: median(ms.map((m) => m.clientCpuSeconds / (m.elapsedMs / 1000))),
    otherCores: median(ms.map((m) => Math.max(0, m.otherCpuSeconds) / (m.elapsedMs / 1000))),
    spread: med > 0 ? (Math.max(...values) - Math.min(...values)) / med : Number.NaN,
    rounds: ms.length,
  };
}

export interface Row {
  readonly scenario: Scenario;
  readonly reference: TargetSummary | undefined;
  readonly berth: TargetSummary | undefined;
  readonly notes: Partial<Record<TargetName, string>>;
  profile?: ProfileSummary;
}

export function ratioOf(row: Row): number {
  if (!row.reference || !row.berth) return Number.NaN;
  return row.berth.value / row.reference.value;
}

export function belowGoal(row: Row): boolean {
  const ratio = ratioOf(row);
  return row.scenario.goal !== undefined && (!(ratio >= row.scenario.goal) || (row.berth?.errors ?? 0) > 0);
}

export interface MemoryPhase {
  readonly peak: RssPeak;
  readonly mbPerSecond: number;
  readonly bytes: number;
}

export interface MemoryResult {
  readonly target: TargetName;
  /** VmRSS of the long-running server at the end of the measured scenarios (before the memory scenario). */
  readonly afterScenarios: number | undefined;
  readonly push: MemoryPhase;
  readonly pull: MemoryPhase;
}

export const MEMORY_GOAL_MIB = 200;
