import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ActivityContext, WorkflowContext } from "@dex/sdk";
import { E2E_TEST_TIMEOUT_MS, waitFor } from "@dex/testing";
import { startCrashRestart, type CrashRestart } from "../support/crash-restart.js";

// The real time at which the step after the timer ran.
const after: Array<{ runId: string; at: number }> = [];
const activities = {
  async markAfterTimer(_: unknown, ctx: ActivityContext) {
    after.push({ runId: ctx.info.runId, at: Date.now() });
    return "done";
  },
};

async function sleeper(ctx: WorkflowContext, input: { sleep: string }) {
  await ctx.sleep(input.sleep);
  return ctx.activities<typeof activities>().markAfterTimer(null);
}

// A race an event wins: the timer must not fire the run later.
async function raceEventAgainstTimer(ctx: WorkflowContext) {
  const winner = await Promise.race([
    ctx.waitForEvent("go").then(() => "event"),
    ctx.sleep("1h").then(() => "timer"),
  ]);
  return winner;
}

describe("durable timers", { timeout: E2E_TEST_TIMEOUT_MS }, () => {
  let env: CrashRestart | undefined;
  beforeAll(async () => {
    env = await startCrashRestart({ workflows: { sleeper, raceEventAgainstTimer }, activities });
  });
  afterAll(async () => {
    await env?.close();
  });

  it("fires a 2 s timer after, never before, its due time, across a server restart", async () => {
    const handle = await env!.client.start(sleeper, { instanceId: "timer-1", input: { sleep: "2s" } });
    const timer = await waitFor(async () => (await handle.describe()).pendingTimers[0], { message: "the timer to start" });
    const due = new Date(timer.fireTime!).getTime();

    // Stop the server (no graceful shutdown) while the timer is pending, and keep it down past the due time.
    await env!.crashOnce();
    await waitFor(() => Date.now() > due + 500, { message: "the due time to pass while the server is down" });
    await env!.restartAfterCrash();

    expect(await handle.result()).toBe("done");
    const ran = after.find((a) => a.runId === handle.runId)!;
    expect(ran.at).toBeGreaterThanOrEqual(due);
    const history = await handle.history();
    const fired = history.find((e) => e.attributes.case === "timerFired");
    expect(fired).toBeDefined();
    const firedAt = Number(fired!.time!.seconds) * 1000 + fired!.time!.nanos / 1e6;
    expect(firedAt).toBeGreaterThanOrEqual(due);
  });

  it("lets an event win a race against a timer and ends without waiting for the timer", async () => {
    const handle = await env!.client.start(raceEventAgainstTimer, { instanceId: "race-1" });
    await waitFor(async () => (await handle.describe()).pendingTimers.length > 0, { message: "the race's timer" });
    await handle.sendEvent("go");
    expect(await handle.result()).toBe("event");
    const description = await handle.describe();
    expect(description.pendingTimers).toEqual([]);
  });
});
