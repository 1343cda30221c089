/**
 * CPU seconds and peak memory of named process groups over a window: the dex
 * server, the worker processes, Postgres (postmaster plus backends), a DBOS
 * or pg-boss process.
 */
import { cpuSeconds, cpuSnapshot, peakRssBytes, PeakSampler, childrenOf, type CpuSnapshot } from "./proc.js";

export interface MeteredGroup {
  name: string;
  pids: number[];
  /** Postgres: count the children of each pid too, and sum their proportional memory. */
  tree?: boolean;
}

export interface GroupUsage {
  cpuSeconds: number;
  /** Peak resident memory: VmHWM summed over the processes, or, for a tree, the peak of summed Pss. */
  peakRssMB: number;
}

export class Meter {
  private readonly before: Map<string, CpuSnapshot[]>;
  private readonly samplers = new Map<string, PeakSampler>();
  readonly startedAt = performance.now();

  constructor(private readonly groups: MeteredGroup[]) {
    this.before = new Map(groups.map((g) => [g.name, g.pids.map((pid) => cpuSnapshot(pid, g.tree ?? false))]));
    for (const g of groups) {
      if (g.tree) this.samplers.set(g.name, new PeakSampler(() => g.pids.flatMap((pid) => [pid, ...childrenOf(pid)]), true));
    }
  }

  /**
   * Adds a group whose processes were started after the window opened (a
   * worker spawned mid-window): everything they used since they started is
   * inside the window, so their baseline is zero.
   */
  addStartedInside(name: string, pids: number[]): void {
    this.groups.push({ name, pids });
    this.before.set(name, pids.map((pid) => ({ root: pid, rootTicks: 0, children: new Map<number, number>() })));
  }

  /** Usage per group since construction; the window's length in seconds. */
  stop(): { seconds: number; usage: Record<string, GroupUsage> } {
    const usage: Record<string, GroupUsage> = {};
    for (const g of this.groups) {
      const before = this.before.get(g.name)!;
      const cpu = g.pids.reduce((sum, pid, i) => sum + cpuSeconds(before[i]!, cpuSnapshot(pid, g.tree ?? false)), 0);
      const peak = this.samplers.get(g.name)?.stop() ?? g.pids.reduce((sum, pid) => sum + peakRssBytes(pid), 0);
      usage[g.name] = { cpuSeconds: round(cpu, 2), peakRssMB: round(peak / 2 ** 20, 1) };
    }
    return { seconds: (performance.now() - this.startedAt) / 1000, usage };
  }
}

export function round(value: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}
