/** What a scenario gets to run with, and what it returns: named figures. */
import type { Sizes } from "./options.js";
import type { BenchPostgres } from "./postgres.js";
import type { ProcessGroup } from "./processes.js";
import type { GroupUsage } from "./meter.js";

export interface ScenarioContext {
  pg: BenchPostgres;
  group: ProcessGroup;
  sizes: Sizes;
  log(message: string): void;
  cpuProfDir?: string;
}

export interface Figure {
  /** Stable key, the same across systems for comparable figures (e.g. "workflowsPerSec"). */
  key: string;
  label: string;
  value: number;
  unit: string;
}

export interface ScenarioResult {
  figures: Figure[];
  /** CPU seconds and peak memory per process group over the measured window. */
  usage: Record<string, GroupUsage>;
  notes: string[];
  /** The statements run most often (pg_stat_statements), where a scenario collects them. */
  topStatements?: Array<{ calls: number; meanMs: number; query: string }>;
}

export function figure(key: string, label: string, value: number, unit: string): Figure {
  return { key, label, value, unit };
}

/** CPU and memory figures from a meter's usage, one pair per group. */
export function usageFigures(usage: Record<string, GroupUsage>): Figure[] {
  const total = Object.values(usage).reduce((sum, u) => sum + u.cpuSeconds, 0);
  return [
    ...Object.entries(usage).flatMap(([group, u]) => [
      figure(`cpu.${group}`, `CPU ${group}`, u.cpuSeconds, "s"),
      figure(`rss.${group}`, `peak RSS ${group}`, u.peakRssMB, "MB"),
    ]),
    // Every metered process: for dex the server, workers and Postgres (not the load driver); for DBOS its one process (driver included) and Postgres.
    figure("cpu.total", "CPU total", Math.round(total * 100) / 100, "s"),
  ];
}
