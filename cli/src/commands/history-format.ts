import { durationMs } from "@bufbuild/protobuf/wkt";
import type { HistoryEvent } from "@dex/proto";
import { decodePayload, failureLine, failureView, isoTime } from "../payloads.js";
import { formatValue } from "../output.js";

/** A one-line summary of a history event for the text view of `dex workflow history`. */
export function describeHistoryEvent(event: HistoryEvent): { kind: string; details: string } {
  const a = event.attributes;
  switch (a.case) {
    case "runStarted":
      return {
        kind: "run started",
        details: `${a.value.workflowName} input=${formatValue(decodePayload(a.value.input))}${a.value.resetFromRunId ? ` (reset from run ${a.value.resetFromRunId})` : ""}`,
      };
    case "workflowTaskCompleted":
      return { kind: "workflow task completed", details: `worker=${a.value.workerId} attempt=${a.value.attempt}` };
    case "activityScheduled":
      return { kind: "activity scheduled", details: `#${a.value.seq} ${a.value.activityName} on ${a.value.taskQueue}` };
    case "activityCompleted":
      return {
        kind: "activity completed",
        details: `#${a.value.seq} attempt=${a.value.attempt} result=${formatValue(decodePayload(a.value.result))}`,
      };
    case "activityFailed":
      return { kind: "activity failed", details: `#${a.value.seq} attempt=${a.value.attempt} ${failureLine(failureView(a.value.failure)) ?? ""}` };
    case "timerStarted":
      return { kind: "timer started", details: `#${a.value.seq} fires ${isoTime(a.value.fireTime) ?? ""}` };
    case "timerFired":
      return { kind: "timer fired", details: `#${a.value.seq}` };
    case "externalEventReceived":
      return {
        kind: "event received",
        details: `${a.value.eventName || a.value.eventId} (id ${a.value.eventId}) ${formatValue(decodePayload(a.value.payload))}`,
      };
    case "eventWaitStarted": {
      const timeout = isoTime(a.value.timeoutTime);
      return { kind: "event wait started", details: `#${a.value.seq} ${a.value.eventName || a.value.eventId}${timeout ? ` times out ${timeout}` : ""}` };
    }
    case "runContinuedAsNew":
      return { kind: "run continued as new", details: `next run ${a.value.newRunId}` };
    case "updateAccepted":
      return { kind: "update accepted", details: `${a.value.updateId} ${a.value.name} ${formatValue(decodePayload(a.value.args))}` };
    case "updateCompleted":
      return {
        kind: "update completed",
        details: `${a.value.updateId} ${a.value.failure ? `failed: ${a.value.failure.message}` : formatValue(decodePayload(a.value.result))}`,
      };
    case "patchMarkerRecorded":
      return { kind: "patch marker", details: `${a.value.patchId}${a.value.deprecated ? " (deprecated)" : ""}` };
    case "runCompleted":
      return { kind: "run completed", details: `result=${formatValue(decodePayload(a.value.result))}` };
    case "runFailed":
      return { kind: "run failed", details: failureLine(failureView(a.value.failure)) ?? "" };
    case "runTerminated":
      return { kind: "run terminated", details: a.value.resetToRunId ? `${a.value.reason} (reset to run ${a.value.resetToRunId})` : a.value.reason };
    case "runTimedOut":
      return { kind: "run timed out", details: a.value.runTimeout ? `run timeout ${durationMs(a.value.runTimeout)}ms` : "" };
    case undefined:
      return { kind: "unknown", details: "" };
    default:
      return { kind: a.case.replace(/[A-Z]/g, (c) => ` ${c.toLowerCase()}`), details: "" };
  }
}
