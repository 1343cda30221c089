/**
 * Cancellation scopes. `ctx.nonCancellable(fn)` runs `fn` in a scope that a
 * run's cancellation does not reach; every await the workflow starts records
 * whether it was started in such a scope.
 *
 * The scope must follow `fn` across its awaits, so it lives in an
 * AsyncLocalStorage (the mechanism the determinism guard uses for the
 * workflow clock, decision 0002): the store is captured where a continuation
 * is registered, so code after an `await` inside `fn` still sees the
 * non-cancellable scope, and the caller awaiting `nonCancellable(...)` does
 * not. This is deterministic: it depends only on the structure of the code,
 * never on timing. No I/O is involved.
 */
import { AsyncLocalStorage } from "node:async_hooks";

interface CancellationScope {
  readonly cancellable: boolean;
}

const scopes = new AsyncLocalStorage<CancellationScope>();
const nonCancellableScope: CancellationScope = { cancellable: false };

/** True unless the caller runs inside `nonCancellable`. */
export function inCancellableScope(): boolean {
  return scopes.getStore()?.cancellable ?? true;
}

export function runNonCancellable<T>(fn: () => Promise<T>): Promise<T> {
  if (typeof fn !== "function") return Promise.reject(new TypeError("ctx.nonCancellable expects a function"));
  try {
    return Promise.resolve(scopes.run(nonCancellableScope, fn));
  } catch (err) {
    return Promise.reject(err);
  }
}
