/**
 * Activity outcomes (completions and failed attempts) share transactions
 * (group commit): calls that arrive while a batch is being written go
 * together in the next one, one statement for the whole batch
 * (store/activity-completions.ts, its `skip` form). An outcome the batch could
 * not write because another transaction held its run's row is written again
 * alone by the same statement in its `wait` form, which waits for that lock;
 * so is every outcome of a batch that failed as a whole (one bad input must
 * not fail the others). A batch of one is a batch: there is no other path,
 * and every answer (NOT_FOUND for a stale token, an ended run, a token
 * repeated in the batch) comes from the one statement.
 */
import type { Failure, Payload } from "@dex/proto";
import {
  writeActivityOutcomes,
  type ActivityOutcomeAnswer,
  type ActivityOutcomeInput,
  type RunLocking,
  type WrittenActivityOutcome,
} from "../store/activity-completions.js";
import { queueWakeupPayload } from "../store/notify.js";
import type { Engine } from "./context.js";
import { activityResultDedupKey, encodeEvent, encodeFailure } from "./events.js";
import { GroupCommit, perEngine, type Settled } from "./group-commit.js";
import { notifyAfterCommit } from "./notifier.js";
import { QueueType, type ActivityTaskRef } from "./model.js";
import { taskNotFound } from "./workflow-tasks.js";

/**
 * What an attempt ended with: a result, or a failure that is final or retried after
 * `retryAfterMs` (a retried failure is still delivered, as final, if the workflow asked meanwhile
 * to cancel the activity: a cancelled activity is not retried).
 */
export type AttemptResult =
  | { case: "completed"; result: Payload | undefined }
  | { case: "failed"; failure: Failure; retryAfterMs?: number | undefined };

/**
 * The attempt an outcome is for: the task's key and its fence. The lease id is null only for the
 * reaper's tasks past schedule-to-close that wait unleased.
 */
export type AttemptFence = Omit<ActivityTaskRef, "leaseId" | "attempt"> & { leaseId: string | null; attempt: number };

export interface ActivityOutcome {
  ref: AttemptFence;
  result: AttemptResult;
}

/** Batches bigger than this wait for the next write; a batch of 256 is one statement of a few ms. */
const MAX_BATCH = 256;
/** One batch at a time: the next one collects what arrives meanwhile. */
const MAX_IN_FLIGHT = 1;

const committerOf = perEngine(
  (engine: Engine) =>
    new GroupCommit<ActivityOutcome, ActivityOutcomeAnswer>((items) => writeBatch(engine, items), {
      maxBatch: MAX_BATCH,
      maxInFlight: MAX_IN_FLIGHT,
      operation: "activity_completion",
    }),
);

/**
 * Writes one attempt's outcome; NOT_FOUND (nothing written) if its token names no current
 * attempt of an open run.
 */
export async function writeActivityOutcome(engine: Engine, outcome: ActivityOutcome): Promise<WrittenActivityOutcome> {
  let answer = await committerOf(engine).submit(outcome);
  // Outside the group commit, so that waiting for one run's lock holds up no other batch.
  if (answer.status === "busy") answer = (await writeOutcomes(engine, [outcome], "wait"))[0]!;
  if (answer.status !== "written") throw taskNotFound();
  return answer.written;
}

async function writeBatch(engine: Engine, items: ActivityOutcome[]): Promise<Settled<ActivityOutcomeAnswer>[]> {
  try {
    const answers = await writeOutcomes(engine, items, "skip");
    const written = answers.filter((a) => a.status === "written").length;
    if (written > 0) engine.observer.committedBatch("activity_completion", written);
    return answers.map((value) => ({ ok: true, value }));
  } catch (error) {
    // A single outcome has nothing to separate; several are written again one by one, each with
    // its own answer (`busy` sends each to the `wait` form, alone).
    if (items.length === 1) return [{ ok: false, error }];
    engine.logger.debug("activity outcome batch failed; writing each alone", { err: error, size: items.length });
    return items.map(() => ({ ok: true, value: { status: "busy" } }));
  }
}

/**
 * One statement, then the wake-ups its commit calls for: workflow queues now, retried attempts at
 * their time. The lease reaper calls it directly (`skip`: a busy run waits for its next pass).
 */
export async function writeOutcomes(engine: Engine, items: ActivityOutcome[], locking: RunLocking): Promise<ActivityOutcomeAnswer[]> {
  const answers = await writeActivityOutcomes(engine.sql, items.map(toInput), locking);
  const wokenRuns = new Set<string>();
  const wokenQueues = new Set<string>();
  for (const answer of answers) {
    if (answer.status !== "written") continue;
    const { written } = answer;
    if (written.nextAttemptAt) engine.wakeups.wakeQueueAt(QueueType.ACTIVITY, written.queue, written.nextAttemptAt);
    if (written.wokeWorkflow && !wokenRuns.has(written.runId)) {
      wokenRuns.add(written.runId);
      wokenQueues.add(written.workflowQueue);
      engine.wakeups.wakeQueue(QueueType.WORKFLOW, written.workflowQueue);
    }
  }
  notifyAfterCommit(engine, [...wokenQueues].map((queue) => queueWakeupPayload(QueueType.WORKFLOW, queue, engine.origin)));
  return answers;
}

function toInput({ ref, result }: ActivityOutcome): ActivityOutcomeInput {
  const event =
    result.case === "completed"
      ? encodeEvent({ case: "activityCompleted", value: { seq: ref.seq, result: result.result, attempt: ref.attempt } })
      : encodeEvent({ case: "activityFailed", value: { seq: ref.seq, failure: result.failure, attempt: ref.attempt } });
  const retry =
    result.case === "failed" && result.retryAfterMs !== undefined
      ? { delayMs: result.retryAfterMs, lastFailure: encodeFailure(result.failure)! }
      : undefined;
  return { ...ref, kind: event.kind, event: event.event, dedupKey: activityResultDedupKey(ref.seq), retry };
}
