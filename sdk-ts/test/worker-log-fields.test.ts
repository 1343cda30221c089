/**
 * The SDK's default logger stamps each line with the time, and the workflow worker's lines about a
 * run (a failed workflow task, the workflow's own ctx.log) carry its run id and workflow name.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { startServer, type DexServer } from "@dex/server";
import { createTestDatabase, waitFor, type TestDatabase } from "@dex/testing";
import { createClient, createConsoleLogger, createWorkflowWorker, type Client, type Worker, type WorkflowContext } from "../src/index.js";
import { recordingLogger } from "./connection-support.js";

const ISO_TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z /;

describe("createConsoleLogger", () => {
  it("starts each line with an ISO timestamp, then the prefix, level and message; fields follow", () => {
    const info = vi.spyOn(console, "log").mockImplementation(() => {});
    const warn = vi.spyOn(console, "warn").mockImplementation(() => {});
    try {
      const logger = createConsoleLogger({ prefix: "[dex]" });
      logger.info("polling default");
      logger.warn("task failed", { runId: "r-1", workflowName: "order" });
      logger.debug("not shown at the default level");
      expect(info.mock.calls).toHaveLength(1);
      expect(info.mock.calls[0]![0]).toMatch(new RegExp(`${ISO_TIME.source}\\[dex\\] INFO polling default$`));
      const stamped = Date.parse((info.mock.calls[0]![0] as string).split(" ")[0]!);
      expect(Number.isNaN(stamped)).toBe(false);
      expect(warn.mock.calls[0]![0]).toMatch(new RegExp(`${ISO_TIME.source}\\[dex\\] WARN task failed$`));
      expect(warn.mock.calls[0]![1]).toEqual({ runId: "r-1", workflowName: "order" });

      createConsoleLogger({ timestamps: false }).info("bare");
      expect(info.mock.calls[1]).toEqual(["INFO bare"]);
    } finally {
      info.mockRestore();
      warn.mockRestore();
    }
  });
});

// Fails its first workflow task (a bug, not an ApplicationFailure: the run stays open), then passes.
let buggyAttempts = 0;
async function buggy(ctx: WorkflowContext) {
  ctx.log.info("checking the order");
  if (++buggyAttempts === 1) throw new TypeError("cannot read properties of undefined (reading 'sku')");
  return "fixed";
}

describe("workflow worker log lines about a run", () => {
  let db: TestDatabase;
  let server: DexServer;
  let client: Client;
  let worker: Worker;
  const { logger, lines } = recordingLogger();

  beforeAll(async () => {
    db = await createTestDatabase();
    const queues = [{ type: "workflow" as const, name: "default" }];
    server = await startServer({
      databaseUrl: db.url,
      port: 0,
      ensureQueues: queues,
      logger: recordingLogger().logger,
      workflowTaskRetry: { initialMs: 20, maxMs: 50 },
    });
    client = createClient({ address: server.address });
    worker = createWorkflowWorker({ address: server.address, taskQueue: "default", workflows: { buggy }, logger });
    worker.start();
  });
  afterAll(async () => {
    await worker?.shutdown();
    client?.close();
    await server?.close();
    await db?.drop();
  });

  it("carry the run id and workflow name: the failed task's line and the workflow's own ctx.log", async () => {
    const handle = await client.start(buggy, { instanceId: "buggy-1" });
    expect(await handle.result()).toBe("fixed");
    const failed = await waitFor(() => lines.find((l) => l.level === "error" && l.message.startsWith("workflow task failed")), {
      message: "the failed workflow task's log line",
    });
    expect(failed.fields).toMatchObject({ runId: handle.runId, workflowName: "buggy" });
    const own = lines.filter((l) => l.message === "checking the order");
    expect(own.length).toBeGreaterThanOrEqual(1);
    for (const line of own) expect(line.fields).toMatchObject({ runId: handle.runId, workflowName: "buggy" });
  });
});
