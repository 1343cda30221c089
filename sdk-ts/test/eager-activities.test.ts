/**
 * Eager activity dispatch end to end: a real worker process (fixtures/eager-worker.ts) runs a
 * workflow worker and an activity worker on the default queues against a real server. With eager
 * dispatch on (the default), every activity of a lone workflow comes back in the completion that
 * schedules it: the server's eager counter counts each, and no activity poll hands out a task.
 * With it off, the same workflows complete through polls.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { silentLogger, startServer } from "@dex/server";
import { createTestDatabase, waitFor, type TestDatabase } from "@dex/testing";
import { createClient, type Client } from "../src/index.js";
import { eagerWorkflow, MAX_CONCURRENT_ACTIVITIES } from "./fixtures/eager.js";

const repoRoot = fileURLToPath(new URL("../../", import.meta.url));
const fixture = fileURLToPath(new URL("./fixtures/eager-worker.ts", import.meta.url));

/** Spawns the worker process; resolves once it says its workers started. */
function startWorkerProcess(address: string, eager: boolean): Promise<{ child: ChildProcess; output(): string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", "--conditions", "dex-source", fixture], {
      cwd: repoRoot,
      env: { ...process.env, DEX_ADDRESS: address, DEX_TEST_EAGER: eager ? "1" : "0" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes("workers started")) resolve({ child, output: () => output });
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", onData);
    child.on("exit", (code) => reject(new Error(`worker process exited with ${code}:\n${output}`)));
  });
}

async function stopWorkerProcess(p: { child: ChildProcess } | undefined): Promise<void> {
  if (!p || p.child.exitCode !== null) return;
  const exited = new Promise((r) => p.child.once("exit", r));
  p.child.kill("SIGTERM");
  await exited;
}

describe("eager activity dispatch in a worker process", () => {
  let db: TestDatabase;
  let server: Awaited<ReturnType<typeof startServer>>;
  let client: Client;
  let worker: { child: ChildProcess; output(): string } | undefined;

  /** A counter of the server's metrics endpoint (0 when it has no sample yet). */
  async function metric(prefix: string): Promise<number> {
    const text = await (await fetch(`http://${server.metricsAddress}/metrics`)).text();
    const line = text.split("\n").find((l) => l.startsWith(prefix));
    return line ? Number(line.split(" ").at(-1)) : 0;
  }
  const eagerCount = () => metric('dex_tasks_dispatched_eagerly_total{type="activity",queue="default"}');
  const pollsWithTasks = () => metric('dex_polls_total{type="activity",queue="default",result="tasks"}');

  beforeAll(async () => {
    db = await createTestDatabase();
    server = await startServer({
      databaseUrl: db.url,
      port: 0,
      metricsPort: 0,
      ensureQueues: [
        { type: "workflow", name: "default" },
        { type: "activity", name: "default" },
      ],
      logger: silentLogger,
    });
    client = createClient({ address: server.address });
  });

  afterAll(async () => {
    await stopWorkerProcess(worker);
    client?.close();
    await server?.close();
    await db?.drop();
  });

  it("runs the activities eagerly, and through polls with eager dispatch off", { timeout: 120_000 }, async () => {
    worker = await startWorkerProcess(server.address, true);
    // One workflow alone: each activity finds the activity worker's reserved slots free.
    const lone = await client.start(eagerWorkflow, { instanceId: "eager-lone", input: 1 });
    expect((await lone.result()).values).toEqual([2, 4, 8, 10]);
    expect(await eagerCount(), "every activity of the lone workflow went out eagerly").toBe(4);
    expect(await pollsWithTasks(), "no activity poll handed out a task").toBe(0);

    // Several at once: whatever goes eagerly or through polls, every run completes correctly.
    const handles = await Promise.all(Array.from({ length: 8 }, (_, i) => client.start(eagerWorkflow, { instanceId: `eager-many-${i}`, input: i })));
    const results = await Promise.all(handles.map((h) => h.result()));
    expect(results.map((r) => r.values)).toEqual(Array.from({ length: 8 }, (_, i) => [2 * i, 4 * i, 8 * i, 8 * i + 2]));
    // 8 runs want up to 16 attempts at once: polls and eager tasks together stay within the worker's slots.
    expect(Math.max(...results.map((r) => r.mostRunning)), "attempts running at once in the worker process").toBeLessThanOrEqual(MAX_CONCURRENT_ACTIVITIES);
    const eagerOn = await eagerCount();
    expect(eagerOn).toBeGreaterThan(4);
    await stopWorkerProcess(worker);

    // Eager off: the same workflow, every activity through a poll, none eagerly.
    worker = await startWorkerProcess(server.address, false);
    const pollsBefore = await pollsWithTasks();
    const off = await client.start(eagerWorkflow, { instanceId: "eager-off", input: 3 });
    expect((await off.result()).values).toEqual([6, 12, 24, 26]);
    expect(await eagerCount(), "nothing went out eagerly with eager dispatch off").toBe(eagerOn);
    await waitFor(async () => (await pollsWithTasks()) > pollsBefore, { message: "activity polls to hand out the tasks" });
    const history = await off.history();
    expect(history.filter((e) => e.attributes.case === "activityCompleted")).toHaveLength(4);
  });
});
