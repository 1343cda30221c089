/** Retries of idempotent client calls while the server is briefly away. */
import { DexError } from "@dex/proto";
import { backoffDelay, sleep } from "../common/backoff.js";

/** Codes that mean "try again": the server was unreachable or restarting. */
export function isTransient(err: unknown): boolean {
  return err instanceof DexError && (err.code === "UNAVAILABLE" || err.code === "DEADLINE_EXCEEDED");
}

/**
 * CANCELLED on a call this process did not cancel: a server that shuts down
 * past its grace period cancels the calls it still serves. Whether the call
 * took effect is unknown, exactly as for UNAVAILABLE, and the calls withRetry
 * makes are safe to repeat (a completion that did land answers NOT_FOUND).
 * Only callers that never cancel their own calls may count on this: withRetry
 * is not given the call's own signal.
 */
function cancelledByServer(err: unknown): boolean {
  return err instanceof DexError && err.code === "CANCELLED";
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
      if (exhausted || options.signal?.aborted || !(isTransient(err) || cancelledByServer(err))) throw err;
      await sleep(delay, options.signal);
    }
  }
}
