/**
 * The replay check: the commands workflow code produces for a block must equal
 * the block's recorded command events one for one (kind, seq, name). The
 * errors name the first diverging history event (its sequence, and its kind
 * through the recorded command) and both commands, so a user can tell which
 * change broke which runs.
 */
import type { Command, HistoryEvent } from "@dex/proto";
import { NonDeterminismError } from "../common/errors.js";
import { commandIdentity, eventIdentity, eventKindName, formatIdentity, sameIdentity } from "./commands.js";

export const replayHint =
  "Workflow code must issue the same commands in the same order on every replay: deploy the code that " +
  "recorded this history (or make the change conditional), and the run continues. Real I/O (fetch, files) " +
  "inside workflow code also causes this: move it into an activity.";

/** One replayed workflow task: its marker, the commands the code produced, and how many matched so far. */
export interface Block {
  marker: HistoryEvent;
  produced: Command[];
  matched: number;
}

/** Checks recorded command event `event` against the next command the code produced in `block`. */
export function matchCommand(block: Block | undefined, event: HistoryEvent): void {
  const recorded = formatIdentity(eventIdentity(event));
  const at = { eventSequence: Number(event.sequence), eventKind: eventKindName(event), recorded };
  if (!block) {
    throw new NonDeterminismError(
      `history event ${event.sequence} ${recorded} is a command event outside any workflow task block`,
      at,
    );
  }
  const next = block.produced[block.matched];
  if (!next) {
    throw new NonDeterminismError(
      `non-determinism at history event ${event.sequence}: recorded ${recorded}, ` +
        `but the workflow code produced no such command (it produced ${block.produced.length} in the workflow task ` +
        `closed by event ${block.marker.sequence}). ${replayHint}`,
      at,
    );
  }
  const actual = commandIdentity(next);
  if (!sameIdentity(actual, eventIdentity(event))) {
    const produced = formatIdentity(actual);
    throw new NonDeterminismError(
      `non-determinism at history event ${event.sequence}: recorded ${recorded}, ` +
        `but the workflow code produced ${produced}. ${replayHint}`,
      { ...at, produced },
    );
  }
  block.matched++;
}

/**
 * Called when the block ends (at `next`, or at the end of history): every
 * command the code produced must have been recorded.
 */
export function closeBlock(block: Block, next: HistoryEvent | undefined, historyLength: number): void {
  if (block.matched >= block.produced.length) return;
  const produced = formatIdentity(commandIdentity(block.produced[block.matched]!));
  const where = next
    ? `history event ${next.sequence} (${eventKindName(next)})`
    : `the end of history (after event ${historyLength})`;
  throw new NonDeterminismError(
    `non-determinism at ${where}: the workflow code produced ${produced}, which the history ` +
      `does not record (the workflow task closed by event ${block.marker.sequence} recorded ${block.matched} ` +
      `command(s), the code produced ${block.produced.length}). ${replayHint}`,
    next
      ? { eventSequence: Number(next.sequence), eventKind: eventKindName(next), produced }
      : { eventSequence: historyLength + 1, eventKind: "end of history", produced },
  );
}
