/**
 * `dex health` and the CLI's words for a database outage, as a user runs them: the compiled `dex`
 * as a process against a real server whose path to Postgres a TCP gate can cut.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, startServer, type DexServer } from "@dex/server";
import { createTestDatabase, waitFor, type TestDatabase } from "@dex/testing";
import { DEFAULT_QUEUES, quietLogger } from "../support/harness.js";
import { runDex } from "../support/server-process.js";
import { startTcpGate, type TcpGate } from "../support/tcp-gate.js";

describe("dex health", () => {
  let db: TestDatabase;
  let gate: TcpGate;
  let server: DexServer;

  beforeAll(async () => {
    db = await createTestDatabase();
    const url = new URL(db.url);
    gate = await startTcpGate(`${url.hostname}:${url.port}`);
    const [host, port] = gate.address.split(":");
    url.hostname = host!;
    url.port = port!;
    server = await startServer({
      databaseUrl: url.toString(),
      port: 0,
      ensureQueues: DEFAULT_QUEUES,
      logger: quietLogger,
      databaseProbeIntervalMs: 200,
    });
  });

  afterAll(async () => {
    gate?.open();
    await server?.close();
    await gate?.close();
    await db?.drop();
  });

  it("exits 0 and prints SERVING for a serving server, its services, and as JSON", async () => {
    const plain = await runDex(["health", "--address", server.address]);
    expect(plain).toMatchObject({ code: 0, stdout: "SERVING\n", stderr: "" });
    const service = await runDex(["health", "--address", server.address, "--service", "dex.v1.WorkerService"]);
    expect(service).toMatchObject({ code: 0, stdout: "SERVING\n" });
    const json = await runDex(["health", "--address", server.address, "--json"]);
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout)).toEqual({ address: server.address, service: "", status: "SERVING" });
  });

  it("exits 1 for a service the server does not serve", async () => {
    const unknown = await runDex(["health", "--address", server.address, "--service", "no.such.Service"]);
    expect(unknown.code).toBe(1);
    expect(unknown.stdout).toBe("SERVICE_UNKNOWN\n");
    expect(unknown.stderr).toMatch(/does not serve "no.such.Service"/);
  });

  it("exits 3 when nothing listens", async () => {
    const nobody = `127.0.0.1:${await freePort()}`;
    const result = await runDex(["health", "--address", nobody]);
    expect(result.code).toBe(3);
    expect(result.stdout).toBe("");
    expect(result.stderr.trim().split("\n")).toHaveLength(1);
    expect(result.stderr).toMatch(new RegExp(`^dex: no answer from the dex server at ${nobody} \\(`));
  });

  it("exits 1 with NOT_SERVING while the server cannot reach Postgres, and says so for other commands", async () => {
    gate.shut();
    try {
      const down = await waitFor(
        async () => {
          const result = await runDex(["health", "--address", server.address]);
          return result.code === 1 ? result : undefined;
        },
        { message: "dex health to exit 1" },
      );
      expect(down.stdout).toBe("NOT_SERVING\n");
      expect(down.stderr).toMatch(/is up but not serving: it cannot reach its database/);

      // Any client command: one line naming the database, not "is the server running?".
      const list = await runDex(["workflow", "list", "--address", server.address]);
      expect(list.code).toBe(1);
      expect(list.stderr.trim().split("\n")).toHaveLength(1);
      expect(list.stderr).toMatch(new RegExp(`^dex: the dex server at ${server.address} is up but cannot reach its database`));
    } finally {
      gate.open();
    }
    await waitFor(async () => (await runDex(["health", "--address", server.address])).code === 0, { message: "dex health to exit 0 again" });
  });
});
