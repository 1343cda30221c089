/**
 * ctx.condition and cancellation scopes end to end: a real server, workflow
 * and activity workers over gRPC. A condition over a stream of events (met,
 * and timed out); an activity raced against a timer where the timer wins and
 * the heartbeating activity sees the mid-run cancel request; a child cancelled
 * from a scope.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CancelledFailure, type ActivityContext, type WorkflowContext } from "@dex/sdk";
import { E2E_TEST_TIMEOUT_MS, waitFor } from "@dex/testing";
import { startHarness, type Harness } from "../support/harness.js";

// What the heartbeating activities observed, by test.
const observed = { started: [] as string[], abortedWith: [] as string[], cleanups: 0 };

const activities = {
  async heartbeatUntilCancelled(label: string, ctx: ActivityContext) {
    observed.started.push(label);
    while (!ctx.signal.aborted) {
      ctx.heartbeat();
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    // CancelledFailure when a heartbeat answered cancel_requested; a TimeoutFailure or lost lease otherwise.
    observed.abortedWith.push(`${label}: ${(ctx.signal.reason as Error | undefined)?.name}`);
    throw new CancelledFailure("activity saw the cancellation");
  },
  async cleanup() {
    observed.cleanups++;
    return "cleaned";
  },
};

const acts = (ctx: WorkflowContext) =>
  ctx.activities<typeof activities>({ heartbeatTimeout: "2s", startToCloseTimeout: "1m", retry: { maximumAttempts: 1 } });

/** Collects votes (events vote-0, vote-1, ...) until `need` arrived or the timeout passed. */
async function tally(ctx: WorkflowContext, input: { need: number; timeout: string }) {
  const votes: unknown[] = [];
  const listening = ctx.newCancellationScope();
  void listening
    .run(async () => {
      for (let i = 0; ; i++) votes.push(await ctx.waitForEvent(`vote-${i}`));
    })
    .catch(() => {});
  const done = await ctx.condition(() => votes.length >= input.need, { timeout: input.timeout });
  listening.cancel("tally over");
  return { done, votes };
}

async function activityAgainstTimer(ctx: WorkflowContext) {
  const work = ctx.newCancellationScope();
  const activity = work.run(() => acts(ctx).heartbeatUntilCancelled(ctx.info.instanceId));
  // The race starts once the test saw the attempt running, so the cancellation reaches a live attempt.
  await ctx.waitForEvent("activity-running");
  const winner = await Promise.race([activity.then(() => "activity"), ctx.sleep("200ms").then(() => "timer")]);
  if (winner === "timer") work.cancel("timer won");
  const loser = await activity.then(
    () => "completed",
    (err: Error) => err.name,
  );
  // Held open until the test saw the abort: it came from the cancel request, not from the run ending.
  await ctx.waitForEvent("activity-aborted");
  return { winner, loser };
}

async function blockingChild(ctx: WorkflowContext) {
  try {
    await acts(ctx).heartbeatUntilCancelled(ctx.info.instanceId);
    return "not reached";
  } catch (err) {
    if (!(err instanceof CancelledFailure)) throw err;
    await ctx.nonCancellable(() => acts(ctx).cleanup());
    throw err;
  }
}

async function parentCancelsChildScope(ctx: WorkflowContext) {
  const scope = ctx.newCancellationScope();
  const child = scope.run(() => ctx.child(blockingChild, undefined, { instanceId: `${ctx.info.instanceId}-child` }));
  await ctx.waitForEvent("stop-child");
  scope.cancel("child no longer needed");
  const outcome = await child.then(
    () => "completed",
    (err: Error) => err.name,
  );
  return { outcome, scopeCancelled: scope.cancelled };
}

describe("conditions and cancellation scopes", { timeout: E2E_TEST_TIMEOUT_MS }, () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
    h.workflowWorker({ tally, activityAgainstTimer, blockingChild, parentCancelsChildScope });
    h.activityWorker(activities);
  });
  afterAll(async () => {
    await h?.close();
  });

  it("a condition over a stream of events resolves true when met and cancels its timer", async () => {
    const handle = await h.client.start(tally, { instanceId: "tally-met", input: { need: 3, timeout: "1h" } });
    for (const [i, vote] of ["yes", "no", "yes"].entries()) await handle.sendEvent(`vote-${i}`, vote);
    expect(await handle.result()).toEqual({ done: true, votes: ["yes", "no", "yes"] });
    const kinds = (await handle.history()).map((e) => e.attributes.case);
    expect(kinds).toContain("timerCancelled");
    expect(kinds).not.toContain("timerFired");
    expect(kinds.filter((k) => k === "externalEventReceived")).toHaveLength(3);
  });

  it("a condition resolves false when its timeout passes first", async () => {
    // The first vote comes with the start; the other two never come.
    const { handle } = await h.client.sendEventWithStart(tally, {
      instanceId: "tally-timeout",
      input: { need: 3, timeout: "300ms" },
      eventId: "vote-0",
      payload: "lonely",
    });
    expect(await handle.result()).toEqual({ done: false, votes: ["lonely"] });
    const kinds = (await handle.history()).map((e) => e.attributes.case);
    expect(kinds).toContain("timerFired");
    expect(kinds).not.toContain("timerCancelled");
  });

  it("an activity raced against a timer: the timer wins, the heartbeating activity sees its signal abort", async () => {
    const handle = await h.client.start(activityAgainstTimer, { instanceId: "race-1" });
    await waitFor(() => observed.started.includes("race-1"), { message: "the activity attempt to start" });
    await handle.sendEvent("activity-running");
    await waitFor(() => observed.abortedWith.includes("race-1: CancelledFailure"), { message: "the activity to see the cancel request" });
    expect((await handle.describe()).status).toBe("RUNNING");
    await handle.sendEvent("activity-aborted");
    expect(await handle.result()).toEqual({ winner: "timer", loser: "CancelledFailure" });
    const kinds = (await handle.history()).map((e) => e.attributes.case);
    expect(kinds.indexOf("activityCancelRequested")).toBeGreaterThan(kinds.indexOf("timerFired"));
  });

  it("a child started in a scope is cancelled when the scope is, and the parent goes on", async () => {
    const cleanupsBefore = observed.cleanups;
    const handle = await h.client.start(parentCancelsChildScope, { instanceId: "scope-parent" });
    await waitFor(() => observed.started.includes("scope-parent-child"), { message: "the child's activity to start" });
    await handle.sendEvent("stop-child");
    expect(await handle.result()).toEqual({ outcome: "CancelledFailure", scopeCancelled: true });
    expect((await handle.history()).map((e) => e.attributes.case)).toContain("childRunCancelRequested");
    const child = h.client.getHandle({ instanceId: "scope-parent-child" });
    await waitFor(async () => (await child.describe()).status === "CANCELLED", { message: "the child to end CANCELLED" });
    // The child's code stops waiting at once and ends CANCELLED after its cleanup, which removes its
    // activity task: the attempt's next heartbeat then finds no lease (a cancel request, if it came first).
    await waitFor(() => observed.abortedWith.some((a) => a.startsWith("scope-parent-child:")), {
      message: "the child's activity to see its signal abort",
    });
    expect(observed.cleanups).toBeGreaterThan(cleanupsBefore);
  });
});
