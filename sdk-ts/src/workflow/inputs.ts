/**
 * Delivery of input events (everything but run_started, which starts the
 * code) to the awaits they settle. Delivery itself runs no workflow code but
 * event handlers (`ctx.onEvent`, events.ts): it resolves or rejects promises, and the code's continuations run after
 * the whole block was delivered, in the order the promises settled. Live
 * and on replay a block's inputs arrive in the same order, so races (an
 * event against a time-out, a timer against an event) replay identically.
 */
import type { Failure, HistoryEvent, Payload } from "@dex/proto";
import { RunStatus } from "@dex/proto";
import {
  ActivityFailure,
  ApplicationFailure,
  ChildWorkflowFailure,
  ChildWorkflowStartFailure,
  EventWaitTimeoutError,
  type RunStatusName,
} from "../common/errors.js";
import { failureToError } from "../common/failure.js";
import { decodePayload, PayloadError } from "../common/payload.js";
import { eventKindName } from "./commands.js";
import type { ReceivedEvents } from "./events.js";
import type { PendingAwaits } from "./pending.js";

export interface InputState {
  readonly pending: PendingAwaits;
  /** External events by name: pending waits first, then the handler, else buffered (events.ts). */
  readonly events: ReceivedEvents;
  /** The highest seq the code has issued. */
  issuedUpTo(): number;
  requestCancel(reason: string): void;
}

export function deliverInput(state: InputState, event: HistoryEvent): void {
  const a = event.attributes;
  const upTo = state.issuedUpTo();
  switch (a.case) {
    case "activityCompleted":
      state.pending.take(a.value.seq, "activity", event, upTo)?.resolve(decodeInput(a.value.result, event));
      return;
    case "activityFailed": {
      const p = state.pending.take(a.value.seq, "activity", event, upTo);
      if (p?.target.kind !== "activity") return;
      const cause = a.value.failure ? failureToError(a.value.failure) : new Error("activity failed");
      p.reject(new ActivityFailure(p.target.name, a.value.seq, a.value.attempt, cause));
      return;
    }
    case "timerFired":
      state.pending.take(a.value.seq, "timer", event, upTo)?.resolve(undefined);
      return;
    case "externalEventReceived": {
      const { eventId, eventName, payload } = a.value;
      // Histories from before names existed leave the name empty: the id was the name.
      state.events.deliver({ id: eventId, name: eventName || eventId, raw: payload, payload: decodeInput(payload, event) });
      return;
    }
    case "eventWaitTimedOut": {
      const p = state.pending.take(a.value.seq, "eventWait", event, upTo);
      if (p?.target.kind === "eventWait") p.reject(new EventWaitTimeoutError(p.target.eventName));
      return;
    }
    case "childRunStarted": {
      const p = state.pending.peek(a.value.seq, "child", event, upTo);
      if (p?.target.kind === "child") p.target.runId = a.value.runId;
      return;
    }
    case "childRunStartFailed": {
      const p = state.pending.take(a.value.seq, "child", event, upTo);
      if (p?.target.kind !== "child") return;
      // The failure's type says why ("InstanceIdConflict", "TaskQueueNotFound"); the server always sets one.
      const cause = a.value.failure ? failureToError(a.value.failure) : undefined;
      p.reject(new ChildWorkflowStartFailure(p.target, a.value.failure?.type || "Unknown", cause));
      return;
    }
    case "childRunEnded": {
      const p = state.pending.take(a.value.seq, "child", event, upTo);
      if (p?.target.kind !== "child") return;
      if (a.value.status === RunStatus.COMPLETED) {
        p.resolve(decodeInput(a.value.result, event));
        return;
      }
      const status = (RunStatus[a.value.status] as RunStatusName | undefined) ?? "UNSPECIFIED";
      p.reject(new ChildWorkflowFailure({ ...p.target, status }, childCause(a.value.failure, status)));
      return;
    }
    case "cancelRequested":
      state.requestCancel(a.value.reason);
      return;
    default:
      throw new Error(
        `history event ${event.sequence} (${eventKindName(event)}) is not an input this SDK version understands`,
      );
  }
}

function childCause(failure: Failure | undefined, status: RunStatusName): Error {
  return failure ? failureToError(failure) : new ApplicationFailure(`child run ended ${status}`, { type: status });
}

export function decodeInput(payload: Payload | undefined, event: HistoryEvent): unknown {
  try {
    return decodePayload(payload);
  } catch (err) {
    throw new PayloadError(`history event ${event.sequence} (${eventKindName(event)}): ${(err as Error).message}`, {
      cause: err,
    });
  }
}
