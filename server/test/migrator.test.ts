import { afterAll, beforeAll, describe, expect, it } from "vitest";
import postgres from "postgres";
import { createEmptyDatabase, type TestDatabase } from "@dex/testing";
import { assertMigrated, loadMigrations, migrate, migrationStatus } from "../src/store/migrator.js";

describe("migrator", () => {
  let db: TestDatabase;
  let sql: postgres.Sql;
  beforeAll(async () => {
    db = await createEmptyDatabase();
    sql = postgres(db.url, { max: 4, onnotice: () => {} });
  });
  afterAll(async () => {
    await sql.end();
    await db.drop();
  });

  it("refuses an unmigrated database with a message that says to run dex migrate", async () => {
    await expect(assertMigrated(sql)).rejects.toThrow(/has no dex schema.*dex migrate/);
  });

  it("applies every migration once, even when several migrators race", async () => {
    const all = await loadMigrations();
    const results = await Promise.all([migrate(sql), migrate(sql), migrate(sql)]);
    const applied = results.flat().sort((a, b) => a - b);
    expect(applied).toEqual(all.map((m) => m.version));
    await expect(assertMigrated(sql)).resolves.toMatchObject({ knownVersion: all.at(-1)!.version, databaseVersion: all.at(-1)!.version, release: all.at(-1)!.release });
    expect((await migrationStatus(sql)).pending).toEqual([]);
    expect(await migrate(sql)).toEqual([]);
  });

  it("validates no check constraint in the migration that adds it not valid (docs/upgrades.md)", async () => {
    // In that transaction the drop holds the table's exclusive lock: a validate there scans the table
    // under it, which `not valid` is there to avoid; a widened check needs no validation at all.
    const offending = (await loadMigrations()).flatMap((m) => {
      const added = [...m.sql.matchAll(/add constraint (\w+)[^;]*not valid/gi)].map((a) => a[1]!.toLowerCase());
      return [...m.sql.matchAll(/validate constraint (\w+)/gi)]
        .map((v) => v[1]!.toLowerCase())
        .filter((name) => added.includes(name))
        .map((name) => `${m.version} ${m.name}: ${name}`);
    });
    expect(offending).toEqual([]);
    // The widened checks of 0013 are there (Postgres enforces a not-valid check on new rows all the same).
    const [row] = await sql<{ n: number }[]>`
      select count(*)::int as n from pg_constraint
      where conname in ('runs_status_check', 'timers_kind_check', 'timers_seq_check') and contype = 'c'`;
    expect(row!.n).toBe(3);
  });

  it("reports a database migrated by a newer dex", async () => {
    await sql`insert into dex.schema_migrations (version, name, checksum) values (9999, 'future', 'x')`;
    await expect(assertMigrated(sql)).rejects.toThrow(/newer dex/);
    await sql`delete from dex.schema_migrations where version = 9999`;
  });
});
