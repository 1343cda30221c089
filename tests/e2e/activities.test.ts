import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { E2E_TEST_TIMEOUT_MS } from "@dex/testing";
import { ActivityFailure, ApplicationFailure, WorkflowFailedError, type ActivityContext, type WorkflowContext } from "@dex/sdk";
import { startHarness, type Harness } from "../support/harness.js";

// Every execution the activities see, so tests can check attempts and counts.
const executions: Array<{ activity: string; runId: string; attempt: number }> = [];

const activities = {
  async add(input: { a: number; b: number }, ctx: ActivityContext) {
    executions.push({ activity: "add", runId: ctx.info.runId, attempt: ctx.info.attempt });
    return input.a + input.b;
  },
  async double(n: number, ctx: ActivityContext) {
    executions.push({ activity: "double", runId: ctx.info.runId, attempt: ctx.info.attempt });
    return n * 2;
  },
  async describe(n: number, ctx: ActivityContext) {
    executions.push({ activity: "describe", runId: ctx.info.runId, attempt: ctx.info.attempt });
    return `the answer is ${n}`;
  },
  async flaky(input: { failTimes: number }, ctx: ActivityContext) {
    executions.push({ activity: "flaky", runId: ctx.info.runId, attempt: ctx.info.attempt });
    if (ctx.info.attempt <= input.failTimes) throw ApplicationFailure.create(`attempt ${ctx.info.attempt} failed`, "Flaky");
    return { succeededOnAttempt: ctx.info.attempt };
  },
  async alwaysFails(_: unknown, ctx: ActivityContext): Promise<never> {
    executions.push({ activity: "alwaysFails", runId: ctx.info.runId, attempt: ctx.info.attempt });
    throw ApplicationFailure.create("the warehouse is on fire", "WarehouseFire");
  },
};

async function sequential(ctx: WorkflowContext, input: { a: number; b: number }) {
  const acts = ctx.activities<typeof activities>({ startToCloseTimeout: "10s" });
  const sum = await acts.add(input);
  const doubled = await acts.double(sum);
  return acts.describe(doubled);
}

async function parallel(ctx: WorkflowContext, input: number[]) {
  const acts = ctx.activities<typeof activities>();
  const results = await Promise.all(input.map((n) => acts.double(n)));
  return results.reduce((sum, n) => sum + n, 0);
}

async function retrying(ctx: WorkflowContext) {
  const acts = ctx.activities<typeof activities>({ retry: { initialInterval: "50ms", maximumAttempts: 5 } });
  return acts.flaky({ failTimes: 2 });
}

async function catching(ctx: WorkflowContext) {
  const acts = ctx.activities<typeof activities>({ retry: { initialInterval: "20ms", maximumAttempts: 3 } });
  try {
    await acts.alwaysFails(null);
    return "not reached";
  } catch (err) {
    if (!(err instanceof ActivityFailure)) throw err;
    return { caught: err.name, activity: err.activityName, cause: err.cause?.message, type: (err.cause as ApplicationFailure | undefined)?.type };
  }
}

async function notCaught(ctx: WorkflowContext) {
  const acts = ctx.activities<typeof activities>({ retry: { maximumAttempts: 1 } });
  await acts.alwaysFails(null);
  return "not reached";
}

describe("activities end to end", { timeout: E2E_TEST_TIMEOUT_MS }, () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
    h.workflowWorker({ sequential, parallel, retrying, catching, notCaught });
    h.activityWorker(activities);
  });
  afterAll(async () => {
    await h?.close();
  });

  it("runs three sequential activities and returns the right result", async () => {
    const handle = await h.client.start(sequential, { instanceId: "seq-1", input: { a: 19, b: 2 } });
    expect(await handle.result()).toBe("the answer is 42");
    const mine = executions.filter((e) => e.runId === handle.runId).map((e) => e.activity);
    expect(mine).toEqual(["add", "double", "describe"]);
    const history = await handle.history();
    const kinds = history.map((event) => event.attributes.case);
    expect(kinds.filter((k) => k === "activityScheduled")).toHaveLength(3);
    expect(kinds.filter((k) => k === "activityCompleted")).toHaveLength(3);
    expect(kinds.at(-1)).toBe("runCompleted");
    expect(history.map((event) => Number(event.sequence))).toEqual(history.map((_, i) => i + 1));
  });

  it("runs three activities in parallel", async () => {
    const handle = await h.client.start(parallel, { instanceId: "par-1", input: [1, 2, 3] });
    expect(await handle.result()).toBe(12);
    const history = await handle.history();
    // All three were scheduled by the first workflow task, before any completed.
    const firstCompletion = history.findIndex((e) => e.attributes.case === "activityCompleted");
    const scheduledBefore = history.slice(0, firstCompletion).filter((e) => e.attributes.case === "activityScheduled");
    expect(scheduledBefore).toHaveLength(3);
  });

  it("retries an activity that fails twice, with the attempt numbers visible", async () => {
    const handle = await h.client.start(retrying, { instanceId: "retry-1" });
    expect(await handle.result()).toEqual({ succeededOnAttempt: 3 });
    const attempts = executions.filter((e) => e.runId === handle.runId).map((e) => e.attempt);
    expect(attempts).toEqual([1, 2, 3]);
    // Retries add no history: one scheduled, one completed (recording the attempt).
    const history = await handle.history();
    const completed = history.filter((e) => e.attributes.case === "activityCompleted");
    expect(completed).toHaveLength(1);
    expect(completed[0]!.attributes.value).toMatchObject({ attempt: 3 });
  });

  it("surfaces an activity that always fails as a typed failure the workflow catches", async () => {
    const handle = await h.client.start(catching, { instanceId: "catch-1" });
    expect(await handle.result()).toEqual({
      caught: "ActivityFailure",
      activity: "alwaysFails",
      cause: "the warehouse is on fire",
      type: "WarehouseFire",
    });
    expect(executions.filter((e) => e.runId === handle.runId).map((e) => e.attempt)).toEqual([1, 2, 3]);
  });

  it("fails the run when the workflow does not catch the activity failure", async () => {
    const handle = await h.client.start(notCaught, { instanceId: "uncaught-1" });
    const error = await handle.result().then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(error).toBeInstanceOf(WorkflowFailedError);
    const description = await handle.describe();
    expect(description.status).toBe("FAILED");
    expect(JSON.stringify(description.failure)).toContain("the warehouse is on fire");
  });
});
