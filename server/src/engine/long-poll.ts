/**
 * The shape every long poll shares: subscribe first, then check, then park
 * until woken, the fallback interval passes, the wait ends or the call is
 * cancelled; repeat. Subscribing before checking means a wake that lands
 * between the check and the park is not lost.
 */
import type { Subscription } from "./wakeups.js";

export interface LongPollOptions<T> {
  subscribe: () => Subscription;
  /** Returns a result to answer with, or undefined to keep waiting. */
  check: () => Promise<T | undefined>;
  /** Absolute end of the wait (ms since epoch). */
  until: number;
  /** Re-check at least this often even without a wake (covers lost notifications). */
  fallbackMs: number;
  signal: AbortSignal;
  /** True once the server is closing: parked polls answer at once. */
  closing: () => boolean;
  /**
   * Called when a check found a result while a wake was also delivered to
   * this poll: that wake may have been meant for more work, so pass it on.
   */
  onSpareWake?: () => void;
}

/** Resolves with the first result, or undefined when the wait ends (or is cancelled or closed) without one. */
export async function longPoll<T>(options: LongPollOptions<T>): Promise<T | undefined> {
  let first = true;
  for (;;) {
    if (!first && (options.closing() || options.signal.aborted)) return undefined;
    first = false;
    const subscription = options.subscribe();
    try {
      const result = await options.check();
      if (result !== undefined) {
        if (subscription.fired) options.onSpareWake?.();
        return result;
      }
      const remaining = options.until - Date.now();
      if (remaining <= 0 || options.signal.aborted || options.closing()) return undefined;
      // Woken while checking: check again at once.
      if (subscription.fired) continue;
      await waitForAny(subscription, Math.min(remaining, options.fallbackMs), options.signal);
    } finally {
      subscription.cancel();
    }
  }
}

function waitForAny(subscription: Subscription, ms: number, signal: AbortSignal): Promise<void> {
  return new Promise<void>((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
    void subscription.woken.then(done);
  });
}
