/**
 * A failed activity attempt is logged by the activity worker at WARN, naming the run, the
 * activity, the attempt and the error: the workflow only ever sees the last failure, so the
 * attempts before it are visible in this log or nowhere.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startServer, type DexServer } from "@dex/server";
import { createTestDatabase, waitFor, type TestDatabase } from "@dex/testing";
import { ApplicationFailure, type ActivityContext, createActivityWorker, createClient, createWorkflowWorker, type Client, type Worker, type WorkflowContext } from "../src/index.js";
import { recordingLogger } from "./connection-support.js";

const activities = {
  async flaky(_input: undefined, ctx: ActivityContext) {
    if (ctx.info.attempt === 1) throw new Error("the warehouse API answered 503");
    if (ctx.info.attempt === 2) throw ApplicationFailure.nonRetryable("the SKU does not exist", "UnknownSku");
    return "unreachable";
  },
};

async function order(ctx: WorkflowContext) {
  const acts = ctx.activities<typeof activities>({ startToCloseTimeout: "30s", retry: { initialInterval: "10ms", maximumAttempts: 5 } });
  try {
    return await acts.flaky();
  } catch {
    return "gave up";
  }
}

describe("activity attempt failures", () => {
  let db: TestDatabase;
  let server: DexServer;
  let client: Client;
  const workers: Worker[] = [];
  const { logger, lines } = recordingLogger();

  beforeAll(async () => {
    db = await createTestDatabase();
    const queues = [{ type: "workflow" as const, name: "default" }, { type: "activity" as const, name: "default" }];
    server = await startServer({ databaseUrl: db.url, port: 0, ensureQueues: queues, logger: recordingLogger().logger });
    client = createClient({ address: server.address });
    workers.push(
      createWorkflowWorker({ address: server.address, taskQueue: "default", workflows: { order }, logger: recordingLogger().logger }),
      createActivityWorker({ address: server.address, taskQueue: "default", activities, logger }),
    );
    for (const worker of workers) worker.start();
  });
  afterAll(async () => {
    await Promise.all(workers.map((w) => w.shutdown()));
    client?.close();
    await server?.close();
    await db?.drop();
  });

  it("are logged at WARN with the run id, activity name, attempt number and message", async () => {
    const handle = await client.start(order, { instanceId: "order-1" });
    expect(await handle.result()).toBe("gave up");
    const failures = await waitFor(() => {
      const found = lines.filter((l) => l.level === "warn" && l.fields?.["activityName"] === "flaky");
      return found.length === 2 && found;
    }, { message: "two logged attempt failures" });
    expect(failures.map((l) => l.fields)).toEqual([
      expect.objectContaining({ runId: handle.runId, workflowName: "order", activityName: "flaky", attempt: 1, error: "the warehouse API answered 503" }),
      expect.objectContaining({ runId: handle.runId, workflowName: "order", activityName: "flaky", attempt: 2, error: "the SKU does not exist" }),
    ]);
    // The message alone says it too, for a console logger that prints no fields.
    expect(failures[0]!.message).toBe(`activity "flaky" attempt 1 of run ${handle.runId} failed: the warehouse API answered 503`);
    expect(failures[1]!.message).toBe(`activity "flaky" attempt 2 of run ${handle.runId} failed (non-retryable): the SKU does not exist`);
  });
});
