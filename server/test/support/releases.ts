/**
 * "A build of a later (or earlier) release" for the migrator's tests (decision 0033): a temporary
 * copy of the shipped migrations and their release manifest, with releases added (each with its
 * files) or the newest releases left out. A connection named like a server stands for a server of
 * some release, as pg_stat_activity shows it to `dex migrate`.
 */
import { cp, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import postgres from "postgres";
import { expect } from "vitest";
import { loadMigrations, migrationsDir, SchemaMismatchError, type Migration } from "../../src/store/migrator.js";
import type { OlderServersSafety } from "../../src/store/migration-releases.js";

export interface ReleaseSpec {
  release: string;
  /** File name (`0017_name.sql`) -> its SQL and safety (default safe). */
  files: Record<string, { sql: string; olderServers?: OlderServersSafety; why?: string }>;
}

interface Manifest {
  about?: string;
  releases: Array<{ release: string; migrations: Array<{ migration: string; olderServers: string; why?: string }> }>;
}

const dirs: string[] = [];

/** A migrations directory: the shipped one, its newest `drop` releases removed, `added` releases appended. */
export async function migrationsDirWith(added: ReleaseSpec[], drop = 0): Promise<string> {
  const dir = await mkdtemp(`${tmpdir()}/dex-migrations-`);
  dirs.push(dir);
  await cp(migrationsDir, dir, { recursive: true });
  const manifest = JSON.parse(await readFile(`${dir}/releases.json`, "utf8")) as Manifest;
  for (const removed of manifest.releases.splice(manifest.releases.length - drop, drop)) {
    for (const m of removed.migrations) await rm(`${dir}/${m.migration}.sql`);
  }
  for (const spec of added) {
    const migrations = [];
    for (const [file, { sql, olderServers = "safe", why }] of Object.entries(spec.files)) {
      await writeFile(`${dir}/${file}`, sql);
      migrations.push({ migration: file.replace(/\.sql$/, ""), olderServers, ...(why ? { why } : {}) });
    }
    manifest.releases.push({ release: spec.release, migrations });
  }
  await writeFile(`${dir}/releases.json`, JSON.stringify(manifest, null, 2));
  return dir;
}

/** Loads a build from migrationsDirWith(…). */
export async function buildWith(added: ReleaseSpec[], drop = 0): Promise<Migration[]> {
  return loadMigrations(await migrationsDirWith(added, drop));
}

/** `0017_name.sql` for the version `n` past the shipped newest. */
export function fileAfter(shipped: Migration[], n: number, name: string): string {
  return `${String(shipped.at(-1)!.version + n).padStart(4, "0")}_${name}.sql`;
}

export async function removeMigrationDirs(): Promise<void> {
  await Promise.all(dirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
}

export async function listSql(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((f) => f.endsWith(".sql")).sort();
}

/** A connection that looks like a dex server's to pg_stat_activity, held open until `end`. */
export async function fakeServerConnection(url: string, applicationName: string): Promise<postgres.Sql> {
  const sql = postgres(url, { max: 1, onnotice: () => {}, connection: { application_name: applicationName } });
  await sql`select 1`;
  return sql;
}

/** The SchemaMismatchError a call throws (failing the test if it throws anything else or nothing), for its code and message. */
export async function refusal(promise: Promise<unknown>): Promise<SchemaMismatchError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(SchemaMismatchError);
  return err as SchemaMismatchError;
}
