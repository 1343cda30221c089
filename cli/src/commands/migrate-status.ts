/**
 * `dex migrate --status` and `--repair-checksums`: what an operator reads before and during a
 * rolling upgrade (docs/upgrades.md). Status changes nothing; repair records this build's checksums
 * for applied migrations whose files were edited harmlessly, and is the only way past a mismatch.
 */
import type { ChecksumMismatch, MigrationStatus } from "@dex/server";

const SHORT_CHECKSUM = 12;

function label(version: number, name: string): string {
  return `${String(version).padStart(4, "0")}_${name}`;
}

/** One line per migration (applied, pending, unknown, checksum mismatch), then a summary line. */
export function formatMigrationStatus(status: MigrationStatus, known: Array<{ version: number; name: string; checksum: string }>): string {
  const mismatched = new Map(status.mismatched.map((m) => [m.version, m]));
  const unknown = new Set(status.unknown);
  const lines: string[] = [];
  for (const row of status.recorded) {
    const mismatch = mismatched.get(row.version);
    const state = mismatch ? "CHECKSUM MISMATCH" : unknown.has(row.version) ? "applied, unknown to this dex" : "applied";
    const checksum = mismatch
      ? `recorded ${mismatch.recorded.slice(0, SHORT_CHECKSUM)}, file ${mismatch.expected.slice(0, SHORT_CHECKSUM)}`
      : row.checksum.slice(0, SHORT_CHECKSUM);
    lines.push(`${label(row.version, row.name)}  ${state}  ${checksum}  ${row.appliedAt.toISOString()}`);
  }
  for (const m of status.pending) lines.push(`${label(m.version, m.name)}  pending  ${m.checksum.slice(0, SHORT_CHECKSUM)}`);
  const knownVersion = known.at(-1)?.version ?? 0;
  const databaseVersion = status.applied.at(-1) ?? 0;
  lines.push(`database at version ${databaseVersion}; this dex knows up to ${knownVersion} and serves ${knownVersion} or ${knownVersion + 1}${verdict(status, knownVersion)}`);
  return `${lines.join("\n")}\n`;
}

function verdict(status: MigrationStatus, knownVersion: number): string {
  if (status.mismatched.length > 0) return ": checksum mismatch, see above (dex migrate --repair-checksums if the edit is harmless)";
  if (status.unknown.some((v) => v > knownVersion + 1 || v < knownVersion)) return ": too new for this dex";
  if (status.pending.length > 0) return ": behind, run dex migrate";
  return "";
}

export function formatRepaired(repaired: ChecksumMismatch[]): string {
  if (repaired.length === 0) return "checksums match; nothing to repair\n";
  return repaired.map((m) => `repaired checksum of ${label(m.version, m.name)}: ${m.recorded} -> ${m.expected}\n`).join("");
}
