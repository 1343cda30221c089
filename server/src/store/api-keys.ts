/**
 * dex.api_keys (migration 0006): the rows behind `dex auth` and the server's
 * key checks. Secrets never reach this module, only their sha256.
 */
import type { Queryable } from "./db.js";
import { isUniqueViolation } from "./errors.js";

export type ApiKeyRole = "worker" | "client" | "admin";

export interface ApiKeyRecord {
  id: string;
  name: string;
  role: ApiKeyRole;
  /** Task queues a worker key is limited to; null = every queue. */
  queues: string[] | null;
  secretSha256: Buffer;
  createdAt: Date;
  revokedAt: Date | null;
}

interface RawKey {
  id: string;
  name: string;
  role: ApiKeyRole;
  queues: string[] | null;
  secret_sha256: Buffer;
  created_at: Date;
  revoked_at: Date | null;
}

function fromRaw(r: RawKey): ApiKeyRecord {
  return {
    id: r.id,
    name: r.name,
    role: r.role,
    queues: r.queues,
    secretSha256: r.secret_sha256,
    createdAt: r.created_at,
    revokedAt: r.revoked_at,
  };
}

/** Inserts a key; returns undefined when the name is taken (by a live or a revoked key). */
export async function insertApiKey(
  sql: Queryable,
  key: { id: string; name: string; role: ApiKeyRole; queues: string[] | null; secretSha256: Buffer },
): Promise<ApiKeyRecord | undefined> {
  try {
    const [row] = await sql<RawKey[]>`
      insert into dex.api_keys (id, name, role, queues, secret_sha256)
      values (${key.id}, ${key.name}, ${key.role}, ${key.queues}, ${key.secretSha256})
      returning *`;
    return fromRaw(row!);
  } catch (err) {
    if (isUniqueViolation(err, "api_keys_name_key")) return undefined;
    throw err;
  }
}

/**
 * Inserts a key unless its id or its name is taken; returns the row only when
 * this statement inserted it. `on conflict do nothing` with no target covers
 * both unique constraints: of several callers inserting the same key at once,
 * one inserts and the others wait for its commit and then insert nothing, so
 * callers never see a unique violation and need no lock of their own.
 */
export async function insertApiKeyIfAbsent(
  sql: Queryable,
  key: { id: string; name: string; role: ApiKeyRole; queues: string[] | null; secretSha256: Buffer },
): Promise<ApiKeyRecord | undefined> {
  const [row] = await sql<RawKey[]>`
    insert into dex.api_keys (id, name, role, queues, secret_sha256)
    values (${key.id}, ${key.name}, ${key.role}, ${key.queues}, ${key.secretSha256})
    on conflict do nothing
    returning *`;
  return row ? fromRaw(row) : undefined;
}

/** The key with this name, revoked or not (names are unique for good). */
export async function findApiKeyByName(sql: Queryable, name: string): Promise<ApiKeyRecord | undefined> {
  const [row] = await sql<RawKey[]>`select * from dex.api_keys where name = ${name}`;
  return row ? fromRaw(row) : undefined;
}

/** The key with this id, revoked or not; the per-call lookup (primary key). */
export async function findApiKey(sql: Queryable, id: string): Promise<ApiKeyRecord | undefined> {
  const [row] = await sql<RawKey[]>`select * from dex.api_keys where id = ${id}`;
  return row ? fromRaw(row) : undefined;
}

export async function listApiKeys(sql: Queryable): Promise<ApiKeyRecord[]> {
  const rows = await sql<RawKey[]>`select * from dex.api_keys order by created_at, name`;
  return rows.map(fromRaw);
}

/**
 * Revokes the key with this name. `revoked`: this call revoked it;
 * `already`: it was revoked before (its time is kept); undefined: no such key.
 */
export async function revokeApiKey(
  sql: Queryable,
  name: string,
): Promise<{ key: ApiKeyRecord; outcome: "revoked" | "already" } | undefined> {
  const [updated] = await sql<RawKey[]>`
    update dex.api_keys set revoked_at = now() where name = ${name} and revoked_at is null returning *`;
  if (updated) return { key: fromRaw(updated), outcome: "revoked" };
  const [existing] = await sql<RawKey[]>`select * from dex.api_keys where name = ${name}`;
  return existing ? { key: fromRaw(existing), outcome: "already" } : undefined;
}

/** Keys that are not revoked: the startup hint of a server that requires keys. */
export async function countLiveApiKeys(sql: Queryable): Promise<number> {
  const [row] = await sql<{ n: number }[]>`select count(*)::int as n from dex.api_keys where revoked_at is null`;
  return row!.n;
}
