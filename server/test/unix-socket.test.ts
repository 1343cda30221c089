import { existsSync } from "node:fs";
import { describe, expect, it } from "vitest";
import * as grpc from "@grpc/grpc-js";
import postgres from "postgres";
import { createServiceClient, TaskQueueService } from "@dex/proto";
import { createTestDatabase } from "@dex/testing";
import { silentLogger, startServer } from "../src/index.js";
import { unixSocketOf } from "../src/store/db.js";

describe("a database URL naming a Unix socket (libpq's ?host=/dir)", () => {
  it("maps the directory and port to the socket file and leaves other URLs alone", () => {
    expect(unixSocketOf("postgres://u:p@localhost:6543/dex?host=/run/pg/")).toEqual({
      url: "postgres://u:p@localhost:6543/dex",
      socketPath: "/run/pg/.s.PGSQL.6543",
    });
    expect(unixSocketOf("postgres://u@localhost/dex?host=%2Ftmp&sslmode=disable")).toEqual({
      url: "postgres://u@localhost/dex?sslmode=disable",
      socketPath: "/tmp/.s.PGSQL.5432",
    });
    expect(unixSocketOf("postgres://u@db.example:5432/dex?host=other")).toEqual({ url: "postgres://u@db.example:5432/dex?host=other" });
    expect(unixSocketOf("postgres://u@db.example:5432/dex")).toEqual({ url: "postgres://u@db.example:5432/dex" });
  });

  it("serves with every pool connected over the socket", async () => {
    const db = await createTestDatabase();
    const admin = postgres(db.url, { max: 1, onnotice: () => {} });
    try {
      const [row] = await admin<{ dirs: string; port: string }[]>`
        select current_setting('unix_socket_directories') as dirs, current_setting('port') as port`;
      const dir = row!.dirs.split(",")[0]!.trim();
      // The embedded Postgres always has one; a DEX_TEST_DATABASE_URL on another host may not.
      const socketReachable = dir !== "" && existsSync(`${dir}/.s.PGSQL.${row!.port}`);
      if (!socketReachable) {
        console.warn(`unix-socket.test: skipped, no socket of the test Postgres on this host (${dir || "none"})`);
        return;
      }
      const url = new URL(db.url);
      url.searchParams.set("host", dir);
      const server = await startServer({ databaseUrl: url.toString(), port: 0, logger: silentLogger });
      try {
        const channel = new grpc.Client(server.address, grpc.credentials.createInsecure());
        const queues = createServiceClient(TaskQueueService, channel);
        await queues.listTaskQueues({});
        channel.close();
        // A Unix-socket backend has no client address; the server's own connections carry its application_name.
        const rows = await admin<{ tcp: string; unix: string }[]>`
          select count(*) filter (where client_port <> -1)::text as tcp, count(*) filter (where client_port = -1)::text as unix
          from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()`;
        expect(Number(rows[0]!.unix)).toBeGreaterThan(0);
        expect(Number(rows[0]!.tcp)).toBe(0);
      } finally {
        await server.close();
      }
    } finally {
      await admin.end();
      await db.drop();
    }
  });
});
