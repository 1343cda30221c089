/**
 * client.schedule against a real server and Postgres: a schedule created
 * through the SDK fires, and its workflow completes on a real worker; the
 * handle describes, pauses, triggers, backfills and deletes it.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { silentLogger, startServer, type DexServer } from "@dex/server";
import { createTestDatabase, waitFor, type TestDatabase } from "@dex/testing";
import { createClient, createWorkflowWorker, type Client, type Logger, type Worker, type WorkflowContext } from "../src/index.js";

const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {} };

async function greet(_ctx: WorkflowContext, name: string) {
  return `hello ${name}`;
}

let db: TestDatabase;
let server: DexServer;
let client: Client;
let worker: Worker;

beforeAll(async () => {
  db = await createTestDatabase();
  server = await startServer({
    databaseUrl: db.url,
    port: 0,
    logger: silentLogger,
    ensureQueues: [{ type: "workflow", name: "default" }],
  });
  client = createClient({ address: server.address });
  worker = createWorkflowWorker({ address: server.address, taskQueue: "default", workflows: { greet }, logger: quiet });
  void worker.run();
});

afterAll(async () => {
  await worker?.shutdown();
  client?.close();
  await server?.close();
  await db?.drop();
});

describe("client.schedule", () => {
  it("creates a schedule whose runs complete, and drives it through its handle", async () => {
    const handle = await client.schedule.create({
      scheduleId: "greetings",
      spec: { intervals: [{ everyMs: 1_000 }] },
      action: { workflow: greet, input: "schedule" },
      overlap: "allow-all",
      remainingActions: 2,
    });
    const fired = await waitFor(async () => {
      const d = await handle.describe();
      return d.actionCount >= 2 && d;
    }, { message: "two scheduled actions" });
    expect(fired.remainingActions).toBe(0);
    const action = fired.recentActions[0]!;
    expect(action.instanceId).toBe(`greetings-${action.nominalTime.toISOString()}`);
    expect(await client.getHandle<string>({ runId: action.runId }).result()).toBe("hello schedule");

    await handle.pause("quiet please");
    expect(await handle.describe()).toMatchObject({ paused: true, note: "quiet please", nextActionTimes: [] });
    const triggered = await handle.trigger();
    expect(triggered.runId).toBeDefined();
    expect(await client.getHandle<string>({ runId: triggered.runId! }).result()).toBe("hello schedule");

    const backfill = await handle.backfill({ start: new Date("2026-01-01T00:00:00Z"), end: new Date("2026-01-01T00:00:02Z") });
    expect(backfill).toEqual({ started: 3, buffered: 0, skipped: 0 });

    const listed = await client.schedule.list();
    expect(listed.schedules.map((s) => s.scheduleId)).toContain("greetings");
    await handle.delete();
    await expect(handle.describe()).rejects.toMatchObject({ code: "NOT_FOUND" });
  });

  it("rejects an unknown overlap policy before calling the server", async () => {
    await expect(
      client.schedule.create({ scheduleId: "x", spec: { cron: "* * * * *" }, action: { workflow: "greet" }, overlap: "sometimes" as never }),
    ).rejects.toThrow(/overlap must be one of "skip"/);
  });
});
