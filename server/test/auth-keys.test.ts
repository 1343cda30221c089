/**
 * API keys themselves: creating, listing and revoking them (what `dex auth`
 * calls), the key cache's revocation delay on a fake clock, and what a server
 * says at start when it requires keys and none exists.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DexError } from "@dex/proto";
import { createTestDatabase, type TestDatabase } from "@dex/testing";
import postgres from "postgres";
import { Authenticator } from "../src/engine/authenticator.js";
import { ApiKeyUsageError, createApiKey, listApiKeys, revokeApiKey, startServer, type Logger } from "../src/index.js";
import { clientsWith, codeOf, newKey } from "./auth-support.js";
import { serveDatabase } from "./helpers.js";

describe("API keys in the database", () => {
  let db: TestDatabase;
  let sql: postgres.Sql;
  beforeAll(async () => {
    db = await createTestDatabase();
    sql = postgres(db.url, { max: 2, onnotice: () => {} });
  });
  afterAll(async () => {
    await sql?.end();
    await db?.drop();
  });

  it("creates keys of the documented shape, and lists them without their secrets", async () => {
    const created = await createApiKey(sql, { name: "ci.worker-1", role: "worker", queues: ["orders", "orders", "billing"] });
    expect(created.text).toMatch(/^dex_[0-9a-f]{16}_[0-9a-f]{64}$/);
    expect(created.text.split("_")[1]).toBe(created.key.id);
    expect(created.key).toMatchObject({ name: "ci.worker-1", role: "worker", queues: ["orders", "billing"], revokedAt: null });
    const other = await createApiKey(sql, { name: "ops", role: "admin" });
    expect(other.text).not.toBe(created.text);
    expect(other.key.queues).toBeNull();
    const listed = await listApiKeys(sql);
    expect(listed.map((k) => k.name)).toEqual(expect.arrayContaining(["ci.worker-1", "ops"]));
    expect(JSON.stringify(listed)).not.toContain(created.text.split("_")[2]);
  });

  it("refuses bad names, roles and queues, a queue list on a non-worker key, and a name already used", async () => {
    const bad: Array<[Parameters<typeof createApiKey>[1], RegExp]> = [
      [{ name: "", role: "client" }, /key name must be 1 to 64/],
      [{ name: "has space", role: "client" }, /key name must be/],
      [{ name: "x".repeat(65), role: "client" }, /key name must be/],
      [{ name: "r", role: "root" as never }, /role must be one of worker, client, admin, got "root"/],
      [{ name: "q", role: "client", queues: ["orders"] }, /only worker keys are limited to queues; a client key/],
      [{ name: "q", role: "worker", queues: ["bad queue!"] }, /queue name must be/],
    ];
    for (const [request, message] of bad) {
      await expect(createApiKey(sql, request)).rejects.toThrow(message);
      await expect(createApiKey(sql, request)).rejects.toBeInstanceOf(ApiKeyUsageError);
    }
    await createApiKey(sql, { name: "taken", role: "client" });
    await revokeApiKey(sql, "taken");
    await expect(createApiKey(sql, { name: "taken", role: "admin" })).rejects.toThrow(/a key named "taken" already exists/);
  });

  it("revokes by name once, says so the second time, and refuses an unknown name", async () => {
    await createApiKey(sql, { name: "short-lived", role: "client" });
    const first = await revokeApiKey(sql, "short-lived");
    expect(first.alreadyRevoked).toBe(false);
    expect(first.key.revokedAt).toBeInstanceOf(Date);
    const second = await revokeApiKey(sql, "short-lived");
    expect(second.alreadyRevoked).toBe(true);
    expect(second.key.revokedAt!.getTime()).toBe(first.key.revokedAt!.getTime());
    await expect(revokeApiKey(sql, "never-was")).rejects.toThrow(/no key named "never-was"/);
  });

  it("accepts a revoked key until its cached row expires, and not after", async () => {
    let now = 1_000_000;
    const authenticator = new Authenticator(sql, 5_000, () => now);
    const key = await newKey(sql, "worker", ["orders"]);
    expect(await authenticator.authenticate(key.text)).toMatchObject({ name: key.name, role: "worker", queues: new Set(["orders"]) });
    await revokeApiKey(sql, key.name);
    now += 4_999;
    // Cached: the revocation is not seen yet (the documented delay).
    expect((await authenticator.authenticate(key.text)).name).toBe(key.name);
    now += 2;
    const err = await authenticator.authenticate(key.text).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DexError);
    expect(err).toMatchObject({ code: "UNAUTHENTICATED", message: expect.stringContaining("was revoked") });
    // A wrong secret is refused even while the row is cached.
    const fresh = await newKey(sql, "client");
    await authenticator.authenticate(fresh.text);
    await expect(authenticator.authenticate(`${fresh.text.slice(0, -1)}${fresh.text.endsWith("0") ? "1" : "0"}`)).rejects.toMatchObject({
      code: "UNAUTHENTICATED",
      message: expect.stringContaining("wrong secret"),
    });
  });
});

describe("starting a server", () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    await db?.drop();
  });

  function capture(): { logger: Logger; lines: Array<[string, string]> } {
    const lines: Array<[string, string]> = [];
    const at = (level: string) => (msg: string) => void lines.push([level, msg]);
    return { logger: { debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error") }, lines };
  }

  it("requires keys: with none yet it starts, refuses calls, and logs one line saying how to create one", async () => {
    const { logger, lines } = capture();
    const h = await serveDatabase(db, { requireApiKeys: true, logger });
    try {
      const hint = lines.filter(([level, msg]) => level === "warn" && msg.includes("dex auth create --name admin --role admin"));
      expect(hint).toHaveLength(1);
      expect(await codeOf(h.client.listRuns({}))).toBe("UNAUTHENTICATED");
      const key = await newKey(h.sql, "client");
      const keyed = clientsWith(h, key.text);
      try {
        expect(await codeOf(keyed.client.listRuns({}))).toBe("OK");
      } finally {
        keyed.close();
      }
    } finally {
      await h.close();
    }
    // Now a key exists: no hint.
    const second = capture();
    const again = await serveDatabase(db, { requireApiKeys: true, logger: second.logger });
    await again.close();
    expect(second.lines.filter(([, msg]) => msg.includes("dex auth create"))).toEqual([]);
    expect(second.lines.find(([, msg]) => msg === "dex server listening")).toBeDefined();
  });

  it("serves open by default: no key needed, and a key sent is ignored", async () => {
    const h = await serveDatabase(db);
    const garbage = clientsWith(h, "not-a-key");
    try {
      expect(await codeOf(h.client.listRuns({}))).toBe("OK");
      expect(await codeOf(garbage.client.listRuns({}))).toBe("OK");
    } finally {
      garbage.close();
      await h.close();
    }
  });

  it("refuses a bad apiKeyCacheMs before opening anything", async () => {
    await expect(startServer({ databaseUrl: db.url, port: 0, requireApiKeys: true, apiKeyCacheMs: -1 })).rejects.toThrow(/apiKeyCacheMs must be/);
  });
});
