/**
 * `dex migrate`'s guard for the servers still running (decision 0033). Before it applies anything,
 * inside the migration's transaction and under its advisory lock, it reads which dex servers are
 * connected (connected-servers.ts) and refuses, naming them, when:
 * - a pending migration is marked unsafe with servers of an older release (releases.json) and
 *   servers of an older release than that migration's are connected; or
 * - the migration would leave a connected server two releases or more behind the database (outside
 *   the window it serves: it would refuse to restart, and the expand rule promises it nothing); or
 * - any migration is pending while a server that does not say its release is connected: those are
 *   builds before decision 0033 (every 0.1 server), which know no window and refuse at start any
 *   migration they do not know, so they serve only their exact schema; or
 * - a pending migration of a connected server's own release or older is newer than the newest it
 *   knows (one added to a release that already shipped): it would refuse to restart on that gap.
 * A weak migration beside older servers is a warning. `allowOlderServers` turns refusals into
 * warnings. Refuse rather than warn by default: `dex migrate` runs in deploy pipelines, where a
 * warning is read after the incident; the flag makes accepting the risk a written decision.
 * The guard sees the moment it runs: a server of an older release starting after it is not stopped
 * by it (one two releases behind refuses to start by itself; docs/upgrades.md says to start none).
 */
import type { TransactionSql } from "./db.js";
import { connectedServers, describeServer, type ConnectedServer } from "./connected-servers.js";
import { migrationLabel } from "./migration-releases.js";
import type { MigrateOptions, Migration, RecordedMigration } from "./migrator.js";
import { SchemaMismatchError } from "./schema-mismatch-error.js";
import { databaseRelease, RELEASES_AHEAD_SERVED } from "./schema-window.js";

const ALLOW_FLAG = "--allow-older-servers";

function describe(servers: ConnectedServer[]): string {
  return servers.map(describeServer).join("; ");
}

/** Throws (or, when allowed, warns) about connected servers the pending migrations would leave behind. */
export async function checkOlderServers(
  tx: TransactionSql,
  recorded: RecordedMigration[],
  all: Migration[],
  pending: Migration[],
  options: MigrateOptions,
): Promise<void> {
  const servers = await connectedServers(tx);
  if (servers.length === 0) return;
  const problems = olderServerProblems(servers, recorded, all, pending);
  if (problems.refusals.length > 0 && !options.allowOlderServers) {
    throw new SchemaMismatchError("older_servers", `refusing to migrate: ${problems.refusals.join("; and ")}`);
  }
  for (const refusal of problems.refusals) options.onWarning?.(`applying anyway (${ALLOW_FLAG}): ${refusal}`);
  for (const warning of problems.warnings) options.onWarning?.(warning);
}

/** Pending migrations of `server`'s own release or older that it does not know: a gap it would refuse at start (schema-window.ts). */
function gapsFor(server: ConnectedServer, pending: Migration[]): Migration[] {
  if (server.knownVersion === undefined) return [];
  return pending.filter((m) => m.releaseLevel <= server.releaseLevel && m.version > server.knownVersion!);
}

/** The pure rule, for tests and for `dex migrate --status`: what applying `pending` would do to `servers`. */
export function olderServerProblems(
  servers: ConnectedServer[],
  recorded: RecordedMigration[],
  all: Migration[],
  pending: Migration[],
): { refusals: string[]; warnings: string[] } {
  const refusals: string[] = [];
  const warnings: string[] = [];
  const target = pending.reduce((level, m) => Math.max(level, m.releaseLevel), databaseRelease(all, recorded)?.releaseLevel ?? 0);
  const targetRelease = all.find((m) => m.releaseLevel === target)?.release ?? `level ${target}`;
  const unannounced = servers.filter((s) => s.release === undefined);
  if (unannounced.length > 0) {
    refusals.push(
      `dex servers that do not say their release are connected (${describe(unannounced)}): they were built before release 0.2 and refuse to start ` +
        `on a database with any migration they do not know, so they would not restart after this one. Stop them, run this again, then start servers ` +
        `of release ${targetRelease} (upgrading from them is a stop of the fleet; docs/upgrades.md); ${ALLOW_FLAG} applies it anyway`,
    );
  }
  const stranded = servers.filter((s) => s.release !== undefined && s.releaseLevel < target - RELEASES_AHEAD_SERVED);
  if (stranded.length > 0) {
    refusals.push(
      `it would take the database to release ${targetRelease} while dex servers two or more releases older are connected (${describe(stranded)}); ` +
        `a server runs on its own release's schema and the next one's only. Upgrade them release by release first (the \`dex migrate\` and servers of each ` +
        `release in between), or stop them, then run this again; ${ALLOW_FLAG} applies it anyway (docs/upgrades.md)`,
    );
  }
  const gapped = servers.filter((s) => !stranded.includes(s) && gapsFor(s, pending).length > 0);
  if (gapped.length > 0) {
    const which = gapped.map((s) => `${describeServer(s)}, which knows migrations up to ${s.knownVersion}, lacks ${gapsFor(s, pending).map(migrationLabel).join(", ")}`);
    refusals.push(
      `pending migrations belong to releases that connected servers run, yet those servers do not know them (${which.join("; ")}): they would refuse to ` +
        `restart on that gap. A release that shipped is closed: list a new migration under a new release entry in releases.json (docs/upgrades.md, ` +
        `"Adding a migration"), or stop those servers and start ones that know it; ${ALLOW_FLAG} applies it anyway`,
    );
  }
  for (const m of pending) {
    // A server already refused above is not named again for each migration.
    const older = servers.filter((s) => s.releaseLevel < m.releaseLevel && !stranded.includes(s) && !unannounced.includes(s) && !gapped.includes(s));
    if (older.length === 0 || m.olderServers === "safe") continue;
    if (m.olderServers === "unsafe") {
      refusals.push(
        `${migrationLabel(m)} (release ${m.release}) is not safe while servers of an older release run (${m.why}), and these are connected: ${describe(older)}. ` +
          `Stop them, run dex migrate again, then start servers of release ${m.release} (a short stop; docs/upgrades.md); ${ALLOW_FLAG} applies it while they run`,
      );
    } else {
      warnings.push(`${migrationLabel(m)} (release ${m.release}) is weak while servers of an older release run: ${m.why}; connected: ${describe(older)}. Replace them soon (docs/upgrades.md)`);
    }
  }
  return { refusals, warnings };
}
