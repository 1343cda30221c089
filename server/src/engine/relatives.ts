/**
 * Writes that reach from one run to another, inside the transaction of the
 * run that causes them: starting children, continue-as-new's next run, and
 * what a run's end means for its parent and children. Lock order: ancestor
 * before descendant (store/lifecycle.ts); every function here is called with
 * the right locks already held or takes them in that order.
 */
import { create } from "@bufbuild/protobuf";
import { FailureKind, FailureSchema, RunStatus as ProtoRunStatus, type Failure, type Payload } from "@dex/proto";
import { insertInboxEvent } from "../store/activity-tasks.js";
import type { LockedRun } from "../store/completion-locks.js";
import type { TransactionSql } from "../store/db.js";
import {
  inheritCancelRequest,
  handOverInbox,
  requestCancellation,
  type CancelTarget,
} from "../store/lifecycle.js";
import { insertRun, insertRuns } from "../store/runs.js";
import { ensureWorkflowTask } from "../store/workflow-tasks.js";
import type { PlannedChild } from "./commands.js";
import type { Engine } from "./context.js";
import type { Effects } from "./effects.js";
import { decodeFailure, decodePayload, encodeEvent, type CarriedInboxEvent, type EventInit } from "./events.js";
import { continueAsNewQueueMissing, taskQueueNotFound } from "./missing-queues.js";
import { DedupKind, dedupKey, isTerminal, QueueType, RunStatus } from "./model.js";
import { newRun, ReusePolicy } from "./start.js";
import { forgetQueue } from "./task-queues.js";

/** Dedup keys of the inbox events one child command can produce: one start outcome, one end. */
const childStartKey = (seq: number) => dedupKey(DedupKind.CHILD_START, seq);
const childEndKey = (seq: number) => dedupKey(DedupKind.CHILD_END, seq);

/**
 * Starts the children of one completion, all in ONE start statement (store/runs.ts
 * insertRuns). An instance id with an open run (or a second child of the same
 * instance id in this completion: the first in command order wins) is not
 * inserted, and the parent hears `child_run_start_failed` (InstanceIdConflict)
 * instead; the unique index decides, race-free, and nothing aborts, so no
 * savepoint is needed. So it does when the child's workflow queue does not
 * exist (TaskQueueNotFound: the statement checks the queue itself, so a queue
 * this server still believed in is forgotten here). `child_run_started` does
 * not wake the parent; a failure does (see finishWorkflowTask). Children carry
 * no concurrency key: the command has no field for one, and inheriting the
 * parent's would make a child of a limit-1 parent wait forever for the slot
 * its parent holds (engine/concurrency-keys.ts).
 */
export async function startChildren(
  engine: Engine,
  tx: TransactionSql,
  effects: Effects,
  parent: LockedRun,
  children: PlannedChild[],
): Promise<void> {
  if (children.length === 0) return;
  const rows = children.map((child) =>
    newRun(
      {
        workflowName: child.workflowName,
        instanceId: child.instanceId,
        taskQueue: child.taskQueue,
        input: child.input,
        labels: child.labels,
        priority: child.priority,
        requestId: "",
        reusePolicy: ReusePolicy.ALLOW,
        concurrencyKey: null,
        concurrencyLimit: null,
        runTimeoutMs: child.runTimeoutMs ?? null,
        workflowTaskTimeoutMs: child.workflowTaskTimeoutMs ?? null,
        // A child joins its parent's trace (decision 0030).
        traceContext: parent.traceContext,
      },
      { parent: { runId: parent.id, seq: child.seq, closePolicy: child.parentClosePolicy } },
    ),
  );
  const outcomes = await insertRuns(tx, rows);
  for (const [i, child] of children.entries()) {
    const outcome = outcomes[i]!;
    let failure: Failure | undefined;
    if (outcome.outcome === "queue_missing") {
      forgetQueue(engine, QueueType.WORKFLOW, child.taskQueue);
      failure = taskQueueNotFound(QueueType.WORKFLOW, child.taskQueue);
    } else if (outcome.outcome === "open_run_exists") {
      failure = create(FailureSchema, {
        message: `instance id "${child.instanceId}" already has an open run; the child was not started`,
        type: "InstanceIdConflict",
        nonRetryable: true,
        kind: FailureKind.SERVER,
      });
    } else if (outcome.outcome !== "started") {
      // No request id and reuse ALLOW: nothing else can answer.
      throw new Error(`child start of seq ${child.seq}: unexpected ${outcome.outcome}`);
    }
    const started = failure === undefined;
    const event: EventInit = started
      ? { case: "childRunStarted", value: { seq: child.seq, runId: rows[i]!.id } }
      : { case: "childRunStartFailed", value: { seq: child.seq, failure } };
    await putInInbox(tx, parent.id, event, childStartKey(child.seq));
    if (started) {
      effects.wakeQueue(QueueType.WORKFLOW, child.taskQueue);
      effects.observe((o) => o.runStarted(child.taskQueue));
    }
  }
}

/**
 * continue-as-new, after the old run's row says CONTINUED_AS_NEW (the
 * open-run index allows one open run per instance): the new run with its
 * first workflow task, carrying labels, priority and the parent link over.
 * The inputs the old run never saw were moved to it before (handOverUnseenInputs);
 * if a cancellation request is among them, the new run is marked
 * cancel-requested as the old one was. A run with a concurrency key passes
 * its key, limit and slot to the new run in this commit: the chain keeps
 * running without queueing behind runs that started after it, and the key's
 * holder count never changes, so no key lock is needed.
 */
export async function startContinuedRun(
  engine: Engine,
  tx: TransactionSql,
  effects: Effects,
  old: LockedRun,
  next: { runId: string; input: Payload | undefined; workflowName: string; taskQueue: string },
  labels: Record<string, string>,
): Promise<void> {
  const row = newRun(
    {
      workflowName: next.workflowName,
      instanceId: old.instanceId,
      taskQueue: next.taskQueue,
      input: next.input,
      labels,
      priority: old.priority,
      requestId: "",
      reusePolicy: ReusePolicy.ALLOW,
      concurrencyKey: old.concurrencyKey,
      concurrencyLimit: old.concurrencyLimit,
      traceContext: old.traceContext,
    },
    {
      holdsSlot: true,
      runId: next.runId,
      continuedFromRunId: old.id,
      parent: old.parentRunId
        ? { runId: old.parentRunId, seq: old.parentSeq ?? 0, closePolicy: old.parentClosePolicy ?? "cancel" }
        : null,
    },
  );
  const outcome = await insertRun(tx, row);
  if (outcome.outcome === "queue_missing") {
    // The completion found the queue in this server's cache, but another server deleted it:
    // refuse as the check would have (the throw rolls everything back), and look it up next time.
    forgetQueue(engine, QueueType.WORKFLOW, next.taskQueue);
    throw continueAsNewQueueMissing(next.taskQueue);
  }
  if (outcome.outcome !== "started") throw new Error(`continue-as-new of run ${old.id}: unexpected ${outcome.outcome}`);
  // Only a run that was asked to cancel can have handed a request over: skip the statement otherwise.
  if (old.cancelRequested) await inheritCancelRequest(tx, old.id, next.runId);
  effects.wakeQueue(QueueType.WORKFLOW, next.taskQueue);
  effects.observe((o) => o.runStarted(next.taskQueue));
}

/**
 * The new run's inbox at continue-as-new: first the events the old run's code
 * received and did not consume (carried by the command), then a cancellation
 * request handed out with this task that the code was not told of, then the
 * external events, updates and cancellation request the old run was not
 * handed (they arrived while its last task ran), among them the updates
 * handed out with this task that the code never saw (the command names them;
 * `handedOut` leaves them out, see prepareCompletion); the new run joins the old
 * run's chain, so event and update ids stay deduplicated across it. Call
 * before the old run's inbox is dropped. A request the code saw (handed out
 * with an earlier task, or delivered before the code continued, which the
 * command says) stays in the old history: the workflow chose to continue
 * (decision 0031).
 */
export async function handOverUnseenInputs(
  tx: TransactionSql,
  input: {
    old: LockedRun;
    newRunId: string;
    handedOut: readonly number[];
    carried: readonly CarriedInboxEvent[];
    cancelRequestDelivered: boolean;
  },
): Promise<void> {
  const { old } = input;
  await handOverInbox(tx, {
    fromRunId: old.id,
    toRunId: input.newRunId,
    handedOut: input.handedOut,
    carried: input.carried,
    afterSequence: old.historyLength,
    // Only a run asked to cancel can have handed a request out.
    carryHandedOutCancel: old.cancelRequested && !input.cancelRequestDelivered,
  });
}

/**
 * What a terminal transition owes the family, in the ending run's transaction:
 * the parent (locked by the caller before this run) gets `child_run_ended`
 * unless the run continued as new (the parent waits for the chain's last run);
 * open children with parent-close policy CANCEL get a cancellation request.
 */
export async function afterRunEnded(
  engine: Engine,
  tx: TransactionSql,
  effects: Effects,
  run: LockedRun,
  parent: LockedRun | undefined,
  end: { status: RunStatus; result: Uint8Array | null; failure: Uint8Array | null },
): Promise<void> {
  // Every terminal transition (completion, termination) passes here: the one place to count run ends.
  effects.observe((o) => o.runEnded(run.taskQueue, end.status));
  if (end.status !== RunStatus.CONTINUED_AS_NEW && parent && !isTerminal(parent.status as RunStatus) && run.parentSeq) {
    await putInInbox(
      tx,
      parent.id,
      {
        case: "childRunEnded",
        value: {
          seq: run.parentSeq,
          status: ProtoRunStatus[end.status],
          result: decodePayload(end.result),
          failure: decodeFailure(end.failure),
        },
      },
      childEndKey(run.parentSeq),
    );
    await wakeRun(engine, tx, effects, parent);
  }
  await cancelRuns(tx, effects, { closingParent: run.id }, `parent run ${run.id} ended ${end.status}; parent-close policy CANCEL`);
}

/** Requests cancellation of the targets (see requestCancellation) and wakes their queues after commit. */
export async function cancelRuns(
  tx: TransactionSql,
  effects: Effects,
  target: CancelTarget,
  reason: string,
): Promise<string[]> {
  const event = encodeEvent({ case: "cancelRequested", value: { reason } }).event;
  const { marked, queues } = await requestCancellation(tx, target, { reason, event });
  for (const queue of queues) effects.wakeQueue(QueueType.WORKFLOW, queue);
  return marked;
}

export async function putInInbox(tx: TransactionSql, runId: string, attributes: EventInit, dedupKey: string): Promise<boolean> {
  const event = encodeEvent(attributes);
  return insertInboxEvent(tx, { runId, kind: event.kind, event: event.event, dedupKey });
}

/** Gives a locked, open run its workflow task (if it has none) so it sees its new inbox rows. */
export async function wakeRun(engine: Engine, tx: TransactionSql, effects: Effects, run: LockedRun): Promise<void> {
  const created = await ensureWorkflowTask(tx, {
    queue: run.taskQueue,
    runId: run.id,
    priority: run.priority,
  });
  if (created) effects.wakeQueue(QueueType.WORKFLOW, run.taskQueue);
}

