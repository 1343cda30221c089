/**
 * An update accepted before the server is killed (SIGKILL, no graceful shutdown) is answered by the
 * next server on the same database: the caller's UpdateRun is retried with the same update id and
 * resumes the wait, the handler's activity runs again (at least once), and history records the
 * update once (decision 0024).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient, type WorkflowContext } from "@dex/sdk";
import { freePort } from "@dex/server";
import { createTestDatabase, E2E_TEST_TIMEOUT_MS, type TestDatabase } from "@dex/testing";
import { createDefaultQueues, startWorkers } from "../support/process-workers.js";
import { startServerProcess, type ServerProcess } from "../support/server-process.js";

let server: ServerProcess | undefined;
let killed = false;

const activities = {
  async price(sku: string) {
    if (!killed) {
      // Crash the server while the accepted update's handler waits for this activity.
      killed = true;
      server!.child.kill("SIGKILL");
      await server!.exited;
    }
    return sku.length;
  },
};

async function shop(ctx: WorkflowContext) {
  const acts = ctx.activities<typeof activities>({ startToCloseTimeout: "2s", retry: { initialInterval: "100ms" } });
  let closed = false;
  ctx.setUpdateHandler("add", async (sku: string) => ({ sku, price: await acts.price(sku) }));
  ctx.setUpdateHandler("close", () => {
    closed = true;
  });
  await ctx.condition(() => closed);
  await ctx.allHandlersFinished();
  return "closed";
}

describe("server killed between an update's acceptance and its completion", { timeout: E2E_TEST_TIMEOUT_MS }, () => {
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

  it("the caller gets the handler's answer from the next server, and history records the update once", async () => {
    server = await startServerProcess({ databaseUrl: db.url, port });
    const client = createClient({ address: server.address });
    await createDefaultQueues(client);
    const workers = startWorkers(server.address, { workflows: { shop }, activities });
    try {
      const handle = await client.start(shop, { instanceId: "update-crash" });
      const answer = handle.update("add", "teapot", { updateId: "add-teapot" });
      answer.catch(() => {});
      const firstServer = server;
      await firstServer.exited;
      expect(killed).toBe(true);
      server = await startServerProcess({ databaseUrl: db.url, port });

      expect(await answer).toEqual({ sku: "teapot", price: 6 });
      await handle.update("close", undefined);
      expect(await handle.result()).toBe("closed");
      const history = await handle.history();
      const ofUpdate = history.filter(
        (e) => (e.attributes.case === "updateAccepted" || e.attributes.case === "updateCompleted") && e.attributes.value.updateId === "add-teapot",
      );
      expect(ofUpdate.map((e) => e.attributes.case)).toEqual(["updateAccepted", "updateCompleted"]);
      expect(history.filter((e) => e.attributes.case === "activityScheduled")).toHaveLength(1);
    } finally {
      await workers.shutdown();
      client.close();
      server.child.kill("SIGTERM");
      await server.exited;
    }
  });
});
