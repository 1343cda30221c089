/**
 * Continue-as-new hands the next run what the old run's code did not see
 * (decision 0031), with real workers: a cancellation handed out with the very
 * task that continues as new, an update that arrives while that task is in
 * flight, and one handed out with the continuing task that the code never
 * saw (it continued as new first); update ids are deduplicated per chain, so a retry through the
 * instance id after continue-as-new is answered from the first run; an update
 * accepted but left unfinished by continue-as-new gets an answer.
 *
 * Two ways to place an input exactly: a paused queue (inputs sent while it is
 * paused reach the run's next task together), and, for "while the task is in
 * flight", a child run whose parent's row the test holds (a completion that
 * ends a child locks its parent first, so it waits there, task claimed and
 * commands sent, while UpdateRun, which locks only the child, goes through).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WorkflowUpdateFailedError, type WorkflowContext } from "@dex/sdk";
import { E2E_TEST_TIMEOUT_MS, waitFor } from "@dex/testing";
import { TaskQueueType, type HistoryEvent } from "@dex/proto";
import postgres from "postgres";
import { startHarness, type Harness } from "../support/harness.js";
import { createQueue, pauseQueue } from "../support/queue-admin.js";

/** Round 0 waits for "go" and continues as new; round 1 sleeps. Both answer "whichRound". */
async function restless(ctx: WorkflowContext, round: number) {
  ctx.setUpdateHandler("whichRound", () => round);
  if (round === 0) {
    await ctx.waitForEvent("go");
    return ctx.continueAsNew(1);
  }
  await ctx.sleep("1h");
  return "slept an hour";
}

/** A running total; "roll" continues as new with it. */
async function counter(ctx: WorkflowContext, total: number) {
  ctx.setUpdateHandler("add", (n: number) => (total += n));
  await ctx.waitForEvent("roll");
  return ctx.continueAsNew(total);
}

/** An update whose handler outlives the run: "roll" continues as new while it sleeps. */
async function hasty(ctx: WorkflowContext, round: number) {
  ctx.setUpdateHandler("slow", async () => {
    await ctx.sleep("1h");
    return "finished";
  });
  await ctx.waitForEvent("roll");
  return ctx.continueAsNew(round + 1);
}

async function parent(ctx: WorkflowContext, input: { workflow: string; childInput: unknown }) {
  return ctx.child(input.workflow, input.childInput, { instanceId: `${ctx.info.instanceId}-child` });
}

function updateIds(history: HistoryEvent[], kind: "updateAccepted" | "updateCompleted"): string[] {
  return history.flatMap((e) => (e.attributes.case === kind ? [e.attributes.value.updateId] : []));
}

describe("continue-as-new hands over what the run has not seen", { timeout: E2E_TEST_TIMEOUT_MS }, () => {
  let h: Harness;
  let sql: postgres.Sql;
  beforeAll(async () => {
    h = await startHarness();
    await createQueue(h.client, "workflow", "hand-over");
    h.workflowWorker({ restless, counter, hasty, parent });
    h.workflowWorker({ restless }, { taskQueue: "hand-over" });
    sql = postgres(h.db.url, { max: 2, onnotice: () => {} });
  });
  afterAll(async () => {
    await sql?.end();
    await h?.close();
  });

  async function runsOf(instanceId: string) {
    return (await h.client.list({ instanceId })).runs;
  }

  /** The instance's runs once it has `count`, the newest last. */
  async function chain(instanceId: string, count: number) {
    const runs = await waitFor(async () => {
      const all = await runsOf(instanceId);
      return all.length === count ? all : undefined;
    }, { message: `${instanceId} to have ${count} runs` });
    return [...runs].sort((a, b) => a.runId.localeCompare(b.runId));
  }

  it("a cancellation handed out with the task that continues as new cancels the new run", async () => {
    const handle = await h.client.start(restless, { instanceId: "cancel-same-task", input: 0, taskQueue: "hand-over" });
    await waitFor(async () => (await handle.describe()).pendingEventWaits.some((w) => w.eventId === "go"), {
      message: "the run to wait for go",
    });
    // Paused, the queue hands out nothing: "go" and the cancellation reach the run's next task together.
    await pauseQueue(h.client, "workflow", "hand-over");
    await handle.sendEvent("go");
    await handle.cancel("stop looping");
    await h.client.raw.queues.resumeTaskQueue({ name: "hand-over", type: TaskQueueType.WORKFLOW });

    const [first, next] = await chain("cancel-same-task", 2);
    expect(first!.status).toBe("CONTINUED_AS_NEW");
    const firstKinds = (await h.client.getHandle({ runId: first!.runId }).history()).map((e) => e.attributes.case);
    // One block: the code continued on "go" before the cancellation was delivered to it.
    expect(firstKinds.slice(-4)).toEqual(["externalEventReceived", "cancelRequested", "workflowTaskCompleted", "runContinuedAsNew"]);
    const newRun = h.client.getHandle({ runId: next!.runId });
    await waitFor(async () => (await newRun.describe()).status === "CANCELLED", { message: "the new run to end CANCELLED" });
    const kinds = (await newRun.history()).map((e) => e.attributes.case);
    expect(kinds.slice(0, 2)).toEqual(["runStarted", "cancelRequested"]);
    expect(kinds.at(-1)).toBe("runCancelled");
  });

  it("an update handed out with the task that continues as new, unseen by the code, is handled once, by the new run", async () => {
    const handle = await h.client.start(restless, { instanceId: "update-same-task", input: 0, taskQueue: "hand-over" });
    await waitFor(async () => (await handle.describe()).pendingEventWaits.some((w) => w.eventId === "go"), {
      message: "the run to wait for go",
    });
    // Paused, the queue hands out nothing: "go" and the update reach the run's next task together,
    // and the code continues as new on "go" before the update is due (updates come after the block's events).
    await pauseQueue(h.client, "workflow", "hand-over");
    await handle.sendEvent("go");
    const answer = handle.update("whichRound", undefined, { updateId: "same-task-1" }).catch((e: unknown) => e);
    await waitFor(async () => {
      const [row] = await sql<{ n: number }[]>`select count(*)::int as n from dex.inbox where run_id = ${handle.runId!} and kind = 'update_accepted'`;
      return row!.n === 1;
    }, { message: "the update to wait in the run's inbox" });
    await h.client.raw.queues.resumeTaskQueue({ name: "hand-over", type: TaskQueueType.WORKFLOW });

    // Answered by the new run's handler (round 1), not rejected with WorkflowFinished.
    expect(await answer).toBe(1);
    const [first, next] = await chain("update-same-task", 2);
    const firstHistory = await h.client.getHandle({ runId: first!.runId }).history();
    expect(firstHistory.map((e) => e.attributes.case).slice(-3)).toEqual(["externalEventReceived", "workflowTaskCompleted", "runContinuedAsNew"]);
    expect(updateIds(firstHistory, "updateAccepted")).toEqual([]);
    const nextHistory = await h.client.getHandle({ runId: next!.runId }).history();
    expect(updateIds(nextHistory, "updateAccepted")).toEqual(["same-task-1"]);
    expect(updateIds(nextHistory, "updateCompleted")).toEqual(["same-task-1"]);
    // A retry through the instance id is answered by the new run, applied nowhere again.
    expect(await h.client.getHandle({ instanceId: "update-same-task" }).update("whichRound", undefined, { updateId: "same-task-1" })).toBe(1);
  });

  it("an update sent while the run continues as new is handled once, by the new run", async () => {
    const family = await h.client.start(parent, { instanceId: "late-update", input: { workflow: "restless", childInput: 0 } });
    const child = h.client.getHandle({ instanceId: "late-update-child" });
    await waitFor(async () => (await child.describe()).pendingEventWaits.some((w) => w.eventId === "go"), {
      message: "the child to wait for go",
    });
    const firstRunId = (await child.describe()).runId;
    let answer: Promise<unknown> | undefined;
    await sql.begin(async (tx) => {
      await tx`select 1 from dex.runs where id = ${family.runId!} for no key update`;
      await child.sendEvent("go");
      await waitFor(async () => {
        const [row] = await sql<{ n: number }[]>`
          select count(*)::int as n from pg_stat_activity
          where datname = current_database() and application_name like 'dex-server %' and wait_event_type = 'Lock'`;
        return row!.n >= 1;
      }, { message: "the child's continue-as-new to wait for the parent's row" });
      answer = child.update("whichRound", undefined, { updateId: "late-1" });
      await waitFor(async () => {
        const [row] = await sql<{ n: number }[]>`select count(*)::int as n from dex.inbox where run_id = ${firstRunId} and kind = 'update_accepted'`;
        return row!.n === 1;
      }, { message: "the update to wait in the continuing run's inbox" });
    });
    expect(await answer).toBe(1);

    const [first, next] = await chain("late-update-child", 2);
    expect(first!.runId).toBe(firstRunId);
    expect(updateIds(await h.client.getHandle({ runId: first!.runId }).history(), "updateAccepted")).toEqual([]);
    const nextHistory = await h.client.getHandle({ runId: next!.runId }).history();
    expect(updateIds(nextHistory, "updateAccepted")).toEqual(["late-1"]);
    expect(updateIds(nextHistory, "updateCompleted")).toEqual(["late-1"]);
  });

  it("the same update id retried through the instance id after continue-as-new is answered from the first run", async () => {
    const instance = h.client.getHandle({ instanceId: "retry-update" });
    await h.client.start(counter, { instanceId: "retry-update", input: 0 });
    expect(await instance.update("add", 5, { updateId: "add-5" })).toBe(5);
    await instance.sendEvent("roll");
    const [first, next] = await chain("retry-update", 2);

    // The retry reaches the instance's new run, which must not apply it again.
    expect(await instance.update("add", 5, { updateId: "add-5" })).toBe(5);
    expect(await instance.update("add", 1, { updateId: "add-1" })).toBe(6);
    expect(updateIds(await h.client.getHandle({ runId: first!.runId }).history(), "updateAccepted")).toEqual(["add-5"]);
    expect(updateIds(await h.client.getHandle({ runId: next!.runId }).history(), "updateAccepted")).toEqual(["add-1"]);
  });

  it("an update accepted and left unfinished by continue-as-new fails with WorkflowContinuedAsNew, on every retry", async () => {
    const handle = await h.client.start(hasty, { instanceId: "unfinished-update", input: 0 });
    const answer = handle.update("slow", undefined, { updateId: "slow-1" }).catch((e: unknown) => e);
    await waitFor(async () => updateIds(await handle.history(), "updateAccepted").includes("slow-1"), {
      message: "the update to be accepted",
    });
    await handle.sendEvent("roll");
    const failed = await answer;
    expect(failed).toBeInstanceOf(WorkflowUpdateFailedError);
    expect((failed as Error).message).toMatch(/continued as new before the handler of update "slow-1" finished/);

    await chain("unfinished-update", 2);
    const again = await h.client.getHandle({ instanceId: "unfinished-update" }).update("slow", undefined, { updateId: "slow-1" }).catch((e: unknown) => e);
    expect(again).toBeInstanceOf(WorkflowUpdateFailedError);
    expect((again as Error).message).toMatch(/continued as new/);
  });
});
