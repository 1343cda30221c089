/**
 * Identity of commands and command events, for the replay check. The server
 * applies defaults before it records a command, so replay compares only what
 * the workflow chose: the kind, the `seq`, and a name (activity, workflow,
 * event id, patch id). Options are deliberately not compared.
 */
import type { Command, HistoryEvent } from "@dex/proto";

type EventCase = NonNullable<HistoryEvent["attributes"]["case"]>;
type CommandCase = NonNullable<Command["command"]["case"]>;

/** Which command event records each command. */
const eventOfCommand: Record<CommandCase, EventCase> = {
  scheduleActivity: "activityScheduled",
  requestCancelActivity: "activityCancelRequested",
  startTimer: "timerStarted",
  cancelTimer: "timerCancelled",
  waitForEvent: "eventWaitStarted",
  startChildRun: "childRunScheduled",
  requestCancelChildRun: "childRunCancelRequested",
  recordSideEffect: "sideEffectRecorded",
  recordPatchMarker: "patchMarkerRecorded",
  setCustomStatus: "customStatusSet",
  upsertLabels: "labelsUpserted",
  completeRun: "runCompleted",
  failRun: "runFailed",
  cancelRun: "runCancelled",
  continueAsNew: "runContinuedAsNew",
  completeUpdate: "updateCompleted",
};

const commandEventCases = new Set<EventCase>(Object.values(eventOfCommand));

/** Events the workflow learns from; everything before a block's marker. */
const inputEventCases = new Set<EventCase>([
  "runStarted",
  "activityCompleted",
  "activityFailed",
  "timerFired",
  "externalEventReceived",
  "eventWaitTimedOut",
  "childRunStarted",
  "childRunStartFailed",
  "childRunEnded",
  "cancelRequested",
  "updateAccepted",
]);

export type EventClass = "input" | "marker" | "command" | "server";

export function classifyEvent(event: HistoryEvent): EventClass {
  const kind = event.attributes.case;
  if (kind === "workflowTaskCompleted") return "marker";
  if (kind !== undefined && commandEventCases.has(kind)) return "command";
  if (kind !== undefined && inputEventCases.has(kind)) return "input";
  // run_terminated (written by the server) and unknown future kinds: nothing to replay.
  return "server";
}

export interface Identity {
  /** The command event kind, e.g. "activityScheduled". */
  readonly kind: EventCase;
  readonly seq?: number;
  readonly name?: string;
}

export function commandIdentity(command: Command): Identity {
  const c = command.command;
  switch (c.case) {
    case "scheduleActivity":
      return { kind: "activityScheduled", seq: c.value.seq, name: c.value.activityName };
    case "startChildRun":
      return { kind: "childRunScheduled", seq: c.value.seq, name: c.value.workflowName };
    case "waitForEvent":
      return { kind: "eventWaitStarted", seq: c.value.seq, name: c.value.eventName || c.value.eventId };
    case "requestCancelActivity":
    case "requestCancelChildRun":
    case "startTimer":
    case "cancelTimer":
    case "recordSideEffect":
      return { kind: eventOfCommand[c.case], seq: c.value.seq };
    case "recordPatchMarker":
      return { kind: "patchMarkerRecorded", name: c.value.patchId };
    case "completeUpdate":
      return { kind: "updateCompleted", name: c.value.updateId };
    case undefined:
      throw new Error("command without a kind");
    default:
      return { kind: eventOfCommand[c.case] };
  }
}

export function eventIdentity(event: HistoryEvent): Identity {
  const a = event.attributes;
  switch (a.case) {
    case "activityScheduled":
      return { kind: a.case, seq: a.value.seq, name: a.value.activityName };
    case "childRunScheduled":
      return { kind: a.case, seq: a.value.seq, name: a.value.workflowName };
    case "eventWaitStarted":
      // Histories from before names existed name the event in event_id.
      return { kind: a.case, seq: a.value.seq, name: a.value.eventName || a.value.eventId };
    case "activityCancelRequested":
    case "childRunCancelRequested":
    case "timerStarted":
    case "timerCancelled":
    case "sideEffectRecorded":
      return { kind: a.case, seq: a.value.seq };
    case "patchMarkerRecorded":
      return { kind: a.case, name: a.value.patchId };
    case "updateCompleted":
      return { kind: a.case, name: a.value.updateId };
    case undefined:
      throw new Error(`history event ${event.sequence} has no attributes`);
    default:
      return { kind: a.case };
  }
}

export function sameIdentity(a: Identity, b: Identity): boolean {
  return a.kind === b.kind && a.seq === b.seq && a.name === b.name;
}

/** `activity_scheduled(seq 2, "charge")`: how identities appear in error messages. */
export function formatIdentity(id: Identity): string {
  const parts: string[] = [];
  if (id.seq !== undefined) parts.push(`seq ${id.seq}`);
  if (id.name !== undefined) parts.push(JSON.stringify(id.name));
  return `${snakeCase(id.kind)}(${parts.join(", ")})`;
}

export function eventKindName(event: HistoryEvent): string {
  return event.attributes.case ? snakeCase(event.attributes.case) : "unknown";
}

function snakeCase(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}
