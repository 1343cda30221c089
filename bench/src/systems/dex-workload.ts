/**
 * The workflows and activities the dex scenarios run, registered by the
 * worker processes (dex-worker.ts). Activities are no-ops, so what is
 * measured is the engine: scheduling, dispatch, history, replay.
 */
import type { WorkflowContext } from "@dex/sdk";

export const WORKFLOW_QUEUE = "bench-wf";
/** Scenario 1's three activity queues; the other scenarios use the first. */
export const ACTIVITY_QUEUES = ["bench-act-1", "bench-act-2", "bench-act-3"] as const;
/** Scenario 4's workflow queue, started with no worker polling it. */
export const BACKLOG_QUEUE = "bench-backlog";

const options = { startToCloseTimeout: "1m" } as const;

export const activities = {
  async noop(input: number): Promise<number> {
    return input;
  },
};

/** Scenario 1: three sequential no-op activities, each on its own queue. */
export async function threeSteps(ctx: WorkflowContext, input: number): Promise<number> {
  let value = input;
  for (const taskQueue of ACTIVITY_QUEUES) value = await ctx.executeActivity<number>("noop", value, { ...options, taskQueue });
  return value;
}

/** Scenario 2: one activity. */
export async function oneStep(ctx: WorkflowContext, input: number): Promise<number> {
  return ctx.executeActivity<number>("noop", input, { ...options, taskQueue: ACTIVITY_QUEUES[0] });
}

/** Scenario 3: `steps` sequential activities. */
export async function longWorkflow(ctx: WorkflowContext, input: { steps: number }): Promise<number> {
  for (let i = 0; i < input.steps; i++) await ctx.executeActivity<number>("noop", i, { ...options, taskQueue: ACTIVITY_QUEUES[0] });
  return input.steps;
}

/** Scenario 4: nothing but the workflow task itself, so the drain measures dispatch. */
export async function backlogWorkflow(_ctx: WorkflowContext, input: number): Promise<number> {
  return input;
}

/** Scenario 5: even runs sleep, odd runs wait for an event; both for longer than the bench lasts. */
export async function idleWorkflow(ctx: WorkflowContext, input: number): Promise<string> {
  if (input % 2 === 0) {
    await ctx.sleep("30m");
    return "slept";
  }
  await ctx.waitForEvent("wake", { timeout: "30m" });
  return "woken";
}

/** Scenario 6: `count` activities at once, then all awaited. */
export async function fanOut(ctx: WorkflowContext, input: { count: number }): Promise<number> {
  const results = await Promise.all(
    Array.from({ length: input.count }, (_, i) => ctx.executeActivity<number>("noop", i, { ...options, taskQueue: ACTIVITY_QUEUES[0] })),
  );
  return results.length;
}

export const workflows = { threeSteps, oneStep, longWorkflow, backlogWorkflow, idleWorkflow, fanOut };
