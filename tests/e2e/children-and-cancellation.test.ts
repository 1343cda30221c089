import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ApplicationFailure,
  CancelledFailure,
  ChildWorkflowFailure,
  ChildWorkflowStartFailure,
  type ActivityContext,
  type WorkflowContext,
} from "@dex/sdk";
import { E2E_TEST_TIMEOUT_MS, waitFor } from "@dex/testing";
import postgres from "postgres";
import { startHarness, type Harness } from "../support/harness.js";

// What the heartbeating activity observed.
const observed = { started: 0, aborted: 0, cleanups: 0 };

const activities = {
  async failHard(reason: string): Promise<never> {
    throw ApplicationFailure.nonRetryable(reason, "ChildBroke");
  },
  async heartbeatUntilCancelled(_: unknown, ctx: ActivityContext) {
    observed.started++;
    while (!ctx.signal.aborted) {
      ctx.heartbeat({ beat: Date.now() });
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    observed.aborted++;
    throw new CancelledFailure("activity saw the cancellation");
  },
  async cleanup() {
    observed.cleanups++;
    return "cleaned";
  },
};

async function failingChild(ctx: WorkflowContext, reason: string) {
  await ctx.activities<typeof activities>({ retry: { maximumAttempts: 1 } }).failHard(reason);
  return "not reached";
}

async function parentCatchesChildFailure(ctx: WorkflowContext) {
  try {
    await ctx.child(failingChild, "boom", { instanceId: `${ctx.info.instanceId}-child` });
    return "not reached";
  } catch (err) {
    if (!(err instanceof ChildWorkflowFailure)) throw err;
    return { caught: err.name, status: err.status, cause: err.cause?.message };
  }
}

async function blockingChild(ctx: WorkflowContext) {
  const acts = ctx.activities<typeof activities>({ heartbeatTimeout: "2s", startToCloseTimeout: "1m" });
  try {
    await acts.heartbeatUntilCancelled(null);
    return "not reached";
  } catch (err) {
    if (!(err instanceof CancelledFailure)) throw err;
    await ctx.nonCancellable(() => acts.cleanup());
    throw err;
  }
}

async function parentOfBlockingChild(ctx: WorkflowContext) {
  return ctx.child(blockingChild, undefined, { instanceId: `${ctx.info.instanceId}-child` });
}

async function twoChildrenSameId(ctx: WorkflowContext) {
  const first = ctx.child(blockingChild, undefined, { instanceId: "shared-child-id" });
  try {
    await ctx.child(blockingChild, undefined, { instanceId: "shared-child-id" });
    return "not reached";
  } catch (err) {
    if (!(err instanceof ChildWorkflowStartFailure)) throw err;
    void first.catch(() => {});
    return { conflict: err.instanceId };
  }
}

describe("child workflows and cancellation", { timeout: E2E_TEST_TIMEOUT_MS }, () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
    h.workflowWorker({ failingChild, parentCatchesChildFailure, blockingChild, parentOfBlockingChild, twoChildrenSameId });
    h.activityWorker(activities);
  });
  afterAll(async () => {
    await h?.close();
  });

  it("lets the parent catch a child's failure as a typed error", async () => {
    const handle = await h.client.start(parentCatchesChildFailure, { instanceId: "parent-1" });
    expect(await handle.result()).toEqual({ caught: "ChildWorkflowFailure", status: "FAILED", cause: expect.stringContaining("boom") });
    const child = await h.client.getHandle({ instanceId: "parent-1-child" }).describe();
    expect(child.status).toBe("FAILED");
    expect(child.parentRunId).toBe(handle.runId);
  });

  it("reports a child instance-id conflict as a typed error in the parent", async () => {
    const handle = await h.client.start(twoChildrenSameId, { instanceId: "parent-conflict" });
    expect(await handle.result()).toEqual({ conflict: "shared-child-id" });
    await h.client.getHandle({ instanceId: "shared-child-id" }).terminate("test cleanup");
  });

  it("cancelling a parent cancels its child and the child's heartbeating activity", async () => {
    const before = { ...observed };
    const handle = await h.client.start(parentOfBlockingChild, { instanceId: "parent-cancel" });
    await waitFor(() => observed.started > before.started, { message: "the child's activity to start" });
    await handle.cancel("customer changed their mind");

    await waitFor(() => observed.aborted > before.aborted, { message: "the activity to see its abort signal" });
    const child = h.client.getHandle({ instanceId: "parent-cancel-child" });
    await waitFor(async () => (await child.describe()).status === "CANCELLED", { message: "the child to end CANCELLED" });
    expect(observed.cleanups).toBeGreaterThan(before.cleanups);
    const parent = await waitFor(async () => {
      const d = await handle.describe();
      return d.status === "CANCELLED" ? d : undefined;
    }, { message: "the parent to end CANCELLED" });
    expect(parent.status).toBe("CANCELLED");
  });

  it("terminate ends a run at once and removes its pending tasks", async () => {
    const handle = await h.client.start(blockingChild, { instanceId: "terminate-1" });
    await waitFor(async () => (await handle.describe()).pendingActivities.length > 0, { message: "a pending activity" });
    await handle.terminate("operator says stop");
    const description = await handle.describe();
    expect(description.status).toBe("TERMINATED");
    expect(description.pendingActivities).toEqual([]);
    expect(description.pendingWorkflowTask).toBeUndefined();
    expect(JSON.stringify(description.failure)).toContain("operator says stop");
    expect(await countPendingRowsOf(h, description.runId)).toBe(0);
    expect((await handle.history()).at(-1)?.attributes.case).toBe("runTerminated");
  });
});

/** Workflow tasks, activity tasks, inbox rows and timers still held for a run. */
async function countPendingRowsOf(h: Harness, runId: string): Promise<number> {
  const sql = postgres(h.db.url, { max: 1, onnotice: () => {} });
  try {
    const rows = await sql<Array<{ count: number }>>`
      select ((select count(*) from dex.workflow_tasks where run_id = ${runId})
            + (select count(*) from dex.activity_tasks where run_id = ${runId})
            + (select count(*) from dex.inbox where run_id = ${runId})
            + (select count(*) from dex.timers where run_id = ${runId}))::int as count`;
    return rows[0]!.count;
  } finally {
    await sql.end();
  }
}
