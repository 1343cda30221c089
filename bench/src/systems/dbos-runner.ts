/**
 * A DBOS Transact process of the bench: DBOS runs in-process, as it is meant
 * to (the load driver, the workflows and the steps share this process), on its
 * own database of the bench's Postgres. Steps are no-op async functions in
 * place of dex's activities. Configured by BENCH_RUNNER (JSON: url, scenario,
 * sizes); prints "runner ready" after DBOS.launch, runs the scenario when the
 * parent sends {type: "go"} (so the parent's CPU window excludes the launch),
 * and answers with {type: "result", figures, notes}.
 *
 * Scenario 4 ("backlog") is the exception: this process is then the backlog's
 * consumer, started after dbos-enqueuer.ts has filled the queue. Launching
 * DBOS starts its queue dispatcher, which drains the queue on its own; the
 * bench watches the system tables and needs no "go".
 */
import { DBOS } from "@dbos-inc/dbos-sdk";
import type { Sizes } from "../options.js";
import { fanOutFigures, latencyFigures, longWorkflowFigures, throughputFigures } from "../comparable-figures.js";
import type { Figure } from "../scenario.js";
import { pool } from "../stats.js";
import { DBOS_APP, DBOS_BACKLOG_WORKFLOW } from "./dbos-app.js";

const config = JSON.parse(process.env.BENCH_RUNNER ?? "null") as { url: string; scenario: string; sizes: Sizes } | null;
if (!config) throw new Error("BENCH_RUNNER is not set: this process is started by the bench");
const { sizes } = config;

const noop = DBOS.registerStep(async (x: number) => x, { name: "noop" });
const threeSteps = DBOS.registerWorkflow(
  async (x: number) => {
    let v = x;
    for (let i = 0; i < 3; i++) v = await noop(v);
    return v;
  },
  { name: "threeSteps" },
);
const oneStep = DBOS.registerWorkflow(async (x: number) => noop(x), { name: "oneStep" });
/** Completion time of each step of the long workflow, taken in the workflow (same process). */
const stepDone: number[] = [];
const longWorkflow = DBOS.registerWorkflow(
  async (steps: number) => {
    for (let i = 0; i < steps; i++) {
      await noop(i);
      stepDone.push(performance.now());
    }
    return steps;
  },
  { name: "longWorkflow" },
);
const fanOut = DBOS.registerWorkflow(async (count: number) => (await Promise.all(Array.from({ length: count }, (_, i) => noop(i)))).length, { name: "fanOut" });
/** Scenario 4: nothing but the workflow itself, as dex's backlogWorkflow (dex-workload.ts), so the drain measures dispatch. */
DBOS.registerWorkflow(async (x: number) => x, { name: DBOS_BACKLOG_WORKFLOW });
/** Scenario 5: even runs sleep, odd runs wait for a message, 30 minutes each, as dex's idleWorkflow. */
const idleWorkflow = DBOS.registerWorkflow(
  async (i: number) => {
    if (i % 2 === 0) {
      await DBOS.sleep(30 * 60_000);
      return "slept";
    }
    await DBOS.recv<string>("wake", { timeoutSeconds: 30 * 60 });
    return "woken";
  },
  { name: "idleWorkflow" },
);

async function start<A extends unknown[], R>(wf: (...args: A) => Promise<R>, id: string, ...args: A): Promise<R> {
  const handle = await DBOS.startWorkflow(wf, { workflowID: id })(...args);
  return handle.getResult();
}

async function run(scenario: string): Promise<{ figures: Figure[]; notes: string[] }> {
  switch (scenario) {
    case "throughput": {
      const { workflows, inFlight } = sizes;
      await pool(Math.min(50, workflows), inFlight, async (i) => void (await start(threeSteps, `warm-${i}`, i)));
      const latencies: number[] = [];
      const t0 = performance.now();
      await pool(workflows, inFlight, async (i) => {
        const s = performance.now();
        await start(threeSteps, `tp-${i}`, i);
        latencies.push(performance.now() - s);
      });
      const seconds = (performance.now() - t0) / 1000;
      return {
        figures: throughputFigures(workflows, seconds, latencies),
        notes: [`${workflows} workflows of 3 steps, ${inFlight} in flight, ${seconds.toFixed(1)} s, one process`],
      };
    }
    case "latency": {
      for (let i = 0; i < 10; i++) await start(oneStep, `warm-${i}`, i);
      const latencies: number[] = [];
      for (let i = 0; i < sizes.latencyRuns; i++) {
        const s = performance.now();
        await start(oneStep, `lat-${i}`, i);
        latencies.push(performance.now() - s);
      }
      return {
        figures: latencyFigures(latencies),
        notes: [`${sizes.latencyRuns} sequential workflows of one step`],
      };
    }
    case "long-workflow": {
      const { longSteps: steps, longWindow: window } = sizes;
      const t0 = performance.now();
      await start(longWorkflow, "long-1", steps);
      const totalMs = performance.now() - t0;
      const firstMs = stepDone[window - 1]! - t0;
      const lastMs = stepDone[steps - 1]! - stepDone[steps - window - 1]!;
      return {
        figures: longWorkflowFigures(steps, window, { total: totalMs, first: firstMs, last: lastMs }),
        notes: [],
      };
    }
    case "fan-out": {
      const t0 = performance.now();
      const n = await start(fanOut, "fan-1", sizes.fanOut);
      const ms = performance.now() - t0;
      if (n !== sizes.fanOut) throw new Error(`fan-out returned ${n}`);
      return {
        figures: fanOutFigures(sizes.fanOut, ms),
        notes: [],
      };
    }
    case "idle-fleet": {
      // Started and left waiting: the bench waits until every wait is recorded, then measures the idle window.
      const t0 = performance.now();
      await pool(sizes.idleRuns, 200, async (i) => void (await DBOS.startWorkflow(idleWorkflow, { workflowID: `idle-${i}` })(i)));
      return { figures: [], notes: [`${sizes.idleRuns} workflows started in ${((performance.now() - t0) / 1000).toFixed(1)} s (DBOS.startWorkflow, 200 at a time)`] };
    }
    default:
      throw new Error(`the DBOS runner has no scenario "${scenario}"`);
  }
}

DBOS.setConfig({ name: DBOS_APP, systemDatabaseUrl: config.url, logLevel: "error" });
await DBOS.launch();
process.on("message", (m: { type?: string }) => {
  if (m?.type !== "go") return;
  run(config.scenario).then(
    (result) => process.send?.({ type: "result", ...result }),
    (err: unknown) => process.send?.({ type: "error", message: err instanceof Error ? (err.stack ?? err.message) : String(err) }),
  );
});
process.on("SIGTERM", () => void DBOS.shutdown().finally(() => process.exit(0)));
process.stdin.on("end", () => process.exit(3));
process.stdin.resume();
process.stdout.write("runner ready\n");
