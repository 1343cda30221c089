/**
 * Workflow task completions share transactions (group commit, as activity
 * completions do in engine/activity-completions.ts): completions that arrive
 * while a batch is being written go together in the next one; with nothing in
 * flight a completion starts its batch at once, so a lone one waits for nobody.
 *
 * A batch is ONE transaction that runs the per-completion bodies of
 * engine/completion.ts together: one BEGIN, one lock statement for the whole
 * batch (store/completion-locks.ts lockRunsAndTasks: runs SKIP LOCKED in id order,
 * then the fenced task rows), one unseen-inputs read for the ending ones
 * (runsWithUnseenInputs), each completion's checks (prepareCompletion:
 * nothing written yet), then one pipeline of every accepted completion's
 * writes (the taken task rows' delete first, then each writeCompletion), one
 * COMMIT and its one WAL flush for the batch.
 *
 * What each completion hears is what the one-by-one path would answer:
 * - a check that refuses it before any write (stale token, invalid commands,
 *   history limit) is its own answer; it keeps its task (the batch deleted
 *   only the accepted ones' rows) and writes nothing, as the alone path's
 *   rollback leaves it;
 * - unseen inputs (a terminal command while a signal or cancellation waited
 *   unseen): its task is handed back after the commit, ABORTED
 *   (abortForUnseenInputs, as alone);
 * - a completion the batch did not lock goes the one-by-one path
 *   (completeWorkflowTask), which waits for locks: its run was busy or is not
 *   RUNNING (ended, or absent: NOT_FOUND there), it may end a child run (the parent's row must be locked first) or a
 *   run holding a concurrency key slot, or its run already has a completion in
 *   this batch; so do commands that start, cancel or continue runs (children,
 *   continue-as-new), which never join a batch;
 * - an SQL error (or any other throw) fails the whole transaction: nothing of
 *   the batch was written and every completion goes the one-by-one path, which
 *   also retries on the history dedup index (a reused seq) and on a deleted
 *   queue's missing partition. One bad completion cannot fail the others.
 *
 * A batch of one is the one-by-one path itself, run inside the group commit
 * (so what arrives meanwhile waits for the next batch): it saves the batch
 * form's separate delete statement and adds no latency. It skips a busy run
 * row as a batch does (then goes alone, outside the group commit): waiting for
 * it would stall every completion queued behind it.
 */
import { DexError, type Command } from "@dex/proto";
import { deleteTakenTasks, lockRunsAndTasks, runsWithUnseenInputs } from "../store/completion-locks.js";
import { endsRun } from "./commands.js";
import {
  abortForUnseenInputs,
  completeWorkflowTask,
  logUnscheduled,
  prepareCompletion,
  RunBusy,
  UnseenInputs,
  writeCompletion,
  type CompletionResult,
  type PreparedCompletion,
} from "./completion.js";
import type { EagerOffer } from "./eager-activities.js";
import type { Engine } from "./context.js";
import { Effects } from "./effects.js";
import { GroupCommit, perEngine, type Settled } from "./group-commit.js";
import { isTerminal, type RunStatus, type WorkflowTaskRef } from "./model.js";
import { notifyAfterCommit } from "./notifier.js";
import { taskNotFound } from "./workflow-tasks.js";
import type { UpdateRejection } from "./updates.js";

export interface WorkflowTaskCompletion {
  ref: WorkflowTaskRef;
  commands: Command[];
  /** Activity slots the worker's process offers for eager dispatch (engine/eager-activities.ts). */
  eager: readonly EagerOffer[];
}

type Answer = CompletionResult;

/** One completion's outcome in a batch: answered (value or error), unseen inputs, or left to the one-by-one path. */
type BatchOutcome = { answer: Settled<Answer> } | { unseen: true } | { alone: true };

/** A batch of 128 completions is a few ms of statements; more wait for the next batch. */
const MAX_BATCH = 128;
/** One batch at a time: the next one collects what arrives meanwhile. */
const MAX_IN_FLIGHT = 1;

/** Commands that start, cancel or continue other runs: their completions never join a batch. */
const ALONE_COMMANDS = new Set<Command["command"]["case"]>(["startChildRun", "requestCancelChildRun", "continueAsNew"]);

const committerOf = perEngine(
  (engine: Engine) =>
    new GroupCommit<WorkflowTaskCompletion, BatchOutcome>((items) => writeBatch(engine, items), {
      maxBatch: MAX_BATCH,
      maxInFlight: MAX_IN_FLIGHT,
      operation: "workflow_task_completion",
    }),
);

/**
 * CompleteWorkflowTask: through this engine's group commit, or the one-by-one
 * path when the batch could not take it. Answers exactly as completeWorkflowTask.
 */
export async function completeWorkflowTaskGrouped(
  engine: Engine,
  ref: WorkflowTaskRef,
  commands: Command[],
  eager: readonly EagerOffer[] = [],
  rejectedUpdates: readonly UpdateRejection[] = [],
): Promise<Answer> {
  // Rejected updates (rare) delete inbox rows before the checks: they go the one-by-one path,
  // as do commands that start, cancel or continue runs; both must carry the rejections, or a
  // rejected update's inbox row would be recorded as update_accepted.
  if (rejectedUpdates.length > 0 || commands.some((c) => ALONE_COMMANDS.has(c.command.case))) {
    return completeWorkflowTask(engine, ref, commands, { eager, rejectedUpdates });
  }
  const outcome = await committerOf(engine).submit({ ref, commands, eager });
  if ("answer" in outcome) {
    if (outcome.answer.ok) return outcome.answer.value;
    throw outcome.answer.error;
  }
  if ("unseen" in outcome) return abortForUnseenInputs(engine, ref);
  return completeWorkflowTask(engine, ref, commands, { eager });
}

async function writeBatch(engine: Engine, items: WorkflowTaskCompletion[]): Promise<Settled<BatchOutcome>[]> {
  if (items.length === 1) {
    // Alone, but without waiting for a run row: a busy run would stall every completion queued behind it.
    const { ref, commands, eager } = items[0]!;
    try {
      const answer = await completeWorkflowTask(engine, ref, commands, { skipBusyRun: true, eager });
      engine.observer.committedBatch("workflow_task_completion", 1);
      return [{ ok: true, value: { answer: { ok: true, value: answer } } }];
    } catch (error) {
      if (error instanceof RunBusy) return [{ ok: true, value: { alone: true } }];
      return [{ ok: true, value: { answer: { ok: false, error } } }];
    }
  }
  const outcomes: BatchOutcome[] = items.map(() => ({ alone: true }));
  // One completion per run: a second one for the same run (a retry, a stale token) goes alone,
  // after this batch, and then finds what the first left.
  const seen = new Set<string>();
  const batched: number[] = [];
  items.forEach(({ ref }, i) => {
    if (seen.has(ref.runId)) return;
    seen.add(ref.runId);
    batched.push(i);
  });
  const effects = new Effects();
  const written: Array<{ index: number; unscheduled: Parameters<typeof logUnscheduled>[2]; workflowName: string }> = [];
  try {
    await engine.sql.begin(async (tx) => {
      const refs = batched.map((i) => {
        const { ref, commands } = items[i]!;
        const ends = commands.some((c) => endsRun(c.command.case));
        return { queue: ref.queue, runId: ref.runId, leaseId: ref.leaseId, lockVersion: ref.lockVersion, ends };
      });
      const locked = await lockRunsAndTasks(tx, refs);
      // The unseen-inputs check of every ending completion in one statement (no continue-as-new
      // joins a batch, so a completion that ends its run is one whose plan ends it).
      const unseen = await runsWithUnseenInputs(
        tx,
        refs.flatMap((ref, k) => {
          const rows = locked.get(k);
          return ref.ends && rows?.task ? [{ runId: ref.runId, handedOut: rows.task.inboxIds }] : [];
        }),
      );
      // Checks first, all of them (pipelined): none writes, so a refusal is that completion's answer.
      const prepared = await Promise.all(
        batched.map(async (index, k): Promise<{ index: number; prepared?: PreparedCompletion }> => {
          const rows = locked.get(k);
          if (!rows) return { index };
          const { run, task } = rows;
          if (!task || isTerminal(run.status as RunStatus)) {
            outcomes[index] = { answer: { ok: false, error: taskNotFound() } };
            return { index };
          }
          try {
            const knownUnseen = refs[k]!.ends ? unseen.has(run.id) : undefined;
            const own = { parent: undefined, run, task };
            return { index, prepared: await prepareCompletion(engine, tx, own, items[index]!.commands, false, knownUnseen) };
          } catch (error) {
            if (error instanceof UnseenInputs) outcomes[index] = { unseen: true };
            else if (error instanceof DexError) outcomes[index] = { answer: { ok: false, error } };
            else throw error;
            return { index };
          }
        }),
      );
      const accepted = prepared.filter((p): p is { index: number; prepared: PreparedCompletion } => p.prepared !== undefined);
      // The taken task rows go first: each run's next workflow task (finishWorkflowTask) must not
      // conflict with the row of the task it completes. One session runs them in the order sent.
      const [, ...done] = await Promise.all([
        deleteTakenTasks(tx, accepted.map(({ index }) => ({ queue: items[index]!.ref.queue, runId: items[index]!.ref.runId }))),
        ...accepted.map(({ index, prepared: p }) => writeCompletion(engine, tx, effects, p, items[index]!.eager)),
      ]);
      done.forEach((d, k) => {
        const index = accepted[k]!.index;
        outcomes[index] = { answer: { ok: true, value: { historyLength: d.historyLength, activityTasks: d.activityTasks } } };
        written.push({ index, unscheduled: d.unscheduled, workflowName: d.workflowName });
      });
    });
  } catch (error) {
    // Nothing of the batch was written: each completion goes the one-by-one path, with its own answer.
    engine.logger.debug("workflow task completion batch failed; completing one by one", { err: error, size: items.length });
    return items.map(() => ({ ok: true, value: { alone: true } }));
  }
  effects.apply(engine);
  notifyAfterCommit(engine, effects.payloads(engine.origin));
  if (written.length > 0) engine.observer.committedBatch("workflow_task_completion", written.length);
  for (const { index, unscheduled, workflowName } of written) logUnscheduled(engine, { runId: items[index]!.ref.runId, workflowName }, unscheduled);
  return outcomes.map((value) => ({ ok: true, value }));
}
