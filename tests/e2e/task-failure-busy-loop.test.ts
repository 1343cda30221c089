/**
 * Workflow code that never yields (decision 0014): the watchdog thread of the worker process running
 * it reports the task failed, naming the run, and stops that process; the process's other runs go
 * on with another worker, and a fixed deploy carries the looping run on. The looping worker is a real
 * process running the compiled SDK (tests/e2e/fixtures/busy-loop-worker.mjs).
 */
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { E2E_TEST_TIMEOUT_MS, waitFor } from "@dex/testing";
import type { WorkflowContext } from "@dex/sdk";
import { startHarness, type Harness } from "../support/harness.js";
import { startProcess, type Started } from "../support/spawned.js";

const fixture = fileURLToPath(new URL("./fixtures/busy-loop-worker.mjs", import.meta.url));

async function spinFixed(ctx: WorkflowContext) {
  await ctx.sleep("10ms");
  return "fixed";
}
async function steady(ctx: WorkflowContext) {
  return ctx.waitForEvent("go");
}

describe("a workflow task that never yields", { timeout: E2E_TEST_TIMEOUT_MS }, () => {
  let h: Harness;
  let looping: Started | undefined;
  beforeAll(async () => {
    h = await startHarness({ workflowTaskRetry: { initialMs: 100, maxMs: 300 } });
  });
  afterAll(async () => {
    looping?.child.kill("SIGKILL");
    await h?.close();
  });

  it("fails its task naming the run, stops the worker process, and the other runs go on elsewhere", async () => {
    const steadyRun = await h.client.start("steady", { instanceId: "busy-steady" });
    looping = await startProcess([fixture, h.server.address], /busy-loop worker polling/);
    await waitFor(async () => (await steadyRun.describe()).pendingEventWaits.length > 0, {
      message: "the looping worker's process to run steady's first task",
    });

    const spinRun = await h.client.start("spin", { instanceId: "busy-spin" });
    const child = looping.child;
    await waitFor(() => child.exitCode !== null || child.signalCode !== null, { message: "the watchdog to stop the looping worker process" });
    expect(child.signalCode).toBe("SIGKILL");
    expect(looping.output()).toMatch(new RegExp(`workflow code of run ${spinRun.runId} \\(workflow "spin", task attempt \\d+\\) has not yielded`));

    const failed = await waitFor(
      async () => {
        const d = await spinRun.describe();
        return d.pendingWorkflowTask?.lastFailure?.type === "WorkflowTaskDeadlock" ? d : undefined;
      },
      { message: "the watchdog's task failure to be recorded" },
    );
    expect(failed.status).toBe("RUNNING");
    expect(failed.pendingWorkflowTask!.lastFailure!.message).toContain(`run ${spinRun.runId}`);
    expect(failed.pendingWorkflowTask!.lastFailure!.message).toMatch(/did not yield for more than 1\.5 s/);

    // Another worker (here with the fixed code) takes both runs on.
    h.workflowWorker({ spin: spinFixed, steady });
    await steadyRun.sendEvent("go", "went");
    expect(await steadyRun.result()).toBe("went");
    expect(await spinRun.result()).toBe("fixed");
  });
});
