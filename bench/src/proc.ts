/**
 * CPU time and memory of processes, read from /proc (Linux only).
 *
 * CPU of a group over a window is computed from two snapshots, so it is exact
 * however short-lived the processes are: for Postgres, a backend that exits is
 * reaped by the postmaster and its CPU moves into the postmaster's cutime and
 * cstime, so "postmaster including reaped children, plus live backends" is the
 * whole cluster's CPU. Peak memory needs periodic samples (see PeakSampler).
 */
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";

const CLK_TCK = (() => {
  try {
    return Number(execFileSync("getconf", ["CLK_TCK"]).toString().trim()) || 100;
  } catch {
    return 100;
  }
})();

interface Stat {
  ppid: number;
  /** utime + stime, in ticks. */
  own: number;
  /** cutime + cstime: reaped children, in ticks. */
  children: number;
}

function readStat(pid: number): Stat | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return undefined; // gone
  }
  // The command name (field 2) may contain spaces and parentheses: split after the last ')'.
  const rest = text.slice(text.lastIndexOf(")") + 2).split(" ");
  // rest[0] is field 3 (state): field n is rest[n - 3].
  return { ppid: Number(rest[1]), own: Number(rest[11]) + Number(rest[12]), children: Number(rest[13]) + Number(rest[14]) };
}

/** The live children of `parent` (Postgres backends and auxiliary processes of a postmaster). */
export function childrenOf(parent: number): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = readStat(Number(entry));
    if (stat?.ppid === parent) pids.push(Number(entry));
  }
  return pids;
}

/** A snapshot of a process tree rooted at `root` (the root plus its direct children). */
export interface CpuSnapshot {
  root: number;
  rootTicks: number;
  children: Map<number, number>;
}

export function cpuSnapshot(root: number, withChildren: boolean): CpuSnapshot {
  const stat = readStat(root);
  const children = new Map<number, number>();
  if (withChildren) {
    for (const pid of childrenOf(root)) {
      const s = readStat(pid);
      if (s) children.set(pid, s.own);
    }
  }
  return { root, rootTicks: stat ? stat.own + stat.children : 0, children };
}

/** CPU seconds used between two snapshots of the same tree. */
export function cpuSeconds(before: CpuSnapshot, after: CpuSnapshot): number {
  let ticks = after.rootTicks - before.rootTicks;
  for (const [pid, t] of after.children) ticks += t - (before.children.get(pid) ?? 0);
  // Children alive before and gone after: their whole CPU is in the root's cutime now, so take off what we had counted.
  for (const [pid, t] of before.children) if (!after.children.has(pid)) ticks -= t;
  return ticks / CLK_TCK;
}

/** Resident memory in bytes: Pss when readable (shared pages split among sharers, right for summing a group), else VmRSS. */
export function memoryBytes(pid: number, proportional: boolean): number {
  try {
    if (proportional) {
      const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, "utf8");
      const m = /^Pss:\s+(\d+) kB/m.exec(rollup);
      if (m) return Number(m[1]) * 1024;
    }
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const m = /^VmRSS:\s+(\d+) kB/m.exec(status);
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** VmHWM: the peak resident set of one process over its life. */
export function peakRssBytes(pid: number): number {
  try {
    const m = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/**
 * Samples the summed memory of a group every `intervalMs` and keeps the peak
 * (for Postgres, the sum of Pss over the postmaster and its children).
 */
export class PeakSampler {
  peak = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly pids: () => number[], private readonly proportional: boolean, intervalMs = 1_000) {
    this.sample();
    this.timer = setInterval(() => this.sample(), intervalMs);
    this.timer.unref();
  }

  sample(): void {
    let total = 0;
    for (const pid of this.pids()) total += memoryBytes(pid, this.proportional);
    this.peak = Math.max(this.peak, total);
  }

  stop(): number {
    clearInterval(this.timer);
    this.sample();
    return this.peak;
  }
}
