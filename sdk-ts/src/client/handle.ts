/** A handle on one workflow run (or an instance's current run). */
import { randomUUID } from "node:crypto";
import type { HistoryEvent, RunSelector } from "@dex/proto";
import { DexError, ResetPointKind } from "@dex/proto";
import { WorkflowFailedError } from "../common/errors.js";
import { failureToError } from "../common/failure.js";
import { decodePayload, encodePayload } from "../common/payload.js";
import type { Connection } from "./connection.js";
import { statusName, toRunDescription, type RunDescription } from "./convert.js";
import type { RetryCall } from "./retry.js";
import { runUpdate, type UpdateOptions } from "./update.js";
import { parseDuration, type Duration } from "../common/duration.js";
import { durationFromMs } from "@bufbuild/protobuf/wkt";

/** The client's connection and its one retry path (ClientOptions.retry), shared by its handles. */
export interface Caller {
  readonly connection: Connection;
  /** `unsentOnly`: retry only failures that surely reached no server (retry.ts clientRetryableUnsent). */
  call<T>(fn: (call: RetryCall) => Promise<T>, signal?: AbortSignal, unsentOnly?: boolean): Promise<T>;
}

export interface WorkflowHandle<O = unknown> {
  /** The run's id; undefined for a handle made from an instance id. */
  readonly runId?: string;
  readonly instanceId?: string;
  /** Waits for the run to end: its result, or a WorkflowFailedError (FAILED, CANCELLED, TERMINATED). */
  result(options?: { signal?: AbortSignal }): Promise<O>;
  describe(): Promise<RunDescription>;
  /** The run's whole history (all pages). */
  history(): Promise<HistoryEvent[]>;
  /**
   * Sends an external event; `duplicate` when the run already had this event id (nothing changed).
   * The run keeps an event that arrives before the workflow waits for it. Retried like every call:
   * the event id makes a retry deliver nothing twice, so after a retry `duplicate` can be true for
   * this call's own delivery; a retry that finds the run ended resolves if the run received the event.
   */
  sendEvent(eventId: string, payload?: unknown, options?: { name?: string }): Promise<SendEventResult>;
  /**
   * Sends an event named `name` (what the workflow waits for: `ctx.waitForEvent(name)`,
   * `ctx.events(name)`, `ctx.onEvent(name, fn)`); a run receives many events of one name, each once,
   * in the order the server accepted them. `options.id` is the dedup key, unique per instance across
   * continue-as-new: the same id again delivers nothing (`duplicate`). Default: a random UUID, so this
   * call's own retries deliver once while every call sends a new event.
   */
  signal(name: string, payload?: unknown, options?: { id?: string }): Promise<SendEventResult>;
  /** Requests cancellation; the workflow decides how to end. A retry that finds the run ended after the request resolves. */
  cancel(reason?: string): Promise<void>;
  /** Ends the run at once; no workflow code runs afterwards. A retry that finds the run TERMINATED resolves. */
  terminate(reason?: string): Promise<void>;
  /**
   * Resets the run (ClientService.ResetRun): a new run of the instance replays this run's history up to
   * `to` and goes on from there; this run, if open, ends TERMINATED. Returns a handle to the new run.
   * `requestId` (default: a random one, so the SDK's own retries are idempotent) makes retries return the same run.
   */
  reset(options: ResetOptions): Promise<WorkflowHandle<O>>;
  /**
   * Asks the workflow's update handler `name` to act and waits for its answer (decision 0024).
   * Rejected (no such handler, or its validator threw): WorkflowUpdateRejectedError, nothing recorded.
   * Handler failed: WorkflowUpdateFailedError. The same `updateId` twice runs the handler once.
   */
  update<R = unknown>(name: string, args?: unknown, options?: UpdateOptions): Promise<R>;
  /**
   * Calls the workflow's query handler `name` (ctx.setQueryHandler) with `args` and resolves with its
   * value, read from the run's state after its last completed workflow task (an ended run: its final
   * state); nothing is written to history. `"__dex_pending"` is built in: where the workflow waits.
   * Rejects with a DexError: INVALID_ARGUMENT when the workflow has no such handler (the message lists
   * those it has) or the handler threw; FAILED_PRECONDITION when no worker took the query within
   * `timeout` (default "10s", at most "60s"); NOT_FOUND for an unknown run.
   */
  query<R = unknown>(name: string, args?: unknown, options?: { timeout?: Duration }): Promise<R>;
}

/** Where reset() rewinds to: before the first or last workflow task, or before the task whose marker is event `n` (1: the start). */
export type ResetTarget = "first-workflow-task" | "last-workflow-task" | { event: number };

export interface ResetOptions {
  to: ResetTarget;
  /** Recorded in the old run's run_terminated event and the new run's describe. Default: none. */
  reason?: string;
  /** Idempotency key. Default: a random UUID per call. */
  requestId?: string;
}

/** What a sent event became. */
export interface SendEventResult {
  runId: string;
  /** True when the instance's continue-as-new chain had already received this event id: nothing changed. */
  duplicate: boolean;
  /** The event's id (the dedup key). */
  eventId: string;
}

/** Longer than the server's ~20 s long-poll, so the server answers first. */
const RESULT_POLL_DEADLINE_MS = 30_000;
const HISTORY_PAGE_SIZE = 1_000;

export function createHandle<O>(caller: Caller, ref: { runId?: string; instanceId?: string }): WorkflowHandle<O> {
  const { connection, call } = caller;
  const selector = (): RunSelector["target"] =>
    ref.runId ? { case: "runId", value: ref.runId } : { case: "instanceId", value: ref.instanceId ?? "" };
  const run = () => ({ target: selector() });
  /**
   * A write through an instance id may not be retried after an unknown outcome: the server resolves
   * the instance to its open run, else its newest, on every try, and an event id or a cancel is
   * deduplicated per run. A first try that landed on run R1, whose answer was lost, could be
   * repeated on R2 after R1 continued as new: the event delivered twice, a run the caller never
   * saw cancelled. Through a run id every retry reaches the same run, which deduplicates it.
   */
  const writeUnsentOnly = ref.runId === undefined;

  /**
   * Reads the run's history page by page until `visit` returns true; resolves with the run's id.
   * The run is pinned after the first page: an instance id could move to a newer run between pages.
   */
  async function readHistory(selector: { target: RunSelector["target"] }, visit: (events: HistoryEvent[]) => boolean | void): Promise<{ runId: string; stopped: boolean }> {
    let target = selector;
    let after = 0n;
    for (;;) {
      const page = await call(() => connection.client.getRunHistory({ run: target, afterSequence: after, pageSize: HISTORY_PAGE_SIZE }));
      if (visit(page.events) === true) return { runId: page.runId, stopped: true };
      target = { target: { case: "runId", value: page.runId } };
      const last = page.events.at(-1);
      if (!last || last.sequence >= page.historyLength) return { runId: page.runId, stopped: false };
      after = last.sequence;
    }
  }

  /** The run's id when its history holds an event that matches. */
  /** SendEvent with an id (the dedup key that makes retries safe) and a name ("" means the id). */
  async function send(eventId: string, eventName: string, payload: unknown): Promise<SendEventResult> {
    const request = { run: run(), eventId, eventName, payload: payload === undefined ? undefined : encodePayload(payload) };
    return call(async ({ retried }) => {
      try {
        const response = await connection.client.sendEvent(request);
        return { runId: response.runId, duplicate: response.duplicate, eventId };
      } catch (err) {
        // An earlier try may have delivered the event, and the run then ended on it before this
        // try: the refusal ("ended, cannot receive events") is then this call's own success.
        if (retried && isCode(err, "FAILED_PRECONDITION")) {
          const runId = await historyHas(request.run, (e) => e.attributes.case === "externalEventReceived" && e.attributes.value.eventId === eventId);
          if (runId !== undefined) return { runId, duplicate: true, eventId };
        }
        throw err;
      }
    }, undefined, writeUnsentOnly);
  }

  async function historyHas(selector: { target: RunSelector["target"] }, match: (event: HistoryEvent) => boolean): Promise<string | undefined> {
    const { runId, stopped } = await readHistory(selector, (events) => events.some(match));
    return stopped ? runId : undefined;
  }

  return {
    runId: ref.runId,
    instanceId: ref.instanceId,

    async result(options = {}) {
      const { signal } = options;
      let target = run();
      for (;;) {
        if (signal?.aborted) throw signal.reason ?? new DexError("CANCELLED", "result() was aborted");
        // Each long poll goes through the retry path: result() rejects only when the server has
        // been unreachable for the retry option's maxElapsed, like every other call.
        const request = { run: target, wait: true };
        const response = await call(() => connection.client.getRunResult(request, { deadline: RESULT_POLL_DEADLINE_MS, signal }), signal).catch(
          (err: unknown) => {
            throw signal?.aborted ? (signal.reason ?? err) : err;
          },
        );
        const status = statusName(response.status);
        switch (status) {
          case "COMPLETED":
            return decodePayload(response.result) as O;
          case "FAILED":
          case "CANCELLED":
          case "TERMINATED":
          case "TIMED_OUT":
            throw new WorkflowFailedError(
              response.runId,
              status,
              response.failure ? failureToError(response.failure) : undefined,
            );
          case "CONTINUED_AS_NEW":
            target = { target: { case: "runId", value: response.continuedAsRunId } };
            continue;
          default:
            continue; // still open: the long poll ended first; ask again
        }
      }
    },

    // Queries (decision 0023): read-only, so every try may be repeated.
    async query<R>(name: string, args?: unknown, options: { timeout?: Duration } = {}): Promise<R> {
      const timeoutMs = parseDuration(options.timeout ?? "10s");
      const request = { run: run(), queryName: name, args: encodePayload(args), timeout: durationFromMs(timeoutMs) };
      const response = await call(() => connection.client.queryRun(request, { deadline: timeoutMs + 5_000 }));
      return decodePayload(response.result) as R;
    },

    async describe() {
      return toRunDescription(await call(() => connection.client.describeRun({ run: run() })));
    },

    async history() {
      const events: HistoryEvent[] = [];
      await readHistory(run(), (page) => void events.push(...page));
      return events;
    },

    sendEvent(eventId, payload, options = {}) {
      return send(eventId, options.name ?? "", payload);
    },

    signal(name, payload, options = {}) {
      if (typeof name !== "string" || name.length === 0) throw new TypeError("signal: the event name is required (a non-empty string)");
      return send(options.id ?? randomUUID(), name, payload);
    },

    async cancel(reason) {
      const request = { run: run(), reason: reason ?? "" };
      await call(async ({ retried }) => {
        try {
          await connection.client.cancelRun(request);
        } catch (err) {
          // A request that landed on an earlier try, after which the run ended: done.
          if (!(retried && isCode(err, "FAILED_PRECONDITION") && (await historyHas(request.run, (e) => e.attributes.case === "cancelRequested")) !== undefined)) throw err;
        }
      }, undefined, writeUnsentOnly);
    },

    update: (name, args, options = {}) => runUpdate(caller, selector(), name, args, options, writeUnsentOnly),

    async terminate(reason) {
      const request = { run: run(), reason: reason ?? "" };
      await call(async ({ retried }) => {
        try {
          await connection.client.terminateRun(request);
        } catch (err) {
          if (!(retried && isCode(err, "FAILED_PRECONDITION") && statusName((await call(() => connection.client.describeRun({ run: request.run }))).info?.status ?? 0) === "TERMINATED")) throw err;
        }
      }, undefined, writeUnsentOnly);
    },

    async reset(options) {
      const to = options.to;
      const request = {
        run: run(),
        to: to === "first-workflow-task" ? ResetPointKind.FIRST_WORKFLOW_TASK : to === "last-workflow-task" ? ResetPointKind.LAST_WORKFLOW_TASK : ResetPointKind.EVENT,
        eventSequence: typeof to === "object" ? BigInt(to.event) : 0n,
        reason: options.reason ?? "",
        requestId: options.requestId ?? randomUUID(),
      };
      // Safe to retry after a lost answer: the request id returns the run the first try created.
      const answer = await call(() => connection.client.resetRun(request));
      return createHandle<O>(caller, { runId: answer.runId });
    },
  };
}

function isCode(err: unknown, code: string): boolean {
  return err instanceof DexError && err.code === code;
}
