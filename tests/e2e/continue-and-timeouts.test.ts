import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { E2E_TEST_TIMEOUT_MS } from "@dex/testing";
import { ActivityFailure, ApplicationFailure, TimeoutFailure, type ActivityContext, type WorkflowContext } from "@dex/sdk";
import { startHarness, type Harness } from "../support/harness.js";

const attempts = new Map<string, number>();
function count(key: string): number {
  const n = (attempts.get(key) ?? 0) + 1;
  attempts.set(key, n);
  return n;
}

const activities = {
  async increment(n: number) {
    return n + 1;
  },
  async rejectsForGood(_: unknown, ctx: ActivityContext): Promise<never> {
    count(`nonretryable:${ctx.info.runId}`);
    throw ApplicationFailure.nonRetryable("card number is invalid", "InvalidCard");
  },
  async keepsFailing(_: unknown, ctx: ActivityContext): Promise<never> {
    count(`scheduleToClose:${ctx.info.runId}`);
    throw ApplicationFailure.create("still down", "Unavailable");
  },
};

// Counts to `target`, one continue-as-new per step, each run with a tiny history.
async function counter(ctx: WorkflowContext, input: { n: number; target: number }): Promise<number> {
  const next = await ctx.activities<typeof activities>().increment(input.n);
  if (next >= input.target) return next;
  return ctx.continueAsNew({ n: next, target: input.target });
}

async function nonRetryable(ctx: WorkflowContext) {
  try {
    await ctx.activities<typeof activities>({ retry: { initialInterval: "10ms", maximumAttempts: 10 } }).rejectsForGood(null);
    return "not reached";
  } catch (err) {
    if (!(err instanceof ActivityFailure)) throw err;
    return { type: (err.cause as ApplicationFailure).type };
  }
}

async function scheduleToClose(ctx: WorkflowContext) {
  try {
    await ctx
      .activities<typeof activities>({ scheduleToCloseTimeout: "1s", retry: { initialInterval: "100ms", backoffCoefficient: 1 } })
      .keepsFailing(null);
    return "not reached";
  } catch (err) {
    if (!(err instanceof ActivityFailure)) throw err;
    return { timeout: err.cause instanceof TimeoutFailure, type: err.cause?.name };
  }
}

describe("continue-as-new and activity timeouts", { timeout: E2E_TEST_TIMEOUT_MS }, () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
    h.workflowWorker({ counter, nonRetryable, scheduleToClose });
    h.activityWorker(activities);
  });
  afterAll(async () => {
    await h?.close();
  });

  it("continues as new 100 times with each run's history bounded", async () => {
    const handle = await h.client.start(counter, { instanceId: "counter-1", input: { n: 0, target: 101 } });
    expect(await handle.result()).toBe(101);
    const runs = [];
    let pageToken: string | undefined;
    do {
      const page = await h.client.list({ instanceId: "counter-1", pageSize: 50, ...(pageToken ? { pageToken } : {}) });
      runs.push(...page.runs);
      pageToken = page.nextPageToken;
    } while (pageToken);
    expect(runs).toHaveLength(101);
    expect(runs.filter((r) => r.status === "CONTINUED_AS_NEW")).toHaveLength(100);
    expect(runs.filter((r) => r.status === "COMPLETED")).toHaveLength(1);
    // Each run: started, marker, scheduled, completed, marker, continued (or completed): bounded, not growing.
    expect(Math.max(...runs.map((r) => r.historyLength))).toBeLessThanOrEqual(8);
  });

  it("does not retry a non-retryable activity error", async () => {
    const handle = await h.client.start(nonRetryable, { instanceId: "nonretry-1" });
    expect(await handle.result()).toEqual({ type: "InvalidCard" });
    expect(attempts.get(`nonretryable:${handle.runId}`)).toBe(1);
  });

  it("stops retrying when the schedule-to-close timeout passes", async () => {
    const handle = await h.client.start(scheduleToClose, { instanceId: "s2c-1" });
    const outcome = await handle.result();
    expect(outcome).toEqual({ timeout: true, type: "TimeoutFailure" });
    const tries = attempts.get(`scheduleToClose:${handle.runId}`)!;
    // ~100 ms apart within 1 s: several attempts, but far fewer than unlimited retries would make.
    expect(tries).toBeGreaterThan(1);
    expect(tries).toBeLessThan(20);
  });
});
