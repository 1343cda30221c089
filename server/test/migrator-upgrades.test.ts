/**
 * Rolling upgrades (docs/upgrades.md, decision 0028): which schema versions a build serves, and the
 * checksum check with its escape hatch. "A build that knows migrations up to N" is a directory of
 * migration files: a copy of the shipped ones, with files added or edited.
 */
import { cp, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import postgres from "postgres";
import { createEmptyDatabase, type TestDatabase } from "@dex/testing";
import {
  assertMigrated,
  loadMigrations,
  migrate,
  migrationsDir,
  migrationStatus,
  repairChecksums,
  SchemaMismatchError,
  type Migration,
} from "../src/store/migrator.js";

const dirs: string[] = [];

/** A copy of the shipped migrations plus `extra` files (name -> SQL). */
async function migrationsWith(extra: Record<string, string>): Promise<Migration[]> {
  const dir = await mkdtemp(`${tmpdir()}/dex-migrations-`);
  dirs.push(dir);
  await cp(migrationsDir, dir, { recursive: true });
  for (const [name, sql] of Object.entries(extra)) await writeFile(`${dir}/${name}`, sql);
  return loadMigrations(dir);
}

function file(version: number, name: string): string {
  return `${String(version).padStart(4, "0")}_${name}.sql`;
}

/** The error assertMigrated throws, for its code and message. */
async function refusal(promise: Promise<unknown>): Promise<SchemaMismatchError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(SchemaMismatchError);
  return err as SchemaMismatchError;
}

describe("schema versions a server serves, and checksums", () => {
  let db: TestDatabase;
  let sql: postgres.Sql;
  let shipped: Migration[];
  let n: number;
  beforeAll(async () => {
    db = await createEmptyDatabase();
    sql = postgres(db.url, { max: 4, onnotice: () => {} });
    shipped = await loadMigrations();
    n = shipped.at(-1)!.version;
  });
  afterAll(async () => {
    await sql.end();
    await db.drop();
    await Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true })));
  });

  it("refuses a database behind N with run dex migrate, and serves it once migrated to N", async () => {
    await migrate(sql, shipped.slice(0, -1));
    const behind = await refusal(assertMigrated(sql, shipped));
    expect(behind.code).toBe("behind");
    expect(behind.message).toMatch(new RegExp(`is behind \\(1 pending migration\\(s\\), latest ${n}_.*run \`dex migrate`));
    await migrate(sql, shipped);
    await expect(assertMigrated(sql, shipped)).resolves.toEqual({ knownVersion: n, databaseVersion: n });
  });

  it("serves a database one version ahead (N+1), and refuses N+2 naming both versions", async () => {
    const next = await migrationsWith({ [file(n + 1, "expand_one")]: "create table dex.upgrade_one (id int primary key);\n" });
    await migrate(sql, next);
    await expect(assertMigrated(sql, shipped)).resolves.toEqual({ knownVersion: n, databaseVersion: n + 1 });
    await expect(assertMigrated(sql, next)).resolves.toEqual({ knownVersion: n + 1, databaseVersion: n + 1 });

    const afterNext = await migrationsWith({
      [file(n + 1, "expand_one")]: "create table dex.upgrade_one (id int primary key);\n",
      [file(n + 2, "expand_two")]: "alter table dex.upgrade_one add column note text;\n",
    });
    await migrate(sql, afterNext);
    const tooNew = await refusal(assertMigrated(sql, shipped));
    expect(tooNew.code).toBe("too_new");
    expect(tooNew.message).toContain(`the database is at schema version ${n + 2}`);
    expect(tooNew.message).toContain(`this dex knows versions up to ${n} and serves only ${n} or ${n + 1}`);
    expect(tooNew.message).toMatch(/run a dex that knows version/);
    // The build one behind the database still serves it.
    await expect(assertMigrated(sql, next)).resolves.toEqual({ knownVersion: n + 1, databaseVersion: n + 2 });
  });

  it("refuses to start on, and to migrate, a database whose applied migration differs from this build's file", async () => {
    const first = shipped[0]!;
    const edited = await migrationsWith({
      [`${String(first.version).padStart(4, "0")}_${first.name}.sql`]: `${first.sql}\n-- a harmless comment added later\n`,
      [file(n + 1, "expand_one")]: "create table dex.upgrade_one (id int primary key);\n",
      [file(n + 2, "expand_two")]: "alter table dex.upgrade_one add column note text;\n",
    });
    const editedFirst = edited[0]!;
    const start = await refusal(assertMigrated(sql, edited));
    expect(start.code).toBe("checksum_mismatch");
    expect(start.message).toContain(`${String(first.version).padStart(4, "0")}_${first.name} (recorded ${first.checksum}, this build's file ${editedFirst.checksum})`);
    expect(start.message).toContain("dex migrate --repair-checksums");

    const withPending = await migrationsWith({
      [`${String(first.version).padStart(4, "0")}_${first.name}.sql`]: editedFirst.sql,
      [file(n + 1, "expand_one")]: "create table dex.upgrade_one (id int primary key);\n",
      [file(n + 2, "expand_two")]: "alter table dex.upgrade_one add column note text;\n",
      [file(n + 3, "expand_three")]: "create table dex.upgrade_three (id int primary key);\n",
    });
    expect((await refusal(migrate(sql, withPending))).code).toBe("checksum_mismatch");
    // Nothing of the refused migration was applied.
    expect((await migrationStatus(sql, withPending)).pending.map((m) => m.version)).toEqual([n + 3]);
  });

  it("repairs checksums only when asked, then starts and migrates; a repair with nothing to do changes nothing", async () => {
    const first = shipped[0]!;
    const edited = await migrationsWith({
      [`${String(first.version).padStart(4, "0")}_${first.name}.sql`]: `${first.sql}\n-- a harmless comment added later\n`,
      [file(n + 1, "expand_one")]: "create table dex.upgrade_one (id int primary key);\n",
      [file(n + 2, "expand_two")]: "alter table dex.upgrade_one add column note text;\n",
    });
    const repaired = await repairChecksums(sql, edited);
    expect(repaired).toEqual([{ version: first.version, name: first.name, recorded: first.checksum, expected: edited[0]!.checksum }]);
    await expect(assertMigrated(sql, edited)).resolves.toEqual({ knownVersion: n + 2, databaseVersion: n + 2 });
    expect(await repairChecksums(sql, edited)).toEqual([]);
    // The shipped build now sees the repaired checksum as a mismatch: the repair is per build, on purpose.
    expect((await refusal(assertMigrated(sql, shipped))).code).toBe("checksum_mismatch");
  });
});
