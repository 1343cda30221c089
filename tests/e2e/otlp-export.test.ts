/**
 * `dex server` (and `dex dev`, the same way) exports its RPC spans over OTLP/HTTP when the standard
 * OTEL_* variables say so, and only then: a collector stand-in (a plain HTTP server taking POST
 * /v1/traces) receives the span of a call made with a `traceparent`, in that trace; a server
 * started without OTEL_* sends nothing. Decision 0030.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { E2E_TEST_TIMEOUT_MS, createTestDatabase, waitFor, type TestDatabase } from "@dex/testing";
import { freePort } from "@dex/server";
import { createClient } from "@dex/sdk";
import { dexCommand, startServerProcess, type ServerProcess } from "../support/server-process.js";
import { startProcess } from "../support/spawned.js";

describe("OTLP export from dex server", { timeout: E2E_TEST_TIMEOUT_MS }, () => {
  let db: TestDatabase;
  let collector: Server;
  let endpoint: string;
  const bodies: Buffer[] = [];
  const servers: Array<Pick<ServerProcess, "child">> = [];

  beforeAll(async () => {
    db = await createTestDatabase();
    collector = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (chunk: Buffer) => chunks.push(chunk));
      req.on("end", () => {
        if (req.method === "POST" && req.url === "/v1/traces") bodies.push(Buffer.concat(chunks));
        res.writeHead(200, { "content-type": "application/x-protobuf" }).end();
      });
    });
    await new Promise<void>((resolve) => collector.listen(0, "127.0.0.1", resolve));
    endpoint = `http://127.0.0.1:${(collector.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    for (const server of servers) server.child.kill("SIGKILL");
    await new Promise((resolve) => collector?.close(resolve));
    await db?.drop();
  });

  async function callWithTraceparent(address: string, traceId: string): Promise<void> {
    const client = createClient({ address });
    try {
      await client.raw.client.listRuns({}, { metadata: { traceparent: `00-${traceId}-00f067aa0ba902b7-01` } });
    } finally {
      client.close();
    }
  }

  it("sends the span of a traced call to the OTLP endpoint, in the caller's trace", async () => {
    const server = await startServerProcess({
      databaseUrl: db.url,
      port: await freePort(),
      env: { OTEL_EXPORTER_OTLP_ENDPOINT: endpoint, OTEL_SERVICE_NAME: "dex-under-test" },
    });
    servers.push(server);
    const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
    await callWithTraceparent(server.address, traceId);
    // SIGTERM flushes the batch at once (the batch processor's own delay is 5 s).
    server.child.kill("SIGTERM");
    expect(await server.exited).toBe(0);
    const body = await waitFor(() => bodies.find((b) => b.includes("dex.v1.ClientService/ListRuns")), { message: "the ListRuns span at the collector" });
    expect(body.includes(Buffer.from(traceId, "hex"))).toBe(true);
    expect(body.includes("dex-under-test")).toBe(true);
  });

  it("sends nothing when no OTEL_* variable turns tracing on", async () => {
    bodies.length = 0;
    const server = await startServerProcess({ databaseUrl: db.url, port: await freePort() });
    servers.push(server);
    await callWithTraceparent(server.address, "5bf92f3577b34da6a3ce929d0e0e4736");
    server.child.kill("SIGTERM");
    expect(await server.exited).toBe(0);
    // The server has exited, so nothing it buffered can arrive later: the collector got nothing.
    expect(bodies).toEqual([]);
  });

  it("sends the span of a traced call from dex dev too", async () => {
    bodies.length = 0;
    const port = await freePort();
    const dev = await startProcess([...dexCommand, "dev", "--port", String(port), "--metrics-port", "off", "--ui-port", "off"], /press Ctrl-C/, {
      env: { OTEL_EXPORTER_OTLP_ENDPOINT: endpoint, OTEL_SERVICE_NAME: "dex-dev-under-test" },
    });
    servers.push(dev);
    const traceId = "6bf92f3577b34da6a3ce929d0e0e4736";
    await callWithTraceparent(`127.0.0.1:${port}`, traceId);
    dev.child.kill("SIGTERM");
    expect(await dev.exited).toBe(0);
    const body = await waitFor(() => bodies.find((b) => b.includes("dex-dev-under-test")), { message: "dex dev's spans at the collector" });
    expect(body.includes("dex.v1.ClientService/ListRuns")).toBe(true);
    expect(body.includes(Buffer.from(traceId, "hex"))).toBe(true);
  });
});
