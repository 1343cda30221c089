/**
 * Replays a recorded history against workflow code, for tests that keep
 * histories in the repository: throws NonDeterminismError when today's code
 * would not reproduce the recorded commands.
 */
import type { HistoryEvent } from "@dex/proto";
import { WorkflowExecution } from "../workflow/execution.js";
import type { Workflow, WorkflowInfo } from "../workflow/types.js";
import { guardedRunner, installDeterminismGuard } from "./determinism-guard.js";

export async function replayHistory(
  workflow: Workflow,
  history: readonly HistoryEvent[],
  info: Partial<WorkflowInfo> = {},
): Promise<{ finished: boolean }> {
  installDeterminismGuard();
  const started = history[0]?.attributes.case === "runStarted" ? history[0].attributes.value : undefined;
  const execution = new WorkflowExecution({
    info: {
      runId: info.runId ?? "replay",
      instanceId: info.instanceId ?? started?.instanceId ?? "",
      workflowName: info.workflowName ?? started?.workflowName ?? workflow.name,
      taskQueue: info.taskQueue ?? started?.taskQueue ?? "",
      attempt: info.attempt ?? 1,
    },
    workflow,
    runner: guardedRunner,
  });
  await execution.replay(history);
  return { finished: execution.finished };
}
