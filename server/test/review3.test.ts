/**
 * Review 3 (decision 0033): failing tests, one per finding. Each states what should happen; today it does not.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import postgres from "postgres";
import { createEmptyDatabase, type TestDatabase } from "@dex/testing";
import { connectedServers, serverApplicationName } from "../src/store/connected-servers.js";
import { assertMigrated, buildRelease, loadMigrations, migrate, migrationStatus, type Migration } from "../src/store/migrator.js";
import * as v01 from "./support/migrator-0.1.js";
import { buildWith, fakeServerConnection, fileAfter, migrationsDirWith, removeMigrationDirs } from "./support/releases.js";

describe("review 3", () => {
  let db: TestDatabase;
  let sql: postgres.Sql;
  let shipped: Migration[];
  const held: postgres.Sql[] = [];
  const fresh = async () => {
    await sql.unsafe("drop schema if exists dex cascade");
  };

  beforeAll(async () => {
    db = await createEmptyDatabase();
    sql = postgres(db.url, { max: 3, onnotice: () => {} });
    shipped = await loadMigrations();
  });
  afterEach(async () => {
    await Promise.all(held.splice(0).map((c) => c.end()));
  });
  afterAll(async () => {
    await sql.end();
    await db.drop();
    await removeMigrationDirs();
  });

  // Finding 5: the 63-byte cut. A release label up to 20 characters is accepted by the manifest; with it the
  // id is cut to a different length per pool, so one server shows as several (and short ids of different
  // servers merge, keeping whichever level came first).
  it("F5: one server with a long release label is seen as one server", async () => {
    const build = { release: "0.3.0-rc.1+build.77", releaseLevel: 3, knownVersion: 20 };
    held.push(await fakeServerConnection(db.url, serverApplicationName("dex-server", build, "1a2b3c4d5e6f")));
    held.push(await fakeServerConnection(db.url, serverApplicationName("dex-server-retention", build, "1a2b3c4d5e6f")));
    expect(await connectedServers(sql)).toHaveLength(1);
  });
});
