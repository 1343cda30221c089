/**
 * The replay check of one run, the unit `replayRuns` and `replayHistoryFiles`
 * are made of: a run's history, arriving page by page, replayed against new
 * workflow code, and the verdict as data (never a thrown error), so a check of
 * thousands of runs reports every failing run instead of stopping at the first.
 */
import type { HistoryEvent } from "@dex/proto";
import { NonDeterminismError } from "../common/errors.js";
import { classifyEvent } from "../workflow/commands.js";
import { WorkflowExecution } from "../workflow/execution.js";
import type { Workflow } from "../workflow/types.js";
import { guardedRunner, installDeterminismGuard } from "./determinism-guard.js";

/**
 * - `replays`: the new code reproduces every recorded command;
 * - `non-determinism`: it issues different commands (`failure` names the first diverging event);
 * - `unknown-workflow`: the given workflows have none of the run's name (a deploy would leave the run stuck);
 * - `error`: replay failed otherwise (a determinism violation such as `setTimeout`, an undecodable payload).
 * Every status but `replays` counts as a run that would fail.
 */
export type RunReplayStatus = "replays" | "non-determinism" | "unknown-workflow" | "error";

/** Why a run would fail; the `event*`, `recorded` and `produced` fields come from NonDeterminismError. */
export interface RunReplayFailure {
  message: string;
  /** Sequence number of the first history event that diverged. */
  eventSequence?: number;
  /** Its kind, e.g. "activity_scheduled" ("end of history" when the code produced more than was recorded). */
  eventKind?: string;
  /** The command the history recorded there, e.g. `activity_scheduled(seq 2, "charge")`. */
  recorded?: string;
  /** The command the new code produced instead. */
  produced?: string;
}

export interface RunReplayResult {
  runId: string;
  instanceId: string;
  workflowName: string;
  taskQueue: string;
  /** Where the history came from: "server", or the path of a history file. */
  source: string;
  status: RunReplayStatus;
  /** History events replayed (0 for an unknown workflow, whose history is not read). */
  eventsReplayed: number;
  failure?: RunReplayFailure;
}

/** A run to check: who it is and where its history comes from. */
export interface RunToReplay {
  runId: string;
  instanceId: string;
  workflowName: string;
  taskQueue: string;
  source: string;
}

export type WorkflowRegistry = Readonly<Record<string, Workflow>>;

/** The registered workflow of that name; own properties only, so "constructor" is no workflow. */
export function findWorkflow(workflows: WorkflowRegistry, name: string): Workflow | undefined {
  const found = Object.hasOwn(workflows, name) ? workflows[name] : undefined;
  return typeof found === "function" ? found : undefined;
}

/**
 * Replays `pages` (the run's history in order, in any slicing) against the run's
 * workflow. Memory: the replay core needs a workflow task's block whole (its
 * marker looks ahead at the block's recorded side effects), so events are
 * handed over up to the last input event received (where no block is open)
 * and the rest waits for the next page. A run then holds about one page of
 * events, whatever its history's length.
 */
export async function replayRun(
  run: RunToReplay,
  workflows: WorkflowRegistry,
  pages: () => AsyncIterable<readonly HistoryEvent[]>,
): Promise<RunReplayResult> {
  const workflow = findWorkflow(workflows, run.workflowName);
  if (!workflow) {
    const known = Object.keys(workflows).sort().join(", ") || "none";
    return {
      ...run,
      status: "unknown-workflow",
      eventsReplayed: 0,
      failure: { message: `unknown workflow "${run.workflowName}": the module registers no workflow of that name (it registers: ${known})` },
    };
  }
  installDeterminismGuard();
  const execution = new WorkflowExecution({
    info: { runId: run.runId, instanceId: run.instanceId, workflowName: run.workflowName, taskQueue: run.taskQueue, attempt: 1 },
    workflow,
    runner: guardedRunner,
  });
  let pending: HistoryEvent[] = [];
  try {
    for await (const page of pages()) {
      pending = pending.length === 0 ? [...page] : pending.concat(page);
      const cut = afterLastInput(pending);
      if (cut === 0) continue;
      await execution.replay(cut === pending.length ? pending : pending.slice(0, cut));
      pending = pending.slice(cut);
    }
    if (pending.length > 0) await execution.replay(pending);
  } catch (err) {
    return { ...run, ...verdict(err), eventsReplayed: execution.historyLength };
  }
  return { ...run, status: "replays", eventsReplayed: execution.historyLength };
}

/** The index just past the last input event: a safe end for one `replay` call (see replayRun). */
function afterLastInput(events: readonly HistoryEvent[]): number {
  for (let i = events.length - 1; i >= 0; i--) {
    if (classifyEvent(events[i]!) === "input") return i + 1;
  }
  return 0;
}

function verdict(err: unknown): Pick<RunReplayResult, "status" | "failure"> {
  if (err instanceof NonDeterminismError) {
    const failure: RunReplayFailure = { message: err.message };
    if (err.eventSequence !== undefined) failure.eventSequence = err.eventSequence;
    if (err.eventKind !== undefined) failure.eventKind = err.eventKind;
    if (err.recorded !== undefined) failure.recorded = err.recorded;
    if (err.produced !== undefined) failure.produced = err.produced;
    return { status: "non-determinism", failure };
  }
  const message = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
  return { status: "error", failure: { message } };
}
