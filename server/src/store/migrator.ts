/**
 * Applies the ordered .sql files in migrations/ and checks whether a database
 * is one this build may serve. Migrations run in one transaction under an
 * advisory lock, so several servers or `dex migrate` invocations racing each
 * other apply each file exactly once, and a failing file leaves the database
 * as it was.
 *
 * Rolling upgrades (docs/upgrades.md, decision 0028): every migration is an
 * expand step that servers one version older keep working on, so a build that
 * knows migrations up to N serves a database at N or N+1, and refuses one
 * behind N (run dex migrate) or at N+2 and beyond (no promise holds there).
 * Applied migrations are checked against this build's files by checksum: an
 * edited migration means the database's schema is not the one the code
 * expects, and only an explicit `dex migrate --repair-checksums` accepts it.
 */
import { createHash } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import type { Sql, TransactionSql } from "./db.js";

/** Where the migration files live: server/migrations (shipped in the package). */
export const migrationsDir: string = fileURLToPath(new URL("../../migrations/", import.meta.url));

/** Arbitrary constant key for pg_advisory_xact_lock: "dex migrate". */
const MIGRATION_LOCK_KEY = 0x6465_786d;

/** How many schema versions past its own a server runs on: the expand step of the next release. */
export const SCHEMA_VERSIONS_AHEAD_SERVED = 1;

export interface Migration {
  version: number;
  name: string;
  sql: string;
  checksum: string;
}

/** An applied migration whose recorded checksum is not the checksum of this build's file. */
export interface ChecksumMismatch {
  version: number;
  name: string;
  /** sha256 recorded when the migration was applied (or last repaired). */
  recorded: string;
  /** sha256 of this build's file. */
  expected: string;
}

export interface MigrationStatus {
  /** Versions recorded in the database. */
  applied: number[];
  /** Migrations in migrations/ that the database lacks. */
  pending: Migration[];
  /** Versions recorded in the database that this build does not know (a newer dex migrated it). */
  unknown: number[];
  /** Applied migrations this build knows whose checksums differ from its files. */
  mismatched: ChecksumMismatch[];
  /** Every recorded row, oldest first, for `dex migrate --status`. */
  recorded: Array<{ version: number; name: string; checksum: string; appliedAt: Date }>;
}

/** What the start check found: the database's schema version and this build's. */
export interface SchemaCompatibility {
  /** Highest version this build knows (N). */
  knownVersion: number;
  /** Highest version applied to the database: N, or N+1 during a rolling upgrade. */
  databaseVersion: number;
}

/** Thrown when the database and this build disagree; `code` says how, the message what to do. */
export class SchemaMismatchError extends Error {
  constructor(
    readonly code: "not_migrated" | "behind" | "too_new" | "checksum_mismatch",
    message: string,
  ) {
    super(message);
    this.name = "SchemaMismatchError";
  }
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

type RecordedRow = MigrationStatus["recorded"][number];

async function recordedMigrations(sql: Sql): Promise<RecordedRow[] | undefined> {
  const [exists] = await sql<{ exists: boolean }[]>`
    select to_regclass('dex.schema_migrations') is not null as exists`;
  if (!exists?.exists) return undefined;
  return sql<RecordedRow[]>`
    select version, name, checksum, applied_at as "appliedAt" from dex.schema_migrations order by version`;
}

function compare(all: Migration[], recorded: RecordedRow[]): Omit<MigrationStatus, "recorded"> {
  const byVersion = new Map(all.map((m) => [m.version, m]));
  const appliedSet = new Set(recorded.map((row) => row.version));
  const mismatched: ChecksumMismatch[] = [];
  for (const row of recorded) {
    const file = byVersion.get(row.version);
    if (file && file.checksum !== row.checksum) {
      mismatched.push({ version: row.version, name: file.name, recorded: row.checksum, expected: file.checksum });
    }
  }
  return {
    applied: recorded.map((row) => row.version),
    pending: all.filter((m) => !appliedSet.has(m.version)),
    unknown: recorded.filter((row) => !byVersion.has(row.version)).map((row) => row.version),
    mismatched,
  };
}

export async function migrationStatus(sql: Sql, migrations?: Migration[]): Promise<MigrationStatus> {
  const all = migrations ?? (await loadMigrations());
  const recorded = (await recordedMigrations(sql)) ?? [];
  return { ...compare(all, recorded), recorded };
}

function checksumError(mismatched: ChecksumMismatch[]): SchemaMismatchError {
  const which = mismatched
    .map((m) => `${String(m.version).padStart(4, "0")}_${m.name} (recorded ${m.recorded}, this build's file ${m.expected})`)
    .join("; ");
  return new SchemaMismatchError(
    "checksum_mismatch",
    `the database applied migration(s) that differ from this dex's files: ${which}. ` +
      `Its schema may not be the one this dex expects. If the edit is known to be harmless (a comment, ` +
      `whitespace), record this build's checksums with \`dex migrate --repair-checksums\`; otherwise run the ` +
      `dex whose files match, or restore the original files`,
  );
}

/** Applies every pending migration; returns the versions it applied. Refuses an edited applied migration. */
export async function migrate(sql: Sql, migrations?: Migration[]): Promise<number[]> {
  const all = migrations ?? (await loadMigrations());
  return sql.begin(async (tx) => {
    await lockAndCreateTable(tx);
    const recorded = await tx<RecordedRow[]>`
      select version, name, checksum, applied_at as "appliedAt" from dex.schema_migrations order by version`;
    const { mismatched } = compare(all, recorded);
    if (mismatched.length > 0) throw checksumError(mismatched);
    const applied = new Set(recorded.map((row) => row.version));
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
 * The escape hatch for a known-harmless edit of an applied migration (a
 * comment, whitespace): records this build's checksum for every applied
 * migration whose file differs, and returns what it changed. It runs no SQL
 * of the files: a real change to an applied migration needs a new migration.
 */
export async function repairChecksums(sql: Sql, migrations?: Migration[]): Promise<ChecksumMismatch[]> {
  const all = migrations ?? (await loadMigrations());
  return sql.begin(async (tx) => {
    await lockAndCreateTable(tx);
    const recorded = await tx<RecordedRow[]>`
      select version, name, checksum, applied_at as "appliedAt" from dex.schema_migrations order by version`;
    const { mismatched } = compare(all, recorded);
    for (const m of mismatched) {
      await tx`update dex.schema_migrations set checksum = ${m.expected} where version = ${m.version}`;
    }
    return mismatched;
  });
}

async function lockAndCreateTable(tx: TransactionSql): Promise<void> {
  await tx`select pg_advisory_xact_lock(${MIGRATION_LOCK_KEY})`;
  await tx`create schema if not exists dex`;
  await tx`
    create table if not exists dex.schema_migrations (
      version integer primary key,
      name text not null,
      checksum text not null,
      applied_at timestamptz not null default now()
    )`;
}

/**
 * Throws a SchemaMismatchError telling the user what to do unless this build
 * may serve the database: every migration it knows applied with matching
 * checksums, and nothing applied past the next version (N+1).
 */
export async function assertMigrated(sql: Sql, migrations?: Migration[]): Promise<SchemaCompatibility> {
  const all = migrations ?? (await loadMigrations());
  const status = await migrationStatus(sql, all);
  const knownVersion = all.at(-1)?.version ?? 0;
  const databaseVersion = status.applied.at(-1) ?? 0;
  if (status.mismatched.length > 0) throw checksumError(status.mismatched);
  const tooNew = status.unknown.filter((v) => v > knownVersion + SCHEMA_VERSIONS_AHEAD_SERVED || v < knownVersion);
  if (tooNew.length > 0) {
    throw new SchemaMismatchError(
      "too_new",
      `the database is at schema version ${databaseVersion} (applied ${status.unknown.join(", ")}, unknown here), ` +
        `but this dex knows versions up to ${knownVersion} and serves only ${knownVersion} or ${knownVersion + SCHEMA_VERSIONS_AHEAD_SERVED}: ` +
        `it was migrated by a newer dex, more than one version ahead; run a dex that knows version ${databaseVersion} ` +
        `(or at least ${databaseVersion - SCHEMA_VERSIONS_AHEAD_SERVED}) instead (docs/upgrades.md)`,
    );
  }
  if (status.pending.length > 0) {
    const latest = status.pending.at(-1)!;
    const what = status.applied.length === 0 ? "has no dex schema" : "is behind";
    throw new SchemaMismatchError(
      status.applied.length === 0 ? "not_migrated" : "behind",
      `the database ${what} (${status.pending.length} pending migration(s), ` +
        `latest ${latest.version}_${latest.name}): ` +
        `run \`dex migrate --database-url <url>\` first`,
    );
  }
  return { knownVersion, databaseVersion };
}
