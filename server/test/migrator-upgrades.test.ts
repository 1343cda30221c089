/**
 * Rolling upgrades counted in releases (docs/upgrades.md, decisions 0028 and 0033): which databases
 * a build serves, the releases recorded beside each applied migration, and the checksum check with
 * its escape hatch. "A build of release R" is a directory of migration files with its release
 * manifest: a copy of the shipped ones, with releases added or removed (support/releases.ts).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import postgres from "postgres";
import { createEmptyDatabase, type TestDatabase } from "@dex/testing";
import {
  assertMigrated,
  loadMigrations,
  migrate,
  migrationLabel,
  migrationStatus,
  repairChecksums,
  type Migration,
} from "../src/store/migrator.js";
import { buildWith, fileAfter, refusal, removeMigrationDirs } from "./support/releases.js";


describe("releases a server serves, and checksums", () => {
  let db: TestDatabase;
  let sql: postgres.Sql;
  let shipped: Migration[];
  let current: string;
  let next: Migration[];
  let afterNext: Migration[];
  beforeAll(async () => {
    db = await createEmptyDatabase();
    sql = postgres(db.url, { max: 4, onnotice: () => {} });
    shipped = await loadMigrations();
    current = shipped.at(-1)!.release;
    // The next release brings several migrations at once, as 0.2 did: the window is counted in releases, not files.
    const nextRelease = {
      release: "next",
      files: {
        [fileAfter(shipped, 1, "expand_one")]: { sql: "create table dex.upgrade_one (id int primary key);\n" },
        [fileAfter(shipped, 2, "expand_two")]: { sql: "alter table dex.upgrade_one add column note text;\n" },
        [fileAfter(shipped, 3, "expand_three")]: { sql: "create table dex.upgrade_three (id int primary key);\n" },
      },
    };
    next = await buildWith([nextRelease]);
    afterNext = await buildWith([nextRelease, { release: "after-next", files: { [fileAfter(shipped, 4, "expand_four")]: { sql: "create table dex.upgrade_four (id int);\n" } } }]);
  });
  afterAll(async () => {
    await sql.end();
    await db.drop();
    await removeMigrationDirs();
  });

  it("refuses a database of the previous release with run dex migrate, naming both releases, and serves it once migrated", async () => {
    const previous = shipped.filter((m) => m.releaseLevel < shipped.at(-1)!.releaseLevel);
    await migrate(sql, previous);
    const behind = await refusal(assertMigrated(sql, shipped));
    expect(behind.code).toBe("behind");
    const pending = shipped.length - previous.length;
    expect(behind.message).toBe(
      `the database is at release ${previous.at(-1)!.release}, behind this dex (release ${current}, migrations up to ${shipped.at(-1)!.version}): ` +
        `${pending} pending migration(s), latest ${migrationLabel(shipped.at(-1)!)}; run \`dex migrate --database-url <url>\` of release ${current} first`,
    );
    await migrate(sql, shipped);
    await expect(assertMigrated(sql, shipped)).resolves.toMatchObject({ release: current, databaseRelease: current, databaseVersion: shipped.at(-1)!.version });
  });

  it("records each applied migration's release and level, and fills them in for rows an older dex recorded without", async () => {
    const rows = await sql<{ version: number; release: string; level: number }[]>`
      select version, release, release_level as level from dex.schema_migrations order by version`;
    expect(rows).toEqual(shipped.map((m) => ({ version: m.version, release: m.release, level: m.releaseLevel })));
    // A table as a dex before 0.2 left it: no release columns. migrate adds them and fills them in.
    await sql`alter table dex.schema_migrations drop column release, drop column release_level`;
    await expect(assertMigrated(sql, shipped)).resolves.toMatchObject({ databaseRelease: current });
    expect(await migrate(sql, shipped)).toEqual([]);
    const [filled] = await sql<{ n: number }[]>`select count(*)::int as n from dex.schema_migrations where release is not null and release_level is not null`;
    expect(filled!.n).toBe(shipped.length);
  });

  it("serves the next release's schema, however many migrations it brings, and refuses the release after, naming both releases", async () => {
    expect(await migrate(sql, next)).toHaveLength(3);
    await expect(assertMigrated(sql, shipped)).resolves.toMatchObject({ release: current, databaseRelease: "next", databaseReleaseLevel: shipped.at(-1)!.releaseLevel + 1 });
    await expect(assertMigrated(sql, next)).resolves.toMatchObject({ release: "next", databaseRelease: "next" });

    await migrate(sql, afterNext);
    const tooNew = await refusal(assertMigrated(sql, shipped));
    expect(tooNew.code).toBe("too_new");
    expect(tooNew.message).toContain(`the database is at release after-next (migrated by a newer dex: ${migrationLabel(afterNext.at(-1)!)} (release after-next))`);
    expect(tooNew.message).toContain(`this dex (release ${current}, migrations up to ${shipped.at(-1)!.version}) serves only the schema of release ${current} or the next one`);
    expect(tooNew.message).toContain("run servers of release after-next (or of the release just before it) instead");
    // The build one release behind the database still serves it.
    await expect(assertMigrated(sql, next)).resolves.toMatchObject({ release: "next", databaseRelease: "after-next" });
  });

  it("refuses a migration it does not know that was recorded without a release, or that belongs to its own release (a gap)", async () => {
    await sql`update dex.schema_migrations set release = null, release_level = null where version = ${afterNext.at(-1)!.version}`;
    const unplaced = await refusal(assertMigrated(sql, next));
    expect(unplaced.code).toBe("too_new");
    expect(unplaced.message).toMatch(/recorded without a release .* cannot tell whether it may serve it; run a dex that knows them/);
    await sql`update dex.schema_migrations set release = 'after-next', release_level = ${afterNext.at(-1)!.releaseLevel} where version = ${afterNext.at(-1)!.version}`;

    // A build of "next" without its newest file: that migration is of its own release, and it does not know it.
    const partial = next.slice(0, -1);
    const gap = await refusal(assertMigrated(sql, partial));
    expect(gap.code).toBe("unknown_migration");
    expect(gap.message).toContain(`${migrationLabel(next.at(-1)!)} (release next)`);
    expect(gap.message).toContain("run that dex, or the newest build of release next");
  });

  it("refuses to start on, and to migrate, a database whose applied migration differs from this build's file", async () => {
    const first = afterNext[0]!;
    const edited = afterNext.map((m) => (m === first ? { ...m, sql: `${m.sql}\n-- a harmless comment\n`, checksum: "1".repeat(64) } : m));
    const start = await refusal(assertMigrated(sql, edited));
    expect(start.code).toBe("checksum_mismatch");
    expect(start.message).toContain(`${migrationLabel(first)} (recorded ${first.checksum}, this build's file ${"1".repeat(64)})`);
    expect(start.message).toContain("dex migrate --repair-checksums");
    const withPending = [...edited, { ...afterNext.at(-1)!, version: afterNext.at(-1)!.version + 1, name: "expand_five", sql: "create table dex.upgrade_five (id int);\n" }];
    expect((await refusal(migrate(sql, withPending))).code).toBe("checksum_mismatch");
    // Nothing of the refused migration was applied.
    expect((await migrationStatus(sql, withPending)).pending.map((m) => m.version)).toEqual([afterNext.at(-1)!.version + 1]);

    // The escape hatch, only when asked; a repair with nothing to do changes nothing.
    const repaired = await repairChecksums(sql, edited);
    expect(repaired).toEqual([{ version: first.version, name: first.name, recorded: first.checksum, expected: "1".repeat(64) }]);
    await expect(assertMigrated(sql, edited)).resolves.toMatchObject({ databaseRelease: "after-next" });
    expect(await repairChecksums(sql, edited)).toEqual([]);
    // The unedited build now sees the repaired checksum as a mismatch: the repair is per build, on purpose.
    expect((await refusal(assertMigrated(sql, afterNext))).code).toBe("checksum_mismatch");
  });
});
