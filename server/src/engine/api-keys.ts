/**
 * API keys: their text, their hash, and creating, listing and revoking them
 * (`dex auth`, which talks to the database directly so that the first admin
 * key can exist before any server accepts a call). Checking a key on a call is
 * in authenticator.ts; which role may call what is in api/permissions.ts.
 *
 * Key text: `dex_<id>_<secret>`, id 8 random bytes and secret 32 random bytes,
 * both lower-case hex. The id is not secret (it finds the row and appears in
 * `dex auth list`); the secret is shown once, at creation, and only its sha256
 * is stored (why a fast hash: migrations/0006_api_keys.sql).
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import type { Queryable } from "../store/db.js";
import {
  findApiKey,
  findApiKeyByName,
  insertApiKey,
  insertApiKeyIfAbsent,
  listApiKeys as listRows,
  revokeApiKey as revokeRow,
  type ApiKeyRecord,
  type ApiKeyRole,
} from "../store/api-keys.js";
import { QUEUE_NAME_PATTERN } from "./model.js";

export type { ApiKeyRecord, ApiKeyRole };

export const API_KEY_ROLES: readonly ApiKeyRole[] = ["worker", "client", "admin"];
const NAME_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;
const KEY_PATTERN = /^dex_([0-9a-f]{16})_([0-9a-f]{64})$/;

/** A mistake in what the caller asked for (`dex auth` prints it as one line). */
export class ApiKeyUsageError extends Error {
  override readonly name = "ApiKeyUsageError";
}

export function hashSecret(secret: string): Buffer {
  return createHash("sha256").update(secret, "utf8").digest();
}

/** Constant-time: how much of a guess matches must not show in the answer's timing. */
export function secretMatches(secret: string, stored: Buffer): boolean {
  const hash = hashSecret(secret);
  return hash.length === stored.length && timingSafeEqual(hash, stored);
}

/** The id and secret of a key's text; undefined when it is not dex key text at all. */
export function parseApiKey(text: string): { id: string; secret: string } | undefined {
  const match = KEY_PATTERN.exec(text);
  return match ? { id: match[1]!, secret: match[2]! } : undefined;
}

export interface NewApiKey {
  name: string;
  role: ApiKeyRole;
  /** Worker keys only: the task queues (workflow or activity, by name) it may use. Default: all. */
  queues?: string[];
}

/** Creates a key; returns its row and its text, which exists nowhere else afterwards. */
export async function createApiKey(sql: Queryable, request: NewApiKey): Promise<{ key: ApiKeyRecord; text: string }> {
  const { name, role } = request;
  if (!NAME_PATTERN.test(name ?? "")) {
    throw new ApiKeyUsageError(`key name must be 1 to 64 letters, digits, '.', '_' or '-', got "${name}"`);
  }
  if (!API_KEY_ROLES.includes(role)) {
    throw new ApiKeyUsageError(`role must be one of ${API_KEY_ROLES.join(", ")}, got "${role}"`);
  }
  const queues = request.queues?.length ? [...new Set(request.queues)] : null;
  if (queues && role !== "worker") {
    throw new ApiKeyUsageError(`only worker keys are limited to queues; a ${role} key may use every queue (drop --queue)`);
  }
  for (const queue of queues ?? []) {
    if (!QUEUE_NAME_PATTERN.test(queue)) {
      throw new ApiKeyUsageError(`queue name must be 1 to 64 letters, digits, '.', '_' or '-', got "${queue}"`);
    }
  }
  const id = randomBytes(8).toString("hex");
  const secret = randomBytes(32).toString("hex");
  const key = await insertApiKey(sql, { id, name, role, queues, secretSha256: hashSecret(secret) });
  if (!key) {
    throw new ApiKeyUsageError(`a key named "${name}" already exists (names stay taken after revocation); choose another name`);
  }
  return { key, text: `dex_${id}_${secret}` };
}

export function listApiKeys(sql: Queryable): Promise<ApiKeyRecord[]> {
  return listRows(sql);
}

/** Revokes the named key; servers stop accepting it within their key cache time (authenticator.ts). */
export async function revokeApiKey(sql: Queryable, name: string): Promise<{ key: ApiKeyRecord; alreadyRevoked: boolean }> {
  const result = await revokeRow(sql, name);
  if (!result) throw new ApiKeyUsageError(`no key named "${name}"; \`dex auth list\` shows the keys`);
  return { key: result.key, alreadyRevoked: result.outcome === "already" };
}

/** The name of the admin key `dex migrate` stores from DEX_BOOTSTRAP_ADMIN_KEY_FILE. */
export const BOOTSTRAP_ADMIN_KEY_NAME = "bootstrap-admin";

/**
 * What bootstrapAdminKey found: `created` (stored now), `present` (stored
 * before, by this or an earlier run: `key` may carry another name when the
 * text was already a key of its own), `revoked` (the bootstrap key was revoked:
 * it stays revoked, and a file with new key text does not replace it).
 */
export type BootstrapOutcome = { outcome: "created" | "present" | "revoked"; key: ApiKeyRecord };

/**
 * Stores the given key text as the admin key "bootstrap-admin" unless that key
 * exists: the first admin key of a deployment, chosen by the operator ahead of
 * time (a secret file) instead of read off `dex auth create`'s output.
 * Idempotent, and safe when several callers run it at once (one insert wins,
 * see insertApiKeyIfAbsent). Only the secret's sha256 is stored, as for every key.
 * Why `dex migrate` and not `dex server` calls it: docs/decisions/0007-bootstrap-admin-key.md.
 */
export async function bootstrapAdminKey(sql: Queryable, text: string, source: string): Promise<BootstrapOutcome> {
  const parsed = parseApiKey(text.trim());
  if (!parsed) {
    throw new ApiKeyUsageError(
      `${source} does not hold a dex API key (dex_<16 hex digits>_<64 hex digits>); ` +
        "generate one with: echo \"dex_$(openssl rand -hex 8)_$(openssl rand -hex 32)\"",
    );
  }
  const name = BOOTSTRAP_ADMIN_KEY_NAME;
  const secretSha256 = hashSecret(parsed.secret);
  const inserted = await insertApiKeyIfAbsent(sql, { id: parsed.id, name, role: "admin", queues: null, secretSha256 });
  if (inserted) return { outcome: "created", key: inserted };

  const sameKey = (key: ApiKeyRecord) => key.id === parsed.id && secretMatches(parsed.secret, key.secretSha256);
  const named = await findApiKeyByName(sql, name);
  if (named) {
    // Revoked stays revoked, whatever the file holds now: revoking the bootstrap
    // key once real admin keys exist is the advice, and the file may well stay.
    if (named.revokedAt) return { outcome: "revoked", key: named };
    if (sameKey(named)) return { outcome: "present", key: named };
    throw new ApiKeyUsageError(
      `the admin key "${name}" exists with another secret than the key in ${source}; the file only seeds the first admin key: ` +
        `put that key's text back in the file, or stop passing the file (create further keys with \`dex auth create\`)`,
    );
  }
  // The name is free, so the id is taken: the file holds a key that already exists under another name.
  const other = await findApiKey(sql, parsed.id);
  if (other && sameKey(other) && other.role === "admin" && !other.revokedAt) return { outcome: "present", key: other };
  throw new ApiKeyUsageError(
    `the key id in ${source} (${parsed.id}) belongs to another key ("${other?.name ?? "?"}"); generate new key text for the file`,
  );
}
