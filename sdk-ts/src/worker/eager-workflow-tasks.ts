/**
 * Eager workflow start (docs/worker-protocol.md "Eager workflow start"), the SDK side: a
 * process-local registry of the running workflow workers by server address and queue, and the
 * reservation a client makes for one start.
 *
 * `client.start(wf, { eager: true })` looks for a workflow worker of this process that polls the
 * run's queue on the same server address and has a free slot, reserves the slot, and names the
 * worker in StartWorkflowRequest.eager. The server answers with the new run's first workflow task
 * leased to that worker; it runs there exactly as a polled task does (same code path, cache,
 * completion, shutdown), and a start that brought no task back gives the slot back.
 */
import type { WorkflowTask } from "@dex/proto";
import type { PollingWorker } from "./worker.js";

/** A workflow worker as the registry sees it (workflow-worker.ts registers itself while it runs). */
export interface EagerWorkflowTarget {
  readonly address: string;
  readonly taskQueue: string;
  readonly workerId: string;
  reserve(want: number): number;
  release(count: number): void;
  accept(tasks: WorkflowTask[]): void;
}

const targets = new Map<string, Set<EagerWorkflowTarget>>();
/** Clients that asked for eager starts, by address: while there is one, workflow polls leave room. */
const starters = new Map<string, number>();

const key = (address: string, queue: string) => `${address}\n${queue}`;

/** Makes a workflow worker available for eager starts while it runs (between start() and done). */
export function offerEagerStarts(worker: PollingWorker<WorkflowTask>, target: { address: string; taskQueue: string; workerId: string }): void {
  const entry: EagerWorkflowTarget = {
    ...target,
    reserve: (want) => worker.reserve(want),
    release: (count) => worker.release(count),
    accept: (tasks) => worker.accept(tasks),
  };
  const k = key(target.address, target.taskQueue);
  const start = worker.start.bind(worker);
  worker.start = () => {
    start();
    let set = targets.get(k);
    if (!set) targets.set(k, (set = new Set()));
    set.add(entry);
  };
  void worker.done.then(() => {
    const set = targets.get(k);
    set?.delete(entry);
    if (set?.size === 0) targets.delete(k);
  });
}

/**
 * Registers a client that asks for eager starts on `address`; returns its unregistration. From
 * then on the workflow workers of this process on that address size their polls to leave room
 * (eagerStartHoldBack); a poll already parked keeps its size until it returns.
 */
export function registerEagerStarter(address: string): () => void {
  starters.set(address, (starters.get(address) ?? 0) + 1);
  let done = false;
  return () => {
    if (done) return;
    done = true;
    const n = (starters.get(address) ?? 1) - 1;
    if (n > 0) starters.set(address, n);
    else starters.delete(address);
  };
}

/**
 * Free slots a workflow worker's poll leaves for eager starts: half of them while a client of this
 * process asks for eager starts on the same server, else none. A parked poll holds the slots it
 * asked for; without this, an idle worker would have no slot to offer.
 */
export function eagerStartHoldBack(address: string, free: number): number {
  return starters.has(address) ? Math.floor(free / 2) : 0;
}

/** A slot reserved for one start's task, and how to settle it once the answer (or an error) is in. */
export interface EagerStartReservation {
  readonly workerId: string;
  /** Hands the answer's task to the worker, or gives the slot back when there is none; once. */
  settle(task: WorkflowTask | undefined): void;
}

/** Reserves one slot of a workflow worker polling `taskQueue` on `address`; undefined when none is free. */
export function reserveEagerStart(address: string, taskQueue: string): EagerStartReservation | undefined {
  for (const target of targets.get(key(address, taskQueue)) ?? []) {
    if (target.reserve(1) === 0) continue;
    let settled = false;
    return {
      workerId: target.workerId,
      settle(task) {
        if (settled) return;
        settled = true;
        if (task) target.accept([task]);
        else target.release(1);
      },
    };
  }
  return undefined;
}
