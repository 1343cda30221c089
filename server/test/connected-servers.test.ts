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

  it("sees one server per level and id, whatever its pools' names cut: the longest pool at level 99 keeps its id whole, the main pool a 12-character label", async () => {
    const build = { release: "0.10.0-rc.12", releaseLevel: 99, knownVersion: 9999 };
    for (const pool of ["dex-server", "dex-server-retention", "dex-server-dispatch"]) {
      held.push(await fakeServerConnection(db.url, serverApplicationName(pool, build, "1a2b3c4d5e6f")));
    }
    // Same id, another level: another server (ids are random; the level is what the guard compares).
    held.push(await fakeServerConnection(db.url, serverApplicationName("dex-server-retention", { ...build, releaseLevel: 98 }, "1a2b3c4d5e6f")));
    expect(await names()).toContain("dex-server-retention level=99 v=9999 id=1a2b3c4d5e6f release=0.");
    expect(await connectedServers(sql)).toEqual([
      { id: "1a2b3c4d5e6f", release: "0.", releaseLevel: 98, knownVersion: 9999, connections: 1 },
      { id: "1a2b3c4d5e6f", release: "0.10.0-rc.12", releaseLevel: 99, knownVersion: 9999, connections: 3 },
    ]);
  });

  it("sees one server with a label longer than a manifest allows as one server (the label is capped)", async () => {
    const build = { release: "0.3.0-rc.1+build.77", releaseLevel: 3, knownVersion: 20 };
    held.push(await fakeServerConnection(db.url, serverApplicationName("dex-server", build, "1a2b3c4d5e6f")));
    held.push(await fakeServerConnection(db.url, serverApplicationName("dex-server-retention", build, "1a2b3c4d5e6f")));
    expect(await connectedServers(sql)).toEqual([{ id: "1a2b3c4d5e6f", release: "0.3.0-rc.1+b", releaseLevel: 3, knownVersion: 20, connections: 2 }]);
  });
});
