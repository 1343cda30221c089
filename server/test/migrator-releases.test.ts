/**
 * The release manifest beside the migrations (server/migrations/releases.json, decision 0033) is
 * checked when migrations load: every .sql file in exactly one release, in file order, each with a
 * known safety and, unless safe, the reason. A build with a broken manifest never starts or migrates.
 */
import { readFile, rm, writeFile } from "node:fs/promises";
import { afterAll, describe, expect, it } from "vitest";
import { buildRelease, loadMigrations, migrationLabel } from "../src/store/migrator.js";
import { migrationsDirWith, removeMigrationDirs } from "./support/releases.js";

interface Manifest {
  releases: Array<{ release: string; migrations: Array<{ migration: string; olderServers: string; why?: string }> }>;
}

/** A copy of the shipped migrations whose manifest `edit` changed; resolves with loadMigrations' error message. */
async function loadError(edit: (manifest: Manifest, dir: string) => Promise<void> | void): Promise<string> {
  const dir = await migrationsDirWith([]);
  const manifest = JSON.parse(await readFile(`${dir}/releases.json`, "utf8")) as Manifest;
  await edit(manifest, dir);
  await writeFile(`${dir}/releases.json`, JSON.stringify(manifest));
  return loadMigrations(dir).then(
    () => "loaded",
    (err: Error) => err.message,
  );
}

describe("the release manifest", () => {
  afterAll(removeMigrationDirs);

  it("places every shipped migration in a release, in order, the newest release last", async () => {
    const shipped = await loadMigrations();
    expect(shipped.map((m) => m.releaseLevel)).toEqual([...shipped.map((m) => m.releaseLevel)].sort((a, b) => a - b));
    expect(shipped.filter((m) => m.olderServers !== "safe" && !m.why)).toEqual([]);
    // The fleet-unsafe migration docs/upgrades.md names is marked so.
    expect(shipped.filter((m) => m.olderServers === "unsafe").map(migrationLabel)).toContain("0013_run_timeouts");
  });

  it("refuses a .sql file no release lists, a listed migration without a file, a duplicate, and file order broken", async () => {
    expect(await loadError(async (_, dir) => writeFile(`${dir}/0999_unlisted.sql`, "select 1;\n"))).toMatch(
      /releases\.json: 0999_unlisted belong\(s\) to no release; add each to the release that ships it/,
    );
    expect(await loadError(async (m, dir) => rm(`${dir}/${m.releases.at(-1)!.migrations.at(-1)!.migration}.sql`))).toMatch(/which has no \.sql file/);
    expect(await loadError((m) => void m.releases[0]!.migrations.push(m.releases.at(-1)!.migrations[0]!))).toMatch(/is listed twice/);
    expect(
      await loadError((m) => {
        const first = m.releases[0]!.migrations;
        [first[0], first[1]] = [first[1]!, first[0]!];
      }),
    ).toMatch(/migrations must be listed in file order/);
  });

  it("lists a release without migrations at a level of its own: a build of it says that release, and the next release's migrations come a level later", async () => {
    const shipped = await loadMigrations();
    const dir = await migrationsDirWith([]);
    const manifest = JSON.parse(await readFile(`${dir}/releases.json`, "utf8")) as Manifest;
    manifest.releases.push({ release: "quiet", migrations: [] });
    await writeFile(`${dir}/releases.json`, JSON.stringify(manifest));
    const quiet = await loadMigrations(dir);
    expect(buildRelease(quiet)).toEqual({ release: "quiet", releaseLevel: buildRelease(shipped).releaseLevel + 1 });
    expect(quiet.map((m) => m.version)).toEqual(shipped.map((m) => m.version));

    const after = `${String(shipped.at(-1)!.version + 1).padStart(4, "0")}_after_quiet`;
    manifest.releases.push({ release: "loud", migrations: [{ migration: after, olderServers: "safe" }] });
    await writeFile(`${dir}/releases.json`, JSON.stringify(manifest));
    await writeFile(`${dir}/${after}.sql`, "select 1;\n");
    const loud = await loadMigrations(dir);
    expect(loud.at(-1)).toMatchObject({ release: "loud", releaseLevel: buildRelease(shipped).releaseLevel + 2 });
    expect(buildRelease(loud)).toEqual({ release: "loud", releaseLevel: buildRelease(shipped).releaseLevel + 2 });

    expect(await loadError((m) => void m.releases.push({ release: "no-list" } as Manifest["releases"][number]))).toMatch(
      /release "no-list" needs a "migrations" list \(empty for a release that brings none\)/,
    );
  });

  it("refuses an unknown safety, a weak or unsafe migration without its reason, a reason of several lines, a long release label, and a missing manifest", async () => {
    expect(await loadError((m) => void (m.releases[0]!.migrations[0]!.olderServers = "maybe"))).toMatch(/"olderServers" must be one of safe, weak, unsafe, got "maybe"/);
    expect(
      await loadError((m) => {
        const entry = m.releases[0]!.migrations[0]!;
        entry.olderServers = "unsafe";
        delete entry.why;
      }),
    ).toMatch(/is unsafe: say "why"/);
    expect(
      await loadError((m) => {
        const entry = m.releases[0]!.migrations[0]!;
        entry.olderServers = "weak";
        entry.why = "first line\nsecond line";
      }),
    ).toMatch(/0001_init: "why" must be one line of text/);
    expect(await loadError((m) => void (m.releases.at(-1)!.release = "0.10.0-rc.123"))).toMatch(/needs a "release" name like "0.2" \(letters, digits, \. _ \+ -; at most 12\)/);
    const dir = await migrationsDirWith([]);
    await rm(`${dir}/releases.json`);
    await expect(loadMigrations(dir)).rejects.toThrow(/releases\.json: cannot read the release manifest/);
  });
});
