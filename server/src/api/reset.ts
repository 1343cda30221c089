/** ClientService.ResetRun and the reset chain in DescribeRun: validation and proto mapping around engine/reset.ts. */
import type { MessageInitShape } from "@bufbuild/protobuf";
import { ResetPointKind, type ResetRunRequest, type ResetRunResponseSchema } from "@dex/proto";
import type { Engine } from "../engine/context.js";
import { MAX_REASON_LENGTH } from "../engine/limits.js";
import { resetLinks, resetRun } from "../engine/reset.js";
import type { ResetPoint } from "../engine/reset-plan.js";
import { invalid, optionalString, optionalText } from "../engine/validation.js";
import { runSelector } from "./common.js";

/** history_events.sequence is an integer column. */
const MAX_SEQUENCE = 2 ** 31 - 1;

export async function handleResetRun(engine: Engine, req: ResetRunRequest): Promise<MessageInitShape<typeof ResetRunResponseSchema>> {
  const selector = runSelector("run", req.run);
  const point = resetPoint(req);
  const reset = await resetRun(engine, {
    selector,
    point,
    reason: optionalText("reason", req.reason, MAX_REASON_LENGTH),
    requestId: optionalString("request_id", req.requestId),
  });
  return {
    runId: reset.runId,
    created: reset.created,
    keptEvents: BigInt(reset.keptEvents),
    redeliveredEvents: reset.redeliveredEvents,
  };
}

function resetPoint(req: ResetRunRequest): ResetPoint {
  switch (req.to) {
    case ResetPointKind.FIRST_WORKFLOW_TASK:
    case ResetPointKind.LAST_WORKFLOW_TASK:
      if (req.eventSequence !== 0n) throw invalid(`event_sequence must be 0 unless to is RESET_POINT_KIND_EVENT, got ${req.eventSequence}`);
      return { kind: req.to === ResetPointKind.FIRST_WORKFLOW_TASK ? "first_workflow_task" : "last_workflow_task" };
    case ResetPointKind.EVENT:
      if (req.eventSequence < 1n || req.eventSequence > BigInt(MAX_SEQUENCE)) {
        throw invalid(
          `event_sequence must name an event of the run's history (1 for the start, or a workflow_task_completed marker), got ${req.eventSequence}`,
        );
      }
      return { kind: "event", sequence: Number(req.eventSequence) };
    default:
      throw invalid(
        `to is required: RESET_POINT_KIND_FIRST_WORKFLOW_TASK, RESET_POINT_KIND_LAST_WORKFLOW_TASK or RESET_POINT_KIND_EVENT (with event_sequence), got ${req.to}`,
      );
  }
}

/** DescribeRunResponse's reset fields (30-32). */
export async function resetDescribeFields(
  engine: Engine,
  runId: string,
): Promise<{ resetFromRunId: string; resetToRunId: string; resetReason: string }> {
  const links = await resetLinks(engine, runId);
  return { resetFromRunId: links.resetFromRunId ?? "", resetToRunId: links.resetToRunId ?? "", resetReason: links.resetReason ?? "" };
}
