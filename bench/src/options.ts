/**
 * Command-line options of `pnpm bench` and the two size profiles. A bad
 * option is one line on stderr and exit code 2 (see main.ts).
 */
import { parseArgs } from "node:util";

export const SCENARIOS = ["throughput", "latency", "long-workflow", "backlog", "idle-fleet", "fan-out"] as const;
export type ScenarioName = (typeof SCENARIOS)[number];
export const SYSTEMS = ["dex", "dbos", "pgboss"] as const;
export type SystemName = (typeof SYSTEMS)[number];

export interface Sizes {
  /** Scenario 1: workflows, and how many are in flight at once. */
  workflows: number;
  inFlight: number;
  /** Scenario 2: sequential start-and-await runs. */
  latencyRuns: number;
  /** Scenario 3: sequential activities of the one long workflow; the window compared at each end. */
  longSteps: number;
  longWindow: number;
  /** Scenario 3: workflow worker processes polling the long workflow's queue (issue 12's variant: 4). */
  longWorkers: number;
  /** Scenario 4: runs started with no worker; the dispatch latency counts while depth > backlogDepth. */
  backlog: number;
  backlogDepth: number;
  /** Scenario 5: sleeping runs, and how long the idle window is measured. */
  idleRuns: number;
  idleSeconds: number;
  /** Scenario 6: parallel activities of the one fan-out workflow. */
  fanOut: number;
}

export const PROFILES: Record<"quick" | "full", Sizes> = {
  // Sized so the whole quick run (Postgres start, all six scenarios on dex, DBOS and pg-boss) stays under 2 minutes.
  // The idle window is 10 s, not less: a waiting DBOS.recv checks the database every 10 s, and a shorter window would miss those checks.
  quick: { workflows: 500, inFlight: 100, latencyRuns: 50, longSteps: 100, longWindow: 10, longWorkers: 4, backlog: 2_000, backlogDepth: 1_000, idleRuns: 500, idleSeconds: 10, fanOut: 200 },
  // The sizes of issue 6; scenario 3 with 4 workflow worker processes (issue 12's variant).
  full: { workflows: 5_000, inFlight: 200, latencyRuns: 200, longSteps: 1_000, longWindow: 100, longWorkers: 4, backlog: 100_000, backlogDepth: 50_000, idleRuns: 10_000, idleSeconds: 30, fanOut: 1_000 },
};

export interface Options {
  profile: "quick" | "full";
  scenarios: ScenarioName[];
  systems: SystemName[];
  sizes: Sizes;
  out: string;
  /** Write a CPU profile of each dex server process into this directory. */
  cpuProfDir?: string;
  /** Keep the Postgres data directory and process logs. */
  keep: boolean;
}

export class UsageError extends Error {}

export const HELP = `pnpm bench [--quick] [--scenario a,b] [--systems dex,dbos,pgboss] [--out PATH]
           [--workflows N] [--in-flight N] [--latency-runs N] [--long-steps N] [--long-workers N] [--backlog N]
           [--idle-runs N] [--idle-seconds N] [--fan-out N] [--cpu-prof DIR] [--keep]
scenarios: ${SCENARIOS.join(", ")}
systems:   ${SYSTEMS.join(", ")} (dex always runs when a scenario needs it for a ratio)
`;

const sizeFlags: Record<string, keyof Sizes> = {
  workflows: "workflows",
  "in-flight": "inFlight",
  "latency-runs": "latencyRuns",
  "long-steps": "longSteps",
  "long-workers": "longWorkers",
  backlog: "backlog",
  "idle-runs": "idleRuns",
  "idle-seconds": "idleSeconds",
  "fan-out": "fanOut",
};

export function parseOptions(argv: string[]): Options | "help" {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: {
        quick: { type: "boolean", default: false },
        scenario: { type: "string", multiple: true },
        systems: { type: "string" },
        out: { type: "string", default: "bench/results/latest.json" },
        "cpu-prof": { type: "string" },
        keep: { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
        ...Object.fromEntries(Object.keys(sizeFlags).map((flag) => [flag, { type: "string" as const }])),
      },
      strict: true,
      allowPositionals: false,
    });
  } catch (err) {
    throw new UsageError((err as Error).message.split("\n")[0]!);
  }
  const v = parsed.values as Record<string, string | boolean | string[] | undefined>;
  if (v.help) return "help";
  const profile = v.quick ? "quick" : "full";
  const sizes: Sizes = { ...PROFILES[profile] };
  for (const [flag, key] of Object.entries(sizeFlags)) {
    if (v[flag] !== undefined) sizes[key] = positiveInt(`--${flag}`, v[flag] as string);
  }
  // The long-workflow window is a tenth of the steps (100 of 1,000), the backlog threshold half the backlog (50,000 of 100,000).
  if (v["long-steps"] !== undefined) sizes.longWindow = Math.max(1, Math.floor(sizes.longSteps / 10));
  if (v.backlog !== undefined) sizes.backlogDepth = Math.floor(sizes.backlog / 2);
  if (sizes.inFlight > sizes.workflows) sizes.inFlight = sizes.workflows;
  const scenarios = list("--scenario", ((v.scenario as string[] | undefined) ?? []).join(","), SCENARIOS);
  const systems = list("--systems", (v.systems as string | undefined) ?? "", SYSTEMS);
  return {
    profile,
    scenarios,
    systems,
    sizes,
    out: v.out as string,
    cpuProfDir: v["cpu-prof"] as string | undefined,
    keep: v.keep as boolean,
  };
}

function positiveInt(flag: string, text: string): number {
  if (!/^\d+$/.test(text) || Number(text) < 1) throw new UsageError(`${flag} must be a positive integer, got "${text}"`);
  return Number(text);
}

function list<T extends string>(flag: string, text: string, known: readonly T[]): T[] {
  const names = text.split(",").map((s) => s.trim()).filter(Boolean);
  if (names.length === 0) return [...known];
  for (const name of names) {
    if (!known.includes(name as T)) throw new UsageError(`${flag}: unknown "${name}"; known: ${known.join(", ")}`);
  }
  return known.filter((k) => names.includes(k));
}
