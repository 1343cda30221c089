/**
 * A query of a run deleted after it was asked (decision 0032): the caller hears NOT_FOUND, saying
 * the run was deleted, as soon as a worker of the queue polls; not DEADLINE_EXCEEDED at the end of
 * its timeout (the claim used to take the task and hand the worker nothing).
 */
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DexError, type WorkflowContext } from "@dex/sdk";
import { TaskQueueType } from "@dex/proto";
import { E2E_TEST_TIMEOUT_MS, waitFor } from "@dex/testing";
import { startHarness, type Harness } from "../support/harness.js";

async function waits(ctx: WorkflowContext) {
  ctx.setQueryHandler("state", () => "waiting");
  return ctx.waitForEvent("never");
}

describe("a query of a run deleted while it waits", { timeout: E2E_TEST_TIMEOUT_MS }, () => {
  let h: Harness;
  let sql: postgres.Sql;
  beforeAll(async () => {
    h = await startHarness();
    sql = postgres(h.db.url, { max: 1, onnotice: () => {} });
    await h.client.raw.queues.createTaskQueue({ name: "later", type: TaskQueueType.WORKFLOW });
  });
  afterAll(async () => {
    await sql?.end();
    await h?.close();
  });

  it("answers NOT_FOUND once a worker polls, long before the query's timeout", async () => {
    const handle = await h.client.start(waits, { instanceId: "deleted-while-queried", taskQueue: "later" });
    // A started run's handle always carries its run id.
    const runId = handle.runId!;
    await handle.terminate("ended so it can be deleted");
    // No worker polls "later" yet: the query waits unclaimed. Its timeout is far beyond the waits below.
    let ended: DexError | undefined;
    void handle.query("state", undefined, { timeout: "50s" }).then(
      () => (ended = new DexError("OK", "expected the query to fail")),
      (err: unknown) => (ended = DexError.from(err)),
    );
    await waitFor(async () => (await sql`select 1 from dex.query_tasks where run_id = ${runId}`).length > 0, {
      message: "the query to wait for a worker",
    });
    await h.client.raw.client.deleteRun({ runId });

    h.workflowWorker({ waits }, { taskQueue: "later" });
    const error = await waitFor(() => ended, { message: "the query to end", timeoutMs: 20_000 });
    expect(error.code).toBe("NOT_FOUND");
    expect(error.message).toContain(`run ${runId} was deleted`);
    expect(await sql`select 1 from dex.query_tasks where run_id = ${runId}`).toHaveLength(0);
  });
});
