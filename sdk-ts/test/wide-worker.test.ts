/**
 * A worker with more free slots than one poll may ask for (max_tasks is at most 100) still gets
 * work: it asks for 100 at a time. Before, it asked for all its slots, was refused with
 * INVALID_ARGUMENT, and retried the refused poll for ever.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { silentLogger, startServer } from "@dex/server";
import { createTestDatabase, type TestDatabase } from "@dex/testing";
import { createActivityWorker, createClient, createWorkflowWorker, type Client, type Logger, type Worker, type WorkflowContext } from "../src/index.js";

const activities = {
  async double(n: number) {
    return n * 2;
  },
};

async function fanOut(ctx: WorkflowContext, count: number) {
  const acts = ctx.activities<typeof activities>();
  const results = await Promise.all(Array.from({ length: count }, (_, i) => acts.double(i)));
  return results.reduce((sum, n) => sum + n, 0);
}

describe("a worker wider than one poll", () => {
  let db: TestDatabase;
  let server: Awaited<ReturnType<typeof startServer>>;
  let client: Client;
  const workers: Worker[] = [];
  // The first refused poll (the worker logs it) ends the wait for the result at once.
  let onRefused!: (message: string) => void;
  const refused = new Promise<string>((resolve) => (onRefused = resolve));
  const logger: Logger = {
    debug() {},
    info() {},
    warn(message: string) {
      if (/max_tasks|INVALID_ARGUMENT/i.test(message)) onRefused(message);
    },
    error(message: string) {
      if (/max_tasks|INVALID_ARGUMENT/i.test(message)) onRefused(message);
    },
  };

  beforeAll(async () => {
    db = await createTestDatabase();
    server = await startServer({
      databaseUrl: db.url,
      port: 0,
      ensureQueues: [
        { type: "workflow", name: "default" },
        { type: "activity", name: "default" },
      ],
      logger: silentLogger,
    });
    client = createClient({ address: server.address });
    workers.push(
      createWorkflowWorker({ address: server.address, taskQueue: "default", workflows: { fanOut }, maxConcurrentTasks: 150, logger, eagerActivities: false }),
      createActivityWorker({ address: server.address, taskQueue: "default", activities, maxConcurrentActivities: 250, logger }),
    );
    for (const worker of workers) worker.start();
  });

  afterAll(async () => {
    await Promise.all(workers.map((w) => w.shutdown()));
    client?.close();
    await server?.close();
    await db?.drop();
  });

  it("polls at most 100 tasks at a time and runs every activity", async () => {
    const handle = await client.start(fanOut, { instanceId: "wide-1", input: 120 });
    const outcome = await Promise.race([
      handle.result().then((value) => ({ value })),
      refused.then((message) => ({ refused: message })),
    ]);
    expect(outcome).toEqual({ value: 120 * 119 });
  });
});
