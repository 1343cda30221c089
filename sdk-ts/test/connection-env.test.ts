/**
 * The SDK follows the environment: DEX_ADDRESS, DEX_TLS_* and DEX_API_KEY when the options do not
 * say, read when a client or worker is created; and the gRPC target built from one or several
 * addresses. The last test runs a workflow through a client and workers given no address at all.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startServer, type DexServer } from "@dex/server";
import { createTestDatabase, type TestDatabase } from "@dex/testing";
import { createActivityWorker, createClient, createWorkflowWorker, type WorkflowContext } from "../src/index.js";
import { resolveConnection } from "../src/client/environment.js";
import { clientRetryable, isTransient, retryPolicy } from "../src/client/retry.js";
import { channelTarget } from "../src/client/target.js";
import { DexError } from "../src/index.js";
import { recordingLogger } from "./connection-support.js";

describe("gRPC target", () => {
  const target = (...addresses: string[]) => channelTarget(addresses, "address").target;

  it("names one address by its kind, several IPs of one family in one target", () => {
    expect(target("127.0.0.1:7461")).toBe("ipv4:127.0.0.1:7461");
    expect(target("[::1]:7461")).toBe("ipv6:[::1]:7461");
    expect(target("dex.internal:7461")).toBe("dns:dex.internal:7461");
    expect(target("dex.internal")).toBe("dns:dex.internal:7460");
    expect(target("::1")).toBe("ipv6:[::1]:7460");
    expect(target("127.0.0.1:7461", " 127.0.0.2:7462 ")).toBe("ipv4:127.0.0.1:7461,127.0.0.2:7462");
    expect(target("[::1]:1", "[fe80::1]:2")).toBe("ipv6:[::1]:1,[fe80::1]:2");
    expect(target("dns:///dex.internal:7460")).toBe("dns:///dex.internal:7460"); // grpc-js syntax passes through
    expect(channelTarget(["127.0.0.1:1", "127.0.0.1:2"], "address").display).toBe("127.0.0.1:1,127.0.0.1:2");
  });

  it("refuses what one channel cannot take, saying what to give instead", () => {
    expect(() => target("a.internal:1", "b.internal:2")).toThrow(/mixes host names.*one DNS name with a record per server/);
    expect(() => target("127.0.0.1:1", "[::1]:2")).toThrow(/mixes IPv4 and IPv6/);
    expect(() => target("127.0.0.1:99999")).toThrow(/is not host:port/);
    expect(() => target("fe80::1:7460x")).toThrow(/is not host:port|in brackets/);
    expect(() => channelTarget([" ", ""], "DEX_ADDRESS")).toThrow(/DEX_ADDRESS is empty/);
  });
});

describe("what a call retries", () => {
  it("retries an unreachable server, not a refused certificate; a client call also retries ABORTED", () => {
    expect(isTransient(new DexError("UNAVAILABLE", "No connection established. Last error: connect ECONNREFUSED 127.0.0.1:7460"))).toBe(true);
    expect(isTransient(new DexError("UNAVAILABLE", "Last error: Error: unable to verify the first certificate"))).toBe(false);
    expect(isTransient(new DexError("UNAVAILABLE", "SSL routines:ssl3_read_bytes:tlsv13 alert certificate required"))).toBe(false);
    expect(clientRetryable(new DexError("ABORTED", "kept conflicting with concurrent changes to the run; retry the call"))).toBe(true);
    expect(isTransient(new DexError("ABORTED", "new inputs arrived"))).toBe(false);
    expect(clientRetryable(new DexError("RESOURCE_EXHAUSTED", "larger than max"))).toBe(false);
  });

  it("takes durations for the retry option, and false for none", () => {
    expect(retryPolicy(undefined)).toEqual({ maxElapsedMs: 30_000, backoff: { initialMs: 100, maxMs: 1_000 } });
    expect(retryPolicy({ maxElapsed: "2m", maxInterval: "5s" })).toEqual({ maxElapsedMs: 120_000, backoff: { initialMs: 100, maxMs: 5_000 } });
    expect(retryPolicy(false).maxElapsedMs).toBe(0);
    expect(() => retryPolicy({ maxElapsed: "soon" })).toThrow(/invalid duration "soon"/);
  });
});

describe("settings from the environment", () => {
  let dir: string;
  let ca: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "dex-env-"));
    ca = join(dir, "ca.pem");
    writeFileSync(ca, "-----BEGIN CERTIFICATE-----\nnot checked here\n-----END CERTIFICATE-----\n");
    writeFileSync(join(dir, "not-pem.txt"), "hello");
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("uses DEX_ADDRESS (comma-separated), DEX_API_KEY and the DEX_TLS_* files when the options do not say", () => {
    const resolved = resolveConnection({}, { DEX_ADDRESS: "127.0.0.1:7461,127.0.0.1:7462", DEX_API_KEY: "dex_k", DEX_TLS_CA: ca, DEX_TLS_SERVER_NAME: "dex.internal" });
    expect(resolved.target.target).toBe("ipv4:127.0.0.1:7461,127.0.0.1:7462");
    expect(resolved.apiKey).toBe("dex_k");
    expect(resolved.tls?.serverName).toBe("dex.internal");
    expect(String(resolved.tls?.ca)).toContain("BEGIN CERTIFICATE");
    expect(resolveConnection({}, { DEX_TLS: "1" }).tls).toEqual({});
  });

  it("lets every option win over its variable, tls: false included", () => {
    const env = { DEX_ADDRESS: "127.0.0.1:1", DEX_API_KEY: "dex_env", DEX_TLS: "true" };
    const resolved = resolveConnection({ address: ["127.0.0.1:2"], apiKey: "dex_option", tls: false }, env);
    expect(resolved.target.target).toBe("ipv4:127.0.0.1:2");
    expect(resolved.apiKey).toBe("dex_option");
    expect(resolved.tls).toBeUndefined();
  });

  it("falls back to 127.0.0.1:7460 and plaintext; empty variables count as unset", () => {
    const resolved = resolveConnection({}, { DEX_ADDRESS: "", DEX_TLS_CA: "", DEX_API_KEY: "" });
    expect(resolved.target.target).toBe("ipv4:127.0.0.1:7460");
    expect(resolved.tls).toBeUndefined();
    expect(resolved.apiKey).toBeUndefined();
  });

  it("names the variable when its file or pairing is wrong", () => {
    expect(() => resolveConnection({}, { DEX_TLS_CA: join(dir, "missing.pem") })).toThrow(/cannot read DEX_TLS_CA file .*missing\.pem: no such file/);
    expect(() => resolveConnection({}, { DEX_TLS_CA: join(dir, "not-pem.txt") })).toThrow(/DEX_TLS_CA file .* is not PEM/);
    expect(() => resolveConnection({}, { DEX_TLS_CLIENT_CERT: ca })).toThrow(/DEX_TLS_CLIENT_KEY .* is not/);
    expect(() => resolveConnection({}, { DEX_ADDRESS: "a.internal:1,b.internal:2" })).toThrow(/DEX_ADDRESS: .*mixes host names/);
  });
});

async function greet(ctx: WorkflowContext, name: string) {
  return ctx.activities<{ hello(name: string): Promise<string> }>({ startToCloseTimeout: "30s" }).hello(name);
}

describe("a client and workers given no address", () => {
  let db: TestDatabase;
  let server: DexServer;
  const saved = process.env.DEX_ADDRESS;
  beforeAll(async () => {
    db = await createTestDatabase();
    server = await startServer({ databaseUrl: db.url, port: 0, ensureQueues: [{ type: "workflow", name: "default" }, { type: "activity", name: "default" }], logger: recordingLogger().logger });
  });
  afterAll(async () => {
    if (saved === undefined) delete process.env.DEX_ADDRESS;
    else process.env.DEX_ADDRESS = saved;
    await server?.close();
    await db?.drop();
  });

  it("reach the server named by DEX_ADDRESS, read when they are created", async () => {
    // Nothing listens on the default address here: only DEX_ADDRESS leads to the server.
    process.env.DEX_ADDRESS = server.address;
    const { logger, lines } = recordingLogger();
    const client = createClient();
    const workflows = createWorkflowWorker({ taskQueue: "default", workflows: { greet }, logger });
    const activities = createActivityWorker({ taskQueue: "default", activities: { hello: async (name: string) => `hello ${name}` }, logger });
    // Read at creation: changing the variable afterwards changes nothing for them.
    process.env.DEX_ADDRESS = "127.0.0.1:1";
    workflows.start();
    activities.start();
    try {
      const handle = await client.start(greet, { instanceId: "env-1", input: "env" });
      expect(await handle.result()).toBe("hello env");
      expect(lines.filter((l) => l.message.includes("polling")).map((l) => l.message).join("\n")).toContain(server.address);
    } finally {
      await Promise.all([workflows.shutdown(), activities.shutdown()]);
      client.close();
    }
  });
});
