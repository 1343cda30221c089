/** Proto messages -> the plain objects the client returns (decoded payloads, Dates, status names). */
import { durationMs, timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { RunStatus, type DescribeRunResponse, type RunInfo } from "@dex/proto";
import type { RunStatusName } from "../common/errors.js";
import { failureToInfo, type FailureInfo } from "../common/failure.js";
import { decodePayload } from "../common/payload.js";

export interface RunSummary {
  runId: string;
  instanceId: string;
  workflowName: string;
  taskQueue: string;
  status: RunStatusName;
  priority: number;
  labels: Record<string, string>;
  customStatus?: string;
  createTime?: Date;
  startTime?: Date;
  endTime?: Date;
  historyLength: number;
  parentRunId?: string;
  concurrencyKey?: string;
  /** The run timeout it was started with, in ms; absent when it has none. */
  runTimeoutMs?: number;
  /** When the run timeout passes; absent when it has none. */
  runDeadline?: Date;
  /** The lease of its workflow tasks, in ms; absent when it has the default (10 s). */
  workflowTaskTimeoutMs?: number;
}

export interface PendingActivityInfo {
  seq: number;
  activityName: string;
  taskQueue: string;
  attempt: number;
  running: boolean;
  nextAttemptTime?: Date;
  lastFailure?: FailureInfo;
  waitingReason?: string;
}

export interface PendingWorkflowTaskInfo {
  attempt: number;
  running: boolean;
  nextAttemptTime?: Date;
  lastFailure?: FailureInfo;
}

/** A durable timer that has not fired (`ctx.sleep`). */
export interface PendingTimerInfo {
  seq: number;
  fireTime?: Date;
}

/** An external event the workflow waits for (`ctx.waitForEvent`). */
export interface PendingEventWaitInfo {
  seq: number;
  /** The awaited event name. */
  eventName: string;
  /** The same as `eventName` (the field's name from before events had names). */
  eventId: string;
  /** When the wait times out; absent means never. */
  timeoutTime?: Date;
}

/** A child run that has not ended (`ctx.child`). */
export interface PendingChildRunInfo {
  seq: number;
  instanceId: string;
  workflowName: string;
  /** The child's run id; absent until the child has started. */
  runId?: string;
}

export interface ReceivedEventCountInfo {
  eventName: string;
  /** Events of the name in the run's history: the workflow has seen them. */
  inHistory: number;
  /** Events of the name accepted and not yet handed to the workflow. */
  inInbox: number;
}

export interface RunDescription extends RunSummary {
  input: unknown;
  result?: unknown;
  failure?: FailureInfo;
  pendingWorkflowTask?: PendingWorkflowTaskInfo;
  pendingActivities: PendingActivityInfo[];
  pendingTimers: PendingTimerInfo[];
  pendingEventWaits: PendingEventWaitInfo[];
  /** External events received, counted by name (history: seen by the workflow; inbox: not yet). */
  receivedEvents: ReceivedEventCountInfo[];
  pendingChildRuns: PendingChildRunInfo[];
  waitingReason?: string;
  continuedAsRunId?: string;
  /** The run this one was reset from (ResetRun). */
  resetFromRunId?: string;
  /** The newest run this one was reset to (ResetRun). */
  resetToRunId?: string;
}

export function statusName(status: RunStatus): RunStatusName {
  return (RunStatus[status] as RunStatusName | undefined) ?? "UNSPECIFIED";
}

export function statusFromName(name: RunStatusName | string): RunStatus {
  const key = name.toUpperCase().replace(/^RUN_STATUS_/, "") as keyof typeof RunStatus;
  const value = RunStatus[key];
  if (typeof value !== "number") {
    const names = Object.keys(RunStatus).filter((k) => Number.isNaN(Number(k)) && k !== "UNSPECIFIED");
    throw new TypeError(`unknown run status "${name}": use one of ${names.join(", ")}`);
  }
  return value;
}

export const terminalStatuses: ReadonlySet<RunStatusName> = new Set([
  "COMPLETED",
  "FAILED",
  "CANCELLED",
  "TERMINATED",
  "CONTINUED_AS_NEW",
  "TIMED_OUT",
]);

function date(ts: Timestamp | undefined): Date | undefined {
  return ts ? timestampDate(ts) : undefined;
}

/** Sets `key` only when `value` is present, so absent fields stay absent in JSON output. */
function put<T extends object, K extends keyof T>(target: T, key: K, value: T[K] | undefined | ""): void {
  if (value !== undefined && value !== "") target[key] = value as T[K];
}

export function toRunSummary(info: RunInfo): RunSummary {
  const summary: RunSummary = {
    runId: info.runId,
    instanceId: info.instanceId,
    workflowName: info.workflowName,
    taskQueue: info.taskQueue,
    status: statusName(info.status),
    priority: info.priority,
    labels: { ...info.labels },
    historyLength: Number(info.historyLength),
  };
  put(summary, "customStatus", info.customStatus);
  put(summary, "createTime", date(info.createTime));
  put(summary, "startTime", date(info.startTime));
  put(summary, "endTime", date(info.endTime));
  put(summary, "parentRunId", info.parentRunId);
  put(summary, "concurrencyKey", info.concurrencyKey);
  put(summary, "runTimeoutMs", info.runTimeout ? durationMs(info.runTimeout) : undefined);
  put(summary, "runDeadline", date(info.runDeadline));
  put(summary, "workflowTaskTimeoutMs", info.workflowTaskTimeout ? durationMs(info.workflowTaskTimeout) : undefined);
  return summary;
}

export function toRunDescription(response: DescribeRunResponse): RunDescription {
  const base = response.info ? toRunSummary(response.info) : emptySummary();
  const description: RunDescription = {
    ...base,
    input: decodeOrRaw(response.input),
    pendingActivities: response.pendingActivities.map((p) => {
      const activity: PendingActivityInfo = {
        seq: p.seq,
        activityName: p.activityName,
        taskQueue: p.taskQueue,
        attempt: p.attempt,
        running: p.running,
      };
      put(activity, "nextAttemptTime", date(p.nextAttemptTime));
      put(activity, "lastFailure", p.lastFailure ? failureToInfo(p.lastFailure) : undefined);
      put(activity, "waitingReason", p.waitingReason);
      return activity;
    }),
    pendingTimers: response.pendingTimers.map((t) => {
      const timer: PendingTimerInfo = { seq: t.seq };
      put(timer, "fireTime", date(t.fireTime));
      return timer;
    }),
    pendingEventWaits: response.pendingEventWaits.map((w) => {
      const wait: PendingEventWaitInfo = { seq: w.seq, eventName: w.eventName || w.eventId, eventId: w.eventName || w.eventId };
      put(wait, "timeoutTime", date(w.timeoutTime));
      return wait;
    }),
    receivedEvents: response.receivedEvents.map((r) => ({ eventName: r.eventName, inHistory: r.inHistory, inInbox: r.inInbox })),
    pendingChildRuns: response.pendingChildRuns.map((c) => {
      const child: PendingChildRunInfo = { seq: c.seq, instanceId: c.instanceId, workflowName: c.workflowName };
      put(child, "runId", c.runId);
      return child;
    }),
  };
  if (response.result) description.result = decodeOrRaw(response.result);
  put(description, "failure", response.failure ? failureToInfo(response.failure) : undefined);
  const task = response.pendingWorkflowTask;
  if (task) {
    const pending: PendingWorkflowTaskInfo = { attempt: task.attempt, running: task.running };
    put(pending, "nextAttemptTime", date(task.nextAttemptTime));
    put(pending, "lastFailure", task.lastFailure ? failureToInfo(task.lastFailure) : undefined);
    description.pendingWorkflowTask = pending;
  }
  put(description, "waitingReason", response.waitingReason);
  put(description, "continuedAsRunId", response.continuedAsRunId);
  put(description, "resetFromRunId", response.resetFromRunId);
  put(description, "resetToRunId", response.resetToRunId);
  return description;
}

/** Describe must work for any run, even one whose payloads this SDK cannot decode. */
function decodeOrRaw(payload: Parameters<typeof decodePayload>[0]): unknown {
  try {
    return decodePayload(payload);
  } catch {
    return payload ? { encoding: payload.encoding, data: payload.data } : undefined;
  }
}

function emptySummary(): RunSummary {
  return {
    runId: "",
    instanceId: "",
    workflowName: "",
    taskQueue: "",
    status: "UNSPECIFIED",
    priority: 0,
    labels: {},
    historyLength: 0,
  };
}
