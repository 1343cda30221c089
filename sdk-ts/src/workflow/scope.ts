/**
 * The seam between the pure replay core and the determinism guard. The core
 * runs every piece of workflow code through a ScopeRunner; the worker's runner
 * (worker/determinism-guard.ts) enters an AsyncLocalStorage store so that
 * `Date`, `Math.random` and timers called by workflow code read the scope.
 */
export interface WorkflowScope {
  /** The workflow clock, in epoch milliseconds. */
  now(): number;
  /** The run's seeded generator. */
  random(): number;
  /** Records a determinism violation: the current workflow task fails with it. */
  violation(error: Error): void;
}

export interface ScopeRunner {
  <T>(scope: WorkflowScope, fn: () => T): T;
  /**
   * Runs `fn` outside any workflow scope, with the real clock and randomness:
   * `ctx.sideEffect` functions exist to read those once. Absent: `fn` runs as is.
   */
  readonly outside?: <T>(fn: () => T) => T;
}

/** Runs workflow code with no guard: for unit tests of the core alone. */
export const unguardedRunner: ScopeRunner = (_scope, fn) => fn();
