/**
 * The commands of one workflow task, assembled while the code runs and handed
 * over at the end of the task (execution.ts). Two rules live here:
 * - after a terminal command (complete, fail, cancel, continue-as-new) nothing
 *   more is sent: the run has ended, and later calls never settle;
 * - what a terminal command carries is filled in when it is known: the
 *   events the run did not consume (read at the end of the task), whether
 *   the code had seen the run's cancellation (read when it continued as new)
 *   and the updates it never saw because it had continued as new already.
 */
import { create } from "@bufbuild/protobuf";
import { CommandSchema, type CarriedEvent, type Command } from "@dex/proto";
import { CancelledFailure } from "../common/errors.js";
import { errorToFailure } from "../common/failure.js";
import { encodePayload } from "../common/payload.js";
import { withoutDescribeOnlyDrops } from "./events.js";
import { failsRun, isDeterminismFailure, type WorkflowDefinitionOptions } from "./failure-rule.js";

export class TaskCommands {
  private commands: Command[] = [];
  private terminal = false;
  private continued = false;
  /** Update ids of this task the code never saw: it had continued as new (decision 0031). */
  private undelivered: string[] = [];

  /** True once the run has its terminal command. */
  get ended(): boolean {
    return this.terminal;
  }

  /** Adds `command` unless the run has ended. */
  issue(command: Command): void {
    if (!this.terminal) this.commands.push(command);
  }

  /**
   * Adds `command` whatever the state: for a caller that checked `ended` before it took the
   * command's seq (pending awaits, side effects), so a seq it took always has its command.
   */
  push(command: Command): void {
    this.commands.push(command);
  }

  /**
   * Ends the run with the command `build` makes, once: a later call is ignored. If `build` throws
   * (a result that cannot be encoded), the run stays open and the error is returned: it fails the
   * task, and a fixed deploy carries the run on (failure-rule.ts).
   */
  finish(build: () => Command): Error | undefined {
    if (this.terminal) return undefined;
    try {
      this.commands.push(build());
      this.terminal = true;
      return undefined;
    } catch (err) {
      return err instanceof Error ? err : new Error(String(err));
    }
  }

  /** True once the run ended by continuing as new: an update due now goes to the new run (`undeliveredUpdate`). */
  get continuedAsNew(): boolean {
    return this.continued;
  }

  /**
   * Names an update of this task that reached the run after its code continued as new: the
   * server moves it to the new run, whose code handles it, instead of recording it here (decision
   * 0031). Only for a live update that was never validated nor delivered.
   */
  undeliveredUpdate(updateId: string): void {
    this.undelivered.push(updateId);
  }

  /** How many updates of this task go to the new run: the server records none of them here. */
  get undeliveredCount(): number {
    return this.undelivered.length;
  }

  /** Ends the run with a command the code asked for (`ctx.continueAsNew`), unless it has ended. */
  end(command: Command, cancelSeen: boolean): void {
    if (this.terminal) return;
    // Whether the code had been told of the run's cancellation when it chose to continue: if not
    // (the request came with this block and is delivered after the code ended), the server
    // hands the request to the new run (decision 0031). Not recorded, so replay compares nothing.
    if (command.command.case === "continueAsNew") command.command.value.cancelRequestDelivered = cancelSeen;
    this.commands.push(command);
    this.terminal = true;
    this.continued = command.command.case === "continueAsNew";
  }

  /** The task's commands so far, which are then cleared; `unconsumed` gives the events not yet consumed. */
  take(unconsumed: () => CarriedEvent[]): Command[] {
    const commands = withoutDescribeOnlyDrops(this.commands, this.terminal);
    this.commands = [];
    // Unconsumed events go to the next run, ahead of those that arrive meanwhile (decision 0022). Read
    // now, after the whole block was delivered: events after the call are buffered (events.ts), not lost.
    // The replay check compares no carried events, so when they are read changes no recorded history.
    for (const { command } of commands) {
      if (command.case === "continueAsNew") {
        command.value.carriedEvents = unconsumed();
        command.value.undeliveredUpdateIds = this.undelivered;
      }
    }
    this.undelivered = [];
    return commands;
  }
}

/** The terminal command of a run whose code returned `value`; encoding happens in `finish`. */
export function completeRunCommand(value: unknown): () => Command {
  return () => create(CommandSchema, { command: { case: "completeRun", value: { result: encodePayload(value) } } });
}

/**
 * How an error out of workflow code ends things, by the rule of failure-rule.ts: the terminal
 * command that ends the run (a deliberate failure, or the cancellation the run was asked for), or
 * undefined when the error is a bug that fails the task instead (the run stays open and a fixed
 * deploy carries it on).
 */
export function terminalCommandFor(
  err: unknown,
  cancelRequested: boolean,
  options: WorkflowDefinitionOptions,
): (() => Command) | undefined {
  if (isDeterminismFailure(err)) return undefined;
  if (err instanceof CancelledFailure && cancelRequested) {
    return () => create(CommandSchema, { command: { case: "cancelRun", value: {} } });
  }
  if (!failsRun(err, options)) return undefined;
  return () => create(CommandSchema, { command: { case: "failRun", value: { failure: errorToFailure(err) } } });
}
