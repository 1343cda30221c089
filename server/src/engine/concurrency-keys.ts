/**
 * Concurrency keys: at most `limit` runs with the same key execute at once,
 * cluster-wide; the others wait in CREATED, in line, and start as slots free up.
 * Semantics for users: docs/worker-protocol.md, "Concurrency keys". SQL:
 * store/concurrency-keys.ts.
 *
 * Who does what:
 * - a start with a key (StartWorkflow, SendEventWithStart) inserts the run
 *   waiting, with no workflow task, then calls handOverSlots: if it is the
 *   head of the line and a slot is free by its limit, it gets its task at once;
 * - the end of a slot holder (a completion with complete/fail/cancel, or
 *   TerminateRun) calls handOverSlots, which gives the freed slot to the head;
 * - continue-as-new hands its slot to its successor in the same commit (the
 *   new run is inserted holding it, store/runs.ts), so nothing is handed over
 *   and the chain never queues behind runs that started after it;
 * - a waiting run that ends (TerminateRun, CancelRun) leaves the line and
 *   calls handOverSlots: the run behind it may fit where it did not.
 * A waiting run's events wait in its inbox and are handed out with its first
 * task. Child runs carry no key (start_child_run has no field for one, and a
 * child inheriting its parent's key would wait forever for the slot its
 * limit-1 parent holds while waiting for it), so a waiting run has no parent.
 *
 * Races. Every decision that moves a run into a slot is taken under the key's
 * transaction-scoped advisory lock, in a statement that starts after the lock
 * was granted (READ COMMITTED: its snapshot sees every earlier decision). Two
 * starts of one key on two servers therefore cannot both count the same free
 * slot, and an end that frees a slot while a start waits for the lock is seen
 * by the start's count. Runs without a key never take the lock.
 *
 * Lock order. A transaction takes at most one key lock, in one of two places:
 * (a) LAST, after all its row locks: handOverSlots at the end of a completion,
 *     termination, cancellation or start. After the key lock it updates only
 *     the head of the line and inserts the head's workflow task, then commits.
 * (b) FIRST, before any row lock: CancelRun or TerminateRun of a run that
 *     waits in line (engine/lifecycle.ts): it ends the run, so it hands out
 *     the key's slots too. A call that locks a run and only then finds it
 *     waiting rolls back at once (before it waits for anything) and retries
 *     taking the key lock first; after the key lock it reads
 *     concurrency_waiting again, and a run admitted in between is retried as
 *     a slot holder, without the key lock, because a holder's completion may
 *     be waiting for the key in place (a) while holding the run's row.
 * So whoever holds a key lock waits only for the row of a waiting run: in (a)
 * the head, in (b) its target. A waiting run's row is locked only by
 * transactions that hold its key lock already, by ones that roll back without
 * waiting, and by SendEvent, which then writes only that run's inbox (no
 * task: it gets one with its slot) and waits for nothing else. No workflow
 * task, activity, timer or child of a waiting run exists for any other writer
 * to go through. No transaction holding a waiting run's lock waits for the
 * key lock, so no cycle can form.
 */
import type { TransactionSql } from "../store/db.js";
import { admitHead, lockConcurrencyKey } from "../store/concurrency-keys.js";
import type { Effects } from "./effects.js";
import { QueueType } from "./model.js";

/**
 * Gives the free slots of `key` to the head of its line, one run at a time,
 * until the head does not fit (or the line is empty). Call as the LAST write
 * of a transaction that changed who holds or waits for the key (see place (a)
 * above). Each admitted run gets its workflow task and its queue is woken at
 * commit. Returns the admitted run ids, in order.
 */
export async function handOverSlots(tx: TransactionSql, effects: Effects, key: string): Promise<string[]> {
  await lockConcurrencyKey(tx, key);
  const admitted: string[] = [];
  for (;;) {
    // One end frees one slot, so this normally admits at most one run; runs
    // with different limits in one line can cascade (a head with a small
    // limit leaves, and runs with larger limits behind it fit).
    const { admitted: run, nextFits } = await admitHead(tx, key);
    if (!run) break;
    admitted.push(run.runId);
    effects.wakeQueue(QueueType.WORKFLOW, run.taskQueue);
    if (!nextFits) break;
  }
  return admitted;
}
