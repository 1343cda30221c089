/**
 * Review 1 (session 13): failing tests for findings in today's merges. Not for main as is.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ResetPointKind, TaskQueueType } from "@dex/proto";
import { waitFor } from "@dex/testing";
import { byInstance, byRunId, fromJson, holdRunLock, json, pollWorkflowTaskOf, serverLockWaiters, startWith, type Harness, startHarness, uniqueId } from "./helpers.js";

const NOW = { seconds: 0n, nanos: 0 };

function completeUpdate(updateId: string, result: unknown) {
  return { command: { case: "completeUpdate" as const, value: { updateId, result: json(result) } } };
}

describe("review1: update ids per chain vs ResetRun", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(async () => {
    await h.close();
  });

  it("an update accepted before the reset point and completed by the reset run is answered through the instance id", async () => {
    const instanceId = uniqueId("reset-update");
    const first = await startWith(h, [], { instanceId });
    // U accepted by the first run; its handler has not finished.
    expect(await h.client.updateRun({ run: byInstance(instanceId), name: "add", updateId: "u", wait: NOW })).toMatchObject({ stillRunning: true });
    const t2 = await pollWorkflowTaskOf(h, first);
    await h.worker.completeWorkflowTask({ taskToken: t2.taskToken, commands: [] });
    // One more workflow task, so LAST_WORKFLOW_TASK keeps update_accepted.
    await h.client.sendEvent({ run: byRunId(first), eventName: "poke", eventId: "p1", payload: json(1) });
    const t3 = await pollWorkflowTaskOf(h, first);
    await h.worker.completeWorkflowTask({ taskToken: t3.taskToken, commands: [] });

    const reset = await h.client.resetRun({ run: byRunId(first), to: ResetPointKind.LAST_WORKFLOW_TASK });
    const history = (await h.client.getRunHistory({ run: byRunId(reset.runId) })).events;
    expect(history.map((e) => e.attributes.case)).toContain("updateAccepted");
    // The reset run's code runs the handler again and finishes it.
    const t = await pollWorkflowTaskOf(h, reset.runId);
    await h.worker.completeWorkflowTask({ taskToken: t.taskToken, commands: [completeUpdate("u", { ok: 1 })] });

    // Before migration 0016 this retry resolved the reset run and read its update_completed.
    // Now the chain claim still names the terminated first run: FAILED_PRECONDITION.
    const retry = await h.client.updateRun({ run: byInstance(instanceId), name: "add", updateId: "u", wait: NOW });
    expect(retry.runId).toBe(reset.runId);
    expect(retry.outcome.case).toBe("result");
    expect(fromJson(retry.outcome.value as never)).toEqual({ ok: 1 });
  });

  it("an update waiting unseen in the inbox at a reset is not lost for good: a retry through the instance id reaches the reset run", async () => {
    const instanceId = uniqueId("reset-update-unseen");
    const first = await startWith(h, [], { instanceId });
    expect(await h.client.updateRun({ run: byInstance(instanceId), name: "add", updateId: "v", wait: NOW })).toMatchObject({ stillRunning: true });
    // Reset before the update was handed out: terminating the old run drops its inbox (updates are not re-delivered).
    const reset = await h.client.resetRun({ run: byRunId(first), to: ResetPointKind.LAST_WORKFLOW_TASK });
    const retry = await h.client.updateRun({ run: byInstance(instanceId), name: "add", updateId: "v", wait: NOW });
    // Before 0016: the retry was stored on the reset run (stillRunning there). Now: FAILED_PRECONDITION, forever.
    expect(retry).toMatchObject({ runId: reset.runId, stillRunning: true });
  });
});

describe("review1: run timeouts behind one locked run", () => {
  let h: Harness;
  beforeAll(async () => {
    // The default statement timeout (30 s) would free the blocked batch eventually; the point is
    // that run timeouts due after it wait for it, and the locked run, due first, heads every next batch.
    h = await startHarness({ statementTimeoutMs: 300_000 });
    await h.queues.createTaskQueue({ name: "nobody-polls-r1", type: TaskQueueType.WORKFLOW });
  });
  afterAll(async () => {
    await h.close();
  });

  async function start(): Promise<string> {
    const { runId } = await h.client.startWorkflow({
      workflowName: "wf",
      instanceId: uniqueId("rt"),
      taskQueue: "nobody-polls-r1",
      runTimeout: { seconds: 3_600n },
    });
    return runId;
  }
  async function status(runId: string): Promise<string> {
    const [row] = await h.sql<{ status: string }[]>`select status from dex.runs where id = ${runId}`;
    return row!.status;
  }

  it("a run timeout that comes due while another run's timeout waits for that run's lock still ends its run", async () => {
    const locked = await start();
    const later = await start();
    const held = await holdRunLock(h, locked);
    try {
      await h.sql`update dex.timers set fire_at = now() - interval '1 second' where run_id = ${locked} and kind = 'run_timeout'`;
      await waitFor(async () => (await serverLockWaiters(h)) > 0, { message: "the locked run's timeout to wait for its lock" });
      // Due after the batch holding the locked run started.
      await h.sql`update dex.timers set fire_at = now() where run_id = ${later} and kind = 'run_timeout'`;
      await waitFor(async () => (await status(later)) === "TIMED_OUT", {
        timeoutMs: 10_000,
        message: "a run timeout due later to end while one run's lock is held (the in-flight batch ignores it)",
      });
    } finally {
      await held.release();
    }
  });
});
