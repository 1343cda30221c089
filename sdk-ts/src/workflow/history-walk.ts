/**
 * The walk through recorded history on replay. History is a series of blocks:
 * inputs, a `workflow_task_completed` marker whose time is the workflow clock,
 * then the command events of that task. At each marker the run's code gets the
 * block's inputs and runs until it blocks; the commands it produced are then
 * checked against the block's command events one for one (replay-check.ts).
 * Inputs after the last marker are not delivered here: they are the trailing
 * inputs `activate` feeds with the task's new events (execution.ts).
 */
import type { Command, HistoryEvent } from "@dex/proto";
import { classifyEvent } from "./commands.js";
import { closeBlock, matchCommand, openBlock, type Block } from "./replay-check.js";

export interface HistoryWalker {
  /** Events of the run's history consumed so far. */
  consumed(): number;
  /** Event `sequence` was consumed. */
  advance(sequence: number): void;
  /**
   * Runs the workflow task the marker `events[markerIndex]` closes, with its inputs; returns the
   * commands the code produced.
   */
  runTask(events: readonly HistoryEvent[], markerIndex: number, inputs: HistoryEvent[]): Promise<Command[]>;
}

/**
 * Replays `events`, which continue the history `walker` consumed so far, starting with the inputs
 * the last walk left (`inputs`). Returns the inputs after the last marker.
 */
export async function walkHistory(
  events: readonly HistoryEvent[],
  inputs: HistoryEvent[],
  walker: HistoryWalker,
): Promise<HistoryEvent[]> {
  let block: Block | undefined;
  for (let i = 0; i < events.length; i++) {
    const event = events[i]!;
    const sequence = Number(event.sequence);
    if (sequence !== walker.consumed() + 1) {
      throw new Error(`history is not contiguous: expected event ${walker.consumed() + 1}, got ${sequence}`);
    }
    switch (classifyEvent(event)) {
      case "marker":
        if (block) closeBlock(block, event, walker.consumed());
        block = openBlock(event, await walker.runTask(events, i, inputs));
        inputs = [];
        break;
      case "command":
        matchCommand(block, event);
        break;
      case "input":
        if (block) closeBlock(block, event, walker.consumed());
        block = undefined;
        inputs.push(event);
        break;
      case "server":
        break;
    }
    walker.advance(sequence);
  }
  if (block) closeBlock(block, undefined, walker.consumed());
  return inputs;
}
