/**
 * `dex migrate` with a server of the previous release still running (decision 0033,
 * docs/upgrades.md), as an operator meets it: a database at release 0.1, a real server process that
 * knows only release 0.1's migrations (the shipped build told so through ServerOptions.migrationsDir,
 * tests/e2e/fixtures/upgrade-drill-server.mjs: it names its connections as a 0.1 server), and the
 * compiled `dex migrate` of this release, which brings 0013, unsafe beside 0.1 servers.
 */
import { cp, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import postgres from "postgres";
import { freePort } from "@dex/server";
import { loadMigrations, migrate, migrationsDir, type Migration } from "@dex/server/store/migrator";
import { createEmptyDatabase, E2E_TEST_TIMEOUT_MS, type TestDatabase } from "@dex/testing";
import { runDex } from "../support/server-process.js";
import { startProcess, stopProcess, type Started } from "../support/spawned.js";

const serverFixture = "tests/e2e/fixtures/upgrade-drill-server.mjs";

/** A copy of the shipped migrations without the newest release: what a build of the previous release ships. */
async function previousReleaseDir(): Promise<string> {
  const dir = await mkdtemp(`${tmpdir()}/dex-migrations-previous-`);
  await cp(migrationsDir, dir, { recursive: true });
  const manifest = JSON.parse(await readFile(`${dir}/releases.json`, "utf8")) as { releases: Array<{ migrations: Array<{ migration: string }> }> };
  for (const m of manifest.releases.pop()!.migrations) await rm(`${dir}/${m.migration}.sql`);
  await writeFile(`${dir}/releases.json`, JSON.stringify(manifest));
  return dir;
}

describe("dex migrate beside a server of the previous release", { timeout: E2E_TEST_TIMEOUT_MS }, () => {
  let db: TestDatabase;
  let sql: postgres.Sql;
  let dir: string;
  let shipped: Migration[];
  let previous: Migration[];
  let oldServer: Started | undefined;
  const env = () => ({ DEX_DATABASE_URL: db.url });

  beforeAll(async () => {
    db = await createEmptyDatabase();
    sql = postgres(db.url, { max: 2, onnotice: () => {} });
    dir = await previousReleaseDir();
    shipped = await loadMigrations();
    previous = await loadMigrations(dir);
    await migrate(sql, previous);
    oldServer = await startProcess([serverFixture, db.url, String(await freePort()), dir], /listening on \S+/);
  });
  afterAll(async () => {
    if (oldServer) await stopProcess(oldServer);
    await sql?.end();
    await db?.drop();
    await rm(dir, { recursive: true, force: true });
  });

  it("refuses in one line naming the unsafe migration, the server and its release, and what to do; --status says so beforehand", async () => {
    const [prev, current] = [previous.at(-1)!.release, shipped.at(-1)!.release];
    const status = await runDex(["migrate", "--status"], env());
    expect(status.code).toBe(0);
    expect(status.stdout).toMatch(new RegExp(`\\n  0013_run_timeouts  pending  [0-9a-f]{12}  UNSAFE with older servers running\\n`));
    expect(status.stdout).toMatch(new RegExp(`\\ndex servers connected: server [0-9a-f]{12} of release ${prev} \\(\\d+ connection\\(s\\)\\)\\n`));
    expect(status.stdout).toMatch(/\ndex migrate would refuse: 0013_run_timeouts \(release [\w.]+\) is not safe while servers of an older release run/);

    const refused = await runDex(["migrate"], env());
    expect(refused.code).toBe(1);
    expect(refused.stdout).toBe("");
    expect(refused.stderr.trim().split("\n")).toHaveLength(1);
    expect(refused.stderr).not.toMatch(/\n\s+at /);
    expect(refused.stderr).toMatch(
      new RegExp(
        `^dex: refusing to migrate: 0013_run_timeouts \\(release ${current}\\) is not safe while servers of an older release run \\(.+\\), ` +
          `and these are connected: server [0-9a-f]{12} of release ${prev} \\(\\d+ connection\\(s\\)\\)\\. Stop them, run dex migrate again, ` +
          `then start servers of release ${current} \\(a short stop; docs/upgrades.md\\); --allow-older-servers applies it while they run\\n$`,
      ),
    );
    const [applied] = await sql<{ version: number }[]>`select max(version) as version from dex.schema_migrations`;
    expect(applied!.version).toBe(previous.at(-1)!.version);
  });

  it("applies with --allow-older-servers, warning of each migration that is not safe beside them", async () => {
    const allowed = await runDex(["migrate", "--allow-older-servers"], env());
    expect(allowed.code).toBe(0);
    expect(allowed.stdout).toBe(`applied ${shipped.length - previous.length} migration(s): ${shipped.slice(previous.length).map((m) => m.version).join(", ")}\n`);
    const warnings = allowed.stderr.trim().split("\n");
    expect(warnings[0]).toMatch(/^dex: warning: applying anyway \(--allow-older-servers\): 0013_run_timeouts /);
    const weak = shipped.slice(previous.length).filter((m) => m.olderServers === "weak");
    expect(warnings.slice(1).map((w) => /^dex: warning: (\w+) /.exec(w)?.[1])).toEqual(weak.map((m) => `${String(m.version).padStart(4, "0")}_${m.name}`));
  });
});
