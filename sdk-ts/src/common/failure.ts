/**
 * Error <-> Failure conversion. A Failure keeps message, type (the error's
 * name or explicit type), stack, the cause chain, non_retryable and details,
 * so an error thrown in an activity on one machine is rebuilt faithfully in a
 * workflow on another.
 */
import { create } from "@bufbuild/protobuf";
import { FailureKind, FailureSchema, TimeoutType as ProtoTimeoutType, type Failure } from "@dex/proto";
import {
  ActivityFailure,
  ApplicationFailure,
  CancelledFailure,
  ChildWorkflowFailure,
  ChildWorkflowStartFailure,
  EventWaitTimeoutError,
  NonDeterminismError,
  TimeoutFailure,
  type RunStatusName,
  type TimeoutType,
} from "./errors.js";
import { decodePayload, encodePayload } from "./payload.js";

/** Deeper cause chains are cut: a cycle or a pathological chain must not blow the stack. */
const MAX_CAUSE_DEPTH = 20;

export function errorToFailure(err: unknown, depth = 0): Failure {
  const failure = create(FailureSchema, { kind: FailureKind.APPLICATION });
  if (!(err instanceof Error)) {
    failure.message = typeof err === "string" ? err : safeJson(err);
    failure.type = "Error";
    return failure;
  }
  failure.message = err.message;
  failure.type = err.name;
  failure.stack = err.stack ?? "";
  if (err instanceof ApplicationFailure) {
    failure.type = err.type;
    failure.nonRetryable = err.nonRetryable;
    if (err.details !== undefined) failure.details = encodeDetails(err.details);
  } else if (err instanceof ActivityFailure) {
    failure.kind = FailureKind.ACTIVITY;
    failure.details = encodePayload({ activityName: err.activityName, seq: err.seq, attempt: err.attempt });
  } else if (err instanceof CancelledFailure) {
    failure.kind = FailureKind.CANCELLED;
    failure.nonRetryable = true;
  } else if (err instanceof ChildWorkflowFailure) {
    failure.kind = FailureKind.CHILD_RUN;
    failure.details = encodePayload({
      instanceId: err.instanceId,
      runId: err.runId,
      workflowName: err.workflowName,
      status: err.status,
    });
  } else if (err instanceof ChildWorkflowStartFailure) {
    failure.kind = FailureKind.CHILD_RUN;
    failure.details = encodePayload({ instanceId: err.instanceId, workflowName: err.workflowName, startFailed: err.type });
  } else if (err instanceof TimeoutFailure) {
    failure.kind = FailureKind.TIMEOUT;
    failure.timeoutType = ProtoTimeoutType[err.timeoutType];
    if (err instanceof EventWaitTimeoutError) failure.details = encodePayload({ eventId: err.eventId });
  } else if (err instanceof NonDeterminismError) {
    failure.kind = FailureKind.NON_DETERMINISM;
  }
  if (err.cause !== undefined && depth < MAX_CAUSE_DEPTH) failure.cause = errorToFailure(err.cause, depth + 1);
  return failure;
}

export function failureToError(failure: Failure): Error {
  const cause = failure.cause ? failureToError(failure.cause) : undefined;
  let err: Error;
  switch (failure.kind) {
    case FailureKind.ACTIVITY: {
      const info = safeDecode(failure) as { activityName?: string; seq?: number; attempt?: number } | undefined;
      err = new ActivityFailure(
        info?.activityName ?? "",
        info?.seq ?? 0,
        info?.attempt ?? 0,
        cause ?? new ApplicationFailure(failure.message),
        failure.message,
      );
      break;
    }
    case FailureKind.CANCELLED:
      err = new CancelledFailure(failure.message, cause ? { cause } : undefined);
      break;
    case FailureKind.CHILD_RUN:
      err = childFailureToError(failure, cause);
      break;
    case FailureKind.TIMEOUT: {
      const type = timeoutTypeName(failure.timeoutType);
      const eventId = (safeDecode(failure) as { eventId?: unknown } | undefined)?.eventId;
      err =
        type === "EVENT_WAIT" && typeof eventId === "string"
          ? new EventWaitTimeoutError(eventId, failure.message)
          : new TimeoutFailure(failure.message, type, cause ? { cause } : undefined);
      break;
    }
    case FailureKind.NON_DETERMINISM:
      err = new NonDeterminismError(failure.message, cause ? { cause } : undefined);
      break;
    default:
      err = new ApplicationFailure(failure.message, {
        type: failure.type || "Error",
        nonRetryable: failure.nonRetryable,
        details: safeDecode(failure),
        cause,
      });
  }
  err.stack = failure.stack || `${failure.type || err.name}: ${failure.message}`;
  return err;
}

function childFailureToError(failure: Failure, cause: Error | undefined): Error {
  const info = (safeDecode(failure) ?? {}) as {
    instanceId?: string;
    runId?: string;
    workflowName?: string;
    status?: RunStatusName;
    startFailed?: string;
  };
  const child = { instanceId: info.instanceId ?? "", workflowName: info.workflowName ?? "" };
  if (info.startFailed !== undefined) {
    return new ChildWorkflowStartFailure(child, info.startFailed, cause, failure.message);
  }
  return new ChildWorkflowFailure(
    { ...child, runId: info.runId ?? "", status: info.status ?? "FAILED" },
    cause ?? new ApplicationFailure(failure.message),
    failure.message,
  );
}

/** A Failure as a plain object, for describe output and logs. */
export interface FailureInfo {
  message: string;
  type: string;
  kind: string;
  stack?: string;
  nonRetryable?: boolean;
  details?: unknown;
  cause?: FailureInfo;
}

export function failureToInfo(failure: Failure): FailureInfo {
  const info: FailureInfo = {
    message: failure.message,
    type: failure.type,
    kind: FailureKind[failure.kind] ?? "UNSPECIFIED",
  };
  if (failure.stack) info.stack = failure.stack;
  if (failure.nonRetryable) info.nonRetryable = true;
  const details = safeDecode(failure);
  if (details !== undefined) info.details = details;
  if (failure.cause) info.cause = failureToInfo(failure.cause);
  return info;
}

function timeoutTypeName(value: ProtoTimeoutType): TimeoutType {
  return (ProtoTimeoutType[value] as TimeoutType | undefined) ?? "UNSPECIFIED";
}

function encodeDetails(details: unknown) {
  try {
    return encodePayload(details);
  } catch {
    return encodePayload(String(details));
  }
}

function safeDecode(failure: Failure): unknown {
  try {
    return decodePayload(failure.details);
  } catch {
    return undefined;
  }
}

function safeJson(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}
