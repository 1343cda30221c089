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
