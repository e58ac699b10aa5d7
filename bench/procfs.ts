/** Reading a server process's CPU time and resident memory from /proc. Linux only. */
import { readFileSync, writeFileSync } from 'node:fs';

/** USER_HZ: the unit of utime/stime in /proc/<pid>/stat (100 on every Linux architecture Node runs on). */
const CLOCK_TICKS_PER_SECOND = 100;

/** User + system CPU seconds of the whole process (all threads) so far. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name (field 2) may contain spaces; fields after the closing parenthesis are fixed.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  return (utime + stime) / CLOCK_TICKS_PER_SECOND;
}

/** Busy CPU seconds of the whole machine (all CPUs; everything but idle and iowait) so far. */
export function machineBusySeconds(): number {
  const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0] as string;
  const ticks = line.trim().split(/\s+/).slice(1).map(Number);
  const total = ticks.slice(0, 8).reduce((a, b) => a + b, 0);
  const idle = (ticks[3] ?? 0) + (ticks[4] ?? 0);
  return (total - idle) / CLOCK_TICKS_PER_SECOND;
}

/** CPU seconds of this (the benchmark's) process so far. */
export function selfCpuSeconds(): number {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1e6;
}

function statusField(pid: number, field: string): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status);
  return match ? Number(match[1]) * 1024 : Number.NaN;
}

export function rssBytes(pid: number): number {
  return statusField(pid, 'VmRSS');
}

export interface RssPeak {
  /** Highest VmRSS seen by sampling. */
  readonly sampledPeak: number;
  /** VmHWM after it was reset at the start (exact peak), when the kernel allowed the reset. */
  readonly hwm: number | undefined;
  /** VmRSS when sampling began. */
  readonly baseline: number;
  readonly samples: number;
}

/** Samples VmRSS every `intervalMs` until stopped; also resets and reads the kernel's high-water mark. */
export function sampleRss(pid: number, intervalMs = 50): { stop(): RssPeak } {
  let hwmReset = false;
  try {
    // "5" resets the peak RSS (VmHWM) to the current RSS (Linux ≥ 4.0).
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    hwmReset = true;
  } catch {
    hwmReset = false;
  }
  const baseline = rssBytes(pid);
  let peak = baseline;
  let samples = 1;
  const timer = setInterval(() => {
    try {
      peak = Math.max(peak, rssBytes(pid));
      samples++;
    } catch {
      /* the process may be gone; the caller notices */
    }
  }, intervalMs);
  return {
    stop() {
      clearInterval(timer);
      try {
        peak = Math.max(peak, rssBytes(pid));
      } catch {
        /* gone */
      }
      let hwm: number | undefined;
      if (hwmReset) {
        try {
          hwm = statusField(pid, 'VmHWM');
        } catch {
          hwm = undefined;
        }
      }
      return { sampledPeak: peak, hwm, baseline, samples };
    },
  };
}
