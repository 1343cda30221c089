/**
 * The determinism guard (docs/decisions/0002-determinism-without-a-bundler.md).
 *
 * Workflow code runs in plain Node, not a `vm` context, so no bundler is
 * needed. Instead each activation runs inside an AsyncLocalStorage store (the
 * execution: its clock and seeded generator); the store follows every await,
 * Promise.all and continuation. Installed once, process-wide:
 * - `Date`: `new Date()` and `Date.now()` read the store's clock inside a
 *   workflow and the real clock everywhere else (activities, the worker, the
 *   rest of the application);
 * - `Math.random()` reads the store's generator inside a workflow;
 * - `setTimeout` / `setInterval` inside a workflow throw (and fail the task
 *   even if the code catches the error): a timer cannot be replayed.
 * What it cannot catch: a workflow awaiting real I/O; replay's command check
 * catches the divergence that follows.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { DeterminismViolationError } from "../common/errors.js";
import type { ScopeRunner, WorkflowScope } from "../workflow/scope.js";

const storage = new AsyncLocalStorage<WorkflowScope>();
let installed = false;

/**
 * Runs workflow code inside its scope; used by the workflow worker for every activation.
 * `outside` leaves the scope for a `ctx.sideEffect` function, which is meant to see the real values.
 */
export const guardedRunner: ScopeRunner = Object.assign(<T>(scope: WorkflowScope, fn: () => T): T => storage.run(scope, fn), {
  outside: <T>(fn: () => T): T => storage.exit(fn),
});

/** True when called from workflow code. */
export function inWorkflowScope(): boolean {
  return storage.getStore() !== undefined;
}

/** Replaces Date, Math.random and timers once per process; idempotent. */
export function installDeterminismGuard(): void {
  if (installed) return;
  installed = true;
  const RealDate = globalThis.Date;
  const realNow = RealDate.now;
  const realRandom = Math.random;

  // A function rather than a class: `Date()` without `new` must keep working, and sharing the
  // prototype keeps `instanceof Date` true for dates made before the install.
  function GuardedDate(this: unknown, ...args: unknown[]): unknown {
    const scope = args.length === 0 ? storage.getStore() : undefined;
    if (!new.target) return new RealDate(scope ? scope.now() : realNow()).toString();
    // Subclasses (`class X extends Date`) need their own prototype; plain `new Date(...)` takes the fast path.
    if (new.target !== GuardedDate) return Reflect.construct(RealDate, scope ? [scope.now()] : args, new.target);
    if (args.length === 0) return new RealDate(scope ? scope.now() : realNow());
    return args.length === 1 ? new RealDate(args[0] as number) : new RealDate(...(args as [number, number]));
  }
  GuardedDate.prototype = RealDate.prototype;
  Object.setPrototypeOf(GuardedDate, RealDate);
  Object.defineProperty(GuardedDate, "now", {
    value: function now(): number {
      const scope = storage.getStore();
      return scope ? scope.now() : realNow();
    },
    writable: true,
    configurable: true,
  });
  globalThis.Date = GuardedDate as unknown as DateConstructor;

  Math.random = function random(): number {
    const scope = storage.getStore();
    return scope ? scope.random() : realRandom();
  };

  forbidInWorkflow("setTimeout", "use ctx.sleep (a durable timer) or an activity");
  forbidInWorkflow("setInterval", "use ctx.sleep in a loop");
}

function forbidInWorkflow(name: "setTimeout" | "setInterval", advice: string): void {
  const real = globalThis[name] as (...args: unknown[]) => unknown;
  const guarded = function (this: unknown, ...args: unknown[]): unknown {
    const scope = storage.getStore();
    if (scope) {
      const error = new DeterminismViolationError(
        `${name} was called in workflow code; timers are not replayable: ${advice}. ` +
          "Workflow code must be deterministic; move I/O and real waiting into activities.",
      );
      scope.violation(error);
      throw error;
    }
    return real.apply(this, args);
  };
  // Keep util.promisify(setTimeout) (a symbol-keyed property) working outside workflows.
  for (const key of Reflect.ownKeys(real)) {
    if (key === "length" || key === "name" || key === "prototype") continue;
    Object.defineProperty(guarded, key, Object.getOwnPropertyDescriptor(real, key)!);
  }
  globalThis[name] = guarded as never;
}
