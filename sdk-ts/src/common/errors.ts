/**
 * Error classes that cross the workflow/activity boundary. Each maps to and
 * from a protobuf Failure (see failure.ts), so a workflow can catch exactly
 * what an activity threw, with its type, details and cause chain.
 */
/**
 * DexError is what every client call rejects with: `code` (the gRPC status by
 * name) and, where the code alone does not say enough, typed details read
 * from the server's grpc-status-details-bin trailer: `reason`
 * ("RUN_ALREADY_OPEN", "RUN_REUSE_REJECTED", "RUN_ENDED", "UPDATE_REJECTED"),
 * `runId`, `instanceId`, `runStatus` and `failure` (docs/errors.md).
 */
export { DexError } from "@dex/proto";
export type { ErrorReasonName } from "@dex/proto";

export interface ApplicationFailureOptions {
  message: string;
  /** Matched by retry policies' `nonRetryableErrorTypes`. Default "ApplicationFailure". */
  type?: string;
  /** When true no retry policy retries it. Default false. */
  nonRetryable?: boolean;
  /** Structured details, JSON-encoded. */
  details?: unknown;
  cause?: unknown;
}

/**
 * An error thrown by workflow or activity code on purpose: it carries a type,
 * details, and whether a retry could help. Any other Error works too (its
 * `name` becomes the failure type); this one adds `nonRetryable`.
 */
export class ApplicationFailure extends Error {
  override readonly name: string = "ApplicationFailure";
  readonly type: string;
  readonly nonRetryable: boolean;
  readonly details: unknown;

  constructor(message: string, options: Omit<ApplicationFailureOptions, "message"> = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.type = options.type ?? "ApplicationFailure";
    this.nonRetryable = options.nonRetryable ?? false;
    this.details = options.details;
  }

  /** `create({ message, type, nonRetryable, details, cause })`, or `create(message, type?, details?)` (retryable). */
  static create(options: ApplicationFailureOptions): ApplicationFailure;
  static create(message: string, type?: string, details?: unknown): ApplicationFailure;
  static create(options: ApplicationFailureOptions | string, type?: string, details?: unknown): ApplicationFailure {
    if (typeof options === "string") return new ApplicationFailure(options, { type, details });
    return new ApplicationFailure(options.message, options);
  }

  /** A retryable failure of the given type. */
  static retryable(message: string, type?: string, details?: unknown): ApplicationFailure {
    return new ApplicationFailure(message, { type, details, nonRetryable: false });
  }

  /** A failure that ends retries at once, whatever the retry policy says. */
  static nonRetryable(message: string, type?: string, details?: unknown): ApplicationFailure {
    return new ApplicationFailure(message, { type, details, nonRetryable: true });
  }
}

/**
 * What a workflow catches when an activity failed for good (retries exhausted,
 * non-retryable, timed out or cancelled). `cause` is the activity's own failure,
 * rebuilt: usually an ApplicationFailure whose `type` is the thrown error's name.
 * An activity called on a task queue that does not exist fails at once, with
 * `attempt` 0 (none ran) and a cause of type "TaskQueueNotFound".
 */
export class ActivityFailure extends Error {
  override readonly name = "ActivityFailure";
  readonly activityName: string;
  readonly seq: number;
  /** The attempt that failed last (1 for the first); 0 when no attempt ran. */
  readonly attempt: number;
  declare readonly cause: Error;

  constructor(activityName: string, seq: number, attempt: number, cause: Error, message?: string) {
    const when = attempt > 0 ? `on attempt ${attempt}` : "before any attempt ran";
    super(message ?? `activity "${activityName}" (seq ${seq}) failed ${when}: ${cause.message}`, { cause });
    this.activityName = activityName;
    this.seq = seq;
    this.attempt = attempt;
  }
}

/** The work was cancelled on request. */
export class CancelledFailure extends Error {
  override readonly name = "CancelledFailure";
}

export type TimeoutType = "START_TO_CLOSE" | "SCHEDULE_TO_CLOSE" | "HEARTBEAT" | "EVENT_WAIT" | "UNSPECIFIED";

/** A timeout expired; `timeoutType` says which. */
export class TimeoutFailure extends Error {
  override readonly name: string = "TimeoutFailure";
  readonly timeoutType: TimeoutType;

  constructor(message: string, timeoutType: TimeoutType, options?: ErrorOptions) {
    super(message, options);
    this.timeoutType = timeoutType;
  }
}

/** `ctx.waitForEvent(eventName, { timeout })` ran out of time before an event of that name arrived. */
export class EventWaitTimeoutError extends TimeoutFailure {
  override readonly name: string = "EventWaitTimeoutError";
  /** The awaited event name (named `eventId` from before events had names; `eventName` is the same). */
  readonly eventId: string;
  readonly eventName: string;

  constructor(eventName: string, message?: string) {
    super(message ?? `timed out waiting for event "${eventName}"`, "EVENT_WAIT");
    this.eventId = eventName;
    this.eventName = eventName;
  }
}

/**
 * What a parent catches when a child run ended FAILED, CANCELLED or TERMINATED.
 * `cause` is the child's own failure, rebuilt (an ApplicationFailure, a
 * CancelledFailure, ...).
 */
export class ChildWorkflowFailure extends Error {
  override readonly name = "ChildWorkflowFailure";
  readonly instanceId: string;
  readonly runId: string;
  readonly workflowName: string;
  readonly status: RunStatusName;
  declare readonly cause: Error;

  constructor(
    child: { instanceId: string; runId: string; workflowName: string; status: RunStatusName },
    cause: Error,
    message?: string,
  ) {
    super(
      message ??
        `child workflow "${child.workflowName}" (instance ${child.instanceId}, run ${child.runId || "unknown"}) ended ${child.status}: ${cause.message}`,
      { cause },
    );
    this.instanceId = child.instanceId;
    this.runId = child.runId;
    this.workflowName = child.workflowName;
    this.status = child.status;
  }
}

/**
 * A child run could not be started. `type` says why:
 * - "InstanceIdConflict": its instance id already has an open run. Pick
 *   another instance id, or wait for that run to end;
 * - "TaskQueueNotFound": its workflow task queue does not exist. Create it
 *   (`dex queue create <name> --type workflow`), or start the child on another.
 * `cause` holds the server's message.
 */
export class ChildWorkflowStartFailure extends Error {
  override readonly name = "ChildWorkflowStartFailure";
  readonly instanceId: string;
  readonly workflowName: string;
  /** Why, as the server classified it: "InstanceIdConflict" or "TaskQueueNotFound". */
  readonly type: string;
  declare readonly cause: Error | undefined;

  constructor(child: { instanceId: string; workflowName: string }, type: string, cause?: Error, message?: string) {
    super(
      message ??
        `child workflow "${child.workflowName}" (instance id "${child.instanceId}") was not started (${type})` +
          (cause ? `: ${cause.message}` : ""),
      cause ? { cause } : undefined,
    );
    this.instanceId = child.instanceId;
    this.workflowName = child.workflowName;
    this.type = type;
  }
}

export type RunStatusName =
  | "UNSPECIFIED"
  | "CREATED"
  | "RUNNING"
  | "COMPLETED"
  | "FAILED"
  | "CANCELLED"
  | "TERMINATED"
  | "CONTINUED_AS_NEW"
  | "TIMED_OUT";

/** Thrown by `handle.result()` when the run ended FAILED, CANCELLED, TERMINATED or TIMED_OUT. */
export class WorkflowFailedError extends Error {
  override readonly name = "WorkflowFailedError";
  readonly runId: string;
  readonly status: RunStatusName;
  declare readonly cause: Error | undefined;

  constructor(runId: string, status: RunStatusName, cause: Error | undefined) {
    super(`workflow run ${runId} ended ${status}${cause ? `: ${cause.message}` : ""}`, { cause });
    this.runId = runId;
    this.status = status;
  }
}

/**
 * Replay of workflow code produced a command that differs from the recorded
 * history. Fails the workflow task, not the run: the run stays open and
 * proceeds once code that matches its history is deployed.
 */
export class NonDeterminismError extends Error {
  override readonly name = "NonDeterminismError";
  /** Sequence number of the first history event that diverged, when known. */
  readonly eventSequence?: number;
  /** Its kind, e.g. "activity_scheduled". */
  readonly eventKind?: string;
  /** The command the history recorded there, e.g. `activity_scheduled(seq 2, "charge")`. */
  readonly recorded?: string;
  /** The command the workflow code produced instead. */
  readonly produced?: string;

  constructor(message: string, options: NonDeterminismDetails & ErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    if (options.eventSequence !== undefined) this.eventSequence = options.eventSequence;
    if (options.eventKind !== undefined) this.eventKind = options.eventKind;
    if (options.recorded !== undefined) this.recorded = options.recorded;
    if (options.produced !== undefined) this.produced = options.produced;
  }
}

export interface NonDeterminismDetails {
  eventSequence?: number;
  eventKind?: string;
  recorded?: string;
  produced?: string;
}

/**
 * Workflow code did something that cannot be replayed (a timer, real I/O).
 * Fails the workflow task, not the run.
 */
export class DeterminismViolationError extends Error {
  override readonly name = "DeterminismViolationError";
}
