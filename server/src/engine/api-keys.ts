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
import { insertApiKey, listApiKeys as listRows, revokeApiKey as revokeRow, type ApiKeyRecord, type ApiKeyRole } from "../store/api-keys.js";
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
