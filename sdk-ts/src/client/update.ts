/**
 * `handle.update(name, args)`: UpdateRun until the outcome is known. The
 * server answers `still_running` at the end of its wait (about 20 s); the
 * same call with the same update id resumes the wait, so a long handler, a
 * restarted server or a retried call never runs the handler twice.
 */
import { randomUUID } from "node:crypto";
import type { Failure, RunSelector } from "@dex/proto";
import { failureToError } from "../common/failure.js";
import { decodePayload, encodePayload } from "../common/payload.js";
import type { Caller } from "./handle.js";

/** Options of `handle.update`. */
export interface UpdateOptions {
  /** The update's dedup key within the run's continue-as-new chain: the same id again returns the first call's outcome. Default: a random UUID. */
  updateId?: string;
  /** Stops waiting (the update itself goes on; call again with the same updateId to wait more). */
  signal?: AbortSignal;
}

/** The workflow rejected the update (no handler of that name, or its validator threw); nothing was recorded. */
export class WorkflowUpdateRejectedError extends Error {
  override readonly name = "WorkflowUpdateRejectedError";
  /** The failure's type: "UpdateHandlerNotFound" for an unknown name, else the validator's error type (e.g. "Error"). */
  readonly type: string;
  declare readonly cause: Error;

  constructor(
    readonly runId: string,
    readonly updateId: string,
    failure: Failure,
  ) {
    super(`update "${updateId}" was rejected by run ${runId}: ${failure.message}`, { cause: failureToError(failure) });
    this.type = failure.type;
  }
}

/** The update was accepted and its handler failed; `cause` is the handler's error. */
export class WorkflowUpdateFailedError extends Error {
  override readonly name = "WorkflowUpdateFailedError";
  declare readonly cause: Error;

  constructor(
    readonly runId: string,
    readonly updateId: string,
    failure: Failure,
  ) {
    super(`update "${updateId}" of run ${runId} failed: ${failure.message}`, { cause: failureToError(failure) });
  }
}

/** Longer than the server's wait, so the server answers `still_running` first. */
const UPDATE_CALL_DEADLINE_MS = 30_000;

export async function runUpdate<R>(
  caller: Caller,
  target: RunSelector["target"],
  name: string,
  args: unknown,
  options: UpdateOptions,
  unsentOnly: boolean,
): Promise<R> {
  const updateId = options.updateId ?? randomUUID();
  const encoded = args === undefined ? undefined : encodePayload(args);
  let run: RunSelector["target"] = target;
  for (;;) {
    const request = { run: { target: run }, name, args: encoded, updateId };
    const response = await caller.call(
      () => caller.connection.client.updateRun(request, { deadline: UPDATE_CALL_DEADLINE_MS, signal: options.signal }),
      options.signal,
      // Through an instance id only the first call may land on another run; later ones name the run.
      unsentOnly && run === target,
    );
    // Re-polls go to the run that took the update, even if the instance moved on meanwhile.
    run = { case: "runId", value: response.runId };
    const outcome = response.outcome;
    switch (outcome.case) {
      case "result":
        return decodePayload(outcome.value) as R;
      case "failure":
        throw new WorkflowUpdateFailedError(response.runId, updateId, outcome.value);
      case "rejection":
        throw new WorkflowUpdateRejectedError(response.runId, updateId, outcome.value);
      default:
        if (options.signal?.aborted) throw options.signal.reason;
    }
  }
}
