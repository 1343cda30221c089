/**
 * Test support: builds run histories event by event, and plays the server's
 * part for the replay core (records an activation's inputs, marker and
 * commands as history), so tests can drive a run through many tasks without I/O.
 */
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { HistoryEventSchema, RunStatus, type Command, type Failure, type HistoryEvent } from "@dex/proto";
import { failureToError } from "../src/common/failure.js";
import { decodePayload, encodePayload } from "../src/common/payload.js";
import { WorkflowExecution } from "../src/workflow/execution.js";
import type { ScopeRunner } from "../src/workflow/scope.js";
import type { Workflow, WorkflowInfo } from "../src/workflow/types.js";

type Attributes = HistoryEvent["attributes"];

export const T0 = Date.UTC(2025, 0, 1, 12, 0, 0);

export const testInfo: WorkflowInfo = {
  runId: "0197a000-0000-7000-8000-000000000001",
  instanceId: "order-1",
  workflowName: "orderWorkflow",
  taskQueue: "default",
  attempt: 1,
};

export function event(sequence: number, attributes: Attributes, timeMs = T0): HistoryEvent {
  return create(HistoryEventSchema, { sequence: BigInt(sequence), time: timestampFromMs(timeMs), attributes });
}

export const inputs = {
  runStarted: (input?: unknown): Attributes => ({
    case: "runStarted",
    value: { workflowName: testInfo.workflowName, instanceId: testInfo.instanceId, taskQueue: "default", input: encodePayload(input) } as never,
  }),
  activityCompleted: (seq: number, result?: unknown, attempt = 1): Attributes => ({
    case: "activityCompleted",
    value: { seq, result: encodePayload(result), attempt } as never,
  }),
  activityFailed: (seq: number, failure: Failure, attempt = 1): Attributes => ({
    case: "activityFailed",
    value: { seq, failure, attempt } as never,
  }),
  cancelRequested: (reason = ""): Attributes => ({ case: "cancelRequested", value: { reason } as never }),
  timerFired: (seq: number): Attributes => ({ case: "timerFired", value: { seq } as never }),
  externalEvent: (eventId: string, payload?: unknown): Attributes => ({
    case: "externalEventReceived",
    value: { eventId, payload: encodePayload(payload) } as never,
  }),
  /** An event with a name and an id, as the server records it since names exist. */
  namedEvent: (eventName: string, eventId: string, payload?: unknown): Attributes => ({
    case: "externalEventReceived",
    value: { eventId, eventName, payload: encodePayload(payload) } as never,
  }),
  update: (updateId: string, name: string, args?: unknown): Attributes => ({
    case: "updateAccepted",
    value: { updateId, name, args: encodePayload(args) } as never,
  }),
  eventWaitTimedOut: (seq: number): Attributes => ({ case: "eventWaitTimedOut", value: { seq } as never }),
  childRunStarted: (seq: number, runId = `child-run-${seq}`): Attributes => ({ case: "childRunStarted", value: { seq, runId } as never }),
  childRunStartFailed: (seq: number, failure: Failure): Attributes => ({ case: "childRunStartFailed", value: { seq, failure } as never }),
  childRunCompleted: (seq: number, result?: unknown): Attributes => ({
    case: "childRunEnded",
    value: { seq, status: RunStatus.COMPLETED, result: encodePayload(result) } as never,
  }),
  childRunEnded: (seq: number, status: RunStatus, failure?: Failure): Attributes => ({
    case: "childRunEnded",
    value: { seq, status, failure } as never,
  }),
};

/** The command event the server records for a command (defaults are not applied: replay ignores them). */
export function commandEvent(command: Command): Attributes {
  const c = command.command;
  switch (c.case) {
    case "scheduleActivity":
      return { case: "activityScheduled", value: { seq: c.value.seq, activityName: c.value.activityName, input: c.value.input } as never };
    case "requestCancelActivity":
      return { case: "activityCancelRequested", value: { seq: c.value.seq } as never };
    case "startTimer":
      return { case: "timerStarted", value: { seq: c.value.seq } as never };
    case "cancelTimer":
      return { case: "timerCancelled", value: { seq: c.value.seq } as never };
    case "waitForEvent":
      return { case: "eventWaitStarted", value: { seq: c.value.seq, eventId: c.value.eventId, eventName: c.value.eventName } as never };
    case "startChildRun":
      return {
        case: "childRunScheduled",
        value: { seq: c.value.seq, workflowName: c.value.workflowName, instanceId: c.value.instanceId, input: c.value.input } as never,
      };
    case "requestCancelChildRun":
      return { case: "childRunCancelRequested", value: { seq: c.value.seq } as never };
    case "recordSideEffect":
      return { case: "sideEffectRecorded", value: { seq: c.value.seq, value: c.value.value } as never };
    case "recordPatchMarker":
      return { case: "patchMarkerRecorded", value: { patchId: c.value.patchId, deprecated: c.value.deprecated } as never };
    case "setCustomStatus":
      return { case: "customStatusSet", value: { customStatus: c.value.customStatus } as never };
    case "upsertLabels":
      return { case: "labelsUpserted", value: { labels: c.value.labels } as never };
    case "continueAsNew":
      return { case: "runContinuedAsNew", value: { newRunId: "next-run", input: c.value.input } as never };
    case "completeRun":
      return { case: "runCompleted", value: { result: c.value.result } as never };
    case "completeUpdate":
      return { case: "updateCompleted", value: { updateId: c.value.updateId, result: c.value.result, failure: c.value.failure } as never };
    case "failRun":
      return { case: "runFailed", value: { failure: c.value.failure } as never };
    case "cancelRun":
      return { case: "runCancelled", value: {} as never };
    default:
      throw new Error(`no test mapping for command ${c.case}`);
  }
}

/** Plays the server: holds a run's history and records each activation as the server would. */
export class FakeRun {
  readonly history: HistoryEvent[] = [];
  private inbox: Attributes[] = [];
  private clock = T0;

  constructor(input?: unknown) {
    this.history.push(event(1, inputs.runStarted(input), this.clock));
  }

  /** Queues an input event for the next task. */
  send(...attributes: Attributes[]): this {
    this.inbox.push(...attributes);
    return this;
  }

  /** Hands the next task to `execution`: returns its commands after recording them. */
  async task(execution: WorkflowExecution, options: { stepMs?: number } = {}): Promise<Command[]> {
    this.clock += options.stepMs ?? 1_000;
    const base = this.history.length;
    const newEvents = this.inbox.map((a, i) => event(base + i + 1, a, this.clock));
    this.inbox = [];
    const { commands, expectedHistoryLength, rejectedUpdates } = await execution.activate(newEvents, timestampFromMs(this.clock));
    // As the server does: rejected updates never reach history, nor do those continue-as-new names
    // as undelivered (they go to the next run); the rest are numbered without a gap.
    const rejected = new Set(rejectedUpdates.map((r) => r.updateId));
    for (const { command } of commands) {
      if (command.case === "continueAsNew") for (const id of command.value.undeliveredUpdateIds) rejected.add(id);
    }
    const kept = newEvents.filter((e) => !(e.attributes.case === "updateAccepted" && rejected.has(e.attributes.value.updateId)));
    kept.forEach((e, i) => (e.sequence = BigInt(base + i + 1)));
    this.record(kept, commands);
    execution.historyLength = this.history.length;
    if (expectedHistoryLength !== this.history.length) throw new Error("expectedHistoryLength is wrong");
    return commands;
  }

  /** A fresh execution that replays the whole history (a cache miss). */
  async replayed(workflow: Workflow, runner?: ScopeRunner): Promise<WorkflowExecution> {
    const execution = new WorkflowExecution({ info: testInfo, workflow, runner });
    await execution.replay(this.history);
    return execution;
  }

  private record(newEvents: HistoryEvent[], commands: Command[]): void {
    this.history.push(...newEvents);
    this.history.push(event(this.history.length + 1, { case: "workflowTaskCompleted", value: { attempt: 1 } as never }, this.clock));
    for (const command of commands) this.history.push(event(this.history.length + 1, commandEvent(command), this.clock));
  }
}

export function newExecution(workflow: Workflow, runner?: ScopeRunner): WorkflowExecution {
  return new WorkflowExecution({ info: testInfo, workflow, runner });
}

/** Short description of commands for assertions: ["schedule a#1", "timer#2", "complete"]. */
export function summarize(commands: Command[]): string[] {
  return commands.map((command) => {
    const c = command.command;
    switch (c.case) {
      case "scheduleActivity":
        return `schedule ${c.value.activityName}#${c.value.seq}`;
      case "requestCancelActivity":
        return `cancel activity#${c.value.seq}`;
      case "startTimer":
        return `timer#${c.value.seq}`;
      case "cancelTimer":
        return `cancel timer#${c.value.seq}`;
      case "waitForEvent":
        return `wait ${c.value.eventId}#${c.value.seq}`;
      case "startChildRun":
        return `child ${c.value.workflowName}#${c.value.seq}`;
      case "requestCancelChildRun":
        return `cancel child#${c.value.seq}`;
      case "recordSideEffect":
        return `side effect#${c.value.seq}`;
      case "recordPatchMarker":
        return `patch ${c.value.patchId}${c.value.deprecated ? " (deprecated)" : ""}`;
      case "setCustomStatus":
        return `status "${c.value.customStatus}"`;
      case "upsertLabels":
        return `labels ${Object.entries(c.value.labels).map(([k, v]) => `${k}=${v}`).join(",")}`;
      case "continueAsNew":
        return "continue-as-new";
      case "completeRun":
        return "complete";
      case "failRun":
        return "fail";
      case "cancelRun":
        return "cancel";
      default:
        return String(c.case);
    }
  });
}

/** The decoded result of a run's last command, which must be complete_run. */
export function resultOf(commands: Command[]): unknown {
  const last = commands.at(-1)?.command;
  if (last?.case !== "completeRun") throw new Error(`expected complete_run, got ${last?.case}`);
  return decodePayload(last.value.result);
}

/** The error a run's last command (fail_run) carries, rebuilt. */
export function failureOf(commands: Command[]): Error {
  const last = commands.at(-1)?.command;
  if (last?.case !== "failRun" || !last.value.failure) throw new Error(`expected fail_run, got ${last?.case}`);
  return failureToError(last.value.failure);
}
