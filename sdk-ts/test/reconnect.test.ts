/**
 * A server restart, as workers and callers live it: the server on a port closes, a new one starts
 * on the same port and database. Workers say once that they lost the server and once that they
 * reconnected, then process tasks again; calls made while no server listens (a start, an event, a
 * result) succeed once the new server is up, where a client without retries fails.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startServer, type DexServer } from "@dex/server";
import { createTestDatabase, waitFor, type TestDatabase } from "@dex/testing";
import { createActivityWorker, createClient, createWorkflowWorker, type Client, type Worker, type WorkflowContext } from "../src/index.js";
import { recordingLogger } from "./connection-support.js";

const queues = [
  { type: "workflow" as const, name: "default" },
  { type: "activity" as const, name: "default" },
];

const activities = {
  async double(n: number) {
    return n * 2;
  },
};

async function doubled(ctx: WorkflowContext, n: number) {
  return ctx.activities<typeof activities>({ startToCloseTimeout: "30s" }).double(n);
}

async function approval(ctx: WorkflowContext) {
  return ctx.waitForEvent<{ ok: boolean }>("approval");
}

describe("a server restart on the same port", () => {
  let db: TestDatabase;
  let server: DexServer | undefined;
  let port: number;
  const serverLog = recordingLogger().logger;
  const { logger, lines } = recordingLogger();
  const workers: Worker[] = [];
  const clients: Client[] = [];

  beforeAll(async () => {
    db = await createTestDatabase();
    server = await startServer({ databaseUrl: db.url, port: 0, ensureQueues: queues, logger: serverLog });
    port = server.port;
  });
  afterAll(async () => {
    await Promise.all(workers.map((w) => w.shutdown()));
    for (const client of clients) client.close();
    await server?.close();
    await db?.drop();
  });

  it("is logged by workers once each way, and callers never see it", async () => {
    const address = `127.0.0.1:${port}`;
    workers.push(
      createWorkflowWorker({ address, taskQueue: "default", workflows: { doubled, approval }, logger }),
      createActivityWorker({ address, taskQueue: "default", activities, logger }),
    );
    for (const worker of workers) worker.start();
    const client = createClient({ address });
    const noRetries = createClient({ address, retry: false });
    clients.push(client, noRetries);

    expect(await (await client.start(doubled, { instanceId: "before", input: 1 })).result()).toBe(2);
    const waiting = await client.start(approval, { instanceId: "waiting" });

    await server!.close();
    server = undefined;
    await waitFor(() => lines.filter((l) => l.level === "warn" && /lost the dex server/.test(l.message)).length >= 2, {
      message: "both workers to log the lost server",
    });
    // Proof that no server answers now: the same call without retries fails at once.
    await expect(noRetries.start(doubled, { instanceId: "no-retries", input: 0 })).rejects.toMatchObject({ code: "UNAVAILABLE" });

    // Made while the server is away; they wait in their retries.
    const startDuring = client.start(doubled, { instanceId: "during", input: 21 });
    const sendDuring = waiting.sendEvent("approval", { ok: true });
    const resultDuring = waiting.result();

    server = await startServer({ databaseUrl: db.url, port, ensureQueues: queues, logger: serverLog });

    const handle = await startDuring;
    expect(await handle.result()).toBe(42);
    expect(await sendDuring).toMatchObject({ duplicate: false });
    expect(await resultDuring).toEqual({ ok: true });
    // The retried start made one run.
    expect((await client.list({ instanceId: "during" })).runs).toHaveLength(1);

    await waitFor(() => lines.filter((l) => /reconnected to /.test(l.message)).length >= 2, { message: "both workers to log the reconnection" });
    for (const kind of ["workflow", "activity"]) {
      const lost = lines.filter((l) => l.level === "warn" && l.message.startsWith(`lost the dex server for ${kind} queue "default" at ${address}`));
      const back = lines.filter((l) => l.level === "info" && new RegExp(`^reconnected to ${address} after \\d+\\.\\d s; polling ${kind} queue`).test(l.message));
      expect(lost, `${kind} worker: one loss per outage`).toHaveLength(1);
      expect(back, `${kind} worker: one reconnection per outage`).toHaveLength(1);
    }
    // Nothing logged as an error along the way: an outage is not an error.
    expect(lines.filter((l) => l.level === "error")).toEqual([]);

    // Again with idle queues: the reconnection is logged when a poll is answered, not when a task
    // turns up (a parked poll would otherwise hold the line back for its 20 s).
    await server.close();
    server = undefined;
    const count = (pattern: RegExp) => lines.filter((l) => pattern.test(l.message)).length;
    await waitFor(() => count(/^lost the dex server/) === 4, { message: "both workers to log the second loss" });
    server = await startServer({ databaseUrl: db.url, port, ensureQueues: queues, logger: serverLog });
    await waitFor(() => count(/^reconnected to /) === 4, { message: "both idle workers to log the second reconnection" });
    expect(await (await client.start(doubled, { instanceId: "after", input: 5 })).result()).toBe(10);
  });
});
