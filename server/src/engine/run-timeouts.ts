/**
 * Run timeouts (docs/decisions/0027-run-timeouts.md): a run started with a
 * run timeout ends TIMED_OUT when it passes, whatever it is doing (no worker
 * knows its workflow, its workflow task fails on every attempt, it sleeps).
 *
 * The limit is a timer (kind 'run_timeout', seq 0) that the start statement
 * writes with the run (store/runs.ts insertRuns), so every way a run starts
 * (client start, SendEventWithStart, child, continue-as-new, schedule) gets it
 * in the same commit, and ending the run any other way deletes it with the
 * run's other timers. The timer loop's pass reports the due ones
 * (store/timers.ts fireDueTimers: no extra statement, no polling of its own)
 * and hands them here, off the pass (decision 0032): ordinary timers never
 * wait for a burst of run timeouts.
 *
 * Once across servers: each run is ended in one transaction that takes the
 * lifecycle's locks (parent, then run, then its workflow task NOWAIT; a run
 * waiting for its concurrency key: the key's lock first) and then deletes the
 * timer row. Two servers handed the same run queue on the run's lock; the
 * second finds the timer gone and does nothing. The end itself is
 * TerminateRun's (store terminateRunRows, engine afterRunEnded): tasks, inbox
 * and timers dropped, the parent hears child_run_ended TIMED_OUT, CANCEL
 * children are asked to cancel, the concurrency key's slots are handed out.
 */
import { create } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { FailureKind, FailureSchema, TimeoutType } from "@dex/proto";
import { lockRun } from "../store/completion-locks.js";
import { lockWorkflowTaskNoWait, parentOf, terminateRunRows } from "../store/lifecycle.js";
import { takeRunTimeout } from "../store/timers.js";
import { handOverSlots } from "./concurrency-keys.js";
import type { Engine } from "./context.js";
import { encodeEvent, encodeFailure } from "./events.js";
import { keyLockFirst, requireKeyLock, withRetries } from "./lifecycle.js";
import { isTerminal, RunStatus } from "./model.js";
import { afterRunEnded } from "./relatives.js";

/**
 * Run timeouts ended at once by one server. Each is a transaction that may wait for run locks
 * (a completion, another server ending the same run), so several at a time keep one slow run
 * from holding the rest back; four leave most of the main pool (10 connections by default) to
 * the calls. Measured (decision 0032, 2 loaded cores): a burst of 500 ended 3.2 s after it came
 * due, against 5.7 s one at a time inside the pass, which it held all that while.
 */
export const RUN_TIMEOUT_CONCURRENCY = 4;

/**
 * Ends each run whose run timeout is due, up to `concurrency` transactions at a time; how many
 * this call ended. Called off the timer loop's pass (engine/timer-loop.ts): nothing here delays
 * an ordinary timer.
 *
 * Order: shuffled. Every server's pass reports the same head of the due timers; two servers that
 * walked it in the same order would queue on the same run locks one after the other (the second
 * then finds the timer gone), so each walks it in its own order and mostly ends different runs.
 */
export async function fireRunTimeouts(
  engine: Engine,
  runIds: readonly string[],
  concurrency = RUN_TIMEOUT_CONCURRENCY,
): Promise<number> {
  const order = shuffled(runIds);
  let next = 0;
  let ended = 0;
  const slot = async (): Promise<void> => {
    while (next < order.length) {
      const runId = order[next++]!;
      try {
        if (await timeOutRun(engine, runId)) ended++;
      } catch (err) {
        // The timer stays due: a later pass hands it over again.
        engine.logger.warn("run timeout could not end the run; retrying on a later timer pass", { runId, err });
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, order.length)) }, slot));
  return ended;
}

function shuffled<T>(list: readonly T[]): T[] {
  const copy = [...list];
  for (let i = copy.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [copy[i], copy[j]] = [copy[j]!, copy[i]!];
  }
  return copy;
}

/** The failure a timed-out run carries: what result() and the parent's child_run_ended show. */
export function runTimeoutFailure(runTimeoutMs: number): Uint8Array {
  return encodeFailure(
    create(FailureSchema, {
      message: `run timed out: its run timeout of ${formatMs(runTimeoutMs)} passed before it ended`,
      type: "RunTimedOut",
      nonRetryable: true,
      kind: FailureKind.TIMEOUT,
      timeoutType: TimeoutType.RUN,
    }),
  )!;
}

/** One run: true when this call ended it; false when it had ended already or another server fired it. */
async function timeOutRun(engine: Engine, runId: string): Promise<boolean> {
  return withRetries(engine, "run timeout", async (tx, effects, state) => {
    // Lock order as TerminateRun's: a waiting run's key, the parent, the run, its task.
    await keyLockFirst(tx, runId, state);
    const parentId = await parentOf(tx, runId);
    const parent = parentId ? await lockRun(tx, parentId) : undefined;
    const run = await lockRun(tx, runId);
    if (run) requireKeyLock(run, state);
    // Under the run's lock: the timer is there only if nobody fired it and the run did not end.
    const taken = await takeRunTimeout(tx, runId);
    if (!taken) return false;
    if (!run || isTerminal(run.status as RunStatus)) return false; // an orphaned timer, now deleted
    await lockWorkflowTaskNoWait(tx, run);
    const { runTimeoutMs } = taken;
    const failure = runTimeoutFailure(runTimeoutMs);
    const event = encodeEvent({ case: "runTimedOut", value: { runTimeout: durationFromMs(runTimeoutMs) } }).event;
    await terminateRunRows(tx, run, { event, failure, ending: { status: "TIMED_OUT", eventKind: "run_timed_out" } });
    await afterRunEnded(engine, tx, effects, run, parent, { status: RunStatus.TIMED_OUT, result: null, failure });
    if (run.concurrencyKey !== null) await handOverSlots(tx, effects, run.concurrencyKey);
    effects.wakeRun(run.id);
    engine.logger.info("run timed out", { runId: run.id, workflow: run.workflowName, runTimeoutMs });
    return true;
  });
}

function formatMs(ms: number): string {
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms % 1_000 === 0) return `${ms / 1_000}s`;
  return `${ms}ms`;
}
