/**
 * The connection watchdog (store/connection-watchdog.ts): a database
 * connection that went silent (a network partition: no FIN, no RST, the
 * socket stays open) is replaced, so the server recovers without a restart.
 * Without it, every query sent on such a connection hangs forever, and once
 * each pool connection holds one, so does the server. The partition is made
 * by a small TCP proxy in front of the test Postgres.
 */
import net from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import type postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DexError } from "@dex/proto";
import { createTestDatabase, waitFor, type TestDatabase } from "@dex/testing";
import { openDatabase } from "../src/store/db.js";
import type { StalledConnection } from "../src/store/connection-watchdog.js";
import { byRunId, serveDatabase, uniqueId } from "./helpers.js";

/**
 * partition(): every connection open now, and every one accepted until heal(), goes silent for good
 * (its Postgres side is closed, its client side stays open and is never answered). heal(): new
 * connections work again; the silent ones stay silent.
 */
class PartitionProxy {
  private readonly server: net.Server;
  private readonly links = new Set<{ client: net.Socket; upstream?: net.Socket }>();
  private partitioned = false;

  constructor(private readonly target: { host: string; port: number }) {
    this.server = net.createServer((client) => {
      client.on("error", () => {});
      const link: { client: net.Socket; upstream?: net.Socket } = { client };
      this.links.add(link);
      client.on("close", () => (link.upstream?.destroy(), this.links.delete(link)));
      if (this.partitioned) return; // accepted, never answered
      const upstream = (link.upstream = net.connect(this.target));
      upstream.on("error", () => {});
      upstream.on("close", () => link.upstream === upstream && client.destroy());
      client.on("data", (chunk) => link.upstream?.write(chunk));
      upstream.on("data", (chunk) => client.write(chunk));
    });
  }

  async listen(): Promise<number> {
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    return (this.server.address() as net.AddressInfo).port;
  }

  partition(): void {
    this.partitioned = true;
    for (const link of this.links) {
      const upstream = link.upstream;
      link.upstream = undefined; // the client's bytes go nowhere from now on, and nothing comes back
      upstream?.removeAllListeners("data");
      upstream?.destroy();
    }
  }

  heal(): void {
    this.partitioned = false;
  }

  async close(): Promise<void> {
    for (const link of this.links) (link.client.destroy(), link.upstream?.destroy());
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

async function backendPid(sql: postgres.Sql): Promise<number> {
  const rows = await sql<{ pid: number }[]>`select pg_backend_pid() as pid`;
  return rows[0]!.pid;
}

function through(url: string, port: number): string {
  const proxied = new URL(url);
  proxied.hostname = "127.0.0.1";
  proxied.port = String(port);
  return proxied.toString();
}

describe("connection watchdog", () => {
  let db: TestDatabase;
  let proxy: PartitionProxy;
  let url: string;
  beforeAll(async () => {
    db = await createTestDatabase();
    const target = new URL(db.url);
    proxy = new PartitionProxy({ host: target.hostname, port: Number(target.port || 5432) });
    url = through(db.url, await proxy.listen());
  });
  afterAll(async () => {
    await proxy.close();
    await db.drop();
  });

  it("replaces a connection that went silent with a query outstanding, and the next query succeeds", async () => {
    const stalls: StalledConnection[] = [];
    const sql = openDatabase({ url, maxConnections: 1, statementTimeoutMs: 500, stallMarginMs: 300, onStalledConnection: (s) => stalls.push(s) });
    try {
      const before = await backendPid(sql);
      proxy.partition();
      // Without the watchdog this query never settles (the test then times out); how soon it fails
      // is a matter of load, so only the lower bound is checked: not judged before its bound.
      const hung = await sql`select 1`.then(() => "answered", (err: unknown) => (err as { code?: string }).code);
      expect(hung).toBe("CONNECTION_CLOSED");
      expect(stalls[0]).toMatchObject({ outstanding: 1 });
      expect(stalls[0]!.silentMs).toBeGreaterThanOrEqual(800);
      proxy.heal();
      const after = await backendPid(sql);
      expect(after).not.toBe(before);
    } finally {
      proxy.heal();
      await sql.end({ timeout: 1 });
    }
  });

  it("leaves idle connections and statements within statement_timeout alone", async () => {
    const stalls: StalledConnection[] = [];
    // A margin wide enough for a loaded machine: the statement below must not be judged stalled
    // because its answer was read late.
    const sql = openDatabase({ url, maxConnections: 1, statementTimeoutMs: 2_000, stallMarginMs: 2_000, onStalledConnection: (s) => stalls.push(s) });
    try {
      const before = await backendPid(sql);
      // A sleep that makes the condition, not one that waits for it: idle for longer than
      // statement_timeout + margin, with nothing due, so nothing may be judged.
      await sleep(4_500);
      // Silent for most of statement_timeout while it runs: still within the bound.
      await sql`select pg_sleep(1.5)`;
      const after = await backendPid(sql);
      expect(after).toBe(before);
      expect(stalls).toEqual([]);
    } finally {
      await sql.end({ timeout: 1 });
    }
  });

  it("a server whose every database connection went silent recovers without a restart", async () => {
    const h = await serveDatabase(db, { databaseUrl: url, statementTimeoutMs: 1_000, stallMarginMs: 500 });
    try {
      const { runId } = await h.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("wd") });
      proxy.partition();
      // Enough calls to leave a hung query on every connection of the pool (10) and the admin pool.
      const during = await Promise.all(
        Array.from({ length: 16 }, () =>
          h.client.describeRun({ run: byRunId(runId) }, { deadline: 3_000 }).then(
            () => "OK",
            (err: unknown) => DexError.from(err).code,
          ),
        ),
      );
      expect(during.filter((code) => code === "OK")).toEqual([]);
      proxy.heal();
      // Every silent connection is found out (1.5 s) and replaced; the API answers again.
      await waitFor(
        async () => {
          await h.client.describeRun({ run: byRunId(runId) }, { deadline: 10_000 });
          await h.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("wd-after") }, { deadline: 10_000 });
          return true;
        },
        { intervalMs: 100, message: "the server to answer again after the partition healed" },
      );
    } finally {
      proxy.heal();
      await h.close();
    }
  });
});
