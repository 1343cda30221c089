/**
 * The migrator's bootstrap (decision 0033): on a database a dex before 0.2 migrated, `dex migrate`
 * adds the release columns to dex.schema_migrations in a short transaction of its own, so that the
 * `alter table`'s access exclusive lock is not held through the migrations that follow (0015's
 * index build, 0016's backfill) while every starting server waits to read that table.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import postgres from "postgres";
import { createEmptyDatabase, waitFor, type TestDatabase } from "@dex/testing";
import { buildRelease, loadMigrations, migrate, migrationStatus, type Migration } from "../src/store/migrator.js";
import { buildWith, fileAfter, removeMigrationDirs } from "./support/releases.js";

/** Advisory lock key the test holds to keep a migration open for as long as it needs. */
const GATE = 4242;

describe("the release-column bootstrap", () => {
  let db: TestDatabase;
  let sql: postgres.Sql;
  let shipped: Migration[];

  beforeAll(async () => {
    db = await createEmptyDatabase();
    sql = postgres(db.url, { max: 3, onnotice: () => {} });
    shipped = await loadMigrations();
  });
  afterAll(async () => {
    await sql.end();
    await db.drop();
    await removeMigrationDirs();
  });

  it("does not hold a lock on dex.schema_migrations through the migrations: a server's start check reads it meanwhile", async () => {
    const previous = shipped.filter((m) => m.releaseLevel < buildRelease(shipped).releaseLevel);
    await migrate(sql, previous);
    await sql`alter table dex.schema_migrations drop column release, drop column release_level`; // as a 0.1 dex left it
    // A migration that stays open until the test lets it go: it waits for the gate the test holds.
    const slow = await buildWith([{ release: "slow", files: { [fileAfter(shipped, 1, "slow")]: { sql: `select pg_advisory_xact_lock(${GATE});\n` } } }]);
    const gate = postgres(db.url, { max: 1, onnotice: () => {} });
    const reader = postgres(db.url, { max: 1, onnotice: () => {}, connection: { lock_timeout: 1000 } });
    try {
      await gate`select pg_advisory_lock(${GATE})`;
      const running = migrate(sql, slow);
      running.catch(() => undefined); // awaited below; a failure before that is not unhandled
      await waitFor(
        async () =>
          (await sql`select 1 from pg_stat_activity where datname = current_database() and wait_event = 'advisory' and query like ${`%${GATE}%`}`).length > 0,
        { message: "the slow migration to wait at the gate" },
      );
      const read = await migrationStatus(reader as never, slow).then(
        (status) => `read ${status.pending.length} pending`,
        (e: Error) => e.message,
      );
      expect(read).toBe(`read ${shipped.length - previous.length + 1} pending`);
      await gate`select pg_advisory_unlock(${GATE})`;
      expect(await running).toHaveLength(shipped.length - previous.length + 1);
      expect(await sql`select count(*)::int as n from dex.schema_migrations where release is null`).toEqual([{ n: 0 }]);
    } finally {
      await gate.end();
      await reader.end();
    }
  });

  it("gives up soon, saying to run again, when a long transaction holds the table, rather than queue every server start behind it", async () => {
    await sql.unsafe("drop schema dex cascade");
    const previous = shipped.filter((m) => m.releaseLevel < buildRelease(shipped).releaseLevel);
    await migrate(sql, previous);
    await sql`alter table dex.schema_migrations drop column release, drop column release_level`;
    const holder = postgres(db.url, { max: 1, onnotice: () => {} });
    try {
      const reserved = await holder.reserve();
      await reserved`begin`;
      await reserved`select count(*) from dex.schema_migrations`;
      const outcome = await migrate(sql, shipped).then(
        () => "migrated",
        (e: Error) => e.message,
      );
      expect(outcome).toMatch(/^could not add the release columns to dex\.schema_migrations within 2000 ms: .*; nothing was migrated, run dex migrate again$/);
      await reserved`rollback`;
      reserved.release();
      expect((await migrationStatus(sql, shipped)).pending).toHaveLength(shipped.length - previous.length);
      expect(await migrate(sql, shipped)).toHaveLength(shipped.length - previous.length);
    } finally {
      await holder.end();
    }
  });
});
