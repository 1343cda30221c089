/**
 * Replays a recorded history against workflow code, for tests that keep
 * histories in the repository: throws NonDeterminismError when today's code
 * would not reproduce the recorded commands. Accepts what `dex workflow
 * history --json` prints (`{ runId, events }`, as text or parsed), a plain
 * array of events in the protocol's JSON, or `handle.history()`'s messages.
 */
import { fromJson, isMessage, type JsonValue } from "@bufbuild/protobuf";
import { HistoryEventSchema, type HistoryEvent } from "@dex/proto";
import { WorkflowExecution } from "../workflow/execution.js";
import type { Workflow, WorkflowInfo } from "../workflow/types.js";
import { guardedRunner, installDeterminismGuard } from "./determinism-guard.js";

/** A recorded history: JSON text, `{ runId?, events }`, or an array of events (messages or JSON). */
export type RecordedHistory =
  | string
  | readonly (HistoryEvent | JsonValue)[]
  | { readonly runId?: string; readonly events: readonly (HistoryEvent | JsonValue)[] };

/**
 * Replays `history` against `workflow`, or against the workflow of a registry
 * (`{ orderWorkflow, shipment }`, as given to createWorkflowWorker) named by the
 * history's run_started. The run id (from the history, else `info.runId`)
 * seeds `ctx.random()` exactly as the recorded run did.
 */
export async function replayHistory(
  workflow: Workflow | Readonly<Record<string, Workflow>>,
  history: RecordedHistory,
  info: Partial<WorkflowInfo> = {},
): Promise<void> {
  installDeterminismGuard();
  const recorded = parseHistory(history);
  const first = recorded.events[0];
  const started = first?.attributes.case === "runStarted" ? first.attributes.value : undefined;
  const workflowName = info.workflowName ?? started?.workflowName ?? (typeof workflow === "function" ? workflow.name : "");
  const execution = new WorkflowExecution({
    info: {
      runId: info.runId ?? recorded.runId ?? "replay",
      instanceId: info.instanceId ?? started?.instanceId ?? "",
      workflowName,
      taskQueue: info.taskQueue ?? started?.taskQueue ?? "",
      attempt: info.attempt ?? 1,
    },
    workflow: typeof workflow === "function" ? workflow : pick(workflow, workflowName),
    runner: guardedRunner,
  });
  await execution.replay(recorded.events);
}

function pick(registry: Readonly<Record<string, Workflow>>, name: string): Workflow {
  const found = Object.hasOwn(registry, name) ? registry[name] : undefined;
  if (typeof found === "function") return found;
  const known = Object.keys(registry).join(", ") || "none";
  throw new TypeError(`replayHistory: the history is of workflow "${name}", which the given workflows do not include (given: ${known})`);
}

/** The events of a recorded history (and its run id, when it names one). */
export function parseHistory(history: RecordedHistory): { runId?: string; events: HistoryEvent[] } {
  const parsed: unknown = typeof history === "string" ? JSON.parse(history) : history;
  let runId: string | undefined;
  let events: unknown;
  if (Array.isArray(parsed)) {
    events = parsed;
  } else if (typeof parsed === "object" && parsed !== null && Array.isArray((parsed as { events?: unknown }).events)) {
    const file = parsed as { runId?: unknown; events: unknown[] };
    events = file.events;
    if (typeof file.runId === "string" && file.runId) runId = file.runId;
  } else {
    throw new TypeError("replayHistory: expected an array of history events or { runId, events } (dex workflow history --json)");
  }
  const messages = (events as unknown[]).map((event) =>
    isMessage(event, HistoryEventSchema) ? event : fromJson(HistoryEventSchema, event as JsonValue),
  );
  return runId === undefined ? { events: messages } : { runId, events: messages };
}
