/**
 * Reset a run (admin keys only; decision 0026): to its first or last workflow task, or to the
 * workflow task that ended at a given event (the history's workflow task completed markers, or 1
 * for the start), with a reason. An open run ends TERMINATED; the new run is linked.
 */
import { useState } from "preact/hooks";
import { ResetPointKind } from "../../../proto/src/gen/dex/v1/client_service_pb.js";
import type { HistoryEvent } from "../../../proto/src/gen/dex/v1/history_pb.js";
import { client } from "./api.js";
import { ActionResult, useAction } from "./action-result.js";
import { randomUuid } from "./uuid.js";

type Point = "first" | "last" | "event";
const KIND: Record<Point, ResetPointKind> = {
  first: ResetPointKind.FIRST_WORKFLOW_TASK,
  last: ResetPointKind.LAST_WORKFLOW_TASK,
  event: ResetPointKind.EVENT,
};

export function RunReset({ runId, events, onDone }: { runId: string; events: HistoryEvent[]; onDone: () => void }) {
  const [to, setTo] = useState<Point>("last");
  const [sequence, setSequence] = useState("1");
  const [reason, setReason] = useState("");
  const { message, act } = useAction(onDone);
  // The points a reset may go to: the start, and each workflow task's completed marker.
  const markers = events.filter((e) => e.attributes.case === "workflowTaskCompleted").map((e) => e.sequence.toString());
  const submit = (e: Event) => {
    e.preventDefault();
    if (!confirm("Reset this run? If open, it ends TERMINATED and a new run continues from the point.")) return;
    void act("reset", async () => {
      const answer = await client.resetRun({
        run: { target: { case: "runId", value: runId } },
        to: KIND[to],
        eventSequence: to === "event" ? BigInt(sequence) : 0n,
        reason: reason.trim(),
        requestId: randomUuid(),
      });
      return (
        <>
          reset: new run <a href={`#/runs/${encodeURIComponent(answer.runId)}`} data-testid="reset-new-run">{answer.runId}</a> ({answer.keptEvents.toString()} events kept, {answer.redeliveredEvents} external events re-delivered)
        </>
      );
    });
  };
  return (
    <form class="run-reset" onSubmit={submit}>
      <strong>Reset</strong>
      <select name="reset-to" value={to} onChange={(e) => setTo(e.currentTarget.value as Point)}>
        <option value="last">to the last workflow task</option>
        <option value="first">to the first workflow task</option>
        <option value="event">before the workflow task completed at event…</option>
      </select>
      {to === "event" && (
        <select name="reset-event" value={sequence} onChange={(e) => setSequence(e.currentTarget.value)}>
          <option value="1">#1 (the start)</option>
          {markers.map((seq) => (
            <option value={seq}>#{seq}</option>
          ))}
        </select>
      )}
      <input name="reset-reason" placeholder="reason (recorded in history)" value={reason} onInput={(e) => setReason(e.currentTarget.value)} required />
      <button type="submit" class="danger">Reset</button>
      <ActionResult message={message} testId="reset-result" />
    </form>
  );
}
