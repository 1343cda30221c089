/**
 * Several servers on one database, given to the client and workers as a list of addresses (the
 * `address` option, or DEX_ADDRESS separated by commas): calls spread over the servers, and when
 * one server goes away under load, no call fails.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startServer, type DexServer } from "@dex/server";
import { createTestDatabase, waitFor, type TestDatabase } from "@dex/testing";
import { createActivityWorker, createClient, createWorkflowWorker, type Client, type Worker, type WorkflowContext } from "../src/index.js";
import { recordingLogger } from "./connection-support.js";

const activities = {
  async add(input: { a: number; b: number }) {
    return input.a + input.b;
  },
};

async function sum(ctx: WorkflowContext, n: number) {
  return ctx.activities<typeof activities>({ startToCloseTimeout: "30s" }).add({ a: n, b: 1 });
}

async function runsStarted(server: DexServer): Promise<number> {
  const text = await (await fetch(`http://${server.metricsAddress}/metrics`)).text();
  return [...text.matchAll(/^dex_runs_started_total\{[^}]*\} (\d+)/gm)].reduce((total, m) => total + Number(m[1]), 0);
}

describe("two servers on one database", () => {
  let db: TestDatabase;
  const servers: DexServer[] = [];
  const workers: Worker[] = [];
  let client: Client;
  const saved = process.env.DEX_ADDRESS;

  beforeAll(async () => {
    db = await createTestDatabase();
    const queues = [{ type: "workflow" as const, name: "default" }, { type: "activity" as const, name: "default" }];
    for (let i = 0; i < 2; i++) {
      servers.push(await startServer({ databaseUrl: db.url, port: 0, metricsPort: 0, ensureQueues: queues, logger: recordingLogger().logger }));
    }
  });
  afterAll(async () => {
    if (saved === undefined) delete process.env.DEX_ADDRESS;
    else process.env.DEX_ADDRESS = saved;
    await Promise.all(workers.map((w) => w.shutdown()));
    client?.close();
    await Promise.all(servers.map((s) => s.close()));
    await db?.drop();
  });

  it("spread the calls, and lose none when one server closes under load", async () => {
    const addresses = servers.map((s) => s.address);
    const { logger, lines } = recordingLogger();
    client = createClient({ address: addresses });
    workers.push(createWorkflowWorker({ address: addresses, taskQueue: "default", workflows: { sum }, logger }));
    process.env.DEX_ADDRESS = addresses.join(",");
    workers.push(createActivityWorker({ taskQueue: "default", activities, logger }));
    for (const worker of workers) worker.start();

    let completed = 0;
    let next = 0;
    const failures: unknown[] = [];
    let stop = false;
    // Four callers, each starting a run and waiting for its result, over and over.
    const load = Array.from({ length: 4 }, async () => {
      while (!stop) {
        const n = next++;
        try {
          const handle = await client.start(sum, { instanceId: `sum-${n}`, input: n });
          expect(await handle.result()).toBe(n + 1);
          completed++;
        } catch (err) {
          failures.push(err);
        }
      }
    });

    await waitFor(() => completed >= 20, { message: "20 runs through both servers" });
    // Round robin: each server has started some of the runs.
    expect(await runsStarted(servers[0]!)).toBeGreaterThan(0);
    expect(await runsStarted(servers[1]!)).toBeGreaterThan(0);

    const gone = servers.shift()!;
    await gone.close();
    const afterClose = completed;
    await waitFor(() => completed >= afterClose + 20, { message: "20 more runs with one server left", timeoutMs: 30_000 });
    stop = true;
    await Promise.all(load);

    expect(failures).toEqual([]);
    expect(lines.filter((l) => l.level === "error")).toEqual([]);
    // Every run the callers started is there once.
    const listed = await client.list({ pageSize: 1000 });
    expect(new Set(listed.runs.map((r) => r.instanceId)).size).toBe(listed.runs.length);
  });
});
