/**
 * Task queues that do not exist, with real SDK workers: a start is NOT_FOUND,
 * an activity call fails in the workflow (ActivityFailure, cause type
 * TaskQueueNotFound), a child fails to start (ChildWorkflowStartFailure), and
 * continue-as-new waits, run open, until the queue is created.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ActivityFailure,
  ApplicationFailure,
  ChildWorkflowStartFailure,
  DexError,
  type WorkflowContext,
} from "@dex/sdk";
import { E2E_TEST_TIMEOUT_MS, waitFor } from "@dex/testing";
import { startHarness, type Harness } from "../support/harness.js";
import { createQueue } from "../support/queue-admin.js";

const activities = {
  async charge(amount: number) {
    return `charged ${amount}`;
  },
};

async function callsActivityOnMissingQueue(ctx: WorkflowContext) {
  try {
    await ctx.activities<typeof activities>({ taskQueue: "nope" }).charge(5);
    return "not reached";
  } catch (err) {
    if (!(err instanceof ActivityFailure)) throw err;
    // The run goes on: an activity on a queue that exists still works.
    const after = await ctx.activities<typeof activities>().charge(7);
    const cause = err.cause as ApplicationFailure;
    return { caught: err.name, attempt: err.attempt, causeType: cause.type, nonRetryable: cause.nonRetryable, message: err.message, after };
  }
}

async function child() {
  return "child ran";
}

async function startsChildOnMissingQueue(ctx: WorkflowContext) {
  try {
    await ctx.child(child, undefined, { instanceId: `${ctx.info.instanceId}-child`, taskQueue: "nope" });
    return "not reached";
  } catch (err) {
    if (!(err instanceof ChildWorkflowStartFailure)) throw err;
    return { caught: err.name, type: err.type, message: err.message };
  }
}

async function hopsQueues(ctx: WorkflowContext, input: { hopped: boolean }) {
  if (input.hopped) return `done on ${ctx.info.taskQueue}`;
  return ctx.continueAsNew({ hopped: true }, { taskQueue: "later" });
}

describe("task queues that do not exist", { timeout: E2E_TEST_TIMEOUT_MS }, () => {
  let h: Harness;
  beforeAll(async () => {
    // Short workflow-task back-off: the continue-as-new test waits for a retry after creating the queue.
    h = await startHarness({ workflowTaskRetry: { initialMs: 50, maxMs: 200 } });
    h.workflowWorker({ callsActivityOnMissingQueue, startsChildOnMissingQueue, child, hopsQueues });
    h.activityWorker(activities);
  });
  afterAll(async () => {
    await h?.close();
  });

  it("starting a run on a missing workflow queue answers NOT_FOUND, naming the queue", async () => {
    const err = await h.client.start(child, { instanceId: "no-queue", taskQueue: "nope" }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(DexError);
    expect((err as DexError).code).toBe("NOT_FOUND");
    expect((err as DexError).message).toMatch(/workflow task queue "nope" does not exist/);
  });

  it("an activity on a missing queue: the workflow catches ActivityFailure with cause type TaskQueueNotFound", async () => {
    const handle = await h.client.start(callsActivityOnMissingQueue, { instanceId: "missing-activity-queue" });
    expect(await handle.result()).toEqual({
      caught: "ActivityFailure",
      attempt: 0,
      causeType: "TaskQueueNotFound",
      nonRetryable: true,
      message:
        'activity "charge" (seq 1) failed before any attempt ran: activity task queue "nope" does not exist; ' +
        "create it with `dex queue create nope --type activity`",
      after: "charged 7",
    });
    const description = await handle.describe();
    expect(description.pendingActivities).toEqual([]);
  });

  it("a child on a missing queue: the parent catches ChildWorkflowStartFailure of type TaskQueueNotFound", async () => {
    const handle = await h.client.start(startsChildOnMissingQueue, { instanceId: "missing-child-queue" });
    expect(await handle.result()).toEqual({
      caught: "ChildWorkflowStartFailure",
      type: "TaskQueueNotFound",
      message:
        'child workflow "child" (instance id "missing-child-queue-child") was not started (TaskQueueNotFound): ' +
        'workflow task queue "nope" does not exist; create it with `dex queue create nope --type workflow`',
    });
  });

  it("continue-as-new to a missing queue: the run stays open, says why, and continues once the queue exists", async () => {
    const handle = await h.client.start(hopsQueues, { instanceId: "hops", input: { hopped: false } });
    const stuck = await waitFor(async () => {
      const d = await handle.describe();
      return (d.pendingWorkflowTask?.attempt ?? 0) >= 2 && d;
    }, { message: "the refused continue-as-new to fail its workflow task" });
    expect(stuck.status).toBe("RUNNING");
    expect(stuck.pendingWorkflowTask?.lastFailure?.message).toMatch(
      /continue_as_new: workflow task queue "later" does not exist.*`dex queue create later --type workflow`/,
    );

    await createQueue(h.client, "workflow", "later");
    h.workflowWorker({ hopsQueues }, { taskQueue: "later" });
    expect(await handle.result()).toBe("done on later");
  });
});
