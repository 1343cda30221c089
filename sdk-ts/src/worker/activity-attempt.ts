/**
 * The ActivityContext of one attempt: its abort signal and heartbeats.
 *
 * Heartbeats go out in the background: a call to heartbeat() is throttled
 * to one RPC per quarter of the lease, and while the attempt runs the worker
 * heartbeats on its own every half lease, so a long activity in a live
 * process never loses its lease (the original dex's pain point) while a dead
 * process is noticed within one lease. The start-to-close timeout is enforced
 * here, so an activity stuck in a live process still ends.
 */
import { durationMs, timestampDate, timestampMs } from "@bufbuild/protobuf/wkt";
import type { ActivityTask, Payload } from "@dex/proto";
import { DexError } from "@dex/proto";
import { CancelledFailure, TimeoutFailure } from "../common/errors.js";
import { withFields, type Logger } from "../common/logger.js";
import { decodePayload, encodePayload } from "../common/payload.js";
import type { Connection } from "../client/connection.js";
import type { ActivityContext, ActivityInfo } from "../workflow/types.js";

/** Server default for start-to-close when the task does not say (docs/worker-protocol.md). */
const DEFAULT_START_TO_CLOSE_MS = 5 * 60_000;
const HEARTBEAT_RPC_DEADLINE_MS = 10_000;

export type AttemptEnd =
  | { kind: "cancelled"; error: CancelledFailure }
  | { kind: "timed-out"; error: TimeoutFailure }
  | { kind: "lost"; error: Error };

export class ActivityAttempt implements ActivityContext {
  readonly info: ActivityInfo;
  readonly heartbeatDetails: unknown;
  readonly log: Logger;
  /** Settles when the attempt ends from outside (cancel, timeout, lost lease). */
  readonly ended: Promise<AttemptEnd>;
  private readonly controller = new AbortController();
  private endWith!: (end: AttemptEnd) => void;
  private endReason: AttemptEnd | undefined;
  private readonly throttleMs: number;
  private pending: { details: unknown } | undefined;
  private lastPayload: Payload | undefined;
  private lastSentAt = 0;
  private inFlight: Promise<void> | undefined;
  private readonly timers: NodeJS.Timeout[] = [];
  private throttleTimer: NodeJS.Timeout | undefined;
  private closed = false;
  /** When the server stops accepting this attempt's token unless a heartbeat extends it (epoch ms). */
  leaseDeadline: number;

  constructor(
    private readonly task: ActivityTask,
    private readonly connection: Connection,
    logger: Logger,
  ) {
    this.info = {
      runId: task.runId,
      instanceId: task.instanceId,
      workflowName: task.workflowName,
      activityName: task.activityName,
      seq: task.seq,
      attempt: task.attempt,
      taskQueue: task.taskQueue,
      scheduleTime: task.scheduleTime ? timestampDate(task.scheduleTime) : new Date(),
    };
    this.log = withFields(logger, { activityName: task.activityName, runId: task.runId, seq: task.seq, attempt: task.attempt });
    this.heartbeatDetails = safeDecode(task.heartbeatDetails);
    this.lastPayload = task.heartbeatDetails;
    this.ended = new Promise((resolve) => (this.endWith = resolve));
    this.leaseDeadline = leaseDeadlineOf(task);
    const startToClose = task.startToCloseTimeout ? durationMs(task.startToCloseTimeout) : DEFAULT_START_TO_CLOSE_MS;
    const lease = task.heartbeatTimeout ? durationMs(task.heartbeatTimeout) : startToClose;
    this.throttleMs = Math.max(lease / 4, 10);
    this.lastSentAt = Date.now();
    const auto = setInterval(() => {
      if (!this.inFlight && Date.now() - this.lastSentAt >= lease / 2 - 5) void this.send();
    }, Math.max(lease / 2, 20));
    const deadline = setTimeout(
      () => this.end({ kind: "timed-out", error: new TimeoutFailure(`activity "${task.activityName}" exceeded its start-to-close timeout of ${startToClose} ms`, "START_TO_CLOSE") }),
      startToClose,
    );
    this.timers.push(auto, deadline);
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  heartbeat(details?: unknown): void {
    if (this.closed) return;
    this.pending = { details };
    if (this.inFlight || this.throttleTimer) return;
    const wait = this.lastSentAt + this.throttleMs - Date.now();
    if (wait <= 0) {
      void this.send();
    } else {
      this.throttleTimer = setTimeout(() => {
        this.throttleTimer = undefined;
        void this.send();
      }, wait);
    }
  }

  /** Sends details still waiting for the throttle, so the next attempt gets them. */
  async flush(): Promise<void> {
    await this.inFlight;
    if (this.pending && !this.endReason) await this.send();
  }

  close(): void {
    this.closed = true;
    for (const timer of this.timers) clearTimeout(timer);
    if (this.throttleTimer) clearTimeout(this.throttleTimer);
  }

  private end(end: AttemptEnd): void {
    if (this.endReason || this.closed) return;
    this.endReason = end;
    this.controller.abort(end.error);
    this.endWith(end);
  }

  private send(): Promise<void> {
    if (this.inFlight) return this.inFlight;
    if (this.throttleTimer) {
      clearTimeout(this.throttleTimer);
      this.throttleTimer = undefined;
    }
    if (this.pending) {
      try {
        this.lastPayload = encodePayload(this.pending.details);
      } catch (err) {
        this.log.warn(`heartbeat details cannot be encoded and are dropped: ${(err as Error).message}`);
      }
      this.pending = undefined;
    }
    this.lastSentAt = Date.now();
    const request = { taskToken: this.task.taskToken, details: this.lastPayload };
    this.inFlight = this.connection.worker
      .heartbeatActivityTask(request, { deadline: HEARTBEAT_RPC_DEADLINE_MS })
      .then(
        (response) => {
          if (response.leaseDeadline) this.leaseDeadline = timestampMs(response.leaseDeadline);
          if (response.cancelRequested) {
            this.end({ kind: "cancelled", error: new CancelledFailure(`activity "${this.task.activityName}" was cancelled`) });
          }
        },
        (err: unknown) => {
          const error = DexError.from(err);
          if (error.code === "NOT_FOUND") {
            this.end({ kind: "lost", error: new Error(`lost the lease of this attempt: ${error.message}`) });
          } else {
            this.log.debug(`heartbeat failed, will retry: ${error.code}: ${error.message}`);
          }
        },
      )
      .finally(() => {
        this.inFlight = undefined;
        if (this.pending && !this.closed && !this.endReason) this.heartbeat(this.pending.details);
      });
    return this.inFlight;
  }
}

function safeDecode(payload: Payload | undefined): unknown {
  try {
    return decodePayload(payload);
  } catch {
    return undefined;
  }
}

/** The task's lease deadline; a task without one gets a minute, enough to report through a short outage. */
export function leaseDeadlineOf(task: ActivityTask): number {
  return task.leaseDeadline ? timestampMs(task.leaseDeadline) : Date.now() + 60_000;
}
