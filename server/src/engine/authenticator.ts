/**
 * Checks the API key of a call. Key rows are cached in memory for `cacheMs`
 * (default 5 s) so that a busy worker's polls and completions do not each
 * read dex.api_keys; the secret itself is checked against the cached hash on
 * every call. The price: a revocation (`dex auth revoke`, written straight to
 * the database) takes effect on each server within `cacheMs`, since servers
 * sharing a database do not tell each other. Unknown key ids are cached too,
 * so a client hammering with made-up keys costs one read per id and period.
 */
import { DexError } from "@dex/proto";
import type { Queryable } from "../store/db.js";
import { findApiKey } from "../store/api-keys.js";
import { parseApiKey, secretMatches, type ApiKeyRecord, type ApiKeyRole } from "./api-keys.js";

export const DEFAULT_API_KEY_CACHE_MS = 5_000;
/** Bounds the cache when someone sends many made-up key ids; the oldest entries go first. */
const MAX_CACHED_KEYS = 10_000;

/** Who a call is: the key that authenticated it. */
export interface Principal {
  readonly keyId: string;
  readonly name: string;
  readonly role: ApiKeyRole;
  /** The task queues a worker key is limited to; undefined = every queue. */
  readonly queues: ReadonlySet<string> | undefined;
}

/** What a call is told to do when it has no usable key. */
export const HOW_TO_GET_A_KEY = "an admin creates one with `dex auth create --name NAME --role worker|client|admin`";

interface CacheEntry {
  record: Promise<ApiKeyRecord | undefined>;
  expiresAt: number;
}

export class Authenticator {
  private readonly cache = new Map<string, CacheEntry>();

  constructor(
    private readonly sql: Queryable,
    private readonly cacheMs: number = DEFAULT_API_KEY_CACHE_MS,
    private readonly now: () => number = Date.now,
  ) {}

  /** The principal of a key's text; UNAUTHENTICATED (saying what to do) when it does not authenticate. */
  async authenticate(keyText: string): Promise<Principal> {
    const parsed = parseApiKey(keyText);
    if (!parsed) {
      throw new DexError(
        "UNAUTHENTICATED",
        `the API key is malformed: dex keys look like dex_<16 hex digits>_<64 hex digits>, exactly as \`dex auth create\` printed them; ${HOW_TO_GET_A_KEY}`,
      );
    }
    const record = await this.lookup(parsed.id);
    // The same answer for an unknown id and a wrong secret: neither tells a guesser anything.
    if (!record || !secretMatches(parsed.secret, record.secretSha256)) {
      throw new DexError("UNAUTHENTICATED", `the API key is not valid (unknown key or wrong secret); ${HOW_TO_GET_A_KEY}`);
    }
    if (record.revokedAt) {
      throw new DexError("UNAUTHENTICATED", `the API key "${record.name}" was revoked; ${HOW_TO_GET_A_KEY}`);
    }
    return {
      keyId: record.id,
      name: record.name,
      role: record.role,
      queues: record.queues ? new Set(record.queues) : undefined,
    };
  }

  private lookup(id: string): Promise<ApiKeyRecord | undefined> {
    const now = this.now();
    const cached = this.cache.get(id);
    if (cached && cached.expiresAt > now) return cached.record;
    if (cached) this.cache.delete(id);
    // Concurrent calls with the same key share one read.
    const record = findApiKey(this.sql, id);
    const entry = { record, expiresAt: now + this.cacheMs };
    this.cache.set(id, entry);
    // A failed read (database away) is not cached: the next call tries again.
    record.catch(() => {
      if (this.cache.get(id) === entry) this.cache.delete(id);
    });
    if (this.cache.size > MAX_CACHED_KEYS) this.cache.delete(this.cache.keys().next().value!);
    return record;
  }
}
