/**
 * Activity completions share transactions (group commit): completions that
 * arrive while a batch is being written go together in the next one, one
 * statement for the whole batch (store/activity-completions.ts) instead of a
 * transaction of five statements each. A completion the batch could not take
 * (its run's row was locked by another transaction, its token is stale or
 * from an older server, it repeats another completion of the batch) goes the
 * one-by-one path, which waits for locks and gives the authoritative answer
 * (NOT_FOUND for a stale token). What a completion guarantees is the same on
 * both paths: fenced by the token, recorded exactly once.
 */
import type { Payload } from "@dex/proto";
import { completeActivitiesBatch, type ActivityCompletionInput, type CompletedActivity } from "../store/activity-completions.js";
import { queueWakeupPayload } from "../store/notify.js";
import type { Engine } from "./context.js";
import { activityResultDedupKey, encodeEvent } from "./events.js";
import { GroupCommit, perEngine, type Settled } from "./group-commit.js";
import { notifyAfterCommit } from "./notifier.js";
import { QueueType, type ActivityTaskRef } from "./model.js";

export interface ActivityCompletion {
  ref: ActivityTaskRef & { attempt: number };
  result: Payload | undefined;
}

/** What happened to one completion of a batch: done, or left to the one-by-one path. */
export type BatchOutcome = { done: CompletedActivity } | { alone: true };

/** Batches bigger than this wait for the next write; a batch of 256 is one statement of a few ms. */
const MAX_BATCH = 256;
/** One batch at a time: the next one collects what arrives meanwhile. */
const MAX_IN_FLIGHT = 1;

const committerOf = perEngine(
  (engine: Engine) =>
    new GroupCommit<ActivityCompletion, BatchOutcome>((items) => writeBatch(engine, items), { maxBatch: MAX_BATCH, maxInFlight: MAX_IN_FLIGHT }),
);

/** Submits a completion to this engine's group commit. */
export function submitActivityCompletion(engine: Engine, completion: ActivityCompletion): Promise<BatchOutcome> {
  return committerOf(engine).submit(completion);
}

function fenceKey({ ref }: ActivityCompletion): string {
  return `${ref.queue}\u0000${ref.runId}\u0000${ref.seq}\u0000${ref.leaseId}\u0000${ref.lockVersion}`;
}

async function writeBatch(engine: Engine, items: ActivityCompletion[]): Promise<Settled<BatchOutcome>[]> {
  // A repeated token (a client retrying while its first call is still queued) goes alone, after
  // the first has been written: it then finds the task gone, as it would have one by one.
  const seen = new Set<string>();
  const batched: number[] = [];
  items.forEach((item, i) => {
    const key = fenceKey(item);
    if (seen.has(key)) return;
    seen.add(key);
    batched.push(i);
  });
  const inputs: ActivityCompletionInput[] = batched.map((i) => {
    const { ref, result } = items[i]!;
    const event = encodeEvent({ case: "activityCompleted", value: { seq: ref.seq, result, attempt: ref.attempt } });
    return { ...ref, kind: event.kind, event: event.event, dedupKey: activityResultDedupKey(ref.seq) };
  });
  let completed: CompletedActivity[];
  try {
    completed = await completeActivitiesBatch(engine.sql, inputs);
  } catch (error) {
    // One bad completion must not fail the others: a batch that failed is retried one by one,
    // each with its own answer. A single completion has nothing to separate.
    if (items.length === 1) return [{ ok: false, error }];
    engine.logger.debug("activity completion batch failed; completing one by one", { err: error, size: items.length });
    return items.map(() => ({ ok: true, value: { alone: true } }));
  }
  if (completed.length > 0) engine.observer.committedBatch("activity_completion", completed.length);
  const outcomes: Settled<BatchOutcome>[] = items.map(() => ({ ok: true, value: { alone: true } }));
  const wokenRuns = new Set<string>();
  const wokenQueues = new Set<string>();
  for (const done of completed) {
    outcomes[batched[done.index]!] = { ok: true, value: { done } };
    if (done.wokeWorkflow && !wokenRuns.has(done.runId)) {
      wokenRuns.add(done.runId);
      wokenQueues.add(done.workflowQueue);
      engine.wakeups.wakeQueue(QueueType.WORKFLOW, done.workflowQueue);
    }
  }
  notifyAfterCommit(engine, [...wokenQueues].map((queue) => queueWakeupPayload(QueueType.WORKFLOW, queue, engine.origin)));
  return outcomes;
}
