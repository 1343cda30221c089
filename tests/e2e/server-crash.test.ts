import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ActivityContext, WorkflowContext } from "@dex/sdk";
import { E2E_TEST_TIMEOUT_MS } from "@dex/testing";
import { startCrashRestart, type CrashRestart } from "../support/crash-restart.js";

// Executions as the activities saw them; the server may make an activity run
// again after a crash (at least once), but history must record one result.
const executions: Array<{ step: number; attempt: number }> = [];
let env: CrashRestart | undefined;

const activities = {
  async step(n: number, ctx: ActivityContext) {
    executions.push({ step: n, attempt: ctx.info.attempt });
    // Crash the server while this activity is in flight: no graceful shutdown.
    if (n === 2) await env!.crashOnce();
    return n * 10;
  },
};

async function threeSteps(ctx: WorkflowContext) {
  const acts = ctx.activities<typeof activities>({ startToCloseTimeout: "2s", retry: { initialInterval: "100ms" } });
  const results: number[] = [];
  for (const n of [1, 2, 3]) results.push(await acts.step(n));
  return results;
}

describe("server killed mid-workflow", { timeout: E2E_TEST_TIMEOUT_MS }, () => {
  beforeAll(async () => {
    env = await startCrashRestart({ workflows: { threeSteps }, activities });
  });
  afterAll(async () => {
    await env?.close();
  });

  it("a new server on the same database finishes the workflow with each result recorded once", async () => {
    const handle = await env!.client.start(threeSteps, { instanceId: "crash-1" });
    // Step 2 kills the server; wait for that, then start a new one on the same port and database.
    await env!.restartAfterCrash();

    expect(await handle.result()).toEqual([10, 20, 30]);

    const history = await handle.history();
    const completedSeqs = history
      .filter((e) => e.attributes.case === "activityCompleted")
      .map((e) => (e.attributes.value as { seq: number }).seq);
    expect(completedSeqs.sort()).toEqual([1, 2, 3]);
    expect(history.filter((e) => e.attributes.case === "activityScheduled")).toHaveLength(3);
    expect(history.map((e) => Number(e.sequence))).toEqual(history.map((_, i) => i + 1));
    expect(new Set(executions.map((e) => e.step))).toEqual(new Set([1, 2, 3]));
  });
});
