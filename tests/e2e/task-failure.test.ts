/**
 * A bug pauses the run, a decision fails it (decision 0014): real server, real gRPC, SDK workers
 * started and stopped as a deploy would, and the compiled `dex` for describe.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { E2E_TEST_TIMEOUT_MS, waitFor } from "@dex/testing";
import {
  ApplicationFailure,
  createWorkflowWorker,
  setWorkflowOptions,
  type Logger,
  type Worker,
  type WorkflowContext,
  type WorkflowHandle,
} from "@dex/sdk";
import { quietLogger, startHarness, type Harness } from "../support/harness.js";
import { runDex } from "../support/server-process.js";

const activities = {
  async lookup(id: string) {
    return id === "missing" ? {} : { customer: { name: "ada" } };
  },
};

// Version 1 assumes every record has a customer: a TypeError for "missing".
async function greet(ctx: WorkflowContext, id: string) {
  const record = await ctx.activities<typeof activities>().lookup(id);
  return `hello ${(record as { customer: { name: string } }).customer.name}`;
}
// Version 2, deployed after the bug was seen.
async function greetFixed(ctx: WorkflowContext, id: string) {
  const record = (await ctx.activities<typeof activities>().lookup(id)) as { customer?: { name: string } };
  return `hello ${record.customer?.name ?? "stranger"}`;
}

async function refuses(_ctx: WorkflowContext) {
  throw ApplicationFailure.nonRetryable("this order cannot be shipped", "Unshippable");
}

class QuotaExceeded extends Error {
  override name = "QuotaExceeded";
}
const strict = setWorkflowOptions(
  async (_ctx: WorkflowContext) => {
    throw new QuotaExceeded("quota of 3 exceeded");
  },
  { failWorkflowOn: [QuotaExceeded] },
);

// A determinism violation: real timers cannot be replayed, so the task fails on every attempt.
async function usesTimer(_ctx: WorkflowContext) {
  await new Promise((resolve) => setTimeout(resolve, 10));
  return "never";
}

function lastFailureOf(handle: WorkflowHandle, minAttempt = 2) {
  return waitFor(
    async () => {
      const d = await handle.describe();
      return d.pendingWorkflowTask?.lastFailure && d.pendingWorkflowTask.attempt >= minAttempt ? d : undefined;
    },
    { message: `run ${handle.runId}'s workflow task to have failed (attempt ${minAttempt} pending)` },
  );
}

describe("workflow task failures", { timeout: E2E_TEST_TIMEOUT_MS }, () => {
  let h: Harness;
  const workers: Worker[] = [];
  const errors: string[] = [];
  const capturing: Logger = { ...quietLogger, error: (message, fields) => void errors.push(`${message} ${JSON.stringify(fields)}`) };

  function worker(workflows: Parameters<typeof createWorkflowWorker>[0]["workflows"], identity: string): Worker {
    const w = createWorkflowWorker({ address: h.server.address, taskQueue: "default", workflows, identity, logger: capturing, logTaskFailureEvery: 3 });
    w.start();
    workers.push(w);
    return w;
  }

  beforeAll(async () => {
    h = await startHarness({ workflowTaskRetry: { initialMs: 50, maxMs: 150 } });
    h.activityWorker(activities);
  });
  // Each test deploys its own code on the one queue: the previous test's workers must be gone.
  afterEach(async () => {
    await Promise.all(workers.splice(0).map((w) => w.shutdown()));
  });
  afterAll(async () => {
    await h?.close();
  });

  it("a TypeError keeps the run open with the error and its stack in describe; fixed code completes it", async () => {
    const v1 = worker({ greet }, "v1");
    const handle = await h.client.start(greet, { instanceId: "tf-typeerror", input: "missing" });
    const failed = await lastFailureOf(handle);
    expect(failed.status).toBe("RUNNING");
    expect(failed.pendingWorkflowTask!.lastFailure).toMatchObject({ type: "TypeError", message: expect.stringContaining("name") });
    expect(failed.pendingWorkflowTask!.lastFailure!.stack).toMatch(/^TypeError[\s\S]*greet[\s\S]*task-failure\.test\.ts/);

    const cli = await runDex(["workflow", "describe", handle.runId!, "--address", h.server.address]);
    expect(cli.code).toBe(0);
    expect(cli.stdout).toMatch(/status:\s+RUNNING/);
    expect(cli.stdout).toMatch(/last failure: .*\(TypeError\)/);
    expect(cli.stdout).toMatch(/workflow task failure stack:\nTypeError[\s\S]*greet[\s\S]*task-failure\.test\.ts/);

    // The deploy: the old worker stops, the fixed one takes the run on from its history.
    await v1.shutdown();
    worker({ greet: greetFixed }, "v2");
    expect(await handle.result()).toBe("hello stranger");
  });

  it("logs a failing run once, then every N attempts", async () => {
    errors.length = 0;
    const w = worker({ greet }, "logging");
    const handle = await h.client.start(greet, { instanceId: "tf-logging", input: "missing" });
    // Attempts 1..7 have failed once attempt 8 is pending: logged at 1 (with the stack), 3 and 6.
    await lastFailureOf(handle, 8);
    await w.shutdown();
    const about = errors.filter((m) => m.includes(handle.runId!) && m.includes("workflow task failed"));
    expect(about.map((m) => /attempt (\d+)/.exec(m)![1])).toEqual(["1", "3", "6"]);
    expect(about[0]).toMatch(/TypeError[\s\S]*greet[\s\S]*task-failure\.test\.ts/);
    expect(about[1]).toContain("still failing");
    await handle.terminate("test done");
  });

  it("an ApplicationFailure and a failWorkflowOn type fail the run", async () => {
    worker({ refuses, strict }, "deliberate");
    const refused = await h.client.start(refuses, { instanceId: "tf-refuses" });
    await expect(refused.result()).rejects.toMatchObject({ status: "FAILED", cause: { type: "Unshippable" } });
    const quota = await h.client.start("strict", { instanceId: "tf-strict" });
    await expect(quota.result()).rejects.toMatchObject({ status: "FAILED", cause: { message: "quota of 3 exceeded" } });
  });

  it("cancel and terminate end a run whose task keeps failing", async () => {
    worker({ usesTimer }, "violations");
    const toCancel = await h.client.start(usesTimer, { instanceId: "tf-cancel" });
    const toTerminate = await h.client.start(usesTimer, { instanceId: "tf-terminate" });
    const failed = await lastFailureOf(toCancel);
    expect(failed.pendingWorkflowTask!.lastFailure!.message).toMatch(/setTimeout was called in workflow code/);
    await lastFailureOf(toTerminate);

    await toCancel.cancel("stuck on a bug");
    await expect(toCancel.result()).rejects.toMatchObject({ status: "CANCELLED" });
    const history = await toCancel.history();
    expect(history.at(-1)?.attributes.case).toBe("runCancelled");

    await toTerminate.terminate("giving up");
    await expect(toTerminate.result()).rejects.toMatchObject({ status: "TERMINATED" });
  });
});
