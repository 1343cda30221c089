/**
 * How `dex migrate` sees the dex servers connected (decision 0033, store/connected-servers.ts): by
 * the application_name of their connections in pg_stat_activity, as Postgres stores it (cut at 63
 * bytes) and as poolers change it (pgbouncer's application_name_add_host appends " - host:port").
 * Held connections named like servers stand for them; the name is what Postgres really keeps.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import postgres from "postgres";
import { createEmptyDatabase, type TestDatabase } from "@dex/testing";
import { connectedServers, serverApplicationName } from "../src/store/connected-servers.js";
import { fakeServerConnection } from "./support/releases.js";

describe("the dex servers connected", () => {
  let db: TestDatabase;
  let sql: postgres.Sql;
  const held: postgres.Sql[] = [];

  beforeAll(async () => {
    db = await createEmptyDatabase();
    sql = postgres(db.url, { max: 1, onnotice: () => {} });
  });
  afterEach(async () => {
    await Promise.all(held.splice(0).map((c) => c.end()));
  });
  afterAll(async () => {
    await sql.end();
    await db.drop();
  });

  const names = async () => (await sql<{ name: string }[]>`select application_name as name from pg_stat_activity where application_name like 'dex-server%' order by 1`).map((r) => r.name);

  it("sees a server behind pgbouncer with application_name_add_host, whose name Postgres cut after the pooler's suffix", async () => {
    const name = serverApplicationName("dex-server-dispatch", { release: "0.1", releaseLevel: 1, knownVersion: 6 }, "1a2b3c4d5e6f");
    held.push(await fakeServerConnection(db.url, `${name} - 10.0.0.5:41234`));
    held.push(await fakeServerConnection(db.url, "dex-server - 10.0.0.6:41235"));
    // Postgres kept 63 bytes: the pooler's suffix is cut in the middle.
    expect((await names()).map((n) => n.length)).toContain(63);
    expect(await connectedServers(sql)).toEqual([
      { id: "1a2b3c4d5e6f", release: "0.1", releaseLevel: 1, knownVersion: 6, connections: 1 },
      { id: "at 127.0.0.1", release: undefined, releaseLevel: 1, knownVersion: undefined, connections: 1 },
    ]);
  });
});
