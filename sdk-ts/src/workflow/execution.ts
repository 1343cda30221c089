/**
 * The replay core: one live workflow run. Pure: history events in, commands
 * out, no I/O. The worker keeps an instance per cached run.
 *
 * History is a series of blocks (inputs, a `workflow_task_completed` marker
 * whose time is the workflow clock, then command events). `replay` feeds each
 * block's inputs to the workflow, lets it run until it blocks, and checks the
 * commands it produced against the block's command events one for one.
 * `activate` then feeds the trailing inputs plus the task's new events and
 * returns the new commands. The order determinism depends on: all inputs of a
 * block are delivered (in event order) before one drain, both live and on
 * replay, so both see the same interleaving.
 */
import { create } from "@bufbuild/protobuf";
import { timestampMs, type Timestamp } from "@bufbuild/protobuf/wkt";
import { CommandSchema, type Command, type HistoryEvent } from "@dex/proto";
import {
  ActivityFailure,
  CancelledFailure,
  DeterminismViolationError,
  NonDeterminismError,
} from "../common/errors.js";
import { errorToFailure, failureToError } from "../common/failure.js";
import { silentLogger, type Logger } from "../common/logger.js";
import { decodePayload, encodePayload, PayloadError } from "../common/payload.js";
import { classifyEvent, commandIdentity, eventIdentity, eventKindName, formatIdentity, sameIdentity } from "./commands.js";
import { createWorkflowContext } from "./context.js";
import { seededRandom } from "./prng.js";
import { unguardedRunner, type ScopeRunner, type WorkflowScope } from "./scope.js";
import type { Workflow, WorkflowContext, WorkflowInfo } from "./types.js";

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
}

interface PendingCall {
  resolve(value: unknown): void;
  reject(error: Error): void;
  activityName: string;
}

interface Block {
  marker: HistoryEvent;
  produced: Command[];
  matched: number;
}

/** Lets every microtask the workflow queued run; workflow code never waits on a macrotask. */
const drain = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

export class WorkflowExecution implements WorkflowScope {
  /** Events of the run's history this execution has consumed. */
  historyLength = 0;
  readonly ctx: WorkflowContext;
  private info: WorkflowInfo;
  private readonly workflow: Workflow;
  private readonly runner: ScopeRunner;
  private readonly rng: () => number;
  private clock = 0;
  private replaying = false;
  private nextSeq = 1;
  private commands: Command[] = [];
  private readonly pending = new Map<number, PendingCall>();
  /** Inputs recorded without a marker (run_started of the first task), fed with the activation. */
  private trailing: HistoryEvent[] = [];
  private started = false;
  private ended = false;
  private taskError: Error | undefined;
  private cancelRequested = false;
  /** External events received; kept for event waits (a later SDK version). */
  readonly receivedEvents = new Map<string, unknown>();

  constructor(options: ExecutionOptions) {
    this.info = { ...options.info };
    this.workflow = options.workflow;
    this.runner = options.runner ?? unguardedRunner;
    this.rng = seededRandom(options.info.runId);
    this.ctx = createWorkflowContext({
      info: () => this.info,
      isReplaying: () => this.replaying,
      now: () => this.clock,
      random: () => this.rng(),
      scheduleActivity: (name, command) => this.scheduleActivity(name, command),
      nextSeq: () => this.nextSeq++,
      logger: options.logger ?? silentLogger,
    });
  }

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
    return this.rng();
  }

  violation(error: Error): void {
    this.taskError ??= error;
  }

  /** Re-executes recorded history, checking every command against it. */
  async replay(events: readonly HistoryEvent[]): Promise<void> {
    let inputs: HistoryEvent[] = [...this.trailing];
    let block: Block | undefined;
    for (const event of events) {
      const sequence = Number(event.sequence);
      if (sequence !== this.historyLength + 1) {
        throw new Error(`history is not contiguous: expected event ${this.historyLength + 1}, got ${sequence}`);
      }
      switch (classifyEvent(event)) {
        case "marker":
          if (block) this.closeBlock(block, event);
          this.clock = timeOf(event.time);
          this.replaying = true;
          await this.runBlock(inputs);
          block = { marker: event, produced: this.takeCommands(), matched: 0 };
          inputs = [];
          break;
        case "command":
          this.matchCommand(block, event);
          block!.matched++;
          break;
        case "input":
          if (block) this.closeBlock(block, event);
          block = undefined;
          inputs.push(event);
          break;
        case "server":
          break;
      }
      this.historyLength = sequence;
    }
    if (block) this.closeBlock(block, undefined);
    this.trailing = inputs;
  }

  /** Feeds the trailing inputs and the task's new events; returns the new commands. */
  async activate(newEvents: readonly HistoryEvent[], taskTime: Timestamp | undefined): Promise<Activation> {
    this.replaying = false;
    if (taskTime) this.clock = timeOf(taskTime);
    const inputs = [...this.trailing, ...newEvents];
    this.trailing = [];
    await this.runBlock(inputs);
    const commands = this.takeCommands();
    return { commands, expectedHistoryLength: this.historyLength + newEvents.length + 1 + commands.length };
  }

  private async runBlock(inputs: readonly HistoryEvent[]): Promise<void> {
    this.runner(this, () => {
      for (const event of inputs) this.deliver(event);
    });
    await drain();
    if (this.taskError) throw this.taskError;
  }

  private takeCommands(): Command[] {
    const commands = this.commands;
    this.commands = [];
    return commands;
  }

  private matchCommand(block: Block | undefined, event: HistoryEvent): void {
    const recorded = eventIdentity(event);
    if (!block) {
      throw new NonDeterminismError(
        `history event ${event.sequence} ${formatIdentity(recorded)} is a command event outside any workflow task block`,
      );
    }
    const produced = block.produced[block.matched];
    if (!produced) {
      throw new NonDeterminismError(
        `non-determinism at history event ${event.sequence}: recorded ${formatIdentity(recorded)}, ` +
          `but the workflow code produced no such command (it produced ${block.produced.length} in the workflow task ` +
          `closed by event ${block.marker.sequence}). ${hint}`,
      );
    }
    const actual = commandIdentity(produced);
    if (!sameIdentity(actual, recorded)) {
      throw new NonDeterminismError(
        `non-determinism at history event ${event.sequence}: recorded ${formatIdentity(recorded)}, ` +
          `but the workflow code produced ${formatIdentity(actual)}. ${hint}`,
      );
    }
  }

  private closeBlock(block: Block, next: HistoryEvent | undefined): void {
    if (block.matched >= block.produced.length) return;
    const extra = commandIdentity(block.produced[block.matched]!);
    const where = next
      ? `history event ${next.sequence} (${eventKindName(next)})`
      : `the end of history (after event ${this.historyLength})`;
    throw new NonDeterminismError(
      `non-determinism at ${where}: the workflow code produced ${formatIdentity(extra)}, which the history ` +
        `does not record (the workflow task closed by event ${block.marker.sequence} recorded ${block.matched} ` +
        `command(s), the code produced ${block.produced.length}). ${hint}`,
    );
  }

  private deliver(event: HistoryEvent): void {
    const a = event.attributes;
    switch (a.case) {
      case "runStarted":
        return this.start(decodeInput(a.value.input, event));
      case "activityCompleted": {
        const call = this.settle(a.value.seq, event);
        call?.resolve(decodeInput(a.value.result, event));
        return;
      }
      case "activityFailed": {
        const call = this.settle(a.value.seq, event);
        if (!call) return;
        const cause = a.value.failure ? failureToError(a.value.failure) : new Error("activity failed");
        call.reject(new ActivityFailure(call.activityName, a.value.seq, a.value.attempt, cause));
        return;
      }
      case "cancelRequested":
        return this.requestCancel(a.value.reason);
      case "externalEventReceived":
        this.receivedEvents.set(a.value.eventId, decodeInput(a.value.payload, event));
        return;
      default:
        throw new Error(
          `history event ${event.sequence} (${eventKindName(event)}) needs a feature this SDK version does not have`,
        );
    }
  }

  private settle(seq: number, event: HistoryEvent): PendingCall | undefined {
    const call = this.pending.get(seq);
    if (call) {
      this.pending.delete(seq);
      return call;
    }
    if (seq >= this.nextSeq) {
      throw new NonDeterminismError(
        `non-determinism at history event ${event.sequence}: ${eventKindName(event)} for seq ${seq}, ` +
          `but the workflow code issued no command with that seq. ${hint}`,
      );
    }
    // A result for a call the workflow stopped waiting for (cancelled): nothing to do.
    return undefined;
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

  private onWorkflowError(err: unknown): void {
    // Broken determinism or undecodable data fail the task, not the run: fixed code can still finish it.
    if (err instanceof NonDeterminismError || err instanceof DeterminismViolationError || err instanceof PayloadError) {
      this.violation(err);
      return;
    }
    if (err instanceof CancelledFailure && this.cancelRequested) {
      this.finish(() => create(CommandSchema, { command: { case: "cancelRun", value: {} } }));
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
      this.violation(err instanceof Error ? err : new Error(String(err)));
    }
  }

  private scheduleActivity(name: string, command: Command): Promise<unknown> {
    // After a terminal command nothing more is sent; such calls simply never resolve.
    if (this.ended) return new Promise(() => {});
    this.commands.push(command);
    const seq = commandIdentity(command).seq!;
    return new Promise((resolve, reject) => this.pending.set(seq, { resolve, reject, activityName: name }));
  }

  /**
   * Per docs/worker-protocol.md: every pending activity is asked to cancel (a command, so the
   * server can stop it) and its await rejects; its eventual outcome is ignored (see settle).
   */
  private requestCancel(reason: string): void {
    this.cancelRequested = true;
    for (const [seq, call] of this.pending) {
      this.pending.delete(seq);
      if (!this.ended) {
        this.commands.push(create(CommandSchema, { command: { case: "requestCancelActivity", value: { seq } } }));
      }
      call.reject(new CancelledFailure(`run cancelled${reason ? `: ${reason}` : ""}`));
    }
  }
}

const hint =
  "Workflow code must issue the same commands in the same order on every replay: deploy the code that " +
  "recorded this history (or make the change conditional), and the run continues. Real I/O (fetch, files) " +
  "inside workflow code also causes this: move it into an activity.";

function timeOf(time: Timestamp | undefined): number {
  return time ? timestampMs(time) : 0;
}

function decodeInput(payload: Parameters<typeof decodePayload>[0], event: HistoryEvent): unknown {
  try {
    return decodePayload(payload);
  } catch (err) {
    throw new PayloadError(`history event ${event.sequence} (${eventKindName(event)}): ${(err as Error).message}`, {
      cause: err,
    });
  }
}
