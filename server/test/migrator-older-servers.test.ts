/**
 * `dex migrate` and the servers still connected (decision 0033, docs/upgrades.md): a migration the
 * release manifest marks unsafe with older servers is refused while servers of an older release are
 * connected, a weak one is applied with a warning, a safe one silently, and a migration that would
 * leave a connected server two releases behind is refused, as is any migration while a server too
 * old to say its release is connected (it serves only its exact schema). A server is seen by the application_name
 * of its connections: a real in-process server for its own name, and held connections named like
 * one for servers of other releases.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import postgres from "postgres";
import { createEmptyDatabase, type TestDatabase } from "@dex/testing";
import { silentLogger, startServer } from "../src/index.js";
import { connectedServers, serverApplicationName } from "../src/store/connected-servers.js";
import { readFile, writeFile } from "node:fs/promises";
import { assertMigrated, loadMigrations, migrate, migrationLabel, migrationStatus, type Migration } from "../src/store/migrator.js";
import { olderServerProblems } from "../src/store/older-servers.js";
import * as v01 from "./support/migrator-0.1.js";
import { buildWith, fakeServerConnection, fileAfter, migrationsDirWith, refusal, removeMigrationDirs } from "./support/releases.js";

describe("dex migrate refuses what older servers still connected cannot run on", () => {
  let db: TestDatabase;
  let sql: postgres.Sql;
  let shipped: Migration[];
  let current: { release: string; releaseLevel: number };
  const held: postgres.Sql[] = [];
  /** A connection named as a server of `release` (at `level`, knowing migrations up to `knownVersion`) names its pools. */
  const serverOf = async (release: string, level: number, knownVersion: number, id: string) =>
    held.push(await fakeServerConnection(db.url, serverApplicationName("dex-server-dispatch", { release, releaseLevel: level, knownVersion }, id)));

  beforeAll(async () => {
    db = await createEmptyDatabase();
    sql = postgres(db.url, { max: 2, onnotice: () => {} });
    shipped = await loadMigrations();
    current = { release: shipped.at(-1)!.release, releaseLevel: shipped.at(-1)!.releaseLevel };
  });
  afterEach(async () => {
    await Promise.all(held.splice(0).map((c) => c.end()));
  });
  afterAll(async () => {
    await sql.end();
    await db.drop();
    await removeMigrationDirs();
  });

  it("refuses any migration while a server that does not say its release is connected: a real 0.1 server refuses every migration it does not know", async () => {
    // The database as the real 0.1 dex migrated it (its own migrator: no release columns).
    const dir01 = await migrationsDirWith([], 1);
    const v01Migrations = await v01.loadMigrations(dir01);
    await v01.migrate(sql as never, v01Migrations);
    // A server built before decision 0033 names its connections "dex-server", nothing more.
    held.push(await fakeServerConnection(db.url, "dex-server"));
    // Even a next release with nothing unsafe in it (as a 0.2 without 0013 would be) strands it.
    const allSafe = shipped.map((m) => ({ ...m, olderServers: "safe" as const }));
    const refused = await refusal(migrate(sql, allSafe));
    expect(refused.code).toBe("older_servers");
    expect(refused.message).toBe(
      "refusing to migrate: dex servers that do not say their release are connected (server(s) at 127.0.0.1 of a release before 0.2 (they do not say which; 1 connection(s))): " +
        "they were built before release 0.2 and refuse to start on a database with any migration they do not know, so they would not restart after this one. " +
        `Stop them, run this again, then start servers of release ${current.release} (upgrading from them is a stop of the fleet; docs/upgrades.md); --allow-older-servers applies it anyway`,
    );
    expect((await migrationStatus(sql, shipped)).pending).toHaveLength(shipped.length - v01Migrations.length);

    // Applied anyway, and the real 0.1 server would indeed not restart.
    const warnings: string[] = [];
    await migrate(sql, allSafe, { allowOlderServers: true, onWarning: (w) => warnings.push(w) });
    expect(warnings).toEqual([`applying anyway (--allow-older-servers): ${refused.message.replace("refusing to migrate: ", "")}`]);
    await expect(v01.assertMigrated(sql as never, v01Migrations)).rejects.toThrow(/migrated by a newer dex/);
    await sql.unsafe("drop schema dex cascade");
  });

  it("refuses this release's unsafe migration (0013) while a server of the previous release is connected", async () => {
    const previous = shipped.filter((m) => m.releaseLevel < current.releaseLevel);
    const prev = previous.at(-1)!;
    await migrate(sql, previous);
    await serverOf(prev.release, prev.releaseLevel, prev.version, "eeeeeeeeeeee");
    const refused = await refusal(migrate(sql, shipped));
    expect(refused.code).toBe("older_servers");
    const unsafe = shipped.find((m) => m.olderServers === "unsafe")!;
    expect(refused.message).toContain(`${migrationLabel(unsafe)} (release ${current.release}) is not safe while servers of an older release run (${unsafe.why})`);
    expect(refused.message).toContain(`these are connected: server eeeeeeeeeeee of release ${prev.release} (1 connection(s))`);
    expect(refused.message).toContain("--allow-older-servers applies it while they run");
    expect(refused.message).not.toContain("\n");
    // Nothing was applied.
    expect((await migrationStatus(sql, shipped)).pending).toHaveLength(shipped.length - previous.length);

    const warnings: string[] = [];
    const applied = await migrate(sql, shipped, { allowOlderServers: true, onWarning: (w) => warnings.push(w) });
    expect(applied).toEqual(shipped.slice(previous.length).map((m) => m.version));
    expect(warnings[0]).toMatch(/^applying anyway \(--allow-older-servers\): .*is not safe while servers of an older release run/);
    // The weak ones of the release are warned about, each once.
    expect(warnings.slice(1).map((w) => w.split(" ")[0])).toEqual(shipped.filter((m) => m.releaseLevel === current.releaseLevel && m.olderServers === "weak").map(migrationLabel));
  });

  it("applies the next release's safe migrations beside servers of this release without a word, and warns of a weak one", async () => {
    await serverOf(current.release, current.releaseLevel, shipped.at(-1)!.version, "aaaaaaaaaaaa");
    const warnings: string[] = [];
    const next = await buildWith([
      {
        release: "next",
        files: {
          [fileAfter(shipped, 1, "expand_safe")]: { sql: "create table dex.upgrade_safe (id int);\n" },
          [fileAfter(shipped, 2, "expand_weak")]: { sql: "create table dex.upgrade_weak (id int);\n", olderServers: "weak", why: "older servers write no upgrade_weak rows" },
        },
      },
    ]);
    expect(await migrate(sql, next, { onWarning: (w) => warnings.push(w) })).toHaveLength(2);
    expect(warnings).toEqual([
      `${fileAfter(shipped, 2, "expand_weak").replace(".sql", "")} (release next) is weak while servers of an older release run: older servers write no upgrade_weak rows; ` +
        `connected: server aaaaaaaaaaaa of release ${current.release} (1 connection(s)). Replace them soon (docs/upgrades.md)`,
    ]);
  });

  it("refuses a migration that would leave a connected server two releases behind, and one marked unsafe, naming them; a newer server does not count", async () => {
    // The database is at "next" now. A server of this release (one behind) and one of "next" are connected.
    await serverOf(current.release, current.releaseLevel, shipped.at(-1)!.version, "bbbbbbbbbbbb");
    await serverOf("next", current.releaseLevel + 1, shipped.at(-1)!.version + 2, "cccccccccccc");
    await serverOf("after-next", current.releaseLevel + 2, shipped.at(-1)!.version + 3, "dddddddddddd");
    const afterNext = await buildWith([
      {
        release: "next",
        files: {
          [fileAfter(shipped, 1, "expand_safe")]: { sql: "create table dex.upgrade_safe (id int);\n" },
          [fileAfter(shipped, 2, "expand_weak")]: { sql: "create table dex.upgrade_weak (id int);\n", olderServers: "weak", why: "older servers write no upgrade_weak rows" },
        },
      },
      { release: "after-next", files: { [fileAfter(shipped, 3, "contract")]: { sql: "drop table dex.upgrade_weak;\n", olderServers: "unsafe", why: "older servers write upgrade_weak" } } },
    ]);
    const refused = await refusal(migrate(sql, afterNext));
    expect(refused.message).toMatch(
      new RegExp(`^refusing to migrate: it would take the database to release after-next while dex servers two or more releases older are connected \\(server bbbbbbbbbbbb of release ${current.release} \\(1 connection\\(s\\)\\)\\)`),
    );
    expect(refused.message).toContain("; and ");
    expect(refused.message).toContain("is not safe while servers of an older release run (older servers write upgrade_weak), and these are connected: server cccccccccccc of release next");
    expect(refused.message).not.toContain("dddddddddddd");
    expect(await sql`select to_regclass('dex.upgrade_weak') as t`).toEqual([{ t: "dex.upgrade_weak" }]);

    // Once both are gone, it applies.
    await Promise.all(held.splice(0).map((c) => c.end()));
    expect(await migrate(sql, afterNext)).toHaveLength(1);
  });

  it("refuses a migration added to a release that already shipped while servers of that release, which lack it, are connected", async () => {
    await sql.unsafe("drop schema dex cascade");
    await migrate(sql, shipped);
    await serverOf(current.release, current.releaseLevel, shipped.at(-1)!.version, "ffffffffffff");
    // A patch build that (against docs/upgrades.md) lists its migration under the release that shipped.
    const dir = await migrationsDirWith([]);
    const manifest = JSON.parse(await readFile(`${dir}/releases.json`, "utf8")) as { releases: Array<{ migrations: object[] }> };
    const patchFile = fileAfter(shipped, 1, "patch");
    await writeFile(`${dir}/${patchFile}`, "create table dex.patched (id int);\n");
    manifest.releases.at(-1)!.migrations.push({ migration: patchFile.replace(".sql", ""), olderServers: "safe" });
    await writeFile(`${dir}/releases.json`, JSON.stringify(manifest));
    const patch = await loadMigrations(dir);
    const refused = await refusal(migrate(sql, patch));
    expect(refused.message).toBe(
      `refusing to migrate: pending migrations belong to releases that connected servers run, yet those servers do not know them (server ffffffffffff of release ${current.release} ` +
        `(1 connection(s)), which knows migrations up to ${shipped.at(-1)!.version}, lacks ${patchFile.replace(".sql", "")}): they would refuse to restart on that gap. ` +
        `A release that shipped is closed: list a new migration under a new release entry in releases.json (docs/upgrades.md, "Adding a migration"), ` +
        `or stop those servers and start ones that know it; --allow-older-servers applies it anyway`,
    );
    // The refusal is real: once applied, a server of the shipped build does not start.
    await migrate(sql, patch, { allowOlderServers: true });
    expect((await refusal(assertMigrated(sql, shipped))).code).toBe("unknown_migration");
    // A server of the patch build, which knows it, is no reason to refuse.
    await Promise.all(held.splice(0).map((c) => c.end()));
    await serverOf(current.release, current.releaseLevel, shipped.at(-1)!.version + 1, "ffffffffffff");
    expect(olderServerProblems(await connectedServers(sql), [], patch, patch.slice(-1)).refusals).toEqual([]);
  });

  it("sees a real server's release and id in its connections' application_name", async () => {
    const dir = await migrationsDirWith([]);
    const db2 = await createEmptyDatabase();
    const sql2 = postgres(db2.url, { max: 1, onnotice: () => {} });
    try {
      await migrate(sql2);
      const server = await startServer({ databaseUrl: db2.url, port: 0, migrationsDir: dir, logger: silentLogger });
      try {
        const seen = await connectedServers(sql2);
        expect(seen).toHaveLength(1);
        expect(seen[0]).toMatchObject({ release: current.release, releaseLevel: current.releaseLevel, knownVersion: shipped.at(-1)!.version, id: expect.stringMatching(/^[0-9a-f]{12}$/) });
        expect(seen[0]!.connections).toBeGreaterThanOrEqual(2);
        // A server of another database is not counted.
        expect(await connectedServers(sql)).toEqual([]);
      } finally {
        await server.close();
      }
    } finally {
      await sql2.end();
      await db2.drop();
    }
  });
});
