/** Exponential back-off with full jitter, and an abortable sleep. Used by the client and workers. */

export interface BackoffOptions {
  /** First delay in ms. */
  initialMs: number;
  /** Cap in ms. */
  maxMs: number;
}

/** Delay before retry number `attempt` (1-based): random in [d/2, d] with d = min(initial × 2^(attempt-1), max). */
export function backoffDelay(attempt: number, options: BackoffOptions): number {
  const ceiling = Math.min(options.initialMs * 2 ** Math.max(0, attempt - 1), options.maxMs);
  return ceiling / 2 + Math.random() * (ceiling / 2);
}

/** Resolves after `ms`, or early (without throwing) when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}
