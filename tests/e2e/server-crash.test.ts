import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient, type ActivityContext, type WorkflowContext } from "@dex/sdk";
import { freePort } from "@dex/server";
import { createTestDatabase, E2E_TEST_TIMEOUT_MS, type TestDatabase } from "@dex/testing";
import { createDefaultQueues, startWorkers } from "../support/process-workers.js";
import { startServerProcess, type ServerProcess } from "../support/server-process.js";

// Executions as the activities saw them; the server may make an activity run
// again after a crash (at least once), but history must record one result.
const executions: Array<{ step: number; attempt: number }> = [];
let server: ServerProcess | undefined;
let killedWhileStepTwoRan = false;

const activities = {
  async step(n: number, ctx: ActivityContext) {
    executions.push({ step: n, attempt: ctx.info.attempt });
    if (n === 2 && !killedWhileStepTwoRan) {
      // Crash the server while this activity is in flight: no graceful shutdown.
      killedWhileStepTwoRan = true;
      server!.child.kill("SIGKILL");
      await server!.exited;
    }
    return n * 10;
  },
};

async function threeSteps(ctx: WorkflowContext) {
  const acts = ctx.activities<typeof activities>({ startToCloseTimeout: "2s", retry: { initialInterval: "100ms" } });
  const results: number[] = [];
  for (const n of [1, 2, 3]) results.push(await acts.step(n));
  return results;
}

describe("server killed mid-workflow", { timeout: E2E_TEST_TIMEOUT_MS }, () => {
  let db: TestDatabase;
  let port: number;
  beforeAll(async () => {
    db = await createTestDatabase();
    port = await freePort();
  });
  afterAll(async () => {
    server?.child.kill("SIGKILL");
    await db?.drop();
  });

  it("a new server on the same database finishes the workflow with each result recorded once", async () => {
    server = await startServerProcess({ databaseUrl: db.url, port });
    const client = createClient({ address: server.address });
    await createDefaultQueues(client);
    const workers = startWorkers(server.address, { workflows: { threeSteps }, activities });
    try {
      const handle = await client.start(threeSteps, { instanceId: "crash-1" });
      // Step 2 kills the server; wait for that, then start a new one on the same port and database.
      const firstServer = server;
      await firstServer.exited;
      expect(killedWhileStepTwoRan).toBe(true);
      server = await startServerProcess({ databaseUrl: db.url, port });

      expect(await handle.result()).toEqual([10, 20, 30]);

      const history = await handle.history();
      const completedSeqs = history
        .filter((e) => e.attributes.case === "activityCompleted")
        .map((e) => (e.attributes.value as { seq: number }).seq);
      expect(completedSeqs.sort()).toEqual([1, 2, 3]);
      expect(history.filter((e) => e.attributes.case === "activityScheduled")).toHaveLength(3);
      expect(history.map((e) => Number(e.sequence))).toEqual(history.map((_, i) => i + 1));
      expect(new Set(executions.map((e) => e.step))).toEqual(new Set([1, 2, 3]));
    } finally {
      await workers.shutdown();
      client.close();
      server.child.kill("SIGTERM");
      await server.exited;
    }
  });
});
