/**
 * The ActivityContext of one attempt: its abort signal and heartbeats.
 *
 * Heartbeats go out in the background: a call to heartbeat() is throttled to
 * one RPC per quarter of the lease (at most every 30 s), and while the attempt
 * runs the worker heartbeats on its own (unless turned off) at least every
 * half lease and every 30 s. So a long activity in a live process never loses
 * its lease (the original dex's pain point) and learns of a cancellation
 * without calling heartbeat(), while a dead process is noticed within one lease.
 *
 * The signal aborts when:
 * - a heartbeat answers `cancel_requested` (reason: CancelledFailure);
 * - the start-to-close timeout passes (TimeoutFailure START_TO_CLOSE): enforced
 *   here, so an activity stuck in a live process still ends;
 * - the lease is gone: a heartbeat answered NOT_FOUND, or (with a heartbeat
 *   timeout) no heartbeat reached the server within it, e.g. through an outage
 *   (TimeoutFailure HEARTBEAT). The server retries the attempt elsewhere, so
 *   this one should stop.
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
/** Default longest gap between heartbeats, so a cancellation reaches a long activity within it. */
export const DEFAULT_HEARTBEAT_INTERVAL_MS = 30_000;

export type AttemptEnd =
  | { kind: "cancelled"; error: CancelledFailure }
  | { kind: "timed-out"; error: TimeoutFailure }
  | { kind: "lost"; error: Error };

export interface AttemptOptions {
  /** Longest gap between automatic heartbeats in ms (never more than half the lease); false: none. */
  autoHeartbeatMs: number | false;
}

export class ActivityAttempt implements ActivityContext {
  readonly info: ActivityInfo;
  readonly heartbeatDetails: unknown;
  readonly log: Logger;
  /** Settles when the attempt ends from outside (cancel, timeout, lost lease). */
  readonly ended: Promise<AttemptEnd>;
  /** When the server stops accepting this attempt's token unless a heartbeat extends it (epoch ms). */
  leaseDeadline: number;
  private readonly controller = new AbortController();
  private endWith!: (end: AttemptEnd) => void;
  private endReason: AttemptEnd | undefined;
  private readonly leaseMs: number;
  private readonly throttleMs: number;
  /**
   * The lease's end by the local clock, from the send time of the last heartbeat the server
   * accepted: never later than the server's own view, so clock skew cannot keep a lost attempt going.
   */
  private localLeaseEnd: number;
  private pending: { details: unknown } | undefined;
  private lastPayload: Payload | undefined;
  private lastSentAt: number;
  private inFlight: Promise<void> | undefined;
  private readonly timers: NodeJS.Timeout[] = [];
  private throttleTimer: NodeJS.Timeout | undefined;
  private leaseTimer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    private readonly task: ActivityTask,
    private readonly connection: Connection,
    logger: Logger,
    options: AttemptOptions = { autoHeartbeatMs: DEFAULT_HEARTBEAT_INTERVAL_MS },
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
    this.log = withFields(logger, activityLogFields(task));
    this.heartbeatDetails = safeDecode(task.heartbeatDetails);
    // Heartbeats without new details resend these, so the next attempt still gets them.
    this.lastPayload = task.heartbeatDetails;
    this.ended = new Promise((resolve) => (this.endWith = resolve));
    this.leaseDeadline = leaseDeadlineOf(task);
    const startToClose = task.startToCloseTimeout ? durationMs(task.startToCloseTimeout) : DEFAULT_START_TO_CLOSE_MS;
    this.leaseMs = task.heartbeatTimeout ? durationMs(task.heartbeatTimeout) : startToClose;
    this.throttleMs = Math.max(Math.min(this.leaseMs / 4, DEFAULT_HEARTBEAT_INTERVAL_MS), 10);
    this.lastSentAt = Date.now();
    this.localLeaseEnd = this.lastSentAt + this.leaseMs;

    if (options.autoHeartbeatMs !== false) {
      const every = Math.max(Math.min(options.autoHeartbeatMs, this.leaseMs / 2), 20);
      const auto = setInterval(() => {
        if (!this.inFlight && Date.now() - this.lastSentAt >= every - 5) void this.send();
      }, every);
      this.timers.push(auto);
    }
    const deadline = setTimeout(
      () => this.end({ kind: "timed-out", error: new TimeoutFailure(`activity "${task.activityName}" exceeded its start-to-close timeout of ${startToClose} ms`, "START_TO_CLOSE") }),
      startToClose,
    );
    this.timers.push(deadline);
    // Without a heartbeat timeout the lease is the start-to-close timeout, which the timer above enforces.
    if (task.heartbeatTimeout) this.watchLease();
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
    if (this.pending && this.endReason?.kind !== "lost") await this.send();
  }

  close(): void {
    this.closed = true;
    for (const timer of this.timers) clearTimeout(timer);
    if (this.throttleTimer) clearTimeout(this.throttleTimer);
    if (this.leaseTimer) clearTimeout(this.leaseTimer);
    if (this.retryTimer) clearTimeout(this.retryTimer);
  }

  private end(end: AttemptEnd): void {
    if (this.endReason || this.closed) return;
    this.endReason = end;
    this.controller.abort(end.error);
    this.endWith(end);
  }

  /** Ends the attempt once the local lease end passes without an accepted heartbeat moving it. */
  private watchLease(): void {
    const wait = this.localLeaseEnd - Date.now();
    this.leaseTimer = setTimeout(() => {
      if (this.closed) return;
      if (Date.now() < this.localLeaseEnd) {
        this.watchLease();
        return;
      }
      const error = new TimeoutFailure(
        `activity "${this.task.activityName}" lost its lease: no heartbeat reached the server within its heartbeat timeout of ${this.leaseMs} ms`,
        "HEARTBEAT",
      );
      this.end({ kind: "timed-out", error });
    }, Math.max(wait, 0));
  }

  private retrySoon(): void {
    if (this.retryTimer || this.closed || this.endReason) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      if (!this.closed && !this.endReason) void this.send();
    }, Math.min(1_000, Math.max(this.leaseMs / 10, 10)));
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
    const sentAt = Date.now();
    this.lastSentAt = sentAt;
    const request = { taskToken: this.task.taskToken, details: this.lastPayload };
    this.inFlight = this.connection.worker
      .heartbeatActivityTask(request, { deadline: HEARTBEAT_RPC_DEADLINE_MS })
      .then(
        (response) => {
          if (response.leaseDeadline) this.leaseDeadline = timestampMs(response.leaseDeadline);
          this.localLeaseEnd = Math.max(this.localLeaseEnd, sentAt + this.leaseMs);
          if (response.cancelRequested) {
            this.end({ kind: "cancelled", error: new CancelledFailure(`activity "${this.task.activityName}" was cancelled`) });
          }
        },
        (err: unknown) => {
          const error = DexError.from(err);
          if (error.code === "NOT_FOUND") {
            this.end({ kind: "lost", error: new Error(`lost the lease of this attempt: ${error.message}`) });
          } else {
            // Through an outage, retry well within the lease rather than at the next regular heartbeat.
            this.log.debug(`heartbeat failed, will retry: ${error.code}: ${error.message}`);
            this.retrySoon();
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

export function autoHeartbeatMs(option: boolean | { interval: number } | undefined): number | false {
  if (option === false) return false;
  if (option === undefined || option === true) return DEFAULT_HEARTBEAT_INTERVAL_MS;
  if (!Number.isFinite(option.interval) || option.interval <= 0) throw new TypeError("autoHeartbeat.interval must be a positive duration");
  return option.interval;
}

function safeDecode(payload: Payload | undefined): unknown {
  try {
    return decodePayload(payload);
  } catch {
    return undefined;
  }
}

/** The task's lease deadline; a task without one gets a minute, enough to report through a short outage. */
/** The fields of every log line about an activity attempt: which run (and workflow) it belongs to, and which attempt. */
export function activityLogFields(task: ActivityTask): Record<string, unknown> {
  return { runId: task.runId, workflowName: task.workflowName, activityName: task.activityName, seq: task.seq, attempt: task.attempt };
}

export function leaseDeadlineOf(task: ActivityTask): number {
  return task.leaseDeadline ? timestampMs(task.leaseDeadline) : Date.now() + 60_000;
}
