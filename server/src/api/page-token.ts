/**
 * ListRuns page tokens: base64url of
 *   u8 version (1) | 16 B last run id | 4 B fingerprint of the filter
 * The fingerprint stops a token from being replayed with other filters, which
 * would silently skip or repeat runs.
 *
 * The fingerprint hashes the validated filter as JSON, where an absent filter
 * (undefined) leaves no trace. So a filter added later (task_queue, proto
 * field 9) keeps the tokens of listings that do not use it valid across a
 * rolling upgrade, and a token of a listing that does use it cannot be
 * replayed on a server that ignores the field: that server's fingerprint of
 * the same request lacks the queue, and it refuses the token.
 */
import { createHash } from "node:crypto";
import { invalid } from "../engine/validation.js";

const VERSION = 1;

export function filterFingerprint(filter: unknown): Buffer {
  return createHash("sha256").update(JSON.stringify(filter, (_k, v: unknown) => (v instanceof Date ? v.toISOString() : v))).digest().subarray(0, 4);
}

export function encodePageToken(lastRunId: string, fingerprint: Buffer): string {
  return Buffer.concat([Buffer.from([VERSION]), Buffer.from(lastRunId.replace(/-/g, ""), "hex"), fingerprint]).toString("base64url");
}

export function decodePageToken(token: string, fingerprint: Buffer): string {
  if (token.length > 64 || !/^[A-Za-z0-9_-]+$/.test(token)) throw badToken();
  const bytes = Buffer.from(token, "base64url");
  if (bytes.length !== 21 || bytes[0] !== VERSION) throw badToken();
  if (!bytes.subarray(17).equals(fingerprint)) {
    throw invalid("page_token belongs to a listing with other filters; repeat the filters of the first page, or start over without a token");
  }
  const hex = bytes.subarray(1, 17).toString("hex");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

function badToken() {
  return invalid("page_token is not a token from a previous ListRuns answer; pass next_page_token unchanged");
}
