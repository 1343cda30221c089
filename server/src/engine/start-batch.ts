/**
 * Starts share transactions (group commit): plain starts that arrive while a
 * batch is being written go together in the next one, one start statement for
 * the whole batch (store/runs.ts insertRuns) instead of one statement and one
 * commit each. A start the batch cannot answer goes the one-by-one path
 * (engine/start.ts), which answers authoritatively: a second start of an
 * instance id already in the batch (two starts of one instance must behave as
 * if serialized, so it runs after the batch committed), one that met an open
 * run of its instance, and every start of a batch that failed as a whole.
 * Starts with a concurrency key never come here.
 *
 * The statement commits on its own; only then are the new tasks announced
 * (announceStarts): parked polls of this server at once, other servers by one
 * NOTIFY per workflow queue per batch, sent after the commit by
 * engine/notifier.ts, so the batch's commit never takes Postgres's notify lock.
 */
import type { Engine } from "./context.js";
import { Effects } from "./effects.js";
import { GroupCommit, perEngine, type Settled } from "./group-commit.js";
import { QueueType } from "./model.js";
import { notifyAfterCommit } from "./notifier.js";
import { insertRuns, type InsertRunOutcome, type NewRun } from "../store/runs.js";

/**
 * A run to start. `wakeDeferred`: its first task is to be leased to a worker named in the start
 * right after the commit (eager workflow start, engine/eager-start.ts), so no poll is woken for
 * it here; eager-start.ts wakes them if the lease got nothing.
 */
export type StartingRun = NewRun & { readonly wakeDeferred?: boolean };

/** What the batch answered for one start, or that it is left to the one-by-one path. */
export type StartBatchOutcome = Exclude<InsertRunOutcome, { outcome: "open_run_exists" }> | { outcome: "alone" };

/** Batches bigger than this wait for the next write; 200 starts are one statement of about 11 ms here. */
const MAX_BATCH = 256;
/**
 * Two batches at a time. Clients send in bursts (the answers of a batch go back together, and the
 * next starts come together), and with one batch at a time a start that arrived alone held the
 * next burst back for its whole round trip. Backlog scenario, 20,000 starts, 200 in flight, on a
 * loaded 2-core machine: 1,430-1,490 starts/s with one, 1,640-2,470 with two. Two batches never
 * wait for each other in a cycle: each inserts in instance-id order (store/runs.ts insertRuns).
 */
const MAX_IN_FLIGHT = 2;

const committerOf = perEngine(
  (engine: Engine) =>
    new GroupCommit<StartingRun, StartBatchOutcome>((items) => writeBatch(engine, items), {
      maxBatch: MAX_BATCH,
      maxInFlight: MAX_IN_FLIGHT,
      operation: "start_workflow",
    }),
);

/** Submits a plain start (no concurrency key, no parent) to this engine's group commit. */
export function submitStart(engine: Engine, run: StartingRun): Promise<StartBatchOutcome> {
  return committerOf(engine).submit(run);
}

/**
 * Announces runs a committed start statement inserted outside a transaction:
 * their queues' parked polls here, at once, and on other servers through
 * NOTIFY after the commit, as inTransaction (engine/effects.ts) does for a
 * transaction. A run waiting for its concurrency key's slot has no task to announce.
 */
export function announceStarts(engine: Engine, started: readonly StartingRun[]): void {
  const effects = new Effects();
  for (const run of started) if (!run.concurrencyWaiting && !run.wakeDeferred) effects.wakeQueue(QueueType.WORKFLOW, run.taskQueue);
  effects.apply(engine);
  notifyAfterCommit(engine, effects.payloads(engine.origin));
}

async function writeBatch(engine: Engine, items: StartingRun[]): Promise<Settled<StartBatchOutcome>[]> {
  const outcomes: Settled<StartBatchOutcome>[] = items.map(() => ({ ok: true, value: { outcome: "alone" } }));
  // The first start of each instance id goes in the batch; later ones go alone, after it committed.
  const seen = new Set<string>();
  const batched: number[] = [];
  items.forEach((run, i) => {
    if (seen.has(run.instanceId)) return;
    seen.add(run.instanceId);
    batched.push(i);
  });
  const runs = batched.map((i) => items[i]!);
  let answers: InsertRunOutcome[];
  try {
    answers = await insertRuns(engine.sql, runs);
  } catch (error) {
    // One bad start must not fail the others: a batch that failed is retried one by one, each with
    // its own answer. A single start has nothing to separate.
    if (items.length === 1) return [{ ok: false, error }];
    engine.logger.debug("start batch failed; starting one by one", { err: error, size: items.length });
    return outcomes;
  }
  const started: StartingRun[] = [];
  answers.forEach((answer, j) => {
    const run = runs[j]!;
    if (answer.outcome === "open_run_exists") return; // stays "alone"
    outcomes[batched[j]!] = { ok: true, value: answer };
    if (answer.outcome === "started") {
      started.push(run);
      engine.logger.debug("run started", { runId: run.id, instanceId: run.instanceId, workflow: run.workflowName });
    }
  });
  if (started.length > 0) {
    // One parked poll woken per new task, as the one-by-one path wakes one per start.
    announceStarts(engine, started);
    engine.observer.committedBatch("start_workflow", started.length);
  }
  return outcomes;
}
