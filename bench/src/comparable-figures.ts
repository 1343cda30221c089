/**
 * The figures dex and DBOS both report for a scenario. The table puts figures
 * side by side by key, so each set is built in one place for every system:
 * a key or label that drifted between the two would silently drop a ratio.
 */
import { round } from "./meter.js";
import { figure, type Figure } from "./scenario.js";
import { percentile } from "./stats.js";

/** Scenario 1: workflows of three activities each. */
export function throughputFigures(workflows: number, seconds: number, latenciesMs: number[]): Figure[] {
  return [
    figure("workflowsPerSec", "workflows/s", round(workflows / seconds, 1), "/s"),
    figure("activitiesPerSec", "activities/s", round((3 * workflows) / seconds, 1), "/s"),
    figure("p50", "start-to-result p50", round(percentile(latenciesMs, 50), 1), "ms"),
    figure("p99", "start-to-result p99", round(percentile(latenciesMs, 99), 1), "ms"),
  ];
}

/** Scenario 2: single workflows one after another. */
export function latencyFigures(latenciesMs: number[]): Figure[] {
  return [50, 95, 99].map((p) => figure(`p${p}`, `start-to-result p${p}`, round(percentile(latenciesMs, p), 1), "ms"));
}

/** Scenario 3: the whole long workflow, and its first and last windows of steps. */
export function longWorkflowFigures(steps: number, window: number, ms: { total: number; first: number; last: number }): Figure[] {
  return [
    figure("totalMs", `${steps} steps, start to result`, round(ms.total, 0), "ms"),
    figure("firstMs", `first ${window} steps`, round(ms.first, 0), "ms"),
    figure("lastMs", `last ${window} steps`, round(ms.last, 0), "ms"),
    figure("lastOverFirst", "last / first", round(ms.last / ms.first, 2), "x"),
  ];
}

/** Scenario 6: one workflow awaiting `count` parallel activities. */
export function fanOutFigures(count: number, ms: number): Figure[] {
  return [
    figure("totalMs", `${count} parallel activities, start to result`, round(ms, 0), "ms"),
    figure("activitiesPerSec", "activities/s", round(count / (ms / 1000), 0), "/s"),
  ];
}

/** Scenario 4, first phase: the backlog started (enqueued) with nothing consuming it. */
export function backlogStartFigures(runs: number, seconds: number): Figure[] {
  return [figure("startsPerSec", `${runs} starts`, round(runs / seconds, 0), "/s")];
}

/**
 * Scenario 4, second phase: from starting the consumer (dex's worker process,
 * DBOS's process) until every run completed. Queue wait is each run's wait
 * from its start (enqueue) to its first claim (dequeue), both recorded by the
 * system itself (one machine, one clock): dex.runs started_at - created_at, DBOS
 * workflow_status started_at_epoch_ms - created_at. In a backlog it is
 * dominated by the backlog itself.
 */
export function backlogDrainFigures(runs: number, seconds: { drain: number; consumerReady: number }, queueWaitsMs: number[], statements: number): Figure[] {
  return [
    figure("drainSeconds", "time to drain", round(seconds.drain, 1), "s"),
    // Part of the time to drain: the consumer process starting (Node, modules, connecting) before it takes any work.
    figure("consumerReadySeconds", "of which consumer process start-up", round(seconds.consumerReady, 1), "s"),
    figure("drainPerSec", "drain rate", round(runs / seconds.drain, 0), "/s"),
    figure("queueWaitP50", "queue wait p50 (start to first claim)", round(percentile(queueWaitsMs, 50), 0), "ms"),
    figure("queueWaitP99", "queue wait p99 (start to first claim)", round(percentile(queueWaitsMs, 99), 0), "ms"),
    figure("pgStatementsPerSec", "Postgres statements/s (drain)", round(statements / seconds.drain, 0), "/s"),
    figure("statementsPerRun", "Postgres statements per run (drain)", round(statements / runs, 1), ""),
  ];
}

/**
 * Scenario 5: the quiet window with every run parked. "Engine" is every
 * process of the system but Postgres: dex's server and workflow worker, the
 * one DBOS process (engine and workflows in one). The RSS is the process
 * holding the parked workflows: dex's workflow worker, the DBOS process.
 */
export function idleFleetFigures(seconds: number, cpuSeconds: { engine: number; postgres: number }, statementsPerSec: number, workflowsRssMB: number): Figure[] {
  return [
    figure("engineCpuPct", "CPU while idle, all but Postgres (dex: server + worker)", round((cpuSeconds.engine / seconds) * 100, 2), "% core"),
    figure("postgresCpuPct", "Postgres CPU while idle", round((cpuSeconds.postgres / seconds) * 100, 2), "% core"),
    figure("pgStatementsPerSec", "Postgres statements/s while idle", round(statementsPerSec, 2), "/s"),
    figure("workerRssMB", "RSS of the process running the workflows", round(workflowsRssMB, 1), "MB"),
  ];
}
