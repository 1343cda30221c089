// The migrator that shipped with release 0.1 (0001-0006, git f4dd18f^), kept verbatim but for its
// imports: the code every real 0.1 server runs at start. Tests use it to prove what such a server
// does on a database a newer dex migrated (it knows no release window: any unknown migration fails it).
/**
 * Applies the ordered .sql files in migrations/ and checks whether a database
 * is up to date. Migrations run in one transaction under an advisory lock, so
 * several servers or `dex migrate` invocations racing each other apply each
 * file exactly once, and a failing file leaves the database as it was.
 */
import { createHash } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import type { Sql } from "../../src/store/db.js";

/** Where the migration files live: server/migrations (shipped in the package). */
export const migrationsDir: string = fileURLToPath(new URL("../../migrations/", import.meta.url));

/** Arbitrary constant key for pg_advisory_xact_lock: "dex migrate". */
const MIGRATION_LOCK_KEY = 0x6465_786d;

export interface Migration {
  version: number;
  name: string;
  sql: string;
  checksum: string;
}

export interface MigrationStatus {
  /** Versions recorded in the database. */
  applied: number[];
  /** Migrations in migrations/ that the database lacks. */
  pending: Migration[];
  /** Versions recorded in the database that this build does not know (a newer dex migrated it). */
  unknown: number[];
}

export async function loadMigrations(dir: string = migrationsDir): Promise<Migration[]> {
  const files = (await readdir(dir)).filter((file) => file.endsWith(".sql")).sort();
  const migrations: Migration[] = [];
  for (const file of files) {
    const match = /^(\d+)_([\w-]+)\.sql$/.exec(file);
    if (!match) throw new Error(`migration file name must look like 0001_name.sql: ${file}`);
    const sql = await readFile(`${dir}/${file}`, "utf8");
    migrations.push({
      version: Number(match[1]),
      name: match[2]!,
      sql,
      checksum: createHash("sha256").update(sql).digest("hex"),
    });
  }
  const versions = new Set<number>();
  for (const m of migrations) {
    if (versions.has(m.version)) throw new Error(`two migration files share version ${m.version}`);
    versions.add(m.version);
  }
  return migrations;
}

async function appliedVersions(sql: Sql): Promise<number[] | undefined> {
  const [exists] = await sql<{ exists: boolean }[]>`
    select to_regclass('dex.schema_migrations') is not null as exists`;
  if (!exists?.exists) return undefined;
  const rows = await sql<{ version: number }[]>`select version from dex.schema_migrations order by version`;
  return rows.map((row) => row.version);
}

export async function migrationStatus(sql: Sql, migrations?: Migration[]): Promise<MigrationStatus> {
  const all = migrations ?? (await loadMigrations());
  const applied = (await appliedVersions(sql)) ?? [];
  const known = new Set(all.map((m) => m.version));
  const appliedSet = new Set(applied);
  return {
    applied,
    pending: all.filter((m) => !appliedSet.has(m.version)),
    unknown: applied.filter((v) => !known.has(v)),
  };
}

/** Applies every pending migration; returns the versions it applied. */
export async function migrate(sql: Sql, migrations?: Migration[]): Promise<number[]> {
  const all = migrations ?? (await loadMigrations());
  return sql.begin(async (tx) => {
    await tx`select pg_advisory_xact_lock(${MIGRATION_LOCK_KEY})`;
    await tx`create schema if not exists dex`;
    await tx`
      create table if not exists dex.schema_migrations (
        version integer primary key,
        name text not null,
        checksum text not null,
        applied_at timestamptz not null default now()
      )`;
    const applied = new Set(
      (await tx<{ version: number }[]>`select version from dex.schema_migrations`).map((r) => r.version),
    );
    const done: number[] = [];
    for (const migration of all) {
      if (applied.has(migration.version)) continue;
      await tx.unsafe(migration.sql);
      await tx`
        insert into dex.schema_migrations (version, name, checksum)
        values (${migration.version}, ${migration.name}, ${migration.checksum})`;
      done.push(migration.version);
    }
    return done;
  });
}

/**
 * Throws a message telling the user what to do when the database is not at
 * exactly the schema this build expects.
 */
export async function assertMigrated(sql: Sql, migrations?: Migration[]): Promise<void> {
  const status = await migrationStatus(sql, migrations);
  if (status.unknown.length > 0) {
    throw new Error(
      `the database has migrations this dex does not know (${status.unknown.join(", ")}): ` +
        `it was migrated by a newer dex; run that version instead`,
    );
  }
  if (status.pending.length > 0) {
    const what = status.applied.length === 0 ? "has no dex schema" : "is behind";
    throw new Error(
      `the database ${what} (${status.pending.length} pending migration(s), ` +
        `latest ${status.pending.at(-1)!.version}_${status.pending.at(-1)!.name}): ` +
        `run \`dex migrate --database-url <url>\` first`,
    );
  }
}
