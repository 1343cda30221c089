/** Reading runs: describe, history (optionally waiting), result (optionally waiting), list. */
import { DexError, type HistoryEvent } from "@dex/proto";
import { readHistory } from "../store/history.js";
import {
  openChildRuns,
  pendingActivities,
  pendingWorkflowTask,
  type OpenChildRecord,
  type PendingActivityRecord,
  type PendingWorkflowTaskRecord,
} from "../store/pending.js";
import { concurrencyKeyHolders, readQueueStates, type KeyHolders, type QueueState } from "../store/queue-stats.js";
import { listRuns, type RunFilter } from "../store/run-listing.js";
import { getRun, getRunProgress, type RunRecord } from "../store/runs.js";
import { runTimers } from "../store/timers.js";
import type { Engine } from "./context.js";
import { decodeEvent } from "./events.js";
import { describeRunEvents, type PendingEventWaitInfo, type ReceivedEventCountInfo } from "./event-waits.js";
import { longPoll } from "./long-poll.js";
import { isTerminal, QueueType, type RunStatus } from "./model.js";

export type RunSelector = { runId: string } | { instanceId: string };

/** Re-check interval of waiting history readers (other servers do not NOTIFY every append). */
const HISTORY_FALLBACK_MS = 2_000;
/** Re-check interval of result waiters: run ends are NOTIFYed, so this only covers a lost notification. */
const RESULT_FALLBACK_MS = 10_000;

export async function requireRun(engine: Engine, selector: RunSelector): Promise<RunRecord> {
  const run = await getRun(engine.sql, selector);
  if (!run) {
    throw new DexError(
      "NOT_FOUND",
      "runId" in selector ? `run ${selector.runId} not found` : `no run of instance id "${selector.instanceId}" found`,
    );
  }
  return run;
}

export interface PendingTimerInfo {
  seq: number;
  fireAt: Date;
}

export type { PendingEventWaitInfo, ReceivedEventCountInfo } from "./event-waits.js";

/** A CREATED run that has no workflow task because its concurrency key's slots are taken. */
export interface KeyWait {
  key: string;
  limit: number;
  holders: KeyHolders;
}

export interface RunDescription {
  run: RunRecord;
  workflowTask: PendingWorkflowTaskRecord | undefined;
  activities: PendingActivityRecord[];
  timers: PendingTimerInfo[];
  eventWaits: PendingEventWaitInfo[];
  /** External events received, counted by name (event-waits.ts). */
  receivedEvents: ReceivedEventCountInfo[];
  children: OpenChildRecord[];
  /** The queues of the run's tasks that wait for a worker (status, capacity, in-flight, last poll). */
  queues: QueueView[];
  keyWait: KeyWait | undefined;
}

/**
 * A queue nobody polled for this long counts as unpolled. Polls reach
 * task_queues.last_polled_at within seconds (parked ones included) and a long
 * poll lasts at most 60 s, so a live worker never looks idle.
 */
export const NO_POLL_THRESHOLD_MS = 60_000;

export interface QueueView extends QueueState {
  /** No poll of the queue within NO_POLL_THRESHOLD_MS, by the database and by this server's own polls. */
  unpolled: boolean;
}

/** Run-holder ids named in a waiting reason; the count covers the rest. */
const KEY_HOLDERS_SHOWN = 5;

export function workflowTaskRunning(task: PendingWorkflowTaskRecord): boolean {
  return task.leasedUntil !== null && task.leasedUntil > task.now;
}

export function activityRunning(task: PendingActivityRecord): boolean {
  return task.leasedUntil !== null;
}

/**
 * A run and its pending work. Timers and event waits exist only while the run
 * is open (its end deletes its timers; its history then says nothing more will
 * be awaited). An event wait is pending until its event or its time-out has
 * reached history, i.e. until the workflow has seen the one or the other.
 * Child runs are listed while they are open, also after the parent ended (an
 * ABANDON child keeps running).
 */
export async function describeRun(engine: Engine, selector: RunSelector): Promise<RunDescription> {
  // The run row and its pending work are read by separate statements. A completion committing
  // between them would pair the run row of one workflow task (its custom status, labels) with the
  // pending work of the next. Every completion and termination moves history_length, so the run is
  // read again afterwards and the parts are read again (rarely) until it did not move.
  let run = await requireRun(engine, selector);
  for (let attempt = 1; ; attempt++) {
    const parts = await pendingWork(engine, run);
    const after = await requireRun(engine, { runId: run.id });
    const settled = after.historyLength === run.historyLength && after.status === run.status;
    if (settled || attempt === DESCRIBE_ATTEMPTS) return { run: after, ...parts };
    run = after;
  }
}

/** A run that keeps changing faster than it can be described is described from its last reads. */
const DESCRIBE_ATTEMPTS = 5;

async function pendingWork(engine: Engine, run: RunRecord): Promise<Omit<RunDescription, "run">> {
  const open = !isTerminal(run.status as RunStatus);
  const [workflowTask, activities, timers, events, children] = await Promise.all([
    pendingWorkflowTask(engine.sql, run.id),
    pendingActivities(engine.sql, run.id),
    open ? runTimers(engine.sql, run.id) : [],
    describeRunEvents(engine.sql, run.id, open),
    openChildRuns(engine.sql, run.id),
  ]);
  const [queues, keyWait] = await Promise.all([
    open ? queueViews(engine, waitingQueues(run, workflowTask, activities)) : [],
    open ? keyWaitOf(engine, run, workflowTask) : undefined,
  ]);
  return {
    workflowTask,
    activities,
    // Event-wait time-outs are shown with their wait, not as timers.
    timers: timers.filter((t) => t.kind === "timer").map((t) => ({ seq: t.seq, fireAt: t.fireAt })),
    eventWaits: events.waits,
    receivedEvents: events.received,
    children,
    queues,
    keyWait,
  };
}

/** The queues whose state can explain a wait: those of the run's tasks not leased now. */
function waitingQueues(
  run: RunRecord,
  task: PendingWorkflowTaskRecord | undefined,
  activities: PendingActivityRecord[],
): Array<{ type: QueueType; name: string }> {
  const queues = new Map<string, { type: QueueType; name: string }>();
  if (task && !workflowTaskRunning(task)) queues.set(`workflow:${run.taskQueue}`, { type: QueueType.WORKFLOW, name: run.taskQueue });
  for (const activity of activities) {
    if (!activityRunning(activity)) queues.set(`activity:${activity.queueName}`, { type: QueueType.ACTIVITY, name: activity.queueName });
  }
  return [...queues.values()];
}

async function queueViews(engine: Engine, queues: Array<{ type: QueueType; name: string }>): Promise<QueueView[]> {
  return (await readQueueStates(engine.sql, queues)).map((q) => {
    const idleMs = q.lastPolledAt ? q.now.getTime() - q.lastPolledAt.getTime() : Number.POSITIVE_INFINITY;
    // A poll this server answered moments ago may not be written yet: it counts too.
    const unpolled = idleMs > NO_POLL_THRESHOLD_MS && !engine.recentPolls.polledWithin(q.type, q.name, NO_POLL_THRESHOLD_MS);
    return { ...q, unpolled };
  });
}

/** A CREATED run with a concurrency key and no workflow task waits for a slot of its key. */
async function keyWaitOf(engine: Engine, run: RunRecord, task: PendingWorkflowTaskRecord | undefined): Promise<KeyWait | undefined> {
  if (run.status !== "CREATED" || task || run.concurrencyKey === null) return undefined;
  const holders = await concurrencyKeyHolders(engine.sql, { key: run.concurrencyKey, excludeRunId: run.id, limit: KEY_HOLDERS_SHOWN });
  return { key: run.concurrencyKey, limit: run.concurrencyLimit ?? 1, holders };
}

export interface HistoryPage {
  runId: string;
  events: HistoryEvent[];
  historyLength: number;
  status: RunStatus;
}

export async function getRunHistory(
  engine: Engine,
  request: { selector: RunSelector; afterSequence: number; pageSize: number; waitUntil: number | undefined },
  signal: AbortSignal,
): Promise<HistoryPage> {
  const run = await requireRun(engine, request.selector);
  const read = async (): Promise<HistoryPage> => {
    // Progress strictly before the events (not in parallel: the two reads run
    // on different connections, so the events could be read first and miss a
    // completion the status read then sees, answering "ended, no events").
    // Events up to the progress' length were committed with it, so the events
    // read afterwards include them all.
    const progress = await getRunProgress(engine.sql, run.id);
    const rows = await readHistory(engine.sql, run.id, request.afterSequence, request.pageSize);
    const status = (progress?.status ?? run.status) as RunStatus;
    const historyLength = Math.max(progress?.historyLength ?? 0, rows.at(-1)?.sequence ?? 0);
    return { runId: run.id, events: rows.map(decodeEvent), historyLength, status };
  };
  const first = await read();
  if (first.events.length > 0 || request.waitUntil === undefined || isTerminal(first.status)) return first;
  const later = await longPoll({
    subscribe: () => engine.wakeups.subscribeRun(run.id),
    check: async () => {
      const page = await read();
      return page.events.length > 0 || isTerminal(page.status) ? page : undefined;
    },
    until: request.waitUntil,
    fallbackMs: HISTORY_FALLBACK_MS,
    signal,
    closing: () => engine.wakeups.isClosed,
  });
  return later ?? (await read());
}

/**
 * The run, once ended when asked to wait. By run id, the waiter subscribes before its first read,
 * so that read is also the first check: a waiter costs one read, plus one per wake that says the
 * run may have ended (engine/wakeups.ts: a workflow task that did not end the run wakes no result
 * waiter). By instance id, the run id comes from a first read.
 */
export async function getRunResult(
  engine: Engine,
  request: { selector: RunSelector; waitUntil: number | undefined },
  signal: AbortSignal,
): Promise<RunRecord> {
  if (request.waitUntil === undefined) return requireRun(engine, request.selector);
  let runId: string;
  if ("runId" in request.selector) runId = request.selector.runId;
  else {
    const run = await requireRun(engine, request.selector);
    if (isTerminal(run.status as RunStatus)) return run;
    runId = run.id;
  }
  let last: RunRecord | undefined;
  const ended = await longPoll({
    subscribe: () => engine.wakeups.subscribeRunEnd(runId),
    check: async () => {
      last = await requireRun(engine, { runId });
      return isTerminal(last.status as RunStatus) ? last : undefined;
    },
    until: request.waitUntil,
    fallbackMs: RESULT_FALLBACK_MS,
    signal,
    closing: () => engine.wakeups.isClosed,
  });
  // Not ended within the wait (or cancelled, or the server is closing): the run as last read.
  return ended ?? last ?? requireRun(engine, { runId });
}

export async function listRunPage(engine: Engine, filter: RunFilter): Promise<RunRecord[]> {
  return listRuns(engine.sql, filter, { idsFollowCreatedAt: !engine.testClock });
}
