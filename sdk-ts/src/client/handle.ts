/** A handle on one workflow run (or an instance's current run). */
import type { HistoryEvent, RunSelector } from "@dex/proto";
import { DexError } from "@dex/proto";
import { backoffDelay, sleep } from "../common/backoff.js";
import { WorkflowFailedError } from "../common/errors.js";
import { failureToError } from "../common/failure.js";
import { decodePayload, encodePayload } from "../common/payload.js";
import type { Connection } from "./connection.js";
import { statusName, toRunDescription, type RunDescription } from "./convert.js";
import { isTransient, withRetry } from "./retry.js";

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
   * The run keeps an event that arrives before the workflow waits for it.
   */
  sendEvent(eventId: string, payload?: unknown): Promise<{ runId: string; duplicate: boolean }>;
  /** Requests cancellation; the workflow decides how to end. */
  cancel(reason?: string): Promise<void>;
  /** Ends the run at once; no workflow code runs afterwards. */
  terminate(reason?: string): Promise<void>;
}

/** Longer than the server's ~20 s long-poll, so the server answers first. */
const RESULT_POLL_DEADLINE_MS = 30_000;
const HISTORY_PAGE_SIZE = 1_000;

export function createHandle<O>(connection: Connection, ref: { runId?: string; instanceId?: string }): WorkflowHandle<O> {
  const selector = (): RunSelector["target"] =>
    ref.runId ? { case: "runId", value: ref.runId } : { case: "instanceId", value: ref.instanceId ?? "" };
  const run = () => ({ target: selector() });

  return {
    runId: ref.runId,
    instanceId: ref.instanceId,

    async result(options = {}) {
      const { signal } = options;
      let target = run();
      let outage = 0;
      for (;;) {
        if (signal?.aborted) throw signal.reason ?? new DexError("CANCELLED", "result() was aborted");
        let response;
        try {
          response = await connection.client.getRunResult(
            { run: target, wait: true },
            { deadline: RESULT_POLL_DEADLINE_MS, signal },
          );
          outage = 0;
        } catch (err) {
          if (signal?.aborted) throw signal.reason ?? err;
          if (!isTransient(err)) throw err;
          await sleep(backoffDelay(++outage, { initialMs: 200, maxMs: 5_000 }), signal);
          continue;
        }
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

    async describe() {
      return toRunDescription(await withRetry(() => connection.client.describeRun({ run: run() })));
    },

    async history() {
      const events: HistoryEvent[] = [];
      let target = run();
      let after = 0n;
      for (;;) {
        const page = await withRetry(() =>
          connection.client.getRunHistory({ run: target, afterSequence: after, pageSize: HISTORY_PAGE_SIZE }),
        );
        // Pin the run: an instance id could move to a newer run between pages.
        target = { target: { case: "runId", value: page.runId } };
        events.push(...page.events);
        const last = page.events.at(-1);
        if (!last || last.sequence >= page.historyLength) return events;
        after = last.sequence;
      }
    },

    async sendEvent(eventId, payload) {
      const response = await connection.client.sendEvent({
        run: run(),
        eventId,
        payload: payload === undefined ? undefined : encodePayload(payload),
      });
      return { runId: response.runId, duplicate: response.duplicate };
    },

    async cancel(reason) {
      await connection.client.cancelRun({ run: run(), reason: reason ?? "" });
    },

    async terminate(reason) {
      await connection.client.terminateRun({ run: run(), reason: reason ?? "" });
    },
  };
}
