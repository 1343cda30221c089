/**
 * Limits as an SDK user meets them: a run that outgrows the history limit is
 * not stuck (the refusal is visible in describe, and the run can still end),
 * a workflow that continues as new never meets it, and an oversized input is
 * refused at the call with the field, its size and the limit.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DexError } from "@dex/proto";
import type { ActivityContext, WorkflowContext } from "@dex/sdk";
import { E2E_TEST_TIMEOUT_MS, waitFor } from "@dex/testing";
import { startHarness, type Harness } from "../support/harness.js";

const HISTORY_LIMIT = 60;

const bigResultExecutions: number[] = [];
const activities = {
  async step(n: number) {
    return n + 1;
  },
  async bigResult(_: undefined, ctx: ActivityContext) {
    bigResultExecutions.push(ctx.info.attempt);
    return "x".repeat(70_000);
  },
};

/** Calls an activity whose result is over the payload limit, and reports how it failed. */
async function oversizedResult(ctx: WorkflowContext) {
  const { bigResult } = ctx.activities<typeof activities>({ retry: { maximumAttempts: 5, initialInterval: "10ms" } });
  try {
    return await bigResult(undefined);
  } catch (err) {
    const cause = (err as { cause?: { type?: string; nonRetryable?: boolean; message?: string } }).cause;
    return { type: cause?.type, nonRetryable: cause?.nonRetryable, message: cause?.message };
  }
}

/** Never ends by itself: its history grows until the limit stops it. */
async function endless(ctx: WorkflowContext): Promise<never> {
  for (let n = 0; ; ) n = await ctx.activities<typeof activities>().step(n);
}

/** The same loop, continued as new every 10 steps: each run's history stays small. */
async function chunked(ctx: WorkflowContext, input: { n: number; target: number }): Promise<number> {
  let n = input.n;
  for (let i = 0; i < 10 && n < input.target; i++) n = await ctx.activities<typeof activities>().step(n);
  return n >= input.target ? n : ctx.continueAsNew({ n, target: input.target });
}

describe("limits through the SDK", { timeout: E2E_TEST_TIMEOUT_MS }, () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({
      limits: { maxHistoryEvents: HISTORY_LIMIT, maxPayloadBytes: 64 * 1024 },
      workflowTaskRetry: { initialMs: 50, maxMs: 200 },
    });
    h.workflowWorker({ endless, chunked, oversizedResult });
    h.activityWorker(activities);
  });
  afterAll(async () => {
    await h?.close();
  });

  it("shows a run that reached the history limit why it stopped, and lets it end when cancelled", async () => {
    const handle = await h.client.start(endless, { instanceId: "endless-1" });
    const stopped = await waitFor(
      async () => {
        const description = await handle.describe();
        return description.pendingWorkflowTask?.lastFailure?.message.includes("past the limit") ? description : undefined;
      },
      { timeoutMs: 20_000, message: "the history limit to stop the run" },
    );
    expect(stopped.pendingWorkflowTask?.lastFailure?.message).toMatch(/limit of 60 events per run; nothing was written\. Use continue-as-new/);
    expect(stopped.historyLength).toBeLessThanOrEqual(HISTORY_LIMIT);
    expect(stopped.status).toBe("RUNNING");

    // Ending is always accepted: the cancellation reaches the workflow, whose cancel_run ends it.
    await handle.cancel("history limit reached");
    await expect(handle.result()).rejects.toThrow(/cancel/i);
    expect((await handle.describe()).status).toBe("CANCELLED");
  });

  it("never meets the limit when the workflow continues as new", async () => {
    const handle = await h.client.start(chunked, { instanceId: "chunked-1", input: { n: 0, target: 45 } });
    expect(await handle.result()).toBe(45);
  });

  it("fails an activity whose result is over the payload limit at once, non-retryable, saying why", async () => {
    const handle = await h.client.start(oversizedResult, { instanceId: "big-result" });
    const outcome = (await handle.result()) as { type: string; nonRetryable: boolean; message: string };
    expect(outcome.type).toBe("ResultRefused");
    expect(outcome.nonRetryable).toBe(true);
    expect(outcome.message).toMatch(/the server refused the activity result: result is \d+ bytes, more than the limit of 65536 bytes/);
    expect(bigResultExecutions).toEqual([1]);
  });

  it("refuses an input over the payload limit at the call, naming the field, its size and the limit", async () => {
    const err = await h.client.start(chunked, { instanceId: "too-big", input: { n: 0, target: 1, pad: "x".repeat(70_000) } as never }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DexError);
    expect((err as DexError).code).toBe("INVALID_ARGUMENT");
    expect((err as DexError).message).toMatch(/^input is \d+ bytes, more than the limit of 65536 bytes \(64 KiB\) per payload/);
  });
});
