/**
 * The order a block's inputs reach workflow code. Determinism depends on it,
 * and it is the same live (execution.ts `activate`) and on replay (`replay`):
 * 1. a block's inputs are delivered in event order before the code runs: a
 *    delivery only settles promises (inputs.ts), and the continuations then run
 *    in one drain, in the order the promises settled. So a race (an event
 *    against its time-out, a timer against an event) resolves the same way;
 * 2. `run_started` starts the code after the other inputs of its block were
 *    delivered, so an event sent with the start (signal-with-start) is already
 *    received when the code first asks for it, and needs no wait command;
 * 3. `cancel_requested` is delivered last, after the code reacted to the rest
 *    of its block and blocked again: the cancellation then reaches every await
 *    the code is blocked on, including ones started in reaction to this block;
 * 4. waiting `ctx.condition` predicates are evaluated after each drain, in the
 *    order the conditions were started, until a pass settles none (condition.ts).
 * `update_accepted` comes between 2 and 3: after the code reacted to the
 * block's other inputs (and registered its handlers, when the run starts in
 * this block), before `cancel_requested` (decision 0024). An update due
 * after the code continued as new is not delivered at all: the
 * continue-as-new command names it and the server moves it to the new run,
 * as it does a cancellation the code was not told of (decision 0031).
 * (These notes were the header of execution.ts, which decision 0017 cites.)
 */
import type { HistoryEvent } from "@dex/proto";

/** What delivering a block needs from the run (execution.ts). */
export interface BlockTarget {
  /** Runs `fn` as workflow code: inside the determinism guard. */
  guarded(fn: () => void): void;
  /** Delivers one input other than run_started and update_accepted (inputs.ts). */
  deliver(event: HistoryEvent): void;
  /** Starts the workflow code with its run_started event. */
  start(event: HistoryEvent): void;
  /** Validates (live) and starts the block's update handlers (updates.ts). */
  deliverUpdates(updates: readonly HistoryEvent[]): void;
  /** Lets the code run until it blocks again (`settle` below). */
  settle(): Promise<void>;
}

/** Delivers one block's inputs in the order of the module comment. */
export async function deliverBlock(target: BlockTarget, inputs: readonly HistoryEvent[]): Promise<void> {
  let start: HistoryEvent | undefined;
  const cancels: HistoryEvent[] = [];
  const updates: HistoryEvent[] = [];
  target.guarded(() => {
    for (const event of inputs) {
      const kind = event.attributes.case;
      if (kind === "runStarted") start = event;
      else if (kind === "cancelRequested") cancels.push(event);
      else if (kind === "updateAccepted") updates.push(event);
      else target.deliver(event);
    }
    if (start) target.start(start);
  });
  await target.settle();
  if (updates.length > 0) {
    target.guarded(() => target.deliverUpdates(updates));
    await target.settle();
  }
  if (cancels.length === 0) return;
  target.guarded(() => {
    for (const event of cancels) target.deliver(event);
  });
  await target.settle();
}

/** What settling needs from the run. */
export interface SettleState {
  /** The error that fails the task, once there is one. */
  taskError(): Error | undefined;
  /** True once the run has its terminal command. */
  ended(): boolean;
  /** Evaluates the waiting conditions once, as workflow code; true if one settled (condition.ts). */
  checkConditions(): boolean;
}

/**
 * Lets the code run until it blocks, then evaluates waiting conditions after each drain (rule 4)
 * until none settles: the same evaluation points live and on replay. Throws the task's error.
 */
export async function settle(state: SettleState): Promise<void> {
  await drain();
  while (!state.taskError() && !state.ended() && state.checkConditions()) await drain();
  const error = state.taskError();
  if (error) throw error;
}

/** Lets every microtask the workflow queued run; workflow code never waits on a macrotask. */
const drain = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
