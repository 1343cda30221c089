/** UpdateRun's answer: the engine's outcome in proto form (engine/updates.ts). */
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { UpdateRunResponseSchema } from "@dex/proto";
import type { UpdateOutcome } from "../engine/updates.js";

export function updateRunResponse(runId: string, outcome: UpdateOutcome): MessageInitShape<typeof UpdateRunResponseSchema> {
  switch (outcome.kind) {
    case "result":
      return { runId, outcome: { case: "result", value: outcome.result ?? {} } };
    case "failure":
      return { runId, outcome: { case: "failure", value: outcome.failure } };
    case "rejection":
      return { runId, outcome: { case: "rejection", value: outcome.failure } };
    case "stillRunning":
      return { runId, stillRunning: true };
  }
}
