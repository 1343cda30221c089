/** A handle on one workflow run (or an instance's current run). */
import type { HistoryEvent, RunSelector } from "@dex/proto";
import { DexError } from "@dex/proto";
import { WorkflowFailedError } from "../common/errors.js";
import { failureToError } from "../common/failure.js";
import { decodePayload, encodePayload } from "../common/payload.js";
import type { Connection } from "./connection.js";
import { statusName, toRunDescription, type RunDescription } from "./convert.js";
import type { RetryCall } from "./retry.js";
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
  sendEvent(eventId: string, payload?: unknown): Promise<{ runId: string; duplicate: boolean }>;
  /** Requests cancellation; the workflow decides how to end. A retry that finds the run ended after the request resolves. */
  cancel(reason?: string): Promise<void>;
  /** Ends the run at once; no workflow code runs afterwards. A retry that finds the run TERMINATED resolves. */
  terminate(reason?: string): Promise<void>;
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

    async sendEvent(eventId, payload) {
      const request = { run: run(), eventId, payload: payload === undefined ? undefined : encodePayload(payload) };
      return call(async ({ retried }) => {
        try {
          const response = await connection.client.sendEvent(request);
          return { runId: response.runId, duplicate: response.duplicate };
        } catch (err) {
          // An earlier try may have delivered the event, and the run then ended on it before this
          // try: the refusal ("ended, cannot receive events") is then this call's own success.
          if (retried && isCode(err, "FAILED_PRECONDITION")) {
            const runId = await historyHas(request.run, (e) => e.attributes.case === "externalEventReceived" && e.attributes.value.eventId === eventId);
            if (runId !== undefined) return { runId, duplicate: true };
          }
          throw err;
        }
      }, undefined, writeUnsentOnly);
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
  };
}

function isCode(err: unknown, code: string): boolean {
  return err instanceof DexError && err.code === code;
}
