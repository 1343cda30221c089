/**
 * Run timeouts end to end (docs/decisions/0027-run-timeouts.md): the SDK's
 * start and child options, result() of a timed-out run, and the compiled
 * `dex` CLI's start flags, describe lines and result exit code, against a real
 * server and real workers. Timeouts are 1 s; every wait is for a state.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ChildWorkflowFailure, WorkflowFailedError, type WorkflowContext } from "@dex/sdk";
import { TaskQueueType } from "@dex/proto";
import { startHarness, type Harness } from "../support/harness.js";
import { runDex } from "../support/server-process.js";

async function parentOfSlowChild(ctx: WorkflowContext): Promise<string> {
  try {
    await ctx.child("nobody-runs-this", {}, { instanceId: `${ctx.info.instanceId}-child`, taskQueue: "nobody-polls", runTimeout: "1s" });
    return "child completed";
  } catch (err) {
    if (err instanceof ChildWorkflowFailure) return `child ended ${err.status}`;
    throw err;
  }
}

async function waiting(ctx: WorkflowContext) {
  return ctx.waitForEvent("never-sent");
}

describe("run timeouts end to end", () => {
  let h: Harness;

  beforeAll(async () => {
    h = await startHarness();
    await h.client.raw.queues.createTaskQueue({ name: "nobody-polls", type: TaskQueueType.WORKFLOW });
    h.workflowWorker({ parentOfSlowChild, waiting });
  });

  afterAll(async () => {
    await h?.close();
  });

  it("a run of a workflow the polling worker does not know ends TIMED_OUT, and result() says so", async () => {
    const handle = await h.client.start("not-registered-anywhere", { instanceId: "rt-unknown", runTimeout: "1s" });
    const err = await handle.result().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(WorkflowFailedError);
    expect((err as WorkflowFailedError).status).toBe("TIMED_OUT");
    expect((err as WorkflowFailedError).message).toMatch(/run timeout of 1s/);
    const described = await handle.describe();
    expect(described).toMatchObject({ status: "TIMED_OUT", runTimeoutMs: 1_000 });
    expect(described.runDeadline).toBeInstanceOf(Date);
  });

  it("a parent's ctx.child rejects with ChildWorkflowFailure TIMED_OUT when the child's run timeout passes", async () => {
    const handle = await h.client.start(parentOfSlowChild, { instanceId: "rt-parent" });
    expect(await handle.result()).toBe("child ended TIMED_OUT");
  });

  it("dex workflow start --run-timeout --workflow-task-timeout; describe shows both; result exits 8", async () => {
    const address = ["--address", h.server.address];
    const started = await runDex([
      "workflow", "start", "waiting", "--id", "rt-cli", "--run-timeout", "1s", "--workflow-task-timeout", "30s", ...address,
    ]);
    expect(started.code).toBe(0);
    const described = await runDex(["workflow", "describe", "rt-cli", ...address]);
    expect(described.stdout).toMatch(/run timeout:\s+1s \(ends TIMED_OUT at \d{4}-/);
    expect(described.stdout).toMatch(/workflow task timeout:\s+30s/);
    const result = await runDex(["workflow", "result", "rt-cli", "--wait", ...address]);
    expect(result.code).toBe(8);
    expect(result.stdout).toMatch(/status:\s+TIMED_OUT/);
  });

  it("a bad duration flag is one line on stderr and a non-zero exit; a refused one names the field", async () => {
    const address = ["--address", h.server.address];
    const bad = await runDex(["workflow", "start", "waiting", "--id", "rt-bad", "--run-timeout", "soon", ...address]);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr.trim().split("\n")).toHaveLength(1);
    expect(bad.stderr).toMatch(/--run-timeout must be a duration/);
    const refused = await runDex(["workflow", "start", "waiting", "--id", "rt-bad", "--workflow-task-timeout", "1h", ...address]);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr.trim().split("\n")).toHaveLength(1);
    expect(refused.stderr).toMatch(/workflow_task_timeout must be from 1 s to 10 min/);
  });
});
