/**
 * The WorkflowContext handed to workflow code. It only reads and writes the
 * execution through the narrow runtime below, so every value it returns is a
 * function of the history being replayed.
 */
import type { Command } from "@dex/proto";
import type { Duration } from "../common/duration.js";
import type { Logger, LogLevel } from "../common/logger.js";
import { runInScope, ScopeNode, scopeHandle } from "./cancellation.js";
import {
  buildContinueAsNew,
  buildScheduleActivity,
  buildSetStatus,
  buildStartChild,
  buildStartTimer,
  buildUpsertLabels,
  buildWaitForEvent,
  validateEventName,
  workflowNameOf,
} from "./command-builders.js";
import { validatePatchId } from "./patches.js";
import type { EventHandler } from "./events.js";
import type { AwaitTarget } from "./pending.js";
import { uuidFrom } from "./prng.js";
import type { QueryHandlers } from "./query.js";
import type { Activity, ActivityOptions, ActivityProxy, ConditionOptions, WorkflowContext, WorkflowInfo } from "./types.js";
import type { UpdateHandler, UpdateHandlerOptions } from "./types.js";
import type { UpdateHandlers } from "./updates.js";

/** What the context needs from the execution (implemented by WorkflowExecution). */
export interface WorkflowRuntime {
  info(): WorkflowInfo;
  isReplaying(): boolean;
  now(): number;
  random(): number;
  cancellationRequested(): boolean;
  /** Issues the command `build(seq)` makes and resolves with the outcome its seq later receives. */
  schedule(target: AwaitTarget, build: (seq: number) => Command): Promise<unknown>;
  /** Issues a command nothing answers (status, labels). */
  issue(command: Command): void;
  /** The oldest unconsumed event of the name at once, else a wait command (`timed`: it has a time-out). */
  waitForEvent(eventName: string, timed: boolean, build: (seq: number) => Command): Promise<unknown>;
  // Named events (events.ts).
  /** Registers the name's handler; returns its removal. */
  onEvent(eventName: string, handler: EventHandler): () => void;
  sideEffect(fn: () => unknown): Promise<unknown>;
  // Cancellation scopes and conditions (cancellation.ts, condition.ts).
  /** The scope of the calling code: awaits started now belong to it. */
  currentScope(): ScopeNode;
  /** Rejects the awaits a cancellation of `node` reaches and issues their cancel commands now. */
  cancelScope(node: ScopeNode, message: string): void;
  condition(predicate: () => boolean, options?: ConditionOptions): Promise<boolean>;
  /** Decides a patch (patches.ts) and issues its marker when one is due; true: take the new path. */
  patch(patchId: string, deprecated: boolean): boolean;
  /** Issues a terminal command; the returned promise never settles. */
  end(command: Command): Promise<never>;
  /** The execution's update handlers (updates.ts): what the context uses of them. */
  readonly updates: Pick<UpdateHandlers, "set" | "inFlight">;
  readonly logger: Logger;
  /** The run's query handlers (query.ts). */
  readonly queries: QueryHandlers;
}

export function createWorkflowContext(rt: WorkflowRuntime): WorkflowContext {
  const waitForEvent = <T>(eventName: string, options: { timeout?: Duration } = {}): Promise<T> => {
    try {
      validateEventName(eventName);
    } catch (err) {
      return Promise.reject(err);
    }
    // In a cancelled scope even an event already received is not handed out, like every other await.
    const scope = rt.currentScope();
    if (scope.rejectsNewAwaits()) return Promise.reject(scope.cancelledFailure());
    const timed = options.timeout !== undefined;
    return rt.waitForEvent(eventName, timed, (seq) => buildWaitForEvent(seq, eventName, options.timeout)) as Promise<T>;
  };
  const executeActivity = <O>(name: string, input?: unknown, options: ActivityOptions = {}): Promise<O> =>
    rt.schedule({ kind: "activity", name }, (seq) => buildScheduleActivity(seq, name, input, options)) as Promise<O>;
  const sleep = (when: { duration: Duration } | { time: Date }): Promise<void> =>
    rt.schedule({ kind: "timer" }, (seq) => buildStartTimer(seq, when, rt.now())) as Promise<void>;

  return {
    get info() {
      return rt.info();
    },
    get isReplaying() {
      return rt.isReplaying();
    },
    get cancellationRequested() {
      return rt.cancellationRequested();
    },
    log: replayAwareLogger(rt),
    activities<A extends Record<string, Activity>>(options?: ActivityOptions): ActivityProxy<A> {
      return new Proxy({} as ActivityProxy<A>, {
        get(_target, property) {
          // Not a thenable, so `await ctx.activities()` does not try to call an activity named "then".
          if (typeof property !== "string" || property === "then") return undefined;
          return (input?: unknown) => executeActivity(property, input, options);
        },
      });
    },
    executeActivity,
    now: () => new Date(rt.now()),
    random: () => rt.random(),
    uuid: () => uuidFrom(rt.random),

    sleep: (duration) => sleep({ duration }),
    sleepUntil: (time) => sleep({ time }),
    waitForEvent,
    // Named events (events.ts, decision 0022).
    events<T>(eventName: string): AsyncIterable<T> {
      validateEventName(eventName, "ctx.events");
      // Each step is a waitForEvent: same order, buffering and replay as a hand-written loop.
      return {
        [Symbol.asyncIterator]: () => ({
          next: () => waitForEvent<T>(eventName).then((value) => ({ value, done: false as const })),
          return: () => Promise.resolve({ value: undefined, done: true as const }),
        }),
      };
    },
    onEvent<T>(eventName: string, handler: EventHandler<T>): () => void {
      validateEventName(eventName, "ctx.onEvent");
      if (typeof handler !== "function") throw new TypeError("ctx.onEvent expects a handler function");
      return rt.onEvent(eventName, handler as EventHandler);
    },
    child(workflow, input, options) {
      let workflowName: string;
      try {
        workflowName = workflowNameOf(workflow, "ctx.child");
      } catch (err) {
        return Promise.reject(err);
      }
      const target: AwaitTarget = {
        kind: "child",
        workflowName,
        instanceId: options?.instanceId ?? "",
        abandon: options?.parentClosePolicy === "abandon",
        runId: "",
      };
      return rt.schedule(target, (seq) => buildStartChild(seq, workflowName, input, options)) as never;
    },
    // Cancellation scopes and conditions (decision 0017).
    nonCancellable: (fn) => runInScope(new ScopeNode(rt.currentScope(), true), fn, "ctx.nonCancellable"),
    newCancellationScope: () => scopeHandle(new ScopeNode(rt.currentScope(), false), rt.cancelScope),
    cancellable(fn) {
      const scope = scopeHandle(new ScopeNode(rt.currentScope(), false), rt.cancelScope);
      return typeof fn === "function" ? scope.run(fn) : Promise.reject(new TypeError("ctx.cancellable expects a function"));
    },
    condition: (predicate, options) => rt.condition(predicate, options),
    continueAsNew(input, options) {
      try {
        // The execution adds the carried events when it hands the task's commands over (events.ts).
        return rt.end(buildContinueAsNew(input, options));
      } catch (err) {
        return Promise.reject(err);
      }
    },
    sideEffect: <T>(fn: () => T) => rt.sideEffect(fn) as Promise<T>,
    setStatus: (text) => rt.issue(buildSetStatus(text)),
    upsertLabels: (labels) => rt.issue(buildUpsertLabels(labels)),
    patched: (patchId) => rt.patch(validatePatchId(patchId, "ctx.patched"), false),
    deprecatePatch: (patchId) => {
      rt.patch(validatePatchId(patchId, "ctx.deprecatePatch"), true);
    },
    // Updates (updates.ts).
    setUpdateHandler: (name, fn, options) => rt.updates.set(name, fn as UpdateHandler | undefined, options as UpdateHandlerOptions),
    allHandlersFinished: () => rt.condition(() => rt.updates.inFlight === 0).then(() => undefined),
    // Queries (query.ts, decision 0023).
    setQueryHandler: (name, handler) => rt.queries.set(name, handler as never),
  };
}

function replayAwareLogger(rt: WorkflowRuntime): Logger {
  const entry =
    (level: LogLevel) =>
    (message: string, fields?: Record<string, unknown>): void => {
      if (rt.isReplaying()) return;
      const info = rt.info();
      rt.logger[level](message, { runId: info.runId, workflowName: info.workflowName, ...fields });
    };
  return { debug: entry("debug"), info: entry("info"), warn: entry("warn"), error: entry("error") };
}
