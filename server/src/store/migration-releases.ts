/**
 * The release manifest beside the migrations (server/migrations/releases.json, decision 0033): which
 * dex release introduced each migration, and whether it is safe while servers of the previous
 * release still run. Operators upgrade release by release, and one release may bring many
 * migrations (0.2 brings ten), so the rolling-upgrade window is counted in releases, not files: a
 * server of release R runs on the schema of R and of R+1. A release's level is its position in the
 * manifest (0.1 is level 1): levels, not labels, are compared, because an older build must order a
 * newer release it has never heard of, and it reads that release's level from dex.schema_migrations.
 */
import { readFile } from "node:fs/promises";

export const MANIFEST_FILE = "releases.json";

/**
 * Whether a migration keeps servers of the previous release correct while they share the database:
 * "safe"; "weak" (they work, but a guarantee the release brings is missing until they are gone:
 * `dex migrate` warns); "unsafe" (they misbehave: `dex migrate` refuses while they are connected).
 */
export type OlderServersSafety = "safe" | "weak" | "unsafe";

const SAFETIES: readonly OlderServersSafety[] = ["safe", "weak", "unsafe"];

/**
 * The longest release label: servers announce it last in an application_name Postgres cuts at 63
 * bytes (connected-servers.ts), and 12 characters is what the main pool's name leaves whole at
 * level 99 and migration 9999 ("0.10.0-rc.12" fits).
 */
export const RELEASE_LABEL_MAX = 12;
const RELEASE_LABEL = new RegExp(`^[\\w.+-]{1,${RELEASE_LABEL_MAX}}$`);

/** What the manifest says of one migration. */
export interface MigrationRelease {
  /** The release that introduced it, as operators name it ("0.2"). */
  release: string;
  /** That release's position in the manifest, from 1. */
  releaseLevel: number;
  olderServers: OlderServersSafety;
  /** For weak and unsafe: what goes wrong while servers of the previous release run. */
  why?: string;
}

/** The manifest read and checked: each migration's release, by file label (`0013_run_timeouts`). */
export interface ReleaseManifest {
  /** Every release, oldest first; a release's level is its index + 1. The last is the build's own. */
  releases: string[];
  byMigration: Map<string, MigrationRelease>;
}

/** The manifest as a file: readable JSON, checked here rather than trusted. */
interface ManifestFile {
  releases: Array<{ release: string; migrations: Array<{ migration: string; olderServers: string; why?: string }> }>;
}

/** A migration as its file is named, without `.sql`: `0013_run_timeouts`. */
export function migrationLabel(m: { version: number; name: string }): string {
  return `${String(m.version).padStart(4, "0")}_${m.name}`;
}

function invalid(dir: string, what: string): Error {
  return new Error(`${dir}/${MANIFEST_FILE}: ${what} (see docs/upgrades.md, "Adding a migration")`);
}

/** Reads the manifest and checks that it lists exactly `labels` (the .sql files), once each, in order. */
export async function loadReleaseManifest(dir: string, labels: string[]): Promise<ReleaseManifest> {
  let text: string;
  try {
    text = await readFile(`${dir}/${MANIFEST_FILE}`, "utf8");
  } catch (err) {
    throw invalid(dir, `cannot read the release manifest (${(err as Error).message})`);
  }
  let parsed: ManifestFile;
  try {
    parsed = JSON.parse(text) as ManifestFile;
  } catch (err) {
    throw invalid(dir, `not valid JSON (${(err as Error).message})`);
  }
  if (!Array.isArray(parsed?.releases)) throw invalid(dir, `"releases" must be a list`);
  const releases: string[] = [];
  const byMigration = new Map<string, MigrationRelease>();
  const order: string[] = [];
  for (const [index, entry] of parsed.releases.entries()) {
    const release = entry?.release;
    if (typeof release !== "string" || !RELEASE_LABEL.test(release)) {
      throw invalid(dir, `release ${index + 1} needs a "release" name like "0.2" (letters, digits, . _ + -; at most ${RELEASE_LABEL_MAX})`);
    }
    if (releases.includes(release)) throw invalid(dir, `release "${release}" is listed twice`);
    // A release without migrations is listed all the same: its level must be its own, or the next
    // release's migrations would land one level too low, inside the window of servers two releases old.
    if (!Array.isArray(entry.migrations)) {
      throw invalid(dir, `release "${release}" needs a "migrations" list (empty for a release that brings none)`);
    }
    releases.push(release);
    for (const m of entry.migrations) {
      const label = m?.migration;
      if (typeof label !== "string") throw invalid(dir, `release "${release}" has an entry without "migration"`);
      if (byMigration.has(label)) throw invalid(dir, `${label} is listed twice`);
      if (!SAFETIES.includes(m.olderServers as OlderServersSafety)) {
        throw invalid(dir, `${label}: "olderServers" must be one of ${SAFETIES.join(", ")}, got ${JSON.stringify(m.olderServers)}`);
      }
      if (m.olderServers !== "safe" && !m.why) throw invalid(dir, `${label} is ${m.olderServers}: say "why" (what goes wrong while older servers run)`);
      // dex migrate's refusals are one line each (a deploy pipeline's log shows the line that failed).
      if (m.why !== undefined && (typeof m.why !== "string" || /[\r\n]/.test(m.why))) throw invalid(dir, `${label}: "why" must be one line of text`);
      byMigration.set(label, {
        release,
        releaseLevel: releases.length,
        olderServers: m.olderServers as OlderServersSafety,
        ...(m.why ? { why: m.why } : {}),
      });
      order.push(label);
    }
  }
  const missing = labels.filter((label) => !byMigration.has(label));
  if (missing.length > 0) throw invalid(dir, `${missing.join(", ")} belong(s) to no release; add each to the release that ships it`);
  const stray = order.filter((label) => !labels.includes(label));
  if (stray.length > 0) throw invalid(dir, `lists ${stray.join(", ")}, which has no .sql file`);
  if (order.join() !== labels.join()) throw invalid(dir, `migrations must be listed in file order (${labels.join(", ")})`);
  return { releases, byMigration };
}
