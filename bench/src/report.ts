/**
 * The targets (issue 12's, and issue 6's that must not regress), and the table: each figure of each scenario for
 * dex, DBOS and pg-boss, dex's ratio against the reference, and the target
 * with PASS/MISS and by how much.
 */
import type { ScenarioName, SystemName } from "./options.js";
import type { Figure, ScenarioResult } from "./scenario.js";

export type Results = Partial<Record<ScenarioName, Partial<Record<SystemName, ScenarioResult | { error: string }>>>>;

export interface TargetOutcome {
  scenario: ScenarioName;
  target: string;
  /** undefined when a figure it needs is missing (system not run, or failed). */
  pass: boolean | undefined;
  detail: string;
}

interface Target {
  scenario: ScenarioName;
  key: string;
  text: string;
  /** dex's figure must be <= (max) or >= (min) the bound. */
  kind: "max" | "min";
  /** The bound: a constant, or a multiple of a reference system's same figure. */
  bound: number | { system: SystemName; factor: number };
  /** Strict "<" (under 50 ms) rather than "<=". */
  strict?: boolean;
}

export const TARGETS: Target[] = [
  // Issue 12's targets; the "no regression" ones (starts/s, idle fleet) are issue 6's that pass.
  { scenario: "throughput", key: "workflowsPerSec", text: "workflows/s >= DBOS", kind: "min", bound: { system: "dbos", factor: 1 } },
  { scenario: "latency", key: "p50", text: "p50 <= 2x DBOS p50", kind: "max", bound: { system: "dbos", factor: 2 } },
  { scenario: "latency", key: "p99", text: "p99 <= 2x DBOS p99", kind: "max", bound: { system: "dbos", factor: 2 } },
  { scenario: "long-workflow", key: "lastOverFirst", text: "last window <= 1.2x first", kind: "max", bound: 1.2 },
  { scenario: "long-workflow", key: "bytesOverHistory", text: "bytes to workers <= 3x history", kind: "max", bound: 3 },
  { scenario: "backlog", key: "drainPerSec", text: "drain rate >= DBOS", kind: "min", bound: { system: "dbos", factor: 1 } },
  { scenario: "backlog", key: "dispatchP99Deep", text: "dispatch p99 < 50 ms while deep", kind: "max", bound: 50, strict: true },
  { scenario: "backlog", key: "startsPerSec", text: "starts >= 2,000/s", kind: "min", bound: 2000 },
  { scenario: "idle-fleet", key: "serverCpuPct", text: "server < 1% of a core", kind: "max", bound: 1, strict: true },
  { scenario: "idle-fleet", key: "pgStatementsPerSec", text: "Postgres < 5 queries/s", kind: "max", bound: 5, strict: true },
  { scenario: "idle-fleet", key: "workerRssMB", text: "worker RSS < 500 MB", kind: "max", bound: 500, strict: true },
];

function figureOf(results: Results, scenario: ScenarioName, system: SystemName, key: string): Figure | undefined {
  const r = results[scenario]?.[system];
  return r && "figures" in r ? r.figures.find((f) => f.key === key) : undefined;
}

export function evaluateTargets(results: Results): TargetOutcome[] {
  return TARGETS.filter((t) => results[t.scenario]).map((t) => {
    const dex = figureOf(results, t.scenario, "dex", t.key);
    let bound: number | undefined;
    if (typeof t.bound === "number") bound = t.bound;
    else {
      const ref = figureOf(results, t.scenario, t.bound.system, t.key);
      bound = ref ? ref.value * t.bound.factor : undefined;
    }
    if (!dex || bound === undefined || !Number.isFinite(dex.value)) {
      return { scenario: t.scenario, target: t.text, pass: undefined, detail: "n/a (figure missing)" };
    }
    const v = dex.value;
    const pass = t.kind === "max" ? (t.strict ? v < bound : v <= bound) : v >= bound;
    const fmt = (x: number) => `${formatNumber(x)}${dex.unit === "x" ? "x" : ` ${dex.unit}`}`;
    const how = pass
      ? `${fmt(v)} vs ${t.kind === "max" ? "<=" : ">="} ${fmt(bound)}`
      : t.kind === "max"
        ? `${fmt(v)}, ${(v / bound).toFixed(2)}x the limit ${fmt(bound)}`
        : `${fmt(v)}, ${((v / bound) * 100).toFixed(0)}% of the ${fmt(bound)} needed (short ${(bound / v).toFixed(2)}x)`;
    return { scenario: t.scenario, target: t.text, pass, detail: how };
  });
}

export function formatNumber(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  const digits = Math.abs(x) >= 100 ? 0 : Math.abs(x) >= 10 ? 1 : 2;
  return x.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: 0 });
}

/** A Markdown table (readable in a terminal too): one row per dex figure, plus the references' figures without a dex twin. */
export function renderTable(results: Results): string {
  const outcomes = evaluateTargets(results);
  const rows: string[][] = [["scenario", "figure", "dex", "DBOS", "dex/DBOS", "pg-boss", "dex/pg-boss", "target", "result"]];
  for (const [scenario, bySystem] of Object.entries(results) as Array<[ScenarioName, NonNullable<Results[ScenarioName]>]>) {
    const keys: Array<{ key: string; label: string; unit: string }> = [];
    for (const system of ["dex", "dbos", "pgboss"] as const) {
      const r = bySystem[system];
      if (r && "error" in r) rows.push([scenario, `${system} FAILED`, r.error.split("\n")[0]!.slice(0, 100), "", "", "", "", "", ""]);
      if (!r || !("figures" in r)) continue;
      for (const f of r.figures) if (!keys.some((k) => k.key === f.key)) keys.push({ key: f.key, label: f.label, unit: f.unit });
    }
    for (const { key, label, unit } of keys) {
      const cell = (system: SystemName) => {
        const f = figureOf(results, scenario, system, key);
        return f ? `${formatNumber(f.value)} ${f.unit}`.trim() : "";
      };
      const dex = figureOf(results, scenario, "dex", key);
      const ratio = (system: SystemName) => {
        const ref = figureOf(results, scenario, system, key);
        if (!dex || !ref || ref.value === 0) return "";
        // Two decimals, or two significant digits below 0.1 (dex's idle statements/s are a few thousandths of DBOS's).
        const r = dex.value / ref.value;
        return `${r !== 0 && Math.abs(r) < 0.1 ? r.toPrecision(2) : r.toFixed(2)}x`;
      };
      const target = TARGETS.find((t) => t.scenario === scenario && t.key === key);
      const outcome = target ? outcomes.find((o) => o.scenario === scenario && o.target === target.text) : undefined;
      const result = outcome ? (outcome.pass === undefined ? "n/a" : `${outcome.pass ? "PASS" : "MISS"}: ${outcome.detail}`) : "";
      rows.push([scenario, `${label} (${unit})`, cell("dex"), cell("dbos"), ratio("dbos"), cell("pgboss"), ratio("pgboss"), target?.text ?? "", result]);
    }
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) => `| ${r.map((c, i) => c.padEnd(widths[i]!)).join(" | ")} |`;
  return [line(rows[0]!), `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`, ...rows.slice(1).map(line)].join("\n");
}
