/**
 * `dex workflow result --wait` is what a script waits on: a server restart while it waits must not
 * end it (exit 1 read as "the command failed"). The CLI's long poll is parked on a real `dex server`
 * process, the server is stopped and a new one started on the same port, and the run then completes.
 */
import { spawn } from "node:child_process";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient, createWorkflowWorker, type Client, type Worker, type WorkflowContext } from "@dex/sdk";
import { freePort } from "@dex/server";
import { createTestDatabase, waitFor, type TestDatabase } from "@dex/testing";
import { createDefaultQueues } from "../support/process-workers.js";
import { dexCommand, repoRoot, startServerProcess, type ServerProcess } from "../support/server-process.js";

const exec = promisify(execFile);

async function quick(_ctx: WorkflowContext) {
  return "done";
}

/** Whether process `pid` holds an established TCP connection to `port` (its long poll is in flight). */
async function connectedTo(pid: number, port: number): Promise<boolean> {
  const { stdout } = await exec("ss", ["-Htnp", "state", "established", `( dport = :${port} )`]);
  return stdout.includes(`pid=${pid},`);
}

describe("dex workflow result --wait", () => {
  let db: TestDatabase;
  let server: ServerProcess | undefined;
  let client: Client | undefined;
  let worker: Worker | undefined;

  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    await worker?.shutdown();
    client?.close();
    server?.child.kill("SIGKILL");
    await db?.drop();
  });

  it("rides through a server restart and exits 0 once the run completes", async () => {
    const port = await freePort();
    const address = `127.0.0.1:${port}`;
    server = await startServerProcess({ databaseUrl: db.url, port });
    client = createClient({ address });
    await createDefaultQueues(client);
    await client.start(quick, { instanceId: "restart-wait" }); // no worker yet: the run waits

    const cli = spawn(process.execPath, [...dexCommand, "workflow", "result", "restart-wait", "--wait", "--address", address], { cwd: repoRoot });
    let stdout = "";
    let stderr = "";
    cli.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
    cli.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    const exited = new Promise<number | null>((resolve) => cli.on("exit", resolve));
    await waitFor(() => connectedTo(cli.pid!, port), { message: "the CLI's long poll to reach the server" });

    server.child.kill("SIGTERM");
    expect(await server.exited).toBe(0);
    server = await startServerProcess({ databaseUrl: db.url, port });
    worker = createWorkflowWorker({ address, taskQueue: "default", workflows: { quick } });
    worker.start();

    expect(await exited, stderr).toBe(0);
    expect(stdout).toMatch(/status:\s+COMPLETED/);
  });
});
