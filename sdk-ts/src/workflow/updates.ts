/**
 * Update handlers of one execution (docs/worker-protocol.md "Updates",
 * decision 0024). An `update_accepted` input is, live, a request: the
 * validator decides against the current state BEFORE the workflow sees it,
 * and a rejection never reaches history (the worker reports it with the
 * completion). Accepted, and on replay (history holds only accepted ones),
 * the handler runs as workflow code; when it settles the execution issues
 * `complete_update`. The handler's awaits are ordinary awaits, so its
 * commands replay like the main code's.
 */
import { create } from "@bufbuild/protobuf";
import { CommandSchema, FailureSchema, type Command, type Failure, type HistoryEvent } from "@dex/proto";
import { errorToFailure } from "../common/failure.js";
import { encodePayload } from "../common/payload.js";
import { decodeInput } from "./inputs.js";
import type { UpdateHandler, UpdateHandlerOptions } from "./types.js";

/** A live rejection, reported in CompleteWorkflowTaskRequest.rejected_updates. */
export interface UpdateRejection {
  updateId: string;
  failure: Failure;
}

type UpdateAccepted = Extract<HistoryEvent["attributes"], { case: "updateAccepted" }>["value"];

/** How a handler's outcome becomes a command, and how a bug in it fails the task (execution.ts). */
export interface UpdateSink {
  issue(command: Command): void;
  /** True: the error is a decision (the update fails with it); false: a bug (the task fails). */
  failsUpdate(err: unknown): boolean;
  violation(err: unknown): void;
}

const MAX_NAME_LENGTH = 255;

export class UpdateHandlers {
  private readonly handlers = new Map<string, { fn: UpdateHandler; validator?: ((args: never) => void) | undefined }>();
  private running = 0;

  constructor(private readonly sink: UpdateSink) {}

  /** ctx.setUpdateHandler: registers (or replaces) the handler of `name`; `undefined` removes it. */
  set(name: string, fn: UpdateHandler | undefined, options: UpdateHandlerOptions = {}): void {
    if (typeof name !== "string" || name.length === 0 || name.length > MAX_NAME_LENGTH) {
      throw new TypeError(`ctx.setUpdateHandler: the name must be 1 to ${MAX_NAME_LENGTH} characters`);
    }
    if (fn === undefined) {
      this.handlers.delete(name);
      return;
    }
    if (typeof fn !== "function") throw new TypeError("ctx.setUpdateHandler expects a function");
    if (options.validator !== undefined && typeof options.validator !== "function") {
      throw new TypeError("ctx.setUpdateHandler: options.validator must be a function");
    }
    this.handlers.set(name, { fn, validator: options.validator as ((args: never) => void) | undefined });
  }

  /** Handlers started and not yet settled (ctx.allHandlersFinished waits for 0). */
  get inFlight(): number {
    return this.running;
  }

  /**
   * Live only: the rejection of this request, or undefined when the workflow
   * accepts it. The validator runs synchronously against the current state
   * and must not change it (it does not run again on replay): the execution
   * runs it under the read-only guard of query handlers (query.ts), so a call
   * that would (randomness, a command) throws and rejects the update.
   */
  validate(event: HistoryEvent, update: UpdateAccepted, ended: boolean): UpdateRejection | undefined {
    const reject = (failure: Failure): UpdateRejection => ({ updateId: update.updateId, failure });
    if (ended) {
      return reject(create(FailureSchema, { message: "the workflow finished before it handled the update", type: "WorkflowFinished" }));
    }
    const handler = this.handlers.get(update.name);
    if (!handler) {
      const known = [...this.handlers.keys()].sort().join(", ") || "none";
      return reject(
        create(FailureSchema, {
          message: `no update handler named "${update.name}"; the workflow has: ${known}`,
          type: "UpdateHandlerNotFound",
        }),
      );
    }
    if (!handler.validator) return undefined;
    try {
      const returned: unknown = handler.validator(decodeInput(update.args, event) as never);
      if (isThenable(returned)) throw new TypeError("an update validator must be synchronous (it returned a promise)");
      return undefined;
    } catch (err) {
      return reject(errorToFailure(err));
    }
  }

  /** Runs the accepted update's handler; its outcome is issued as complete_update when it settles. */
  start(event: HistoryEvent, update: UpdateAccepted): void {
    const handler = this.handlers.get(update.name);
    if (!handler) {
      // Accepted in history but no handler now: the code changed under a recorded run.
      this.sink.violation(
        new Error(`history event ${event.sequence} accepted update "${update.name}", but the workflow registers no handler of that name`),
      );
      return;
    }
    this.running++;
    let result: Promise<unknown>;
    try {
      result = Promise.resolve(handler.fn(decodeInput(update.args, event)));
    } catch (err) {
      result = Promise.reject(err);
    }
    const complete = (value: Omit<Extract<Command["command"], { case: "completeUpdate" }>["value"], "$typeName">) =>
      this.sink.issue(create(CommandSchema, { command: { case: "completeUpdate", value } }));
    result.then(
      (value) => {
        this.running--;
        try {
          complete({ updateId: update.updateId, result: encodePayload(value) });
        } catch (err) {
          this.sink.violation(err);
        }
      },
      (err: unknown) => {
        this.running--;
        if (this.sink.failsUpdate(err)) complete({ updateId: update.updateId, failure: errorToFailure(err) });
        else this.sink.violation(err);
      },
    );
  }
}

function isThenable(value: unknown): boolean {
  return typeof value === "object" && value !== null && typeof (value as { then?: unknown }).then === "function";
}
