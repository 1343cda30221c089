/**
 * Cancellation scopes (decision 0017). Every await a workflow starts belongs
 * to the scope current where it was started; scopes form a tree under one root
 * per execution:
 * - run cancellation cancels the root;
 * - `ctx.cancellable(fn)` / `ctx.newCancellationScope()` make a child of the
 *   current scope that workflow code cancels with `scope.cancel()`;
 * - `ctx.nonCancellable(fn)` makes a shield: a cancellation of any scope above
 *   it does not reach the awaits inside it.
 * A cancellation reaches the awaits pending in the cancelled scope and in its
 * descendants, up to a shield. Awaits started later in a cancelled scope
 * (other than the root) reject at once, as in Temporal. The root is the
 * exception: run cancellation reaches only what is pending, as it always did,
 * so histories recorded before scopes existed replay unchanged.
 *
 * The current scope must follow code across its awaits, so it lives in an
 * AsyncLocalStorage (the mechanism the determinism guard uses for the workflow
 * clock, decision 0002): the store is captured where a continuation is
 * registered, so code after an `await` inside `fn` still sees `fn`'s scope and
 * the caller awaiting `scope.run(fn)` does not. It depends only on the
 * structure of the code, never on timing. No I/O is involved.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { CancelledFailure } from "../common/errors.js";
import type { CancellationScope } from "./types.js";

export class ScopeNode {
  readonly root: ScopeNode;
  /** Set once the scope itself was cancelled: the message its awaits reject with. */
  cancelledWith: string | undefined;

  constructor(
    readonly parent: ScopeNode | undefined,
    /** A `nonCancellable` scope: cancellations from above stop here. */
    readonly shield: boolean,
  ) {
    this.root = parent?.root ?? this;
  }

  /** True when an await started in this scope must reject at once: a cancelled scope above, no shield between. */
  rejectsNewAwaits(): boolean {
    for (let node: ScopeNode | undefined = this; node && node !== this.root; node = node.parent) {
      if (node.cancelledWith !== undefined) return true;
      if (node.shield) return false;
    }
    return false;
  }

  /** True when this scope or one above it, the root included, was cancelled with no shield between. */
  isCancelled(): boolean {
    for (let node: ScopeNode | undefined = this; node; node = node.parent) {
      if (node.cancelledWith !== undefined) return true;
      if (node.shield) return false;
    }
    return false;
  }

  /** The error an await started in this cancelled scope rejects with. */
  cancelledFailure(): CancelledFailure {
    for (let node: ScopeNode | undefined = this; node; node = node.parent) {
      if (node.cancelledWith !== undefined) return new CancelledFailure(node.cancelledWith);
    }
    return new CancelledFailure("scope cancelled");
  }

  /** True when cancelling `cancelled` reaches awaits started in this scope. */
  reachedBy(cancelled: ScopeNode): boolean {
    for (let node: ScopeNode | undefined = this; node; node = node.parent) {
      if (node === cancelled) return true;
      if (node.shield) return false;
    }
    return false;
  }
}

const current = new AsyncLocalStorage<ScopeNode>();

/** The scope workflow code runs in now; `root` when none (or another run's) is current. */
export function currentScope(root: ScopeNode): ScopeNode {
  const node = current.getStore();
  return node?.root === root ? node : root;
}

/** Runs `fn` with `node` as its current scope; a synchronous throw becomes a rejection. */
export function runInScope<T>(node: ScopeNode, fn: () => Promise<T>, caller: string): Promise<T> {
  if (typeof fn !== "function") return Promise.reject(new TypeError(`${caller} expects a function`));
  try {
    return Promise.resolve(current.run(node, fn));
  } catch (err) {
    return Promise.reject(err);
  }
}

/** The handle workflow code holds; `cancel` is the execution's (it issues the cancel commands). */
export function scopeHandle(node: ScopeNode, cancel: (node: ScopeNode, message: string) => void): CancellationScope {
  const handle: CancellationScope = {
    run: (fn) => (typeof fn === "function" ? runInScope(node, () => fn(handle), "scope.run") : Promise.reject(new TypeError("scope.run expects a function"))),
    cancel(reason) {
      if (reason !== undefined && typeof reason !== "string") throw new TypeError("scope.cancel: the reason must be a string");
      cancel(node, `scope cancelled${reason ? `: ${reason}` : ""}`);
    },
    get cancelled() {
      return node.isCancelled();
    },
  };
  return handle;
}
