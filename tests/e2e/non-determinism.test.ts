import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { E2E_TEST_TIMEOUT_MS, waitFor } from "@dex/testing";
import type { WorkflowContext } from "@dex/sdk";
import { deferred, startHarness, type Harness } from "../support/harness.js";

const release = deferred();
const activities = {
  async first() {
    return "one";
  },
  async second() {
    await release.promise;
    return "two";
  },
  async other() {
    return "other";
  },
};

// The deployed code: first, then second.
async function evolving(ctx: WorkflowContext) {
  const acts = ctx.activities<typeof activities>();
  const a = await acts.first();
  const b = await acts.second();
  return `${a}+${b}`;
}

// A careless change: calls `other` where history recorded `first`.
async function evolvingChanged(ctx: WorkflowContext) {
  const acts = ctx.activities<typeof activities>();
  const a = await acts.other();
  const b = await acts.second();
  return `${a}+${b}`;
}

describe("non-determinism", { timeout: E2E_TEST_TIMEOUT_MS }, () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ workflowTaskRetry: { initialMs: 100, maxMs: 300 } });
    h.activityWorker(activities);
  });
  afterAll(async () => {
    release.resolve();
    await h?.close();
  });

  it("fails the workflow task, keeps the run open, and finishes once the code is restored", async () => {
    const original = h.workflowWorker({ evolving }, { identity: "original" });
    const handle = await h.client.start(evolving, { instanceId: "nd-1" });
    // Wait until the run is blocked on `second` (scheduled, not yet completed).
    await waitFor(async () => (await handle.describe()).pendingActivities.some((a) => a.activityName === "second"), {
      message: "the second activity to be scheduled",
    });
    await original.shutdown();

    const changed = h.workflowWorker({ evolving: evolvingChanged }, { identity: "changed" });
    release.resolve();
    const failed = await waitFor(
      async () => {
        const d = await handle.describe();
        return d.pendingWorkflowTask?.lastFailure ? d : undefined;
      },
      { message: "the workflow task to fail with a non-determinism error" },
    );
    expect(failed.status).toBe("RUNNING");
    const failure = JSON.stringify(failed.pendingWorkflowTask!.lastFailure);
    expect(failure).toMatch(/determinism/i);
    expect(failure).toContain("first");
    expect(failure).toContain("other");
    await changed.shutdown();

    h.workflowWorker({ evolving }, { identity: "restored" });
    expect(await handle.result()).toBe("one+two");
  });
});
