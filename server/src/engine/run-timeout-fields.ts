/**
 * The run timeout and workflow task timeout of a start (StartWorkflowRequest,
 * StartChildRunCommand), validated: the limits docs/worker-protocol.md and the
 * .proto files state. Pure, so the api and the command planner share it.
 */
import type { Duration } from "@bufbuild/protobuf/wkt";
import { MAX_DURATION_MS } from "./model.js";
import { durationField, invalid } from "./validation.js";

/** Bounds of a run's workflow task timeout: a replay needs a moment; a lost worker must not stall a run for long. */
export const MIN_WORKFLOW_TASK_TIMEOUT_MS = 1_000;
export const MAX_WORKFLOW_TASK_TIMEOUT_MS = 10 * 60_000;

/** A start's run timeout in ms (whole ms, rounded up); undefined when unset. */
export function runTimeoutField(field: string, value: Duration | undefined): number | undefined {
  if (!value) return undefined;
  const ms = durationField(field, value, { allowZero: true, maxMs: MAX_DURATION_MS });
  if (ms === undefined || ms <= 0) throw invalid(`${field} must be more than 0; leave it unset for a run without a time limit`);
  return Math.ceil(ms);
}

/** A start's workflow task timeout in ms; undefined when unset (the server's default lease). */
export function workflowTaskTimeoutField(field: string, value: Duration | undefined): number | undefined {
  if (!value) return undefined;
  const ms = durationField(field, value, { allowZero: true, maxMs: Number.MAX_SAFE_INTEGER });
  if (ms === undefined || ms < MIN_WORKFLOW_TASK_TIMEOUT_MS || ms > MAX_WORKFLOW_TASK_TIMEOUT_MS) {
    throw invalid(
      `${field} must be from ${MIN_WORKFLOW_TASK_TIMEOUT_MS / 1000} s to ${MAX_WORKFLOW_TASK_TIMEOUT_MS / 60_000} min; leave it unset for the default (10 s)`,
    );
  }
  return Math.ceil(ms);
}

