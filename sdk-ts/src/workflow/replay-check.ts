/**
 * The replay check: the commands workflow code produces for a block must equal
 * the block's recorded command events one for one (kind, seq, name). The
 * errors name the first diverging history event (its sequence, and its kind
 * through the recorded command) and both commands, so a user can tell which
 * change broke which runs.
 *
 * Patch markers are the exception (docs/worker-protocol.md, "Patch markers"):
 * they only document which side of a patch the code took, so they are not
 * matched by position. A recorded marker pairs with a marker of the same patch
 * id the code produced in the same block, wherever it stands among the other
 * commands; a recorded marker the code does not produce (the call was removed)
 * is skipped; a produced `deprecated` marker needs no recorded one; a produced
 * non-deprecated marker must be recorded in its block.
 *
 * A second, narrow exception: the `cancel_timer` the SDK issues with an event
 * wait's seq, for a timed wait an event satisfied (events.ts) or any wait a
 * cancellation reached (pending.ts), is matched when recorded, and skipped
 * when the history does not record it (histories written before the SDK
 * issued it).
 */
import type { Command, HistoryEvent } from "@dex/proto";
import { NonDeterminismError } from "../common/errors.js";
import { commandIdentity, eventIdentity, eventKindName, formatIdentity, sameIdentity } from "./commands.js";

export const replayHint =
  "Workflow code must issue the same commands in the same order on every replay: deploy the code that " +
  "recorded this history (or make the change conditional), and the run continues. Real I/O (fetch, files) " +
  "inside workflow code also causes this: move it into an activity.";

/** Produced commands that histories written by older SDK versions may lack (see the header). */
export const mayBeUnrecorded = new WeakSet<Command>();

/** One replayed workflow task: its marker, the commands the code produced, and how many matched so far. */
export interface Block {
  marker: HistoryEvent;
  /** The produced commands matched by position: all but patch markers. */
  produced: Command[];
  matched: number;
  /** The produced patch markers, by patch id: matched by id, not position. */
  patches?: Map<string, { deprecated: boolean; matched: boolean }>;
}

/** Starts checking the block closed by `marker`, whose code produced `produced`. */
export function openBlock(marker: HistoryEvent, produced: Command[]): Block {
  const patches = new Map<string, { deprecated: boolean; matched: boolean }>();
  const positional: Command[] = [];
  for (const command of produced) {
    const c = command.command;
    if (c.case === "recordPatchMarker") patches.set(c.value.patchId, { deprecated: c.value.deprecated, matched: false });
    else positional.push(command);
  }
  return { marker, produced: positional, matched: 0, patches };
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
  if (event.attributes.case === "patchMarkerRecorded") {
    // Produced in this block: matched. Not produced: the call was removed or moved to a later block; skipped.
    const produced = block.patches?.get(event.attributes.value.patchId);
    if (produced) produced.matched = true;
    return;
  }
  // An unrecorded drop of an event wait's time-out (header): skip it if it does not match.
  while (isSkippable(block.produced[block.matched], event)) block.matched++;
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
  closePatches(block, next, historyLength);
  while (isSkippable(block.produced[block.matched], undefined)) block.matched++;
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

/** A produced command that may be missing from history and is not the one `event` records. */
function isSkippable(produced: Command | undefined, event: HistoryEvent | undefined): boolean {
  if (!produced || !mayBeUnrecorded.has(produced)) return false;
  return !event || !sameIdentity(commandIdentity(produced), eventIdentity(event));
}

/**
 * A non-deprecated patch marker the code produced must be recorded in its
 * block. The TypeScript SDK's `patched` never produces one on replay unless the
 * block records it; the check keeps the rule whole for any other producer.
 */
function closePatches(block: Block, next: HistoryEvent | undefined, historyLength: number): void {
  for (const [patchId, patch] of block.patches ?? []) {
    if (patch.matched || patch.deprecated) continue;
    const produced = formatIdentity({ kind: "patchMarkerRecorded", name: patchId });
    throw new NonDeterminismError(
      `non-determinism in the workflow task closed by event ${block.marker.sequence}: the workflow code produced ` +
        `${produced}, which the history does not record in that workflow task. ${replayHint}`,
      next
        ? { eventSequence: Number(next.sequence), eventKind: eventKindName(next), produced }
        : { eventSequence: historyLength + 1, eventKind: "end of history", produced },
    );
  }
}
