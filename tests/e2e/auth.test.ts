/**
 * API keys end to end (issue 5): a real `dex server` process requires keys by
 * default; `dex auth` creates, lists and revokes them in the database; the CLI
 * (--api-key, DEX_API_KEY) and the SDK send them; each role is refused what it
 * may not do; a revoked key stops working on the running server within its
 * cache time; `--insecure-no-auth` serves open.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import postgres from "postgres";
import { TaskQueueType } from "@dex/proto";
import { createActivityWorker, createClient, createWorkflowWorker, DexError, type Worker, type WorkflowContext } from "@dex/sdk";
import { freePort } from "@dex/server";
import { createTestDatabase, E2E_TEST_TIMEOUT_MS, waitFor, type TestDatabase } from "@dex/testing";
import { quietLogger } from "../support/harness.js";
import { runDex, startServerProcess, type ServerProcess } from "../support/server-process.js";

type Run = Awaited<ReturnType<typeof runDex>>;

/** A user error: exit 1, nothing on stdout, one `dex: ...` line on stderr matching `pattern`. */
function oneLine(run: Run, pattern: RegExp): void {
  expect({ code: run.code, stdout: run.stdout }).toEqual({ code: 1, stdout: "" });
  expect(run.stderr).toMatch(/^dex: [^\n]*\n$/);
  expect(run.stderr).toMatch(pattern);
}

function ok(run: Run): Run {
  expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: "" });
  return run;
}

const activities = {
  async greet(name: string) {
    return `hello, ${name}`;
  },
};

async function greeting(ctx: WorkflowContext, name: string) {
  return ctx.activities<typeof activities>().greet(name);
}

describe("API keys on `dex server`", { timeout: E2E_TEST_TIMEOUT_MS }, () => {
  let db: TestDatabase;
  let sql: postgres.Sql;
  let server: ServerProcess;
  const keys: Record<"admin" | "client" | "worker" | "orders", string> = { admin: "", client: "", worker: "", orders: "" };
  const auth = (...args: string[]) => runDex(["auth", ...args, "--database-url", db.url]);

  beforeAll(async () => {
    db = await createTestDatabase();
    sql = postgres(db.url, { max: 1, onnotice: () => {} });
    server = await startServerProcess({ databaseUrl: db.url, port: await freePort(), requireApiKeys: true });
  });
  afterAll(async () => {
    server?.child.kill("SIGTERM");
    await server?.exited;
    await sql?.end();
    await db?.drop();
  });

  it("requires keys by default: starts with none, says how to create the first, and refuses calls", async () => {
    expect(server.output()).toContain("authentication: API keys required");
    // The server's JSON log line (stderr), written as it starts listening.
    await waitFor(() => server.output().includes("no API key exists yet") && server.output().includes("dex auth create --name admin --role admin"), {
      message: "the server's hint about creating a key",
    });
    oneLine(await runDex(["workflow", "list", "--address", server.address]), /requires an API key: pass --api-key or set DEX_API_KEY .*dex auth create/);
  });

  it("dex auth creates keys (printed once), lists them without secrets, and says what is wrong in one line", async () => {
    const admin = ok(await auth("create", "--name", "admin", "--role", "admin", "--json"));
    const created = JSON.parse(admin.stdout) as { key: string; name: string; role: string; queues: null; id: string };
    expect(created).toMatchObject({ name: "admin", role: "admin", queues: null });
    expect(created.key).toMatch(new RegExp(`^dex_${created.id}_[0-9a-f]{64}$`));
    keys.admin = created.key;

    const [client, worker, orders] = await Promise.all([
      auth("create", "--name", "app", "--role", "client"),
      auth("create", "--name", "workers", "--role", "worker"),
      auth("create", "--name", "orders-workers", "--role", "worker", "--queue", "orders", "--queue", "orders-2"),
    ]);
    const keyLine = (run: Run) => /^(dex_[0-9a-f]{16}_[0-9a-f]{64})$/m.exec(ok(run).stdout)?.[1] ?? "";
    [keys.client, keys.worker, keys.orders] = [keyLine(client), keyLine(worker), keyLine(orders)];
    expect(client.stdout).toMatch(/^created client key "app" \(id [0-9a-f]{16}\)\n/);
    expect(orders.stdout).toContain("queues orders, orders-2");
    expect(orders.stdout).toContain("only time the key is shown");

    const [listJson, listTable] = await Promise.all([auth("list", "--json"), auth("list")]);
    const listed = JSON.parse(ok(listJson).stdout) as Array<Record<string, unknown>>;
    const byName = (a: unknown[], b: unknown[]) => String(a[0]).localeCompare(String(b[0]));
    expect(listed.map((k) => [k.name, k.role, k.queues, k.revokedAt]).sort(byName)).toEqual([
      ["admin", "admin", null, null],
      ["app", "client", null, null],
      ["orders-workers", "worker", ["orders", "orders-2"], null],
      ["workers", "worker", null, null],
    ]);
    expect(Object.keys(listed[0]!).sort()).toEqual(["createdAt", "id", "name", "queues", "revokedAt", "role"]);
    expect(ok(listTable).stdout).toMatch(/^NAME\s+ROLE\s+QUEUES\s+ID\s+CREATED\s+REVOKED\n/);
    expect(listTable.stdout).toMatch(/orders-workers\s+worker\s+orders,orders-2\s/);
    // No secret anywhere but where it was created, and not in the database either.
    const table = (await sql<{ t: string }[]>`select string_agg(k::text, ' ') as t from dex.api_keys k`)[0]!.t;
    for (const key of Object.values(keys)) {
      const secret = key.split("_")[2]!;
      expect(secret).toHaveLength(64);
      for (const text of [listJson.stdout, listTable.stdout, table]) expect(text).not.toContain(secret.slice(0, 16));
    }

    const [noRole, badRole, taken, clientQueue, unreachable, unknown, unmigrated] = await Promise.all([
      auth("create", "--name", "x"),
      auth("create", "--name", "x", "--role", "root"),
      auth("create", "--name", "app", "--role", "client"),
      auth("create", "--name", "x", "--role", "client", "--queue", "orders"),
      runDex(["auth", "list", "--database-url", "postgres://dex@127.0.0.1:1/dex"]),
      auth("revoke", "nobody"),
      runDex(["auth", "list", "--database-url", db.url.replace(/\/[^/]*$/, "/postgres")]),
    ]);
    oneLine(noRole, /required option '--role <role>' not specified/);
    oneLine(badRole, /--role must be one of worker, client, admin, got "root"/);
    oneLine(taken, /a key named "app" already exists/);
    oneLine(clientQueue, /only worker keys are limited to queues/);
    oneLine(unreachable, /cannot reach the database at postgres:\/\/dex@127\.0\.0\.1:1\/dex/);
    oneLine(unknown, /no key named "nobody"; `dex auth list` shows the keys/);
    oneLine(unmigrated, /dex migrate/);
  }, 120_000); // a dozen CLI processes on a 2-core machine

  it("refuses each role, through the CLI, what it may not do, and serves what it may", async () => {
    const address = ["--address", server.address];
    // `dex server` creates no queues: the admin makes the one the rest use.
    const queueByAdmin = await runDex(["queue", "create", "orders", "--type", "workflow", ...address, "--api-key", keys.admin]);
    expect(ok(queueByAdmin).stdout).toBe("created workflow queue orders\n");
    const [startByClient, listByWorker, queueByClient, listQueuesByClient, startByWorker] = await Promise.all([
      runDex(["workflow", "start", "greeting", "--id", "cli-1", "--queue", "orders", "--json", ...address], { DEX_API_KEY: keys.client }),
      runDex(["workflow", "list", ...address, "--api-key", keys.worker]),
      runDex(["queue", "create", "sneaky", "--type", "workflow", ...address, "--api-key", keys.client]),
      runDex(["queue", "list", "--json", ...address, "--api-key", keys.client]),
      runDex(["workflow", "start", "greeting", "--id", "cli-2", ...address, "--api-key", keys.orders]),
    ]);
    const { runId } = JSON.parse(ok(startByClient).stdout) as { runId: string };
    oneLine(listByWorker, /PERMISSION_DENIED: the API key "workers" has role worker; dex\.v1\.ClientService\/ListRuns needs role client or admin/);
    oneLine(queueByClient, /PERMISSION_DENIED: .*has role client; dex\.v1\.TaskQueueService\/CreateTaskQueue needs role admin/);
    expect((JSON.parse(ok(listQueuesByClient).stdout) as Array<{ name: string }>).map((q) => q.name)).toContain("orders");
    oneLine(startByWorker, /PERMISSION_DENIED: the API key "orders-workers" has role worker; .*StartWorkflow needs role client or admin/);

    const [terminateByClient, badKey, garbage] = await Promise.all([
      runDex(["workflow", "terminate", runId, ...address, "--api-key", keys.client]),
      runDex(["workflow", "list", ...address, "--api-key", `dex_${"0".repeat(16)}_${"0".repeat(64)}`]),
      runDex(["workflow", "list", ...address], { DEX_API_KEY: "two words" }),
    ]);
    oneLine(terminateByClient, /PERMISSION_DENIED: .*TerminateRun needs role admin/);
    oneLine(badKey, /UNAUTHENTICATED: the API key is not valid/);
    oneLine(garbage, /DEX_API_KEY must be the key text/);
    ok(await runDex(["workflow", "terminate", runId, ...address, "--api-key", keys.admin]));
    const describe = ok(await runDex(["workflow", "describe", runId, ...address, "--api-key", keys.client]));
    expect(describe.stdout).toMatch(/status:\s+TERMINATED/);
  }, 120_000);

  it("runs a workflow end to end with the SDK: a client key starts it, a queue-limited worker key runs it", async () => {
    const admin = createClient({ address: server.address, apiKey: keys.admin });
    const client = createClient({ address: server.address, apiKey: keys.client });
    const workers: Worker[] = [];
    try {
      await admin.raw.queues.createTaskQueue({ name: "orders", type: TaskQueueType.ACTIVITY });
      // The workflow worker takes its key from the apiKey option, the activity worker from
      // DEX_API_KEY (the SDK's default), set for its creation only.
      workers.push(createWorkflowWorker({ address: server.address, apiKey: keys.orders, taskQueue: "orders", workflows: { greeting }, logger: quietLogger }));
      const before = process.env.DEX_API_KEY;
      process.env.DEX_API_KEY = keys.orders;
      try {
        workers.push(createActivityWorker({ address: server.address, taskQueue: "orders", activities, logger: quietLogger }));
      } finally {
        if (before === undefined) delete process.env.DEX_API_KEY;
        else process.env.DEX_API_KEY = before;
      }
      workers.forEach((worker) => worker.start());
      const handle = await client.start(greeting, { instanceId: "sdk-1", input: "Ada", taskQueue: "orders" });
      expect(await handle.result()).toBe("hello, Ada");
      // The same client key may not do what only admins or workers may.
      await expect(client.getHandle({ instanceId: "sdk-1" }).terminate("no")).rejects.toMatchObject({ code: "PERMISSION_DENIED" });
      await expect(client.raw.worker.pollActivityTasks({ taskQueue: "orders", workerId: "x" })).rejects.toMatchObject({ code: "PERMISSION_DENIED" });
      expect(() => createClient({ address: server.address, apiKey: "has a space" })).toThrow(/apiKey must be the key text/);
    } finally {
      await Promise.all(workers.map((worker) => worker.shutdown()));
      admin.close();
      client.close();
    }
  });

  it("refuses a key on the running server once it is revoked, within the cache time", async () => {
    const created = ok(await auth("create", "--name", "temp", "--role", "client", "--json"));
    const client = createClient({ address: server.address, apiKey: (JSON.parse(created.stdout) as { key: string }).key });
    try {
      await expect(client.list()).resolves.toMatchObject({ runs: expect.any(Array) });
      const revoked = ok(await auth("revoke", "temp"));
      expect(revoked.stdout).toBe('revoked key "temp"; servers refuse it within 5 s (their key cache)\n');
      const refused = await waitFor(
        () => client.list().then(() => undefined, (err: unknown) => err),
        { message: "the revoked key to be refused" },
      );
      expect(refused).toBeInstanceOf(DexError);
      expect(refused).toMatchObject({ code: "UNAUTHENTICATED", message: expect.stringContaining('"temp" was revoked') });
      expect(ok(await auth("revoke", "temp")).stdout).toMatch(/^key "temp" was already revoked at \d{4}-/);
      const listed = JSON.parse(ok(await auth("list", "--json")).stdout) as Array<{ name: string; revokedAt: string | null }>;
      expect(listed.find((k) => k.name === "temp")?.revokedAt).toMatch(/^\d{4}-/);
    } finally {
      client.close();
    }
  });

  it("serves open with --insecure-no-auth or DEX_INSECURE_NO_AUTH=1, and refuses a DEX_INSECURE_NO_AUTH it cannot read", async () => {
    const ways: Array<{ requireApiKeys?: boolean; env?: Record<string, string> }> = [{}, { requireApiKeys: true, env: { DEX_INSECURE_NO_AUTH: "1" } }];
    for (const how of ways) {
      const open = await startServerProcess({ databaseUrl: db.url, port: await freePort(), ...how });
      const client = createClient({ address: open.address });
      try {
        expect(open.output()).toContain("authentication: none");
        expect((await client.list({ instanceId: "sdk-1" })).runs).toHaveLength(1);
        ok(await runDex(["queue", "list", "--address", open.address]));
      } finally {
        client.close();
        open.child.kill("SIGTERM");
        await open.exited;
      }
    }
    oneLine(
      await runDex(["server", "--port", "0", "--database-url", db.url], { DEX_INSECURE_NO_AUTH: "maybe" }),
      /DEX_INSECURE_NO_AUTH must be 1 \(serve without API keys\) or 0, got "maybe"/,
    );
  });
});
