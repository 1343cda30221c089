import type { HistoryEvent, Payload, RetryPolicy } from "@dex/proto";
import { ParentClosePolicy } from "@dex/proto";
import type { Duration } from "@bufbuild/protobuf/wkt";
import { decodePayload, failureLine, failureView, formatDuration, isoTime, statusName } from "../payloads.js";
import { formatValue } from "../output.js";

type Attributes = HistoryEvent["attributes"];
/** Every case of HistoryEvent's `attributes` oneof, e.g. "runStarted". */
export type HistoryEventCase = NonNullable<Attributes["case"]>;
type AttributesOf<C extends HistoryEventCase> = Extract<Attributes, { case: C }>["value"];

interface EventFormatter<C extends HistoryEventCase> {
  kind: string;
  details: (value: AttributesOf<C>) => string;
}

/**
 * One formatter per oneof case. A mapped type rather than a switch with a `default:` branch: a new
 * case in history.proto fails the build here until it gets a line that shows its fields (and
 * cli/test/history-format.test.ts checks the same against the generated descriptor).
 */
const formatters: { [C in HistoryEventCase]: EventFormatter<C> } = {
  runStarted: {
    kind: "run started",
    details: (v) =>
      line(
        v.workflowName,
        `instance=${v.instanceId}`,
        `queue=${v.taskQueue}`,
        `input=${payload(v.input)}`,
        labels(v.labels),
        v.priority && `priority=${v.priority}`,
        v.parentRunId && `parent=${v.parentRunId}`,
        v.continuedFromRunId && `(continued from run ${v.continuedFromRunId})`,
        v.resetFromRunId && `(reset from run ${v.resetFromRunId})`,
      ),
  },
  workflowTaskCompleted: { kind: "workflow task completed", details: (v) => `worker=${v.workerId} attempt=${v.attempt}` },
  activityScheduled: {
    kind: "activity scheduled",
    details: (v) =>
      line(
        `#${v.seq} ${v.activityName} on ${v.taskQueue}`,
        `input=${payload(v.input)}`,
        retryPolicy(v.retryPolicy),
        duration("startToClose", v.startToCloseTimeout),
        duration("scheduleToClose", v.scheduleToCloseTimeout),
        duration("heartbeat", v.heartbeatTimeout),
        v.priority && `priority=${v.priority}`,
      ),
  },
  activityCompleted: { kind: "activity completed", details: (v) => `#${v.seq} attempt=${v.attempt} result=${payload(v.result)}` },
  activityFailed: { kind: "activity failed", details: (v) => line(`#${v.seq} attempt=${v.attempt}`, failure(v.failure)) },
  activityCancelRequested: { kind: "activity cancel requested", details: (v) => `#${v.seq}` },
  timerStarted: { kind: "timer started", details: (v) => `#${v.seq} fires ${isoTime(v.fireTime) ?? ""}` },
  timerFired: { kind: "timer fired", details: (v) => `#${v.seq}` },
  timerCancelled: { kind: "timer cancelled", details: (v) => `#${v.seq}` },
  eventWaitStarted: {
    kind: "event wait started",
    details: (v) => line(`#${v.seq} ${v.eventName || v.eventId}`, v.eventName && v.eventId && `(id ${v.eventId})`, v.timeoutTime && `times out ${isoTime(v.timeoutTime)}`),
  },
  externalEventReceived: {
    kind: "event received",
    details: (v) => `${v.eventName || v.eventId} (id ${v.eventId}) ${payload(v.payload)}`,
  },
  eventWaitTimedOut: { kind: "event wait timed out", details: (v) => `#${v.seq}` },
  childRunScheduled: {
    kind: "child run scheduled",
    details: (v) =>
      line(
        `#${v.seq} ${v.workflowName}`,
        `instance=${v.instanceId}`,
        `queue=${v.taskQueue}`,
        `input=${payload(v.input)}`,
        labels(v.labels),
        v.priority && `priority=${v.priority}`,
        v.parentClosePolicy !== ParentClosePolicy.UNSPECIFIED && `parentClose=${enumName(ParentClosePolicy, v.parentClosePolicy)}`,
      ),
  },
  childRunStarted: { kind: "child run started", details: (v) => `#${v.seq} run=${v.runId}` },
  childRunStartFailed: { kind: "child run start failed", details: (v) => line(`#${v.seq}`, failure(v.failure)) },
  childRunEnded: {
    kind: "child run ended",
    details: (v) => line(`#${v.seq} ${statusName(v.status)}`, v.result && `result=${payload(v.result)}`, failure(v.failure)),
  },
  childRunCancelRequested: { kind: "child run cancel requested", details: (v) => `#${v.seq}` },
  sideEffectRecorded: { kind: "side effect recorded", details: (v) => `#${v.seq} value=${payload(v.value)}` },
  patchMarkerRecorded: { kind: "patch marker", details: (v) => `${v.patchId}${v.deprecated ? " (deprecated)" : ""}` },
  cancelRequested: { kind: "cancel requested", details: (v) => (v.reason ? `reason=${JSON.stringify(v.reason)}` : "") },
  // Quoted: an empty custom status (cleared) shows as "" rather than as nothing.
  customStatusSet: { kind: "custom status set", details: (v) => JSON.stringify(v.customStatus) },
  labelsUpserted: { kind: "labels upserted", details: (v) => formatValue(v.labels) },
  runCompleted: { kind: "run completed", details: (v) => `result=${payload(v.result)}` },
  runFailed: { kind: "run failed", details: (v) => failure(v.failure) ?? "" },
  runCancelled: { kind: "run cancelled", details: (v) => (v.details ? `details=${payload(v.details)}` : "") },
  runTerminated: {
    kind: "run terminated",
    details: (v) => (v.resetToRunId ? `${v.reason} (reset to run ${v.resetToRunId})` : v.reason),
  },
  runContinuedAsNew: { kind: "run continued as new", details: (v) => `next run ${v.newRunId} input=${payload(v.input)}` },
  runTimedOut: { kind: "run timed out", details: (v) => (v.runTimeout ? `run timeout ${formatDuration(v.runTimeout)}` : "") },
  updateAccepted: { kind: "update accepted", details: (v) => `${v.updateId} ${v.name} args=${payload(v.args)}` },
  updateCompleted: {
    kind: "update completed",
    details: (v) => line(v.updateId, (v.result || !v.failure) && `result=${payload(v.result)}`, v.failure && `failed: ${failure(v.failure)}`),
  },
};

/** A one-line summary of a history event, with its fields, for the text view of `dex workflow history`. */
export function describeHistoryEvent(event: HistoryEvent): { kind: string; details: string } {
  const a = event.attributes;
  // A case this CLI does not know (an older CLI against a newer server) arrives as undefined.
  if (a.case === undefined) return { kind: "unknown", details: "" };
  const formatter = formatters[a.case] as EventFormatter<typeof a.case> | undefined;
  if (!formatter) return { kind: "unknown", details: a.case };
  return { kind: formatter.kind, details: formatter.details(a.value as never) };
}

/** Whether `dex workflow history` has a formatter for this oneof case (the test walks the descriptor). */
export function hasHistoryEventFormatter(oneofCase: string): boolean {
  return Object.hasOwn(formatters, oneofCase);
}

function line(...parts: Array<string | number | false | undefined | null>): string {
  return parts.filter((part) => part !== undefined && part !== null && part !== false && part !== "" && part !== 0).join(" ");
}

/** Payloads compactly, as one line of JSON (bytes as base64). An absent payload shows as nothing. */
function payload(value: Payload | undefined): string {
  return formatValue(decodePayload(value));
}

function failure(value: Parameters<typeof failureView>[0]): string | undefined {
  return failureLine(failureView(value));
}

function labels(value: Record<string, string>): string | undefined {
  return Object.keys(value).length > 0 ? `labels=${formatValue(value)}` : undefined;
}

function duration(name: string, value: Duration | undefined): string | undefined {
  return value ? `${name}=${formatDuration(value)}` : undefined;
}

function retryPolicy(policy: RetryPolicy | undefined): string | undefined {
  if (!policy) return undefined;
  const fields = line(
    duration("initial", policy.initialInterval),
    policy.backoffCoefficient && `backoff=${policy.backoffCoefficient}`,
    duration("max", policy.maximumInterval),
    policy.maximumAttempts && `attempts=${policy.maximumAttempts}`,
    policy.nonRetryableErrorTypes.length > 0 && `nonRetryable=${policy.nonRetryableErrorTypes.join(",")}`,
  );
  return fields ? `retry(${fields})` : undefined;
}

function enumName(values: Record<number, string>, value: number): string {
  return (values[value] ?? String(value)).toLowerCase();
}
