/**
 * The replay core: one live workflow run. Pure: history events in, commands
 * out, no I/O. The worker keeps an instance per cached run.
 *
 * History is a series of blocks (inputs, a `workflow_task_completed` marker
 * whose time is the workflow clock, then command events). `replay` feeds each
 * block's inputs to the workflow, lets it run until it blocks, and checks the
 * commands it produced against the block's command events one for one
 * (replay-check.ts). `activate` then feeds the trailing inputs plus the task's
 * new events and returns the new commands.
 *
 * The order determinism depends on, the same live and on replay:
 * 1. a block's inputs are delivered in event order before the code runs: a
 *    delivery only settles promises (inputs.ts), and the continuations then run
 *    in one drain, in the order the promises settled. So a race (an event
 *    against its time-out, a timer against an event) resolves the same way;
 * 2. `run_started` starts the code after the other inputs of its block were
 *    delivered, so an event sent with the start (signal-with-start) is already
 *    received when the code first asks for it, and needs no wait command;
 * 3. `cancel_requested` is delivered last, after the code reacted to the rest
 *    of its block and blocked again: the cancellation then reaches every await
 *    the code is blocked on, including ones started in reaction to this block;
 * 4. waiting `ctx.condition` predicates are evaluated after each drain, in the
 *    order the conditions were started, until a pass settles none (condition.ts).
 */
import { create } from "@bufbuild/protobuf";
import { timestampMs, type Timestamp } from "@bufbuild/protobuf/wkt";
import { CommandSchema, type Command, type HistoryEvent } from "@dex/proto";
import { CancelledFailure } from "../common/errors.js";
import { errorToFailure } from "../common/failure.js";
import { silentLogger, type Logger } from "../common/logger.js";
import { encodePayload } from "../common/payload.js";
import { currentScope, ScopeNode } from "./cancellation.js";
import { classifyEvent } from "./commands.js";
import { ConditionWaits } from "./condition.js";
import { createWorkflowContext, type WorkflowRuntime } from "./context.js";
import { buildStartTimer } from "./command-builders.js";
import { buildDropEventWait, ReceivedEvents, withoutDescribeOnlyDrops } from "./events.js";
import { failsRun, isDeterminismFailure, workflowOptionsOf } from "./failure-rule.js";
import { decodeInput, deliverInput, type InputState } from "./inputs.js";
import { cancelCommandFor, PendingAwaits, type AwaitTarget } from "./pending.js";
import { seededRandom } from "./prng.js";
import { SideEffects, type SideEffectHost } from "./side-effects.js";
import { guardReadOnly, pendingView, QueryHandlers, ReadOnlyGuard, updateValidatorCode } from "./query.js";
import { buildPatchMarker, PatchState } from "./patches.js";
import { closeBlock, matchCommand, openBlock, type Block } from "./replay-check.js";
import { unguardedRunner, type ScopeRunner, type WorkflowScope } from "./scope.js";
import type { Workflow, WorkflowContext, WorkflowInfo } from "./types.js";
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

/** Lets every microtask the workflow queued run; workflow code never waits on a macrotask. */
const drain = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

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
      if (wait.target.kind === "eventWait" && wait.target.timed && !this.ended) this.commands.push(buildDropEventWait(wait.seq, true));
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
  private commands: Command[] = [];
  private readonly sideEffects = new SideEffects();
  /** Inputs recorded without a marker (run_started of the first task), fed with the activation. */
  private trailing: HistoryEvent[] = [];
  private started = false;
  private ended = false;
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
      if (this.pending.remove(seq) && !this.ended) this.commands.push(create(CommandSchema, { command: { case: "cancelTimer", value: { seq } } }));
    },
  });

  /** Update handlers (updates.ts); a settled handler's complete_update is issued like any command. */
  private readonly updates = new UpdateHandlers({
    issue: (command) => {
      if (!this.ended) this.commands.push(command);
    },
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

  /** Re-executes recorded history, checking every command against it. */
  async replay(events: readonly HistoryEvent[]): Promise<void> {
    let inputs: HistoryEvent[] = [...this.trailing];
    let block: Block | undefined;
    for (let i = 0; i < events.length; i++) {
      const event = events[i]!;
      const sequence = Number(event.sequence);
      if (sequence !== this.historyLength + 1) {
        throw new Error(`history is not contiguous: expected event ${this.historyLength + 1}, got ${sequence}`);
      }
      switch (classifyEvent(event)) {
        case "marker":
          if (block) closeBlock(block, event, this.historyLength);
          this.clock = timeOf(event.time);
          this.replaying = true;
          // Side effects are not run again: the code reads their values from the block's command events.
          this.sideEffects.readBlock(events, i + 1);
          this.patches.enterBlock(events, i + 1);
          await this.runBlock(inputs);
          block = openBlock(event, this.takeCommands());
          inputs = [];
          break;
        case "command":
          matchCommand(block, event);
          break;
        case "input":
          if (block) closeBlock(block, event, this.historyLength);
          block = undefined;
          inputs.push(event);
          break;
        case "server":
          break;
      }
      this.historyLength = sequence;
    }
    if (block) closeBlock(block, undefined, this.historyLength);
    this.sideEffects.clear();
    this.patches.endReplay();
    this.trailing = inputs;
  }

  /** Feeds the trailing inputs and the task's new events; returns the new commands. */
  async activate(newEvents: readonly HistoryEvent[], taskTime: Timestamp | undefined): Promise<Activation> {
    this.replaying = false;
    if (taskTime) this.clock = timeOf(taskTime);
    const inputs = [...this.trailing, ...newEvents];
    this.trailing = [];
    this.rejectedUpdates = [];
    await this.runBlock(inputs);
    const commands = this.takeCommands();
    const rejectedUpdates = this.rejectedUpdates;
    this.rejectedUpdates = [];
    const recorded = newEvents.length - rejectedUpdates.length;
    return { commands, expectedHistoryLength: this.historyLength + recorded + 1 + commands.length, rejectedUpdates };
  }

  /** Delivers one block's inputs in the order the module comment describes. */
  private async runBlock(inputs: readonly HistoryEvent[]): Promise<void> {
    let start: HistoryEvent | undefined;
    const cancels: HistoryEvent[] = [];
    const updates: HistoryEvent[] = [];
    this.runner(this, () => {
      for (const event of inputs) {
        const kind = event.attributes.case;
        if (kind === "runStarted") start = event;
        else if (kind === "cancelRequested") cancels.push(event);
        else if (kind === "updateAccepted") updates.push(event);
        else deliverInput(this.inputState, event);
      }
      if (start?.attributes.case === "runStarted") this.start(decodeInput(start.attributes.value.input, start));
    });
    await this.settle();
    if (updates.length > 0) {
      // After the code reacted to the block's other inputs (and registered its handlers, when the
      // run starts in this block), before cancel_requested: live and on replay (decision 0024).
      this.runner(this, () => this.deliverUpdates(updates));
      await this.settle();
    }
    if (cancels.length === 0) return;
    this.runner(this, () => {
      for (const event of cancels) deliverInput(this.inputState, event);
    });
    await this.settle();
  }

  /** Live: validate each request first (a rejection is reported, not delivered); replay: history holds only accepted ones. */
  private deliverUpdates(updates: readonly HistoryEvent[]): void {
    for (const event of updates) {
      if (event.attributes.case !== "updateAccepted") continue;
      const update = event.attributes.value;
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

  private async settle(): Promise<void> {
    await drain();
    // Rule 4 of the module comment: the same evaluation points live and on replay.
    while (!this.taskError && !this.ended && this.runner(this, () => this.conditions.check())) await drain();
    if (this.taskError) throw this.taskError;
  }

  private takeCommands(): Command[] {
    const commands = withoutDescribeOnlyDrops(this.commands, this.ended);
    this.commands = [];
    // Unconsumed events go to the next run, ahead of those that arrive meanwhile (decision 0022). Read
    // now, after the whole block was delivered: events after the call are buffered (events.ts), not lost.
    // The replay check compares no carried events, so when they are read changes no recorded history.
    for (const { command } of commands) {
      if (command.case === "continueAsNew") command.value.carriedEvents = this.events.unconsumed();
    }
    return commands;
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
      (value) => this.finish(() => create(CommandSchema, { command: { case: "completeRun", value: { result: encodePayload(value) } } })),
      (err: unknown) => this.onWorkflowError(err),
    );
  }

  /**
   * The rule of failure-rule.ts: a bug fails the task (the run stays open and
   * a fixed deploy carries it on), a deliberate failure ends the run.
   */
  private onWorkflowError(err: unknown): void {
    if (isDeterminismFailure(err)) {
      this.violation(asError(err));
      return;
    }
    if (err instanceof CancelledFailure && this.cancelRequested) {
      this.finish(() => create(CommandSchema, { command: { case: "cancelRun", value: {} } }));
      return;
    }
    if (!failsRun(err, workflowOptionsOf(this.workflow))) {
      this.violation(asError(err));
      return;
    }
    this.finish(() => create(CommandSchema, { command: { case: "failRun", value: { failure: errorToFailure(err) } } }));
  }

  private finish(build: () => Command): void {
    if (this.ended) return;
    try {
      this.commands.push(build());
      this.ended = true;
    } catch (err) {
      this.violation(asError(err));
    }
  }

  private runtime(logger: Logger): WorkflowRuntime {
    return {
      info: () => this.info,
      isReplaying: () => this.replaying,
      now: () => this.clock,
      random: () => this.rng(),
      cancellationRequested: () => this.cancelRequested,
      schedule: (target, build) => this.schedule(target, build),
      issue: (command) => {
        // After a terminal command nothing more is sent.
        if (!this.ended) this.commands.push(command);
      },
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
        if (decision.record && !this.ended) this.commands.push(buildPatchMarker(patchId, deprecated));
        return decision.use;
      },
      updates: this.updates,
      end: (command) => {
        if (!this.ended) {
          // Whether the code had been told of the run's cancellation when it chose to continue: if not
          // (the request came with this block and is delivered after the code ended), the server
          // hands the request to the new run (decision 0031). Not recorded, so replay compares nothing.
          if (command.command.case === "continueAsNew") command.command.value.cancelRequestDelivered = this.cancelRequested;
          this.commands.push(command);
          this.ended = true;
        }
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
      if (cancel) this.commands.push(cancel);
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
