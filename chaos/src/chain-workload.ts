/**
 * The workflow of the `chains` scenario: a continue-as-new chain that
 * consumes named events, applies updates and may be cancelled. Its whole
 * state travels in the continue-as-new input, so the database holds, run by
 * run, what the chain had consumed and applied when each run began (the last
 * run's result holds the end state): the checker reads it there
 * (invariants-chains.ts), not through the server.
 */
import type { WorkflowContext } from "@dex/sdk";
import type { StepInput, StepResult } from "./workload.js";

/** The event name of the chain's items (one event per item, its id the dedup key). */
export const ITEM_EVENT = "item";
/** Sent once, when the driver has had every answer it waited for: the last run may then complete. */
export const DONE_EVENT = "done";
/** The update handler's name. */
export const APPLY_UPDATE = "apply";

export interface ItemPayload {
  /** The event's id, repeated in the payload: the workflow only sees payloads. */
  id: string;
}

export interface ApplyArgs {
  /** The update's id, repeated in the args: a handler only sees its args. */
  updateId: string;
}

export interface ApplyResult {
  /** The run generation (0 = the first run) that applied the update. */
  generation: number;
  /** How many updates the chain had applied, this one included. */
  applied: number;
}

export interface ChainState {
  generation: number;
  /** Items consumed per run before it continues as new. */
  itemsPerRun: number;
  /** Items after which the chain waits for DONE_EVENT and completes (a cancelled chain never gets them all). */
  totalItems: number;
  /** Event ids consumed, in order, over the whole chain. */
  consumed: string[];
  /** Update ids applied, in order, over the whole chain. */
  applied: string[];
  /** Update ids the handler was given a second time (an update delivered twice): must stay empty. */
  reapplied: string[];
}

export function firstChainState(itemsPerRun: number, totalItems: number): ChainState {
  return { generation: 0, itemsPerRun, totalItems, consumed: [], applied: [], reapplied: [] };
}

/**
 * Each run runs one recorded activity, takes `itemsPerRun` items and
 * continues as new; the last run waits for DONE_EVENT and returns. The update
 * handler is synchronous, so an update the run accepts is applied and
 * answered in the same workflow task. Inputs that arrive while the
 * continuing task runs are the server's to carry (decision 0031).
 */
export async function chainWorkflow(ctx: WorkflowContext, input: ChainState): Promise<ChainState> {
  const state: ChainState = { ...input, consumed: [...input.consumed], applied: [...input.applied], reapplied: [...input.reapplied] };
  ctx.setUpdateHandler<ApplyArgs, ApplyResult>(APPLY_UPDATE, ({ updateId }) => {
    // Not a dedup: a second delivery is recorded so the checker sees it, never hidden.
    if (state.applied.includes(updateId)) state.reapplied.push(updateId);
    else state.applied.push(updateId);
    return { generation: state.generation, applied: state.applied.length };
  });
  // One recorded activity per run: while it runs, items and updates arrive (items are buffered, and
  // carried by the SDK if the run ends before it takes them).
  await ctx.executeActivity<StepResult>("chaosStep", { n: state.generation, delayMs: 200 } satisfies StepInput, {
    startToCloseTimeout: 4_000,
    retry: { initialInterval: "200ms", maximumInterval: "2s" },
  });
  for (let n = 0; n < state.itemsPerRun && state.consumed.length < state.totalItems; n++) {
    const item = await ctx.waitForEvent<ItemPayload>(ITEM_EVENT);
    state.consumed.push(item.id);
  }
  // Continues in the task that delivered the last item of the share: inputs that come with it or
  // while it runs are what the hand-over must not lose.
  if (state.consumed.length < state.totalItems) return ctx.continueAsNew<ChainState>({ ...state, generation: state.generation + 1 });
  await ctx.waitForEvent(DONE_EVENT);
  return state;
}
