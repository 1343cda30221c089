import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient, type ActivityContext, type WorkflowContext } from "@dex/sdk";
import { freePort } from "@dex/server";
import { createTestDatabase, E2E_TEST_TIMEOUT_MS, waitFor, type TestDatabase } from "@dex/testing";
import { createDefaultQueues, startWorkers } from "../support/process-workers.js";
import { startServerProcess, type ServerProcess } from "../support/server-process.js";

// The real time at which the step after the timer ran.
const after: Array<{ runId: string; at: number }> = [];
const activities = {
  async markAfterTimer(_: unknown, ctx: ActivityContext) {
    after.push({ runId: ctx.info.runId, at: Date.now() });
    return "done";
  },
};

async function sleeper(ctx: WorkflowContext, input: { sleep: string }) {
  await ctx.sleep(input.sleep);
  return ctx.activities<typeof activities>().markAfterTimer(null);
}

// A race an event wins: the timer must not fire the run later.
async function raceEventAgainstTimer(ctx: WorkflowContext) {
  const winner = await Promise.race([
    ctx.waitForEvent("go").then(() => "event"),
    ctx.sleep("1h").then(() => "timer"),
  ]);
  return winner;
}

describe("durable timers", { timeout: E2E_TEST_TIMEOUT_MS }, () => {
  let db: TestDatabase;
  let port: number;
  let server: ServerProcess | undefined;
  beforeAll(async () => {
    db = await createTestDatabase();
    port = await freePort();
  });
  afterAll(async () => {
    server?.child.kill("SIGKILL");
    await db?.drop();
  });

  it("fires a 2 s timer after, never before, its due time, across a server restart", async () => {
    server = await startServerProcess({ databaseUrl: db.url, port });
    const client = createClient({ address: server.address });
    await createDefaultQueues(client);
    const workers = startWorkers(server.address, { workflows: { sleeper }, activities });
    try {
      const handle = await client.start(sleeper, { instanceId: "timer-1", input: { sleep: "2s" } });
      const timer = await waitFor(async () => (await handle.describe()).pendingTimers[0], { message: "the timer to start" });
      const due = new Date(timer.fireTime!).getTime();

      // Stop the server (no graceful shutdown) while the timer is pending, and keep it down past the due time.
      server.child.kill("SIGKILL");
      await server.exited;
      await waitFor(() => Date.now() > due + 500, { message: "the due time to pass while the server is down" });
      server = await startServerProcess({ databaseUrl: db.url, port });

      expect(await handle.result()).toBe("done");
      const ran = after.find((a) => a.runId === handle.runId)!;
      expect(ran.at).toBeGreaterThanOrEqual(due);
      const history = await handle.history();
      const fired = history.find((e) => e.attributes.case === "timerFired");
      expect(fired).toBeDefined();
      const firedAt = Number(fired!.time!.seconds) * 1000 + fired!.time!.nanos / 1e6;
      expect(firedAt).toBeGreaterThanOrEqual(due);
    } finally {
      await workers.shutdown();
      client.close();
    }
  });

  it("lets an event win a race against a timer and ends without waiting for the timer", async () => {
    const client = createClient({ address: server!.address });
    const workers = startWorkers(server!.address, { workflows: { raceEventAgainstTimer } });
    try {
      const handle = await client.start(raceEventAgainstTimer, { instanceId: "race-1" });
      await waitFor(async () => (await handle.describe()).pendingTimers.length > 0, { message: "the race's timer" });
      await handle.sendEvent("go");
      expect(await handle.result()).toBe("event");
      const description = await handle.describe();
      expect(description.pendingTimers).toEqual([]);
    } finally {
      await workers.shutdown();
      client.close();
    }
  });
});
