/**
 * grpc.health.v1 follows the database: NOT_SERVING while the server cannot reach Postgres (the
 * path refused, or silent), SERVING again once it can, each transition logged once. The server
 * reaches Postgres through a proxy the test controls; nothing is mocked.
 */
import { createServer, connect, type Server, type Socket } from "node:net";
import * as grpc from "@grpc/grpc-js";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { DexError } from "@dex/proto";
import { createTestDatabase, waitFor, type TestDatabase } from "@dex/testing";
import type { Logger } from "../src/index.js";
import { serveDatabase, type Harness } from "./helpers.js";

describe("health follows the database", () => {
  let db: TestDatabase;
  let proxy: PostgresProxy;
  let h: Harness;
  const logs: Array<{ level: string; msg: string }> = [];

  beforeAll(async () => {
    db = await createTestDatabase();
    const target = new URL(db.url);
    proxy = await startPostgresProxy(target.hostname, Number(target.port));
    const viaProxy = new URL(db.url);
    viaProxy.hostname = "127.0.0.1";
    viaProxy.port = String(proxy.port);
    h = await serveDatabase({ ...db, url: viaProxy.toString() }, {
      logger: recordingLogger(logs),
      // Short, so the silent case fails its probes (and the test) sooner; the defaults are 2 s and 3 s.
      databaseProbeIntervalMs: 200,
      databaseProbeTimeoutMs: 1_000,
      // A call stuck on the silent path is cut off by the watchdog well within the test's deadline.
      statementTimeoutMs: 2_000,
      stallMarginMs: 500,
    });
  });

  afterEach(() => proxy.restore());

  afterAll(async () => {
    await h?.close();
    await proxy?.close();
    await db?.drop();
  });

  for (const outage of ["refused", "silent"] as const) {
    it(`answers NOT_SERVING while the path to Postgres is ${outage}, SERVING once it is back`, async () => {
      expect(await healthStatus(h.server.address)).toBe("SERVING");
      const before = logs.length;
      proxy[outage === "refused" ? "refuse" : "blackHole"]();
      // No call is made: an idle server must notice on its own.
      await waitFor(async () => (await healthStatus(h.server.address)) === "NOT_SERVING", { message: "NOT_SERVING" });
      expect(await healthStatus(h.server.address, "dex.v1.ClientService")).toBe("NOT_SERVING");
      expect(await healthStatus(h.server.address, "dex.v1.WorkerService")).toBe("NOT_SERVING");
      if (outage === "refused") {
        // What a caller sees meanwhile, and what the CLI turns into "cannot reach its database".
        const err = await h.client.listRuns({ pageSize: 1 }).then(() => undefined, (e: unknown) => e);
        expect(err).toBeInstanceOf(DexError);
        expect((err as DexError).code).toBe("UNAVAILABLE");
        expect((err as DexError).message).toMatch(/database is unavailable/);
      }

      proxy.restore();
      await waitFor(async () => (await healthStatus(h.server.address)) === "SERVING", { message: "SERVING again" });
      expect(await healthStatus(h.server.address, "dex.v1.TaskQueueService")).toBe("SERVING");
      await waitFor(() => h.client.listRuns({ pageSize: 1 }).then(() => true), { message: "calls to work again" });
      const transitions = logs.slice(before).filter((l) => /health checks answer/.test(l.msg));
      expect(transitions).toEqual([
        { level: "warn", msg: "database unreachable; health checks answer NOT_SERVING until it answers again" },
        { level: "info", msg: "database reachable again; health checks answer SERVING" },
      ]);
    });
  }
});

/** grpc.health.v1.Health/Check by hand: the request is field 1 (service), the answer field 1 (status). */
async function healthStatus(address: string, service = ""): Promise<string> {
  const channel = new grpc.Client(address, grpc.credentials.createInsecure());
  const name = Buffer.from(service);
  const request = service ? Buffer.concat([Buffer.from([0x0a, name.length]), name]) : Buffer.alloc(0);
  try {
    const response = await new Promise<Buffer>((resolve, reject) =>
      channel.makeUnaryRequest(
        "/grpc.health.v1.Health/Check",
        (b: Buffer) => b,
        (b: Buffer) => b,
        request,
        { deadline: Date.now() + 10_000 },
        (err, value) => (err ? reject(err) : resolve(value!)),
      ),
    );
    const status = response.length === 0 ? 0 : response[1]!;
    return ["UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"][status] ?? String(status);
  } finally {
    channel.close();
  }
}

function recordingLogger(into: Array<{ level: string; msg: string }>): Logger {
  const log = (level: string) => (msg: string) => void into.push({ level, msg });
  return { debug: () => {}, info: log("info"), warn: log("warn"), error: log("error") };
}

interface PostgresProxy {
  readonly port: number;
  /** Every connection cut, new ones refused: Postgres down or restarting. */
  refuse(): void;
  /** Nothing forwarded either way and nothing closed: a partition, or a firewall dropping packets. */
  blackHole(): void;
  /** Forward again; after a black hole, every connection that lived through it is cut. */
  restore(): void;
  close(): Promise<void>;
}

/**
 * A TCP forwarder to Postgres with the two ways a path fails. (tests/support/tcp-gate.ts only
 * refuses; a silent path is the case a probe without its own timeout would never report.)
 */
async function startPostgresProxy(host: string, port: number): Promise<PostgresProxy> {
  let mode: "open" | "refuse" | "blackHole" = "open";
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    sockets.add(client);
    client.on("close", () => sockets.delete(client));
    client.on("error", () => client.destroy());
    if (mode === "refuse") return void client.destroy();
    if (mode === "blackHole") return void client.pause();
    const backend = connect(port, host);
    sockets.add(backend);
    backend.on("close", () => sockets.delete(backend));
    const cut = () => {
      client.destroy();
      backend.destroy();
    };
    client.on("error", cut).on("close", cut);
    backend.on("error", cut).on("close", cut);
    // Forward only while open: in a black hole bytes are read and dropped, neither side hears a thing.
    client.on("data", (chunk: Buffer) => void (mode === "open" && backend.write(chunk)));
    backend.on("data", (chunk: Buffer) => void (mode === "open" && client.write(chunk)));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as { port: number }).port,
    refuse() {
      mode = "refuse";
      for (const socket of sockets) socket.destroy();
    },
    blackHole() {
      mode = "blackHole";
    },
    restore() {
      // Bytes dropped in a black hole leave every connection that lived through it out of step
      // with Postgres: cut them all, as a firewall that forgot the flows answers with a RST.
      if (mode === "blackHole") for (const socket of sockets) socket.destroy();
      mode = "open";
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
