/**
 * Which databases a build serves (decision 0033, counted in releases; 0028 counted files): a server
 * of release R serves a database whose migrations are all of R or of R+1, with every migration it
 * knows applied. It refuses one behind (run dex migrate), one with a migration of R+2 or later (no
 * promise holds there: the expand rule covers one release), one with a migration of its own
 * release or older that it does not know (a gap it cannot reason about), and one with a migration
 * it does not know recorded without a release (it cannot tell how far ahead that is). A build
 * learns the release of a migration it does not know from dex.schema_migrations, where the dex
 * that applied it recorded the release and its level.
 */
import { migrationLabel } from "./migration-releases.js";
import type { Migration, MigrationStatus, RecordedMigration } from "./migrator.js";
import { checksumError, SchemaMismatchError } from "./schema-mismatch-error.js";

/** How many releases past its own a server runs on: the expand steps of the next release. */
export const RELEASES_AHEAD_SERVED = 1;

/** A release and its level (its position in the manifest, from 1). */
export interface ReleaseLevel {
  release: string;
  releaseLevel: number;
}

/** What the start check found: this build's release and the database's. */
export interface SchemaCompatibility {
  /** Highest migration version this build knows. */
  knownVersion: number;
  /** Highest migration version applied to the database. */
  databaseVersion: number;
  /** This build's release: the last of its manifest (buildRelease). */
  release: string;
  releaseLevel: number;
  /** The newest release any applied migration belongs to: this build's, or the next during a rolling upgrade. */
  databaseRelease: string;
  databaseReleaseLevel: number;
}

/**
 * The build's release as its manifest says it (the last entry, which may bring no migration), by
 * the list loadMigrations returned. Kept beside the list rather than in each Migration: a release
 * without migrations has no Migration to carry it.
 */
const manifestRelease = new WeakMap<readonly Migration[], ReleaseLevel>();

export function rememberBuildRelease(all: readonly Migration[], release: ReleaseLevel): void {
  manifestRelease.set(all, release);
}

/**
 * This build's release: the last release of its manifest, for a list loadMigrations returned; for
 * any other list (a copy, a filtered one: "the build of an older release" in tests), the release of
 * its newest migration.
 */
export function buildRelease(all: readonly Migration[]): ReleaseLevel {
  const remembered = manifestRelease.get(all);
  if (remembered) return remembered;
  const last = all.at(-1);
  return last ? { release: last.release, releaseLevel: last.releaseLevel } : { release: "none", releaseLevel: 0 };
}

/**
 * The newest release the database's applied migrations belong to, by this build's manifest for the
 * ones it knows and by the recorded release for the others; undefined for a database with none.
 */
export function databaseRelease(all: Migration[], recorded: RecordedMigration[]): ReleaseLevel | undefined {
  const known = new Map(all.map((m) => [m.version, m]));
  let newest: ReleaseLevel | undefined;
  for (const row of recorded) {
    const m = known.get(row.version);
    const level = m ? { release: m.release, releaseLevel: m.releaseLevel } : row.release !== null && row.releaseLevel !== null ? { release: row.release, releaseLevel: row.releaseLevel } : undefined;
    if (level && (!newest || level.releaseLevel > newest.releaseLevel)) newest = level;
  }
  return newest;
}

function labels(rows: RecordedMigration[]): string {
  return rows.map((row) => migrationLabel(row) + (row.release === null ? "" : ` (release ${row.release})`)).join(", ");
}

/** Returns what was found if this build may serve the database; throws a SchemaMismatchError saying what to do otherwise. */
export function judgeSchema(all: Migration[], status: MigrationStatus): SchemaCompatibility {
  if (status.mismatched.length > 0) throw checksumError(status.mismatched);
  const build = buildRelease(all);
  const knownVersion = all.at(-1)?.version ?? 0;
  const dbRelease = databaseRelease(all, status.recorded);
  const unknown = status.recorded.filter((row) => status.unknown.includes(row.version));
  const ours = `this dex (release ${build.release}, migrations up to ${knownVersion})`;

  const gap = unknown.filter((row) => row.version < knownVersion || (row.releaseLevel !== null && row.releaseLevel <= build.releaseLevel));
  if (gap.length > 0) {
    throw new SchemaMismatchError(
      "unknown_migration",
      `the database has migration(s) ${labels(gap)} that ${ours} does not know, though they are not newer than its own: ` +
        `it was migrated by another build of this release or by a newer dex; run that dex, or the newest build of release ${build.release} (docs/upgrades.md)`,
    );
  }
  const unplaced = unknown.filter((row) => row.releaseLevel === null);
  if (unplaced.length > 0) {
    throw new SchemaMismatchError(
      "too_new",
      `the database has migration(s) ${labels(unplaced)} that ${ours} does not know, recorded without a release ` +
        `(by hand, or by a newer dex that did not say it), so this dex cannot tell whether it may serve it; run a dex that knows them (docs/upgrades.md)`,
    );
  }
  const tooFar = unknown.filter((row) => row.releaseLevel! > build.releaseLevel + RELEASES_AHEAD_SERVED);
  if (tooFar.length > 0) {
    const newest = dbRelease!;
    throw new SchemaMismatchError(
      "too_new",
      `the database is at release ${newest.release} (migrated by a newer dex: ${labels(tooFar)}), but ${ours} serves only the schema of ` +
        `release ${build.release} or the next one: it is ${newest.releaseLevel - build.releaseLevel} releases behind the database; ` +
        `run servers of release ${newest.release} (or of the release just before it) instead (docs/upgrades.md)`,
    );
  }
  if (status.pending.length > 0) {
    const latest = status.pending.at(-1)!;
    const empty = status.applied.length === 0;
    const where = empty ? "has no dex schema" : `is at release ${dbRelease?.release ?? "unknown"}, behind ${ours}`;
    throw new SchemaMismatchError(
      empty ? "not_migrated" : "behind",
      `the database ${where}: ${status.pending.length} pending migration(s), latest ${migrationLabel(latest)}; ` +
        `run \`dex migrate --database-url <url>\` of release ${build.release} first`,
    );
  }
  return {
    knownVersion,
    databaseVersion: status.applied.at(-1) ?? 0,
    release: build.release,
    releaseLevel: build.releaseLevel,
    databaseRelease: dbRelease?.release ?? build.release,
    databaseReleaseLevel: dbRelease?.releaseLevel ?? build.releaseLevel,
  };
}
