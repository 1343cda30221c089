/**
 * Which errors escaping workflow code end the run, and which only fail the
 * workflow task (docs/worker-protocol.md, "An error thrown by workflow code").
 *
 * A bug (a TypeError on a missing input field) should pause the run until
 * fixed code is deployed, not end it for good: the task fails, the run stays
 * open, the server retries the task with back-off. A deliberate failure ends
 * the run: an ApplicationFailure thrown on purpose, a failure the code got
 * from dex and let escape (an activity, child or timeout failure), a
 * cancellation, or an error type the workflow lists in `failWorkflowOn`.
 */
import {
  ActivityFailure,
  ApplicationFailure,
  CancelledFailure,
  ChildWorkflowFailure,
  ChildWorkflowStartFailure,
  DeterminismViolationError,
  NonDeterminismError,
  TimeoutFailure,
} from "../common/errors.js";
import { PayloadError } from "../common/payload.js";
import type { Workflow } from "./types.js";

/** An error class (matched with `instanceof`) or an error name (matched against `name`, or ApplicationFailure's `type`). */
export type ErrorMatcher = string | (abstract new (...args: never[]) => Error);

/** Options that belong to a workflow's definition, wherever it is registered. */
export interface WorkflowDefinitionOptions {
  /**
   * Errors that fail the run when they escape the workflow, instead of failing the workflow task
   * (which keeps the run open until fixed code is deployed). `[Error]` fails the run on any error,
   * the behaviour before this option existed. Determinism errors never fail the run. Default: none.
   */
  failWorkflowOn?: readonly ErrorMatcher[];
}

const definitionOptions = new WeakMap<Workflow, WorkflowDefinitionOptions>();

/**
 * Attaches definition options to a workflow function (Temporal's `setWorkflowOptions`); returns the
 * function, so it can wrap the declaration: `export const order = setWorkflowOptions(async (ctx) => ..., { failWorkflowOn: [TypeError] })`.
 */
export function setWorkflowOptions<W extends Workflow>(workflow: W, options: WorkflowDefinitionOptions): W {
  if (typeof workflow !== "function") throw new TypeError("setWorkflowOptions: the first argument must be the workflow function");
  for (const matcher of options.failWorkflowOn ?? []) {
    if (typeof matcher !== "function" && (typeof matcher !== "string" || matcher === "")) {
      throw new TypeError(`setWorkflowOptions: failWorkflowOn takes error classes or non-empty error names, got ${String(matcher)}`);
    }
  }
  definitionOptions.set(workflow, { ...options, failWorkflowOn: [...(options.failWorkflowOn ?? [])] });
  return workflow;
}

export function workflowOptionsOf(workflow: Workflow): WorkflowDefinitionOptions {
  return definitionOptions.get(workflow) ?? {};
}

/** Broken determinism or undecodable data: always the task's failure, whatever the options say. */
export function isDeterminismFailure(err: unknown): boolean {
  return err instanceof NonDeterminismError || err instanceof DeterminismViolationError || err instanceof PayloadError;
}

/**
 * True when `err`, escaping the workflow function, ends the run as FAILED.
 * The caller handles determinism failures and a cancellation first.
 */
export function failsRun(err: unknown, options: WorkflowDefinitionOptions): boolean {
  if (
    err instanceof ApplicationFailure ||
    err instanceof ActivityFailure ||
    err instanceof ChildWorkflowFailure ||
    err instanceof ChildWorkflowStartFailure ||
    err instanceof TimeoutFailure ||
    err instanceof CancelledFailure
  ) {
    return true;
  }
  return (options.failWorkflowOn ?? []).some((matcher) => matches(err, matcher));
}

function matches(err: unknown, matcher: ErrorMatcher): boolean {
  if (typeof matcher === "function") return err instanceof matcher;
  if (!(err instanceof Error)) return false;
  return err.name === matcher;
}
