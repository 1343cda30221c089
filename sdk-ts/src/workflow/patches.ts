/**
 * Patches: how `ctx.patched(id)` and `ctx.deprecatePatch(id)` decide, per
 * docs/worker-protocol.md ("Patch markers"). Pure bookkeeping; the execution
 * issues the `record_patch_marker` commands it is told to.
 *
 * The rule that makes old runs keep the old path: while replaying, a patch is
 * on only if history holds its marker at or before the block being replayed
 * (the block's own command events are looked at before its code runs, since
 * the marker is recorded in the block where the first call happened). Live,
 * a patch is always on: the run has not yet passed the changed code. The
 * first answer for an id is kept for the rest of the run, so a loop that asks
 * again after replay ended still gets the path it started on.
 */
import { create } from "@bufbuild/protobuf";
import { CommandSchema, type Command, type HistoryEvent } from "@dex/proto";
import { classifyEvent } from "./commands.js";

/** The server's limit (RecordPatchMarkerCommand.patch_id): checked at the call so a typo fails there. */
export const MAX_PATCH_ID_LENGTH = 128;
const PATCH_ID_PATTERN = /^[A-Za-z0-9_.:-]+$/;

export function validatePatchId(patchId: unknown, what: string): string {
  if (typeof patchId !== "string" || patchId.length === 0) throw new TypeError(`${what} expects a patch id, a non-empty string`);
  if (patchId.length > MAX_PATCH_ID_LENGTH) {
    throw new RangeError(`${what}: patch id is ${patchId.length} characters, at most ${MAX_PATCH_ID_LENGTH}`);
  }
  if (!PATCH_ID_PATTERN.test(patchId)) {
    throw new TypeError(`${what}: patch id ${JSON.stringify(patchId)} may hold only letters, digits, '-', '_', '.' and ':'`);
  }
  return patchId;
}

export function buildPatchMarker(patchId: string, deprecated: boolean): Command {
  return create(CommandSchema, { command: { case: "recordPatchMarker", value: { patchId, deprecated } } });
}

/** What a call decided: which path the code takes, and whether a marker command goes out. */
export interface PatchDecision {
  use: boolean;
  record: boolean;
}

export class PatchState {
  /** The first answer per patch id in this run. */
  private readonly decided = new Map<string, boolean>();
  /** Patch ids whose marker is in history before the block being run (all of history, once live). */
  private readonly recorded = new Set<string>();
  /** While replaying a block: the patch ids among its own command events. */
  private blockMarkers = new Set<string>();

  /** Replay is about to run the block whose command events start at `events[from]`. */
  enterBlock(events: readonly HistoryEvent[], from: number): void {
    this.endReplay();
    for (let i = from; i < events.length && classifyEvent(events[i]!) === "command"; i++) {
      const a = events[i]!.attributes;
      if (a.case === "patchMarkerRecorded") this.blockMarkers.add(a.value.patchId);
    }
  }

  /** Replay reached the end of history: the last block's markers count as recorded from now on. */
  endReplay(): void {
    for (const id of this.blockMarkers) this.recorded.add(id);
    this.blockMarkers = new Set();
  }

  /** `ctx.patched(id)`. */
  patched(patchId: string, replaying: boolean): PatchDecision {
    const earlier = this.decided.get(patchId);
    if (earlier !== undefined) return { use: earlier, record: false };
    const use = !replaying || this.recorded.has(patchId) || this.blockMarkers.has(patchId);
    this.decided.set(patchId, use);
    // A marker from an earlier block already says so for the whole run: no second one.
    return { use, record: use && !this.recorded.has(patchId) };
  }

  /** `ctx.deprecatePatch(id)`: always the new path; its marker is optional on replay (replay-check.ts). */
  deprecate(patchId: string): PatchDecision {
    const earlier = this.decided.get(patchId);
    // Already answered in this run (a marker, if any, went out then).
    if (earlier !== undefined) return { use: earlier, record: false };
    this.decided.set(patchId, true);
    return { use: true, record: !this.recorded.has(patchId) };
  }
}
