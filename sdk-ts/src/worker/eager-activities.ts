/**
 * Eager activity dispatch (docs/worker-protocol.md "Eager activities"), the worker side: a
 * process-local registry of the activity workers by server address and queue, and the
 * reservation a workflow worker makes for one completion.
 *
 * A workflow worker about to complete a task whose commands schedule activities on a queue that
 * an activity worker of this process polls (on the same server address) reserves free slots of
 * that worker and offers them in CompleteWorkflowTaskRequest.eager_activity_slots. The server
 * answers with up to that many activity tasks, already leased to the activity worker; they run
 * there exactly as polled tasks do (same attempt code, heartbeats, completion, shutdown), and the
 * slots the answer left unused are given back.
 */
import type { ActivityTask, Command } from "@dex/proto";
import type { Logger } from "../common/logger.js";

/** An activity worker as the registry sees it (activity-worker.ts registers itself while it runs). */
export interface EagerActivityTarget {
  readonly address: string;
  readonly taskQueue: string;
  readonly workerId: string;
  reserve(want: number): number;
  release(count: number): void;
  accept(tasks: ActivityTask[]): void;
}

const targets = new Map<string, Set<EagerActivityTarget>>();
/** Workflow workers with eager dispatch on, by address: while there is one, activity polls leave room. */
const consumers = new Map<string, number>();

const key = (address: string, queue: string) => `${address}\n${queue}`;

/** Registers a running activity worker; returns its unregistration. */
export function registerActivityWorker(target: EagerActivityTarget): () => void {
  const k = key(target.address, target.taskQueue);
  let set = targets.get(k);
  if (!set) targets.set(k, (set = new Set()));
  set.add(target);
  return () => {
    set.delete(target);
    if (set.size === 0 && targets.get(k) === set) targets.delete(k);
  };
}

/** Registers a workflow worker that offers eager slots on `address`; returns its unregistration. */
export function registerEagerConsumer(address: string): () => void {
  consumers.set(address, (consumers.get(address) ?? 0) + 1);
  let done = false;
  return () => {
    if (done) return;
    done = true;
    const n = (consumers.get(address) ?? 1) - 1;
    if (n > 0) consumers.set(address, n);
    else consumers.delete(address);
  };
}

/**
 * Free slots an activity worker's poll leaves for eager tasks: half of them while a workflow
 * worker of this process offers eager slots on the same server, else none. A parked poll holds
 * the slots it asked for; without this, an idle activity worker would have nothing to offer.
 */
export function eagerHoldBack(address: string, free: number): number {
  return consumers.has(address) ? Math.floor(free / 2) : 0;
}

/** What one completion offers, and how to settle it once the answer (or an error) is in. */
export interface EagerReservation {
  readonly slots: Array<{ taskQueue: string; slots: number; workerId: string }>;
  /** Hands the answer's tasks to their workers and gives back the slots they left unused; once. */
  settle(tasks: readonly ActivityTask[]): void;
}

/**
 * Reserves slots for the activities these commands schedule (`defaultQueue`: the activity queue
 * of a schedule_activity without one, the workflow's queue name), at most one per activity and
 * one worker per queue. undefined when nothing could be reserved.
 */
export function reserveEagerSlots(address: string, commands: readonly Command[], defaultQueue: string, logger: Logger): EagerReservation | undefined {
  const wanted = new Map<string, number>();
  for (const { command } of commands) {
    if (command.case !== "scheduleActivity") continue;
    const queue = command.value.taskQueue || defaultQueue;
    wanted.set(queue, (wanted.get(queue) ?? 0) + 1);
  }
  if (wanted.size === 0) return undefined;
  const held: Array<{ target: EagerActivityTarget; count: number }> = [];
  for (const [queue, want] of wanted) {
    for (const target of targets.get(key(address, queue)) ?? []) {
      const count = target.reserve(want);
      if (count > 0) {
        held.push({ target, count });
        break;
      }
    }
  }
  if (held.length === 0) return undefined;
  let settled = false;
  return {
    slots: held.map(({ target, count }) => ({ taskQueue: target.taskQueue, slots: count, workerId: target.workerId })),
    settle(tasks) {
      if (settled) return;
      settled = true;
      for (const { target, count } of held) {
        const mine = tasks.filter((t) => t.taskQueue === target.taskQueue).slice(0, count);
        if (mine.length > 0) target.accept(mine);
        if (count > mine.length) target.release(count - mine.length);
      }
      const unclaimed = tasks.filter((t) => !held.some((h) => h.target.taskQueue === t.taskQueue)).length;
      if (unclaimed > 0) logger.warn(`the server handed out ${unclaimed} eager activity task(s) on queues this worker did not offer; they run again after their lease`);
    },
  };
}
