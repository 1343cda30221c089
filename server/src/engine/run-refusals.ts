/**
 * Typed details for the refusals a program must tell apart by more than the
 * status code (docs/errors.md): which run blocked a start, how the run a call
 * was aimed at ended. The message says the same for a person; these let a
 * caller act without parsing it (take the open run's id, stop retrying an
 * event to a completed run).
 */
import { ErrorReason, RunStatus as ProtoRunStatus, type ErrorDetailsInit, type Failure } from "@dex/proto";
import type { RunStatus } from "./model.js";

/** A domain status as the proto enum: model.ts spells statuses as the enum names them. */
function protoStatus(status: string): ProtoRunStatus {
  return ProtoRunStatus[status as RunStatus] ?? ProtoRunStatus.UNSPECIFIED;
}

/** ALREADY_EXISTS: the instance id has this open run. */
export function runAlreadyOpen(instanceId: string, runId: string): ErrorDetailsInit {
  return { reason: ErrorReason.RUN_ALREADY_OPEN, instanceId, runId };
}

/** ALREADY_EXISTS: no open run, and the reuse policy refuses a run after this latest one. */
export function runReuseRejected(instanceId: string, latestRunId: string, latestStatus: string): ErrorDetailsInit {
  return { reason: ErrorReason.RUN_REUSE_REJECTED, instanceId, runId: latestRunId, runStatus: protoStatus(latestStatus) };
}

/** FAILED_PRECONDITION: the run has ended, with this status. */
export function runEnded(run: { id: string; instanceId: string; status: string }): ErrorDetailsInit {
  return { reason: ErrorReason.RUN_ENDED, instanceId: run.instanceId, runId: run.id, runStatus: protoStatus(run.status) };
}

/**
 * An update's validator refused it (nothing was written). For UpdateRun, answered
 * FAILED_PRECONDITION: whether an update is acceptable depends on the run's state.
 * The failure is cut to message and type if the trailer would pass 4 KiB.
 */
export function updateRejected(run: { id: string; instanceId: string }, updateId: string, failure: Failure): ErrorDetailsInit {
  return { reason: ErrorReason.UPDATE_REJECTED, instanceId: run.instanceId, runId: run.id, updateId, failure };
}
