/**
 * `dex migrate --status` and `--repair-checksums`: what an operator reads before and during a
 * rolling upgrade (docs/upgrades.md). Status changes nothing: it lists the migrations by release,
 * the release of the database and of this dex, the dex servers connected and what `dex migrate`
 * would say about them. Repair records this build's checksums for applied migrations whose files
 * were edited harmlessly, and is the only way past a mismatch.
 */
import {
  buildRelease,
  databaseRelease,
  describeServer,
  judgeSchema,
  migrationLabel,
  olderServerProblems,
  SchemaMismatchError,
  type ChecksumMismatch,
  type ConnectedServer,
  type Migration,
  type MigrationStatus,
} from "@dex/server";

const SHORT_CHECKSUM = 12;

/** Migrations grouped by release (a header line each), then the verdict, the servers and what migrate would do. */
export function formatMigrationStatus(status: MigrationStatus, known: Migration[], servers: ConnectedServer[]): string {
  const mismatched = new Map(status.mismatched.map((m) => [m.version, m]));
  const byVersion = new Map(known.map((m) => [m.version, m]));
  const rows: Array<{ release: string; line: string }> = [];
  for (const row of status.recorded) {
    const file = byVersion.get(row.version);
    const mismatch = mismatched.get(row.version);
    const state = mismatch ? "CHECKSUM MISMATCH" : file ? "applied" : "applied, unknown to this dex";
    const checksum = mismatch
      ? `recorded ${mismatch.recorded.slice(0, SHORT_CHECKSUM)}, file ${mismatch.expected.slice(0, SHORT_CHECKSUM)}`
      : row.checksum.slice(0, SHORT_CHECKSUM);
    const release = file?.release ?? (row.release === null ? "not recorded" : `${row.release}, unknown to this dex`);
    rows.push({ release, line: `${migrationLabel(row)}  ${state}  ${checksum}  ${row.appliedAt.toISOString()}` });
  }
  for (const m of status.pending) {
    const safety = m.olderServers === "safe" ? "" : `  ${m.olderServers === "unsafe" ? "UNSAFE" : "weak"} with older servers running`;
    rows.push({ release: m.release, line: `${migrationLabel(m)}  pending  ${m.checksum.slice(0, SHORT_CHECKSUM)}${safety}` });
  }
  const lines: string[] = [];
  let current: string | undefined;
  for (const { release, line } of rows) {
    if (release !== current) lines.push(`release ${(current = release)}`);
    lines.push(`  ${line}`);
  }
  const build = buildRelease(known);
  const db = databaseRelease(known, status.recorded);
  const where = db ? `release ${db.release} (version ${status.applied.at(-1)})` : "no dex schema";
  lines.push(`database at ${where}; this dex is release ${build.release} and serves the schema of release ${build.release} or the next one${verdict(status, known)}`);
  lines.push(`dex servers connected: ${servers.length === 0 ? "none seen" : servers.map(describeServer).join("; ")}`);
  if (status.pending.length > 0 && servers.length > 0) {
    const { refusals, warnings } = olderServerProblems(servers, status.recorded, known, status.pending);
    for (const refusal of refusals) lines.push(`dex migrate would refuse: ${refusal}`);
    for (const warning of warnings) lines.push(`dex migrate would warn: ${warning}`);
  }
  return `${lines.join("\n")}\n`;
}

/** The start check's verdict in a few words (schema-window.ts is the one definition of the window). */
function verdict(status: MigrationStatus, known: Migration[]): string {
  try {
    judgeSchema(known, status);
    return "";
  } catch (err) {
    if (!(err instanceof SchemaMismatchError)) throw err;
    switch (err.code) {
      case "checksum_mismatch":
        return ": checksum mismatch, see above (dex migrate --repair-checksums if the edit is harmless)";
      case "too_new":
      case "unknown_migration":
        return ": too new for this dex";
      default:
        return ": behind, run dex migrate";
    }
  }
}

export function formatRepaired(repaired: ChecksumMismatch[]): string {
  if (repaired.length === 0) return "checksums match; nothing to repair\n";
  return repaired.map((m) => `repaired checksum of ${migrationLabel(m)}: ${m.recorded} -> ${m.expected}\n`).join("");
}
