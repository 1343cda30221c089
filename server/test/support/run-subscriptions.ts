import { vi } from "vitest";
import { Wakeups, type Subscription } from "../../src/engine/wakeups.js";

/**
 * Counts, per run, the times an UpdateRun (or any run waiter) parked on the run's wake-ups: a long
 * poll reads `woken` only once its check found nothing (engine/long-poll.ts), so the count says
 * the waiter is parked on that run, instead of hoping a pause was long enough.
 */
export function watchRunSubscriptions(): { parked(runId: string): number; restore(): void } {
  const counts = new Map<string, number>();
  const subscribe = Wakeups.prototype.subscribeRun;
  const spy = vi.spyOn(Wakeups.prototype, "subscribeRun").mockImplementation(function (this: Wakeups, runId: string) {
    const inner = subscribe.call(this, runId);
    const watched: Subscription = {
      get woken() {
        counts.set(runId, (counts.get(runId) ?? 0) + 1);
        return inner.woken;
      },
      get fired() {
        return inner.fired;
      },
      get byName() {
        return inner.byName;
      },
      cancel: () => inner.cancel(),
    };
    return watched;
  });
  return { parked: (runId) => counts.get(runId) ?? 0, restore: () => spy.mockRestore() };
}
