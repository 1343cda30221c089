import { migrationLabel } from "./migration-releases.js";
import type { ChecksumMismatch } from "./migrator.js";

/** Thrown when the database and this build disagree; `code` says how, the message what to do. */
export class SchemaMismatchError extends Error {
  constructor(
    readonly code: "not_migrated" | "behind" | "too_new" | "unknown_migration" | "checksum_mismatch" | "older_servers",
    message: string,
  ) {
    super(message);
    this.name = "SchemaMismatchError";
  }
}

export function checksumError(mismatched: ChecksumMismatch[]): SchemaMismatchError {
  const which = mismatched.map((m) => `${migrationLabel(m)} (recorded ${m.recorded}, this build's file ${m.expected})`).join("; ");
  return new SchemaMismatchError(
    "checksum_mismatch",
    `the database applied migration(s) that differ from this dex's files: ${which}. ` +
      `Its schema may not be the one this dex expects. If the edit is known to be harmless (a comment, ` +
      `whitespace), record this build's checksums with \`dex migrate --repair-checksums\`; otherwise run the ` +
      `dex whose files match, or restore the original files`,
  );
}
