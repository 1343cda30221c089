/**
 * Applies the ordered .sql files in migrations/ and reports what a database has applied.
 * Migrations run in one transaction under an advisory lock, so several servers or `dex migrate`
 * invocations racing each other apply each file exactly once, and a failing file leaves the
 * database as it was.
 *
 * Rolling upgrades (docs/upgrades.md, decisions 0028 and 0033): each migration belongs to a release
 * (migrations/releases.json), a server of release R serves the schema of R and R+1
 * (schema-window.ts), and `dex migrate` refuses to apply a migration that servers of an older
 * release still connected cannot run on (older-servers.ts). Applied migrations are checked against
 * this build's files by checksum: an edited migration means the database's schema is not the one
 * the code expects, and only an explicit `dex migrate --repair-checksums` accepts it.
 */
import { createHash } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import type { Sql, TransactionSql } from "./db.js";
import { loadReleaseManifest, migrationLabel, type MigrationRelease } from "./migration-releases.js";
import { checkOlderServers } from "./older-servers.js";
import { checksumError } from "./schema-mismatch-error.js";

import { judgeSchema, rememberBuildRelease, type SchemaCompatibility } from "./schema-window.js";

export { migrationLabel } from "./migration-releases.js";
export { SchemaMismatchError } from "./schema-mismatch-error.js";
export { buildRelease, databaseRelease, judgeSchema, RELEASES_AHEAD_SERVED, type SchemaCompatibility } from "./schema-window.js";

/** Where the migration files live: server/migrations (shipped in the package). */
export const migrationsDir: string = fileURLToPath(new URL("../../migrations/", import.meta.url));

/** Arbitrary constant key for pg_advisory_xact_lock: "dex migrate". */
const MIGRATION_LOCK_KEY = 0x6465_786d;

/**
 * How long the bootstrap waits for the table lock `alter table dex.schema_migrations` needs. While
 * it waits in the lock queue, every later reader of the table (each server's start check) waits
 * behind it, so it gives up soon and says to run again rather than stall a fleet's starts.
 */
const BOOTSTRAP_LOCK_TIMEOUT_MS = 2_000;

export interface Migration extends MigrationRelease {
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

/** A row of dex.schema_migrations. */
export interface RecordedMigration {
  version: number;
  name: string;
  checksum: string;
  appliedAt: Date;
  /** The release that introduced it, as the dex that applied it knew; null when applied by a dex before 0.2. */
  release: string | null;
  releaseLevel: number | null;
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
  recorded: RecordedMigration[];
}

export interface MigrateOptions {
  /**
   * Apply even when dex servers of an older release are connected that a pending migration is
   * unsafe with, or that the migration would leave two releases behind (`--allow-older-servers`).
   * Default false: refuse, naming them.
   */
  allowOlderServers?: boolean;
  /** Told each warning (a weak migration applied beside older servers, or an allowed refusal). */
  onWarning?: (message: string) => void;
}

/** Reads the .sql files and the release manifest beside them; refuses a file no release lists. */
export async function loadMigrations(dir: string = migrationsDir): Promise<Migration[]> {
  const files = (await readdir(dir)).filter((file) => file.endsWith(".sql")).sort();
  const parsed: Array<Omit<Migration, keyof MigrationRelease>> = [];
  for (const file of files) {
    const match = /^(\d+)_([\w-]+)\.sql$/.exec(file);
    if (!match) throw new Error(`migration file name must look like 0001_name.sql: ${file}`);
    const sql = await readFile(`${dir}/${file}`, "utf8");
    parsed.push({ version: Number(match[1]), name: match[2]!, sql, checksum: createHash("sha256").update(sql).digest("hex") });
  }
  const versions = new Set<number>();
  for (const m of parsed) {
    if (versions.has(m.version)) throw new Error(`two migration files share version ${m.version}`);
    versions.add(m.version);
  }
  const manifest = await loadReleaseManifest(dir, parsed.map(migrationLabel));
  const migrations = parsed.map((m) => ({ ...m, ...manifest.byMigration.get(migrationLabel(m))! }));
  rememberBuildRelease(migrations, { release: manifest.releases.at(-1) ?? "none", releaseLevel: manifest.releases.length });
  return migrations;
}

// to_jsonb(m) reads the release columns when they exist: a database only older dexes migrated lacks them.
async function readRecorded(sql: Sql | TransactionSql): Promise<RecordedMigration[]> {
  return sql<RecordedMigration[]>`
    select version, name, checksum, applied_at as "appliedAt",
      to_jsonb(m) ->> 'release' as release, (to_jsonb(m) ->> 'release_level')::int as "releaseLevel"
    from dex.schema_migrations m order by version`;
}

async function recordedMigrations(sql: Sql): Promise<RecordedMigration[] | undefined> {
  const [exists] = await sql<{ exists: boolean }[]>`
    select to_regclass('dex.schema_migrations') is not null as exists`;
  if (!exists?.exists) return undefined;
  return readRecorded(sql);
}

function compare(all: Migration[], recorded: RecordedMigration[]): Omit<MigrationStatus, "recorded"> {
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

/**
 * Applies every pending migration, recording the release of each; returns the versions it applied.
 * Refuses an edited applied migration, and (unless allowed) a migration older servers still
 * connected cannot run on.
 */
export async function migrate(sql: Sql, migrations?: Migration[], options: MigrateOptions = {}): Promise<number[]> {
  const all = migrations ?? (await loadMigrations());
  await bootstrapTable(sql);
  return sql.begin(async (tx) => {
    await tx`select pg_advisory_xact_lock(${MIGRATION_LOCK_KEY})`;
    const recorded = await readRecorded(tx);
    const { mismatched, pending } = compare(all, recorded);
    if (mismatched.length > 0) throw checksumError(mismatched);
    await recordReleases(tx, all, recorded);
    if (pending.length === 0) return [];
    await checkOlderServers(tx, recorded, all, pending, options);
    for (const migration of pending) {
      await tx.unsafe(migration.sql);
      await tx`
        insert into dex.schema_migrations (version, name, checksum, release, release_level)
        values (${migration.version}, ${migration.name}, ${migration.checksum}, ${migration.release}, ${migration.releaseLevel})`;
    }
    return pending.map((m) => m.version);
  });
}

/** Fills in the release of rows an older dex applied, so that the table says it to every later reader. */
async function recordReleases(tx: TransactionSql, all: Migration[], recorded: RecordedMigration[]): Promise<void> {
  const known = new Map(all.map((m) => [m.version, m]));
  const missing = recorded.filter((row) => row.release === null && known.has(row.version)).map((row) => known.get(row.version)!);
  if (missing.length === 0) return;
  await tx`
    update dex.schema_migrations s set release = r.release, release_level = r.level
    from unnest(${missing.map((m) => m.version)}::int[], ${missing.map((m) => m.release)}::text[], ${missing.map((m) => m.releaseLevel)}::int[])
      as r(version, release, level)
    where s.version = r.version`;
}

/**
 * The escape hatch for a known-harmless edit of an applied migration (a
 * comment, whitespace): records this build's checksum for every applied
 * migration whose file differs, and returns what it changed. It runs no SQL
 * of the files: a real change to an applied migration needs a new migration.
 */
export async function repairChecksums(sql: Sql, migrations?: Migration[]): Promise<ChecksumMismatch[]> {
  const all = migrations ?? (await loadMigrations());
  await bootstrapTable(sql);
  return sql.begin(async (tx) => {
    await tx`select pg_advisory_xact_lock(${MIGRATION_LOCK_KEY})`;
    const { mismatched } = compare(all, await readRecorded(tx));
    for (const m of mismatched) {
      await tx`update dex.schema_migrations set checksum = ${m.expected} where version = ${m.version}`;
    }
    return mismatched;
  });
}

/**
 * Creates dex.schema_migrations, or adds the release columns to one a dex before 0.2 created, in a
 * short transaction of its own before the migrations' (under the same advisory lock, so concurrent
 * migrators still take turns). In the migrations' transaction, the `alter table`'s access exclusive
 * lock would be held until the last migration commits (0015's index build, 0016's backfill), and
 * every server start, which reads this table, would wait that long.
 */
async function bootstrapTable(sql: Sql): Promise<void> {
  try {
    await sql.begin(async (tx) => {
      await tx`select pg_advisory_xact_lock(${MIGRATION_LOCK_KEY})`;
      // After the advisory lock: waiting for another migrator's turn is not what the timeout bounds.
      await tx.unsafe(`set local lock_timeout = ${BOOTSTRAP_LOCK_TIMEOUT_MS}`);
      await tx`create schema if not exists dex`;
      await tx`
        create table if not exists dex.schema_migrations (
          version integer primary key,
          name text not null,
          checksum text not null,
          applied_at timestamptz not null default now(),
          release text,
          release_level integer
        )`;
      // Add them only when missing: an `alter table` takes an access exclusive lock even when
      // `if not exists` makes it a no-op.
      const [columns] = await tx<{ n: number }[]>`
        select count(*)::int as n from pg_attribute
        where attrelid = 'dex.schema_migrations'::regclass and attname in ('release', 'release_level') and not attisdropped`;
      if (columns!.n < 2) {
        await tx`alter table dex.schema_migrations add column if not exists release text, add column if not exists release_level integer`;
      }
    });
  } catch (err) {
    if ((err as { code?: string }).code !== "55P03") throw err; // lock_not_available
    throw new Error(
      `could not add the release columns to dex.schema_migrations within ${BOOTSTRAP_LOCK_TIMEOUT_MS} ms: another session holds a lock on it ` +
        `(a long transaction that read it; see pg_locks); nothing was migrated, run dex migrate again`,
      { cause: err },
    );
  }
}

/**
 * Throws a SchemaMismatchError telling the user what to do unless this build may serve the
 * database: every migration it knows applied with matching checksums, and nothing applied past the
 * next release (schema-window.ts).
 */
export async function assertMigrated(sql: Sql, migrations?: Migration[]): Promise<SchemaCompatibility> {
  const all = migrations ?? (await loadMigrations());
  return judgeSchema(all, await migrationStatus(sql, all));
}
