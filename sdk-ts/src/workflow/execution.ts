/**
 * The replay core: one live workflow run. Pure: history events in, commands
 * out, no I/O. The worker keeps an instance per cached run.
 *
 * `replay` walks recorded history block by block, runs the code for each
 * block and checks its commands against the recorded ones (history-walk.ts);
 * `activate` then feeds the trailing inputs plus the task's new events and
 * returns the new commands. The order a block's inputs are delivered in, which
 * determinism depends on, is delivery-order.ts; a task's commands are gathered
 * in task-commands.ts.
 */
import { create } from "@bufbuild/protobuf";
import { timestampMs, type Timestamp } from "@bufbuild/protobuf/wkt";
import { CommandSchema, type Command, type HistoryEvent } from "@dex/proto";
import { CancelledFailure } from "../common/errors.js";
import { silentLogger, type Logger } from "../common/logger.js";
import { currentScope, ScopeNode } from "./cancellation.js";
import { ConditionWaits } from "./condition.js";
import { createWorkflowContext, type WorkflowRuntime } from "./context.js";
import { buildStartTimer } from "./command-builders.js";
import { deliverBlock, settle } from "./delivery-order.js";
import { buildDropEventWait, ReceivedEvents } from "./events.js";
import { walkHistory } from "./history-walk.js";
import { failsRun, isDeterminismFailure, workflowOptionsOf } from "./failure-rule.js";
import { decodeInput, deliverInput, type InputState } from "./inputs.js";
import { cancelCommandFor, PendingAwaits, type AwaitTarget } from "./pending.js";
import { seededRandom } from "./prng.js";
import { SideEffects, type SideEffectHost } from "./side-effects.js";
import { guardReadOnly, pendingView, QueryHandlers, ReadOnlyGuard, updateValidatorCode } from "./query.js";
import { buildPatchMarker, PatchState } from "./patches.js";
import { unguardedRunner, type ScopeRunner, type WorkflowScope } from "./scope.js";
import type { Workflow, WorkflowContext, WorkflowInfo } from "./types.js";
import { completeRunCommand, TaskCommands, terminalCommandFor } from "./task-commands.js";
import { UpdateHandlers, type UpdateRejection } from "./updates.js";

export interface ExecutionOptions {
  info: WorkflowInfo;
  workflow: Workflow;
  /** Enters the determinism guard around workflow code. Default: no guard. */
  runner?: ScopeRunner;
  /** Receives the workflow's `ctx.log` entries (silent while replaying). */
  logger?: Logger;
}

export interface Activation {
  commands: Command[];
  /** The history length once the server has recorded this activation. */
  expectedHistoryLength: number;
  /** Updates among the new events that validation rejected: reported with the completion, never recorded. */
  rejectedUpdates: UpdateRejection[];
}

/** What calls after a terminal command (and diverged side effects) return: they never settle. */
const never = (): Promise<never> => new Promise<never>(() => {});

export class WorkflowExecution implements WorkflowScope {
  /** Events of the run's history this execution has consumed. */
  historyLength = 0;
  readonly ctx: WorkflowContext;
  // Named external events (events.ts, decision 0022).
  /** Received external events not yet consumed, and the handlers by name. */
  readonly events: ReceivedEvents = new ReceivedEvents({
    ended: () => this.ended,
    resolveOldestWait: (name, payload) => {
      const wait = this.pending.takeOldestEventWait(name);
      if (!wait) return false;
      // The server keeps a wait's time-out (it cannot tell which wait an event satisfied): drop it.
      if (wait.target.kind === "eventWait" && wait.target.timed) this.commands.issue(buildDropEventWait(wait.seq, true));
      wait.resolve(payload);
      return true;
    },
    handlerFailed: (err) => {
      // A handler's await reached by the run's cancellation: the main code decides how the run ends
      // (its nonCancellable cleanup may still be running), not the handler.
      if (err instanceof CancelledFailure && this.cancelRequested) return;
      this.onWorkflowError(err);
    },
  });
  private info: WorkflowInfo;
  private readonly workflow: Workflow;
  private readonly runner: ScopeRunner;
  private readonly rng: () => number;
  private readonly pending = new PendingAwaits();
  private readonly patches = new PatchState();
  private readonly inputState: InputState;
  private clock = 0;
  private replaying = false;
  private nextSeq = 1;
  /** The current task's commands; `ended` once the run has its terminal command. */
  private readonly commands = new TaskCommands();
  private readonly sideEffects = new SideEffects();
  /** Inputs recorded without a marker (run_started of the first task), fed with the activation. */
  private trailing: HistoryEvent[] = [];
  private started = false;
  private taskError: Error | undefined;
  private cancelRequested = false;
  /** Run cancellation cancels this scope; every other cancellation scope descends from it. */
  private readonly rootScope = new ScopeNode(undefined, false);
  private readonly conditions = new ConditionWaits({
    currentScope: () => currentScope(this.rootScope),
    ended: () => this.ended,
    startTimer: (ms) => {
      let seq = 0;
      const fired = this.schedule({ kind: "timer" }, (s) => buildStartTimer((seq = s), { duration: ms }, this.clock));
      return { seq, fired };
    },
    cancelTimer: (seq) => {
      if (this.pending.remove(seq)) this.commands.issue(create(CommandSchema, { command: { case: "cancelTimer", value: { seq } } }));
    },
  });

  /** Update handlers (updates.ts); a settled handler's complete_update is issued like any command. */
  private readonly updates = new UpdateHandlers({
    issue: (command) => this.commands.issue(command),
    failsUpdate: (err) => !isDeterminismFailure(err) && failsRun(err, workflowOptionsOf(this.workflow)),
    violation: (err) => this.violation(asError(err)),
  });
  /** Updates the current activation rejected (live only). */
  private rejectedUpdates: UpdateRejection[] = [];

  constructor(options: ExecutionOptions) {
    this.info = { ...options.info };
    this.workflow = options.workflow;
    this.runner = options.runner ?? unguardedRunner;
    this.rng = seededRandom(options.info.runId);
    this.inputState = {
      pending: this.pending,
      events: this.events,
      issuedUpTo: () => this.nextSeq - 1,
      requestCancel: (reason) => this.requestCancel(reason),
    };
    this.ctx = createWorkflowContext(guardReadOnly(this.runtime(options.logger ?? silentLogger), this.readOnly));
  }

  // --- Queries (query.ts, decision 0023) ---
  /** Set while a query handler or an update validator runs: calls that would change the run throw. */
  private readonly readOnly = new ReadOnlyGuard();
  /** The handlers the workflow registered with ctx.setQueryHandler. */
  readonly queries = new QueryHandlers(this.readOnly);

  /** Answers query `name` from the state as it stands; throws QueryFailedError. Changes nothing. */
  query(name: string, args: unknown): unknown {
    const pending = () => pendingView(this.pending.list(), this.conditions.waiting);
    return this.queries.run(name, args, { pending, now: () => this.clock, runner: this.runner });
  }
  // --- end of queries ---

  /** True once the workflow produced a terminal command. */
  get finished(): boolean {
    return this.ended;
  }

  private get ended(): boolean {
    return this.commands.ended;
  }

  /** Updates per-task info (the attempt). */
  setAttempt(attempt: number): void {
    this.info = { ...this.info, attempt };
  }

  now(): number {
    return this.clock;
  }

  random(): number {
    // Math.random in an update validator (a query handler has a scope of its own, query.ts).
    this.readOnly.check("randomness (Math.random, ctx.random, ctx.uuid)");
    return this.rng();
  }

  violation(error: Error): void {
    this.taskError ??= error;
  }

  /** Re-executes recorded history, checking every command against it (history-walk.ts). */
  async replay(events: readonly HistoryEvent[]): Promise<void> {
    this.trailing = await walkHistory(events, [...this.trailing], {
      consumed: () => this.historyLength,
      advance: (sequence) => (this.historyLength = sequence),
      runTask: async (events, markerIndex, inputs) => {
        this.clock = timeOf(events[markerIndex]!.time);
        this.replaying = true;
        // Side effects are not run again: the code reads their values from the block's command events.
        this.sideEffects.readBlock(events, markerIndex + 1);
        this.patches.enterBlock(events, markerIndex + 1);
        await this.runBlock(inputs);
        return this.takeCommands();
      },
    });
    this.sideEffects.clear();
    this.patches.endReplay();
  }

  /** Feeds the trailing inputs and the task's new events; returns the new commands. */
  async activate(newEvents: readonly HistoryEvent[], taskTime: Timestamp | undefined): Promise<Activation> {
    this.replaying = false;
    if (taskTime) this.clock = timeOf(taskTime);
    const inputs = [...this.trailing, ...newEvents];
    this.trailing = [];
    this.rejectedUpdates = [];
    await this.runBlock(inputs);
    // Rejected updates and those the code never saw (it had continued as new) are not recorded.
    const undelivered = this.commands.undeliveredCount;
    const commands = this.takeCommands();
    const rejectedUpdates = this.rejectedUpdates;
    this.rejectedUpdates = [];
    const recorded = newEvents.length - rejectedUpdates.length - undelivered;
    return { commands, expectedHistoryLength: this.historyLength + recorded + 1 + commands.length, rejectedUpdates };
  }

  /** Delivers one block's inputs in the order delivery-order.ts describes. */
  private runBlock(inputs: readonly HistoryEvent[]): Promise<void> {
    return deliverBlock(
      {
        guarded: (fn) => this.runner(this, fn),
        deliver: (event) => deliverInput(this.inputState, event),
        start: (event) => {
          if (event.attributes.case === "runStarted") this.start(decodeInput(event.attributes.value.input, event));
        },
        deliverUpdates: (updates) => this.deliverUpdates(updates),
        settle: () => this.settle(),
      },
      inputs,
    );
  }

  /** Live: validate each request first (a rejection is reported, not delivered); replay: history holds only accepted ones. */
  private deliverUpdates(updates: readonly HistoryEvent[]): void {
    for (const event of updates) {
      if (event.attributes.case !== "updateAccepted") continue;
      const update = event.attributes.value;
      if (!this.replaying && this.commands.continuedAsNew) {
        // The code continued as new before the update was due: the new run gets it (decision 0031).
        this.commands.undeliveredUpdate(update.updateId);
        continue;
      }
      if (!this.replaying) {
        // A validator runs live only, never on replay: it must not change the run (query.ts).
        const rejection = this.readOnly.run(updateValidatorCode, () => this.updates.validate(event, update, this.ended));
        if (rejection) {
          this.rejectedUpdates.push(rejection);
          continue;
        }
      }
      this.updates.start(event, update);
    }
  }

  private settle(): Promise<void> {
    return settle({
      taskError: () => this.taskError,
      ended: () => this.ended,
      checkConditions: () => this.runner(this, () => this.conditions.check()),
    });
  }

  private takeCommands(): Command[] {
    return this.commands.take(() => this.events.unconsumed());
  }

  private start(input: unknown): void {
    if (this.started) throw new Error("run_started delivered twice");
    this.started = true;
    let result: Promise<unknown>;
    try {
      result = Promise.resolve(this.workflow(this.ctx, input));
    } catch (err) {
      result = Promise.reject(err);
    }
    result.then(
      (value) => this.finish(completeRunCommand(value)),
      (err: unknown) => this.onWorkflowError(err),
    );
  }

  /** A bug fails the task, a deliberate failure or the requested cancellation ends the run (task-commands.ts). */
  private onWorkflowError(err: unknown): void {
    const end = terminalCommandFor(err, this.cancelRequested, workflowOptionsOf(this.workflow));
    if (end) this.finish(end);
    else this.violation(asError(err));
  }

  private finish(build: () => Command): void {
    const error = this.commands.finish(build);
    if (error) this.violation(error);
  }

  private runtime(logger: Logger): WorkflowRuntime {
    return {
      info: () => this.info,
      isReplaying: () => this.replaying,
      now: () => this.clock,
      random: () => this.rng(),
      cancellationRequested: () => this.cancelRequested,
      schedule: (target, build) => this.schedule(target, build),
      issue: (command) => this.commands.issue(command),
      waitForEvent: (eventName, timed, build) => {
        if (this.ended) return never();
        // Received events are inputs, so replay finds the same buffer at the same point of the code.
        const buffered = this.events.take(eventName);
        if (buffered) return Promise.resolve(buffered.payload);
        return this.schedule({ kind: "eventWait", eventName, timed }, build);
      },
      onEvent: (eventName, handler) => this.events.setHandler(eventName, handler),
      sideEffect: (fn) => this.sideEffects.call(this.sideEffectHost(), fn),
      currentScope: () => currentScope(this.rootScope),
      cancelScope: (node, message) => this.cancelScope(node, message),
      condition: (predicate, options) => this.conditions.start(predicate, options),
      patch: (patchId, deprecated) => {
        const decision = deprecated ? this.patches.deprecate(patchId) : this.patches.patched(patchId, this.replaying);
        if (decision.record) this.commands.issue(buildPatchMarker(patchId, deprecated));
        return decision.use;
      },
      updates: this.updates,
      end: (command) => {
        this.commands.end(command, this.cancelRequested);
        return never();
      },
      logger,
      queries: this.queries,
    };
  }

  /** Issues a command with the next seq; its await settles when an input names that seq. */
  private schedule(target: AwaitTarget, build: (seq: number) => Command): Promise<unknown> {
    // After a terminal command nothing more is sent; such calls simply never resolve.
    if (this.ended) return never();
    const scope = currentScope(this.rootScope);
    // Like a bad argument: rejected before a seq is used, the same on every replay.
    if (scope.rejectsNewAwaits()) return Promise.reject(scope.cancelledFailure());
    let command: Command;
    try {
      command = build(this.nextSeq);
    } catch (err) {
      // A bad argument rejects the call and uses no seq, the same on every replay.
      return Promise.reject(err);
    }
    const seq = this.nextSeq++;
    this.commands.push(command);
    const awaited = this.pending.add(seq, target, scope);
    // A call the code never awaits may be rejected by a cancellation: that must not crash the worker
    // with an unhandled rejection. The code that does await it still sees the rejection.
    awaited.catch(() => {});
    return awaited;
  }

  private sideEffectHost(): SideEffectHost {
    const execution = this;
    return {
      get ended() {
        return execution.ended;
      },
      get replaying() {
        return execution.replaying;
      },
      takeSeq: () => this.nextSeq++,
      push: (command) => this.commands.push(command),
      violation: (error) => this.violation(error),
      outside: (fn) => (this.runner.outside ? this.runner.outside(fn) : fn()),
    };
  }

  private requestCancel(reason: string): void {
    this.cancelRequested = true;
    this.cancelScope(this.rootScope, `run cancelled${reason ? `: ${reason}` : ""}`);
  }

  /**
   * Run cancellation cancels the root scope. Per docs/worker-protocol.md: every pending await the
   * cancellation reaches (cancellation.ts) rejects with a CancelledFailure and its work gets a cancel
   * command (in seq order) in the current task; its eventual outcome is ignored (pending.ts). Then
   * the waiting conditions it reaches reject, in the order they were started.
   */
  private cancelScope(node: ScopeNode, message: string): void {
    node.cancelledWith ??= message;
    for (const p of this.pending.takeReachedBy(node)) {
      const cancel = this.ended ? undefined : cancelCommandFor(p);
      if (cancel) this.commands.issue(cancel);
      p.reject(new CancelledFailure(message));
    }
    this.conditions.rejectReachedBy(node, message);
  }
}

function timeOf(time: Timestamp | undefined): number {
  return time ? timestampMs(time) : 0;
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}
