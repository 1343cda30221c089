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
 * - `setTimeout` / `setInterval` / `setImmediate` inside a workflow throw (and
 *   fail the task even if the code catches the error): a timer cannot be
 *   replayed;
 * - `crypto.randomUUID`, `crypto.getRandomValues` (the global Web Crypto and
 *   `node:crypto`) and `performance.now` inside a workflow throw the same way:
 *   they would differ on replay (ctx.uuid, ctx.random and ctx.now do not).
 * The replay core's own `setImmediate` (its drain) runs outside the store, as
 * do activities and the worker's code, so they are never caught.
 * What it cannot catch: a workflow awaiting real I/O; replay's command check
 * catches the divergence that follows.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import nodeCrypto from "node:crypto";
import { syncBuiltinESMExports } from "node:module";
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

/** Replaces Date, Math.random, timers, random UUIDs and bytes and performance.now once per process; idempotent. */
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

  forbidInWorkflow(globalThis, "setTimeout", "setTimeout", "timers are not replayable: use ctx.sleep (a durable timer) or an activity");
  forbidInWorkflow(globalThis, "setInterval", "setInterval", "timers are not replayable: use ctx.sleep in a loop");
  forbidInWorkflow(globalThis, "setImmediate", "setImmediate", "workflow code has no macrotasks to wait for: await a promise, or use ctx.sleep");
  forbidInWorkflow(performance, "now", "performance.now", "it reads the real clock: use ctx.now() (the workflow clock)");
  const advice = { randomUUID: "use ctx.uuid()", getRandomValues: "use ctx.random(), or ctx.sideEffect for real randomness" } as const;
  for (const name of ["randomUUID", "getRandomValues"] as const) {
    const why = `it is not replayable: ${advice[name]}`;
    forbidInWorkflow(globalThis.crypto, name, `crypto.${name}`, why);
    forbidInWorkflow(nodeCrypto, name, `crypto.${name}`, why);
  }
  // `import { randomUUID } from "node:crypto"` reads a binding that only follows the module object after this call.
  syncBuiltinESMExports();
}

/** Replaces `target[key]` with a function that fails the task when called from workflow code. */
function forbidInWorkflow(target: object, key: string, label: string, why: string): void {
  const holder = target as Record<string, unknown>;
  // node:crypto's getRandomValues is a fixed getter that calls the global Web Crypto's, guarded here too.
  if (Object.getOwnPropertyDescriptor(target, key)?.configurable === false) return;
  const real = holder[key] as ((...args: unknown[]) => unknown) | undefined;
  if (typeof real !== "function") return;
  const guarded = function (this: unknown, ...args: unknown[]): unknown {
    const scope = storage.getStore();
    if (scope) {
      const error = new DeterminismViolationError(
        `${label} was called in workflow code; ${why}. ` + "Workflow code must be deterministic; move I/O and real waiting into activities.",
      );
      scope.violation(error);
      throw error;
    }
    // Web Crypto and performance methods need their own object as `this`.
    return real.apply(this === holder || this === undefined || this === globalThis ? target : this, args);
  };
  // Keep util.promisify(setTimeout) (a symbol-keyed property) working outside workflows.
  for (const k of Reflect.ownKeys(real)) {
    if (k === "length" || k === "name" || k === "prototype") continue;
    Object.defineProperty(guarded, k, Object.getOwnPropertyDescriptor(real, k)!);
  }
  // Some are getters (node:crypto's getRandomValues): redefine rather than assign.
  Object.defineProperty(target, key, { value: guarded, writable: true, configurable: true, enumerable: true });
}
