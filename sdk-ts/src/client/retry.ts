/** Retries of idempotent client calls while the server is briefly away. */
import { DexError } from "@dex/proto";
import { backoffDelay, sleep } from "../common/backoff.js";

/** Codes that mean "try again": the server was unreachable or restarting. */
export function isTransient(err: unknown): boolean {
  return err instanceof DexError && (err.code === "UNAVAILABLE" || err.code === "DEADLINE_EXCEEDED");
}

/**
 * Calls `fn` up to `attempts` times while it fails with a transient error.
 * Only for idempotent calls (reads, and starts carrying a request id).
 */
export async function withRetry<T>(
  fn: () => Promise<T>,
  options: { attempts?: number; signal?: AbortSignal; /** Keep retrying until this time (epoch ms) instead of counting attempts. */ until?: number } = {},
): Promise<T> {
  const attempts = options.attempts ?? 3;
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      const delay = backoffDelay(attempt, { initialMs: 100, maxMs: 1_000 });
      const exhausted = options.until !== undefined ? Date.now() + delay > options.until : attempt >= attempts;
      if (exhausted || !isTransient(err) || options.signal?.aborted) throw err;
      await sleep(delay, options.signal);
    }
  }
}
