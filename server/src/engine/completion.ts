/**
 * CompleteWorkflowTask: everything a workflow task decided, in ONE transaction.
 *
 * Order of statements, and why:
 * 1. locks, in one statement: the parent's run row first when this completion
 *    may end a child run (ancestor before descendant), then the run row and
 *    the fenced task row;
 * 2. the plan (pure validation, payload sizes included), the history limit
 *    (historyLimitReached), then the checks that need the database
 *    (continue-as-new's queue exists, and the updates it names as
 *    undelivered were handed out with this task, which then counts them as
 *    not handed out; seqs it refers to; a new seq an
 *    earlier task used is refused by the history's dedup index, then named
 *    by a second pass, see completeWorkflowTask): an
 *    invalid completion throws and the rollback leaves everything as it was,
 *    the task included. An activity call on a queue that does not exist is
 *    not an error: it gets no task and fails at once (engine/missing-queues.ts);
 *    a child on one fails to start (startChildren);
 * 3. a completion that would end the run while external events or a
 *    cancellation request wait in its inbox unseen (they arrived while the
 *    task ran) is refused: rollback, the task is handed out again at once
 *    with them, and the worker hears ABORTED (see abortForUnseenInputs);
 * 4. activity tasks (some inserted leased, when the worker offered eager
 *    slots: engine/eager-activities.ts; and the outcomes of the calls that could get none),
 *    timers, activity cancellations, continue-as-new's hand-over of unseen
 *    inputs (it leaves the handed-out rows alone, the undelivered updates
 *    set aside in step 2 excepted), and last the block append
 *    with the run's update (one statement), in one pipelined batch
 *    (postgres.js sends them in order on the transaction's connection);
 * 5. children (each in a savepoint), THEN the child cancellations: a child
 *    started and cancel-requested by the same completion (the SDK sends
 *    exactly that when a cancellation reaches the block that starts a child)
 *    must exist for the request to find it. Both lock only descendants, after
 *    our own row, so the ancestor-first order holds; then the run row update;
 * 6. continue-as-new's next run (after the old row left the open statuses), and
 *    what the end owes parent and children;
 * 7. last, the slot of a concurrency key the run held goes to the next run in
 *    the key's line (handOverSlots takes the key's lock after every row lock:
 *    see engine/concurrency-keys.ts); NOTIFYs after the commit (engine/notifier.ts).
 *
 * CompleteWorkflowTask arrives through the group commit of
 * engine/workflow-task-completions.ts: a batch runs steps 2-7 of many
 * completions in one transaction (prepareCompletion for all, then
 * writeCompletion for those accepted), after one lock statement for the batch.
 * completeWorkflowTask here is the one-by-one path: a batch of one, and every
 * completion a batch cannot take.
 */
import { DexError, type Command } from "@dex/proto";
import { cancelActivities, usedSeqs } from "../store/lifecycle.js";
import { isUniqueViolation } from "../store/errors.js";
import { appendBlock } from "../store/history.js";
import { finishWorkflowTask, insertActivityTasks, insertInboxEvents, type EagerOffer } from "../store/completion.js";
import { hasUnseenInputs, lockRunAndTakeTask, type LockedRun, type TakenWorkflowTask } from "../store/completion-locks.js";
import { deleteTimers, insertTimers } from "../store/timers.js";
import type { TransactionSql } from "../store/db.js";
import { endsRun, planCommands, type CommandPlan, type PlannedActivity } from "./commands.js";
import type { Engine } from "./context.js";
import { inTransaction, type Effects } from "./effects.js";
import { encodeEvent } from "./events.js";
import { isTerminal, QueueType, RunStatus, type WorkflowTaskRef } from "./model.js";
import { handOverSlots } from "./concurrency-keys.js";
import { afterRunEnded, cancelRuns, handOverUnseenInputs, startChildren, startContinuedRun } from "./relatives.js";
import type { PolledActivityTask } from "./activity-tasks.js";
import { dispatchedEagerly, queuedCounts, usableOffers } from "./eager-activities.js";
import { continueAsNewQueueMissing, unscheduledActivityOutcomes } from "./missing-queues.js";
import { forgetDeletedQueue, queueExists } from "./task-queues.js";
import { invalid } from "./validation.js";
import { applyRejections, checkCompletedUpdates, setAsideUndelivered, type UpdateRejection } from "./updates.js";
import { handBackWorkflowTask, taskNotFound } from "./workflow-tasks.js";

/** Thrown inside the completion's transaction to roll it back; see abortForUnseenInputs. */
export class UnseenInputs extends Error {}

/** Thrown by a completion that was told not to wait for run rows and found its run busy (or absent); nothing was written. */
export class RunBusy extends Error {}

/** What a completion answers: the history length, and the activity tasks handed out eagerly (leased). */
export interface CompletionResult {
  historyLength: number;
  activityTasks: PolledActivityTask[];
}

/**
 * `eager`: activity slots the worker's process offers (engine/eager-activities.ts); none by default.
 * `skipBusyRun`: do not wait for the run's row (RunBusy instead; see workflow-task-completions.ts).
 */
export async function completeWorkflowTask(
  engine: Engine,
  ref: WorkflowTaskRef,
  commands: Command[],
  options: { skipBusyRun?: boolean; eager?: readonly EagerOffer[]; rejectedUpdates?: readonly UpdateRejection[] } = {},
): Promise<CompletionResult> {
  let checkNewSeqs = false;
  let forgotQueue = false;
  for (;;) {
    try {
      return await applyCompletion(engine, ref, commands, checkNewSeqs, options.skipBusyRun ?? false, options.eager ?? [], options.rejectedUpdates ?? []);
    } catch (err) {
      if (err instanceof UnseenInputs) return abortForUnseenInputs(engine, ref);
      // A new seq an earlier task already used: the history's dedup index refused the append
      // and everything rolled back. Apply once more with the check that names the seq.
      if (!checkNewSeqs && isUniqueViolation(err, "history_events_dedup")) {
        checkNewSeqs = true;
        continue;
      }
      // A queue this server still knew was deleted by another one (an insert
      // found no partition; everything rolled back): forget it and apply once
      // more, so the checks see it missing (an activity call on it then fails
      // in the workflow, see engine/missing-queues.ts).
      if (!forgotQueue && forgetDeletedQueue(engine, err)) {
        forgotQueue = true;
        continue;
      }
      throw err;
    }
  }
}

/**
 * The run was about to end (complete, fail, cancel) without seeing inputs a
 * caller was told were delivered: SendEvent answered, CancelRun recorded. As
 * Temporal does, the commands are not applied. The transaction has rolled
 * back (the task row's delete with it), so the task still carries this
 * token's lease: hand it back, fenced by lease id and version, visible at
 * once and without counting an attempt; its next claim hands out the old
 * inputs plus the new ones. The worker's execution ran ahead to a terminal
 * command, so it must drop it and replay (the SDK does, on ABORTED).
 * continue-as-new is not refused: it hands these inputs to the new run.
 */
export async function abortForUnseenInputs(engine: Engine, ref: WorkflowTaskRef): Promise<never> {
  const released = await handBackWorkflowTask(engine, ref);
  // Not ours any more (its lease ran out meanwhile): a stale token, as anywhere else.
  if (!released) throw taskNotFound();
  engine.wakeups.wakeQueue(QueueType.WORKFLOW, ref.queue);
  engine.logger.debug("workflow task completion refused: new inputs arrived while it ran", { runId: ref.runId });
  throw new DexError(
    "ABORTED",
    `run ${ref.runId} received new events while this workflow task ran; the task is handed out again with them`,
  );
}

/**
 * The history limit (limits.maxHistoryEvents) refuses a completion that
 * would grow the history past it, unless the completion ends the run: a run
 * at the limit can always complete, fail, cancel or continue as new, and
 * continue-as-new is the way on (a new run, an empty history). Everything
 * rolls back (nothing is written); the worker fails the task, so DescribeRun
 * shows this message on the pending workflow task while it is retried.
 */
function historyLimitReached(runId: string, length: number, wouldBe: number, max: number): DexError {
  return new DexError(
    "FAILED_PRECONDITION",
    `run ${runId} has ${length} history events and this workflow task would take it to ${wouldBe}, past the limit of ` +
      `${max} events per run; nothing was written. Use continue-as-new (ctx.continueAsNew in the TypeScript SDK) ` +
      `to carry the workflow's state into a new run with an empty history; completing, failing or cancelling ` +
      `the run is still accepted`,
  );
}

async function applyCompletion(
  engine: Engine,
  ref: WorkflowTaskRef,
  commands: Command[],
  checkNewSeqs: boolean,
  skipBusyRun: boolean,
  eager: readonly EagerOffer[],
  rejectedUpdates: readonly UpdateRejection[],
): Promise<CompletionResult> {
  const done = await inTransaction(engine, async (tx, effects) => {
    // A child that ends notifies its parent: its row is locked first.
    const ends = commands.some((c) => endsRun(c.command.case));
    const { parent, run, task } = await lockRunAndTakeTask(tx, ref, ends, skipBusyRun);
    if (!run && skipBusyRun) throw new RunBusy();
    if (!run || !task || isTerminal(run.status as RunStatus)) throw taskNotFound();
    // Rejected updates leave the inbox instead of moving into history (engine/updates.ts).
    if (rejectedUpdates.length > 0) task.inboxIds = await applyRejections(tx, run.id, task.inboxIds, rejectedUpdates);
    const prepared = await prepareCompletion(engine, tx, { parent, run, task }, commands, checkNewSeqs);
    return writeCompletion(engine, tx, effects, prepared, eager);
  });
  logUnscheduled(engine, { runId: ref.runId, workflowName: done.workflowName }, done.unscheduled);
  return { historyLength: done.historyLength, activityTasks: done.activityTasks };
}

/** A completion's locked rows: its run, the parent's (when it may end a child run), the taken task. */
export interface LockedCompletion {
  parent: LockedRun | undefined;
  run: LockedRun;
  task: TakenWorkflowTask;
}

/** A completion checked and ready to write (prepareCompletion). */
export interface PreparedCompletion extends LockedCompletion {
  plan: CommandPlan;
  historyLength: number;
  missingQueues: Set<string>;
}

/**
 * Everything a completion checks before it writes (steps 2 and 3 above): the
 * plan, the history limit, the checks against the database and the unseen
 * inputs. Throws (a DexError, or UnseenInputs) without having written
 * anything, so a batch (engine/workflow-task-completions.ts) can refuse one
 * completion and write the others.
 */
export async function prepareCompletion(
  engine: Engine,
  tx: TransactionSql,
  locked: LockedCompletion,
  commands: Command[],
  checkNewSeqs: boolean,
  /** Whether unseen inputs wait (a batch reads them for all its ending completions at once); read here if undefined. */
  knownUnseen?: boolean,
): Promise<PreparedCompletion> {
  const { run } = locked;
  const plan = planCommands(commands, {
    taskQueue: run.taskQueue,
    workflowName: run.workflowName,
    priority: run.priority,
    labels: run.labels,
    taskTime: locked.task.taskTime,
    limits: engine.limits,
  });
  // Updates the code never saw because it had continued as new are not the old run's: set aside,
  // they move to the new run with the unseen inputs (writeCompletion, handOverUnseenInputs).
  const undelivered = plan.continueAsNew?.undelivered;
  const task = undelivered?.updateIds.length
    ? { ...locked.task, inboxIds: await setAsideUndelivered(tx, run.id, locked.task.inboxIds, undelivered, plan.completedUpdates) }
    : locked.task;
  const historyLength = run.historyLength + task.inboxIds.length + 1 + plan.events.length;
  if (!plan.end && historyLength > engine.limits.maxHistoryEvents) {
    throw historyLimitReached(run.id, run.historyLength, historyLength, engine.limits.maxHistoryEvents);
  }
  const missingQueues = await checkAgainstDatabase(engine, tx, run.id, plan, checkNewSeqs);
  if (plan.completedUpdates) await checkCompletedUpdates(tx, run.id, task.inboxIds, plan.completedUpdates);
  if (plan.end && plan.end.status !== RunStatus.CONTINUED_AS_NEW && (knownUnseen ?? (await hasUnseenInputs(tx, run.id, task.inboxIds)))) {
    throw new UnseenInputs();
  }
  return { ...locked, task, plan, historyLength, missingQueues };
}

/**
 * The writes of a prepared completion (steps 4 to 7 above), its effects
 * collected in `effects`. The task row must be gone already (the alone path
 * deleted it in its lock statement, a batch deletes its tasks first), or the
 * run's next workflow task would conflict with it.
 */
export async function writeCompletion(
  engine: Engine,
  tx: TransactionSql,
  effects: Effects,
  prepared: PreparedCompletion,
  eager: readonly EagerOffer[],
): Promise<{ historyLength: number; unscheduled: PlannedActivity[]; activityTasks: PolledActivityTask[]; workflowName: string }> {
  const { parent, run, task, plan, historyLength, missingQueues } = prepared;
  const marker = encodeEvent(
    { case: "workflowTaskCompleted", value: { workerId: task.workerId, attempt: task.attempt } },
    { time: task.taskTime },
  );
  const events = [marker, ...plan.events];
  const next = plan.continueAsNew;
  const activities = plan.activities.filter((a) => !missingQueues.has(a.queue));
  // An ending run drops its inbox (finishWorkflowTask): the outcomes would go with it.
  const unscheduled = plan.end ? [] : plan.activities.filter((a) => missingQueues.has(a.queue));
  const block = { runId: run.id, afterSequence: run.historyLength, inboxIds: task.inboxIds, events };
  const finish = (append?: typeof block) =>
    finishWorkflowTask(
      tx,
      {
        runId: run.id,
        queue: run.taskQueue,
        priority: run.priority,
        historyLength,
        stickyWorkerId: plan.end ? null : task.workerId,
        customStatus: plan.customStatus,
        labels: plan.labels,
        end: plan.end,
        handedOut: task.inboxIds,
      },
      append,
    );
  // Without children to start or cancel (the usual task), the block's append and the run's update
  // are one statement, sent last in one pipelined batch with the other writes (one session runs
  // them in the order sent; none of them reads history). Children first otherwise: a cancel of a
  // child started by this same completion must find its row, and a started child writes to this
  // run's inbox; the block is appended first then, and the run updated after the children.
  const finishInBatch = plan.children.length === 0 && plan.cancelChildren.length === 0;
  const [appended, eagerRows, , , , , , finishedInBatch] = await Promise.all([
    finishInBatch ? undefined : appendBlock(tx, block),
    insertActivityTasks(tx, run, activities, usableOffers(eager, activities, plan.end !== undefined)),
    insertInboxEvents(tx, run.id, unscheduledActivityOutcomes(unscheduled)),
    insertTimers(tx, run, plan.timers),
    deleteTimers(tx, run.id, plan.cancelTimers),
    cancelActivities(tx, run.id, plan.cancelActivities),
    next
      ? handOverUnseenInputs(tx, {
          old: run,
          newRunId: next.runId,
          handedOut: task.inboxIds,
          carried: next.carried,
          cancelRequestDelivered: next.cancelRequestDelivered,
        })
      : undefined,
    finishInBatch ? finish(block) : undefined,
  ]);
  const moved = (finishedInBatch ?? appended)!.moved;
  if (moved !== task.inboxIds.length) {
    throw new Error(`run ${run.id}: ${task.inboxIds.length} inbox rows were handed out but ${moved} were found`);
  }
  let finished = finishedInBatch;
  if (!finished) {
    await startChildren(engine, tx, effects, run, plan.children);
    if (plan.cancelChildren.length > 0) {
      await cancelRuns(tx, effects, { parent: run.id, seqs: plan.cancelChildren }, `cancellation requested by parent run ${run.id}`);
    }
    finished = await finish();
  }
  if (next) await startContinuedRun(engine, tx, effects, run, next, { ...run.labels, ...plan.labels });
  if (plan.end) await afterRunEnded(engine, tx, effects, run, parent, plan.end);
  // Continue-as-new passed the slot on to the new run (startContinuedRun).
  if (plan.end && plan.end.status !== RunStatus.CONTINUED_AS_NEW && run.concurrencyKey !== null) {
    await handOverSlots(tx, effects, run.concurrencyKey);
  }

  // A task handed out eagerly needs no poll: only queues with tasks left waiting are woken.
  for (const [queue, waiting] of queuedCounts(activities, eagerRows)) if (waiting > 0) effects.wakeQueue(QueueType.ACTIVITY, queue);
  const activityTasks = dispatchedEagerly(eagerRows, effects);
  if (finished.nextTask) effects.wakeQueue(QueueType.WORKFLOW, run.taskQueue);
  for (const timer of plan.timers) effects.timerAt(timer.fireAt);
  effects.observe((o) => o.executed(QueueType.WORKFLOW, run.taskQueue, "completed", Date.now() - task.taskTime.getTime()));
  // Result waiters are woken only by an end: the other tasks would cost each of them a read.
  effects.wakeRun(run.id, { ended: plan.end !== undefined });
  return { historyLength, unscheduled, activityTasks, workflowName: run.workflowName };
}

/** Logs the activity calls that failed at once because their queue does not exist (after the commit). */
export function logUnscheduled(engine: Engine, run: { runId: string; workflowName: string }, unscheduled: readonly PlannedActivity[]): void {
  for (const activity of unscheduled) {
    engine.logger.warn("activity call failed: its task queue does not exist", {
      runId: run.runId,
      workflow: run.workflowName,
      seq: activity.seq,
      activity: activity.activityName,
      queue: activity.queue,
    });
  }
}

/**
 * The checks a pure plan cannot make: its new seqs were not used by an earlier
 * task, the seqs it refers to were created by the right kind of command, and
 * continue-as-new's queue exists. Returns the activity queues that do not
 * exist (their calls fail at once). A child's queue is checked by the child's
 * insert itself (startChildren).
 *
 * New seqs are not read first unless `checkNewSeqs` or the plan refers to
 * earlier seqs anyway: the dedup index on history ('seq:<n>') rejects a reused
 * one in the append, and completeWorkflowTask then applies the completion once
 * more with this check, which names the seq. A valid completion (nearly all
 * of them) saves a statement per workflow task.
 *
 * A queue this server knows (engine.knownQueues) may have been deleted by
 * another server: the insert into it then finds no partition, the
 * transaction rolls back, and completeWorkflowTask forgets the queue and
 * applies the completion once more, when this check finds it missing.
 */
async function checkAgainstDatabase(
  engine: Engine,
  tx: TransactionSql,
  runId: string,
  plan: CommandPlan,
  checkNewSeqs: boolean,
): Promise<Set<string>> {
  if (checkNewSeqs || plan.references.length > 0) await checkSeqs(tx, runId, plan);
  if (plan.continueAsNew && !(await queueExists(engine, QueueType.WORKFLOW, plan.continueAsNew.taskQueue, tx))) {
    throw continueAsNewQueueMissing(plan.continueAsNew.taskQueue);
  }
  const missing = new Set<string>();
  for (const queue of new Set(plan.activities.map((a) => a.queue))) {
    if (!(await queueExists(engine, QueueType.ACTIVITY, queue, tx))) missing.add(queue);
  }
  return missing;
}

async function checkSeqs(tx: TransactionSql, runId: string, plan: CommandPlan): Promise<void> {
  const asked = [...plan.newSeqs, ...plan.references.map((r) => r.seq)];
  if (asked.length === 0) return;
  const used = await usedSeqs(tx, runId, asked);
  for (const seq of plan.newSeqs) {
    const kind = used.get(seq);
    if (kind) throw invalid(`seq ${seq} is already used by an earlier ${kind} of this run; each seq is unique within a run`);
  }
  for (const ref of plan.references) {
    const kind = used.get(ref.seq);
    if (kind !== ref.kind && (ref.orKind === undefined || kind !== ref.orKind)) {
      throw invalid(`${ref.field}.seq ${ref.seq} names no ${ref.kind} of this run${kind ? ` (it is a ${kind})` : ""}`);
    }
  }
}

export type { LockedRun };
