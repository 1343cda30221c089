/**
 * Queries (docs/decisions/0023-queries.md): a workflow registers synchronous
 * handlers with `ctx.setQueryHandler`; a worker runs one against a run's state
 * (its cached execution, or a throwaway replay) and sends back the value.
 *
 * A query must leave the execution exactly as it found it, or the cached run
 * would diverge from its history: while a handler runs, every context call
 * that would issue a command or draw from the run's random sequence throws
 * (guardReadOnly), and the handler runs in a scope of its own whose
 * randomness throws too and whose determinism violations fail the query, not
 * the run's next workflow task. An update validator is read-only code too
 * (updates.ts): it runs live only, never on replay, so the same guard holds
 * while it runs.
 *
 * The guard only holds while the handler runs synchronously: an async
 * handler's continuation runs later with the guard off and could issue
 * commands into the execution. So a query handler that returned a thenable,
 * or hit the guard at all, marks the execution `tainted`, and the worker
 * evicts it from its run cache (query-tasks.ts): the next task replays from
 * history.
 */
import type { WorkflowRuntime } from "./context.js";
import type { PendingAwait } from "./pending.js";
import type { ScopeRunner, WorkflowScope } from "./scope.js";

/** The built-in query: where the workflow is waiting (PendingView). */
export const PENDING_QUERY = "__dex_pending";

/** What `__dex_pending` answers: the awaits the workflow has outstanding, in seq order. */
export interface PendingView {
  activities: Array<{ seq: number; name: string }>;
  timers: Array<{ seq: number }>;
  eventWaits: Array<{ seq: number; eventName: string }>;
  children: Array<{ seq: number; workflowName: string; instanceId: string }>;
  /** `ctx.condition` predicates still waiting. */
  conditions: number;
}

/** The `__dex_pending` answer for these awaits (in seq order) and waiting conditions. */
export function pendingView(awaits: readonly PendingAwait[], conditions: number): PendingView {
  const view: PendingView = { activities: [], timers: [], eventWaits: [], children: [], conditions };
  for (const { seq, target } of awaits) {
    if (target.kind === "activity") view.activities.push({ seq, name: target.name });
    else if (target.kind === "timer") view.timers.push({ seq });
    else if (target.kind === "eventWait") view.eventWaits.push({ seq, eventName: target.eventName });
    else view.children.push({ seq, workflowName: target.workflowName, instanceId: target.instanceId });
  }
  return view;
}

export type QueryHandler = (args: never) => unknown;

/** The query's own fault (no such handler, the handler threw): the caller gets INVALID_ARGUMENT. */
export class QueryFailedError extends Error {
  override readonly name = "QueryFailedError";
}

const MAX_QUERY_NAME_LENGTH = 255;

/** Code that reads the run's state and must not change it: a query handler, an update validator. */
export interface ReadOnlyKind {
  /** "a query handler" */
  readonly where: string;
  /** Why it must not change the run, and what to do instead. */
  readonly advice: string;
}

export const queryHandlerCode: ReadOnlyKind = {
  where: "a query handler",
  advice: "a query reads the workflow's state and must not change it (use an update or an event to make the workflow act)",
};

export const updateValidatorCode: ReadOnlyKind = {
  where: "an update validator",
  advice: "a validator runs only when the update arrives, never on replay, so it must not change the run (do the work in the update handler)",
};

/** Which read-only code is running, if any: while it runs, calls that would change the run throw. */
export class ReadOnlyGuard {
  private running: ReadOnlyKind | undefined;

  run<T>(kind: ReadOnlyKind, fn: () => T): T {
    const outer = this.running;
    this.running = kind;
    try {
      return fn();
    } finally {
      this.running = outer;
    }
  }

  /** Sticky: a query handler tried to change the run, or left code running after it returned (a promise). */
  tainted = false;

  /** Throws when read-only code is running: `what` (say "ctx.sleep") would change the run. */
  check(what: string): void {
    if (!this.running) return;
    if (this.running === queryHandlerCode) this.tainted = true;
    throw new Error(readOnlyMessage(what, this.running));
  }
}

export class QueryHandlers {
  private readonly handlers = new Map<string, (args: unknown) => unknown>();

  constructor(private readonly guard: ReadOnlyGuard) {}

  /** The worker evicts a cached execution a query handler may have changed (see the module comment). */
  get tainted(): boolean {
    return this.guard.tainted;
  }

  set(name: string, handler: QueryHandler | undefined): void {
    this.guard.check("ctx.setQueryHandler");
    if (typeof name !== "string" || name.length === 0 || name.length > MAX_QUERY_NAME_LENGTH) {
      throw new TypeError(`ctx.setQueryHandler: the name must be 1 to ${MAX_QUERY_NAME_LENGTH} characters`);
    }
    if (name.startsWith("__dex_")) throw new TypeError(`ctx.setQueryHandler: names starting with "__dex_" are dex's own (${name})`);
    if (handler === undefined) {
      this.handlers.delete(name);
      return;
    }
    if (typeof handler !== "function") throw new TypeError(`ctx.setQueryHandler("${name}"): the handler must be a function`);
    this.handlers.set(name, handler as (args: unknown) => unknown);
  }

  names(): string[] {
    return [...this.handlers.keys(), PENDING_QUERY];
  }

  /**
   * Runs the handler of `name` against the execution as it stands. Throws
   * QueryFailedError for an unknown name (listing the handlers it has) or a
   * handler that threw, returned a promise, or broke a determinism rule.
   */
  run(name: string, args: unknown, state: { pending: () => PendingView; now: () => number; runner: ScopeRunner }): unknown {
    const handler = name === PENDING_QUERY ? state.pending : this.handlers.get(name);
    if (!handler) {
      throw new QueryFailedError(`the workflow has no query handler "${name}"; it has: ${this.names().join(", ")}`);
    }
    let violation: Error | undefined;
    const scope: WorkflowScope = {
      now: state.now,
      random: () => {
        this.guard.tainted = true;
        throw new QueryFailedError(readOnlyMessage("randomness (Math.random, ctx.random, ctx.uuid)", queryHandlerCode));
      },
      violation: (error) => (violation ??= error),
    };
    let value: unknown;
    try {
      value = this.guard.run(queryHandlerCode, () => state.runner(scope, () => handler(args)));
    } catch (err) {
      throw new QueryFailedError(`query handler "${name}" threw: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
    if (violation) throw new QueryFailedError(`query handler "${name}": ${violation.message}`);
    if (typeof (value as { then?: unknown } | null)?.then === "function") {
      this.guard.tainted = true;
      (value as Promise<unknown>).then(undefined, () => {});
      throw new QueryFailedError(`query handler "${name}" returned a promise: query handlers must be synchronous (read state, do not wait)`);
    }
    return value;
  }
}

function readOnlyMessage(what: string, kind: ReadOnlyKind): string {
  return `${what} cannot be used inside ${kind.where}: ${kind.advice}`;
}

/** The runtime the context sees: the same, except that calls which would change the run throw inside read-only code. */
export function guardReadOnly(rt: WorkflowRuntime, guard: ReadOnlyGuard): WorkflowRuntime {
  const check = (what: string): void => guard.check(what);
  return {
    ...rt,
    updates: {
      set: (...args) => (check("ctx.setUpdateHandler"), rt.updates.set(...args)),
      get inFlight() {
        return rt.updates.inFlight;
      },
    },
    random: () => (check("randomness (ctx.random, ctx.uuid)"), rt.random()),
    schedule: (target, build) => (check(`ctx.${target.kind === "eventWait" ? "waitForEvent" : target.kind === "timer" ? "sleep" : target.kind === "child" ? "child" : "activities"}`), rt.schedule(target, build)),
    issue: (command) => (check("ctx.setStatus / ctx.upsertLabels"), rt.issue(command)),
    waitForEvent: (eventName, timed, build) => (check("ctx.waitForEvent"), rt.waitForEvent(eventName, timed, build)),
    onEvent: (eventName, handler) => (check("ctx.onEvent"), rt.onEvent(eventName, handler)),
    sideEffect: (fn) => (check("ctx.sideEffect"), rt.sideEffect(fn)),
    cancelScope: (node, message) => (check("cancelling a scope"), rt.cancelScope(node, message)),
    condition: (predicate, options) => (check("ctx.condition"), rt.condition(predicate, options)),
    patch: (patchId, deprecated) => (check("ctx.patched / ctx.deprecatePatch"), rt.patch(patchId, deprecated)),
    end: (command) => (check("ctx.continueAsNew"), rt.end(command)),
  };
}
