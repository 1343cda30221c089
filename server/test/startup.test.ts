import { describe, expect, it } from "vitest";
import * as grpc from "@grpc/grpc-js";
import { createServiceClient, TaskQueueService, TaskQueueType } from "@dex/proto";
import { createEmptyDatabase, createTestDatabase } from "@dex/testing";
import { DEFAULT_PORT, freePort, silentLogger, startServer } from "../src/index.js";

describe("startServer", () => {
  it("refuses an unmigrated database and says to run dex migrate", async () => {
    const db = await createEmptyDatabase();
    try {
      await expect(startServer({ databaseUrl: db.url, port: 0, logger: silentLogger })).rejects.toThrow(/dex migrate/);
    } finally {
      await db.drop();
    }
  });

  it("says so when the database cannot be reached", async () => {
    const port = await freePort();
    await expect(
      startServer({ databaseUrl: `postgres://nobody:secret@127.0.0.1:${port}/dex`, port: 0, logger: silentLogger }),
    ).rejects.toThrow(/cannot reach the database at postgres:\/\/nobody:\*\*\*@127\.0\.0\.1/);
  });

  it("listens on a free port, creates the ensured queues once across restarts, and closes idempotently", async () => {
    expect(DEFAULT_PORT).toBe(7460);
    const db = await createTestDatabase();
    const ensureQueues = [
      { type: "workflow" as const, name: "default" },
      { type: "activity" as const, name: "default" },
    ];
    try {
      for (let i = 0; i < 2; i++) {
        const server = await startServer({ databaseUrl: db.url, port: 0, logger: silentLogger, ensureQueues });
        expect(server.port).toBeGreaterThan(0);
        expect(server.address).toBe(`127.0.0.1:${server.port}`);
        const channel = new grpc.Client(server.address, grpc.credentials.createInsecure());
        const queues = createServiceClient(TaskQueueService, channel);
        const listed = await queues.listTaskQueues({});
        // Ordered by type ("activity" < "workflow"), then name.
        expect(listed.queues.map((q) => [q.type, q.name])).toEqual([
          [TaskQueueType.ACTIVITY, "default"],
          [TaskQueueType.WORKFLOW, "default"],
        ]);
        channel.close();
        await Promise.all([server.close(), server.close()]);
      }
    } finally {
      await db.drop();
    }
  });
});
