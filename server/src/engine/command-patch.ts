/**
 * record_patch_marker: the one command that only documents a decision of the
 * workflow code (which side of a patch it took). It has no seq, changes no
 * run state and nothing answers it; the SDK's replay check reads the event
 * back (docs/worker-protocol.md, "Patch markers").
 */
import type { Command } from "@dex/proto";
import type { EventInit } from "./events.js";
import { invalid } from "./validation.js";

/** Long enough for "checkout-v2:add-fraud-check" style names, short enough to print in one history line. */
export const MAX_PATCH_ID_LENGTH = 128;

/**
 * Letters, digits and '-', '_', '.', ':'. Patch ids are written in code and
 * compared exactly on every replay: a narrow alphabet rules out look-alike
 * Unicode and invisible characters that would make two ids seem equal.
 */
const PATCH_ID_PATTERN = /^[A-Za-z0-9_.:-]+$/;

type PatchMarker = Extract<Command["command"], { case: "recordPatchMarker" }>["value"];

/** Validates the command and returns its history event. */
export function planPatchMarker(field: string, value: PatchMarker): EventInit {
  const f = `${field}.patch_id`;
  const id = value.patchId;
  if (id.length === 0) throw invalid(`${f} is required: name the patch, e.g. "add-fraud-check"`);
  if (id.length > MAX_PATCH_ID_LENGTH) throw invalid(`${f} is too long: ${id.length} characters, at most ${MAX_PATCH_ID_LENGTH}`);
  if (!PATCH_ID_PATTERN.test(id)) {
    throw invalid(`${f} ${JSON.stringify(id)} is not a valid patch id: use only letters, digits, '-', '_', '.' or ':'`);
  }
  return { case: "patchMarkerRecorded", value: { patchId: id, deprecated: value.deprecated } };
}
