/**
 * Activity outcomes reported in batches (docs/decisions/0011-batched-completions.md): the
 * activity worker's completions and failures go to the server in ReportActivityTasks calls
 * instead of one CompleteActivityTask or FailActivityTask call each.
 *
 * Group commit, as on the server: with no call in flight an outcome goes out at once (after the
 * other outcomes of the same event-loop turn), so a lone completion waits for nobody; outcomes
 * that arrive while a call is in flight go together in the next call. There is no flush interval.
 *
 * Each outcome settles as its unary call would: resolved when recorded, rejected with a DexError
 * carrying its item's code (NOT_FOUND for a stale token, INVALID_ARGUMENT for a refused result,
 * ...), or with the call's error when the call as a whole failed (UNAVAILABLE while the server
 * restarts). The caller's retry (withRetry, until the lease deadline) then sends the outcome
 * again, in a later batch: each item is retried on its own, exactly as a unary call was.
 *
 * A server older than ReportActivityTasks answers UNIMPLEMENTED: the outcomes of that call and
 * every outcome for the next few minutes go as unary calls, then a batch is tried again (the
 * server may have been upgraded, or a call may have reached an old server of several).
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import { codeName, DexError, type ActivityTaskReportSchema, type CompleteActivityTaskRequestSchema, type FailActivityTaskRequestSchema, type Failure } from "@dex/proto";
import type { Logger } from "../common/logger.js";
import type { Connection } from "../client/connection.js";

type Report = MessageInitShape<typeof ActivityTaskReportSchema>;
type CompleteRequest = MessageInitShape<typeof CompleteActivityTaskRequestSchema>;
type FailRequest = MessageInitShape<typeof FailActivityTaskRequestSchema>;

/**
 * `traceContext`: the report's W3C headers from the completion hooks (tracing), or undefined: sent
 * as the item's `trace_context` in a batch (the server links its span to each), as call metadata
 * when reported alone (its span is then their child).
 */
export interface ActivityReporter {
  /** Completes a task, as CompleteActivityTask; rejects with the item's or the call's DexError. */
  complete(request: CompleteRequest, traceContext?: Record<string, string>): Promise<void>;
  /** Fails an attempt, as FailActivityTask; rejects with the item's or the call's DexError. */
  fail(request: FailRequest, traceContext?: Record<string, string>): Promise<void>;
}

export interface ActivityReporterOptions {
  /** Most outcomes per call. Default 100 (the server takes up to 500). */
  maxItems?: number;
  /** Outcomes are added to a call while their estimated size stays below this; a larger one goes alone. Default 1 MiB. */
  maxBytes?: number;
}

const DEFAULT_MAX_ITEMS = 100;
const DEFAULT_MAX_BYTES = 1024 * 1024;
/**
 * A batch call that has not answered by then fails with DEADLINE_EXCEEDED, and its outcomes are
 * retried: one call at a time means a hung call would hold back every outcome behind it.
 */
const CALL_DEADLINE_MS = 30_000;
/** After an UNIMPLEMENTED answer, unary calls for this long before a batch is tried again. */
const UNARY_AFTER_UNIMPLEMENTED_MS = 5 * 60_000;

interface Entry {
  report: Report;
  bytes: number;
  unary: () => Promise<unknown>;
  resolve: () => void;
  reject: (error: unknown) => void;
}

export function createActivityReporter(connection: Pick<Connection, "worker">, logger: Logger, options: ActivityReporterOptions = {}): ActivityReporter {
  const maxItems = options.maxItems ?? DEFAULT_MAX_ITEMS;
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_BYTES;
  let queued: Entry[] = [];
  let inFlight = false;
  let scheduled = false;
  let unaryUntil = 0;

  function submit(report: Report, bytes: number, unary: () => Promise<unknown>): Promise<void> {
    if (Date.now() < unaryUntil) return unary().then(() => undefined);
    return new Promise<void>((resolve, reject) => {
      queued.push({ report, bytes, unary, resolve, reject });
      schedule();
    });
  }

  function schedule(): void {
    if (scheduled || inFlight || queued.length === 0) return;
    scheduled = true;
    // After the other outcomes of this turn: a task's result and its neighbours' share the call.
    queueMicrotask(() => {
      scheduled = false;
      flush();
    });
  }

  function flush(): void {
    if (inFlight || queued.length === 0) return;
    let bytes = 0;
    let take = 0;
    while (take < queued.length && take < maxItems && (take === 0 || bytes + queued[take]!.bytes <= maxBytes)) bytes += queued[take++]!.bytes;
    const batch = queued.slice(0, take);
    queued = queued.slice(take);
    inFlight = true;
    connection.worker
      .reportActivityTasks({ items: batch.map((e) => e.report) }, { deadline: CALL_DEADLINE_MS })
      .then(
        ({ results }) => {
          if (results.length !== batch.length) {
            const error = new DexError("INTERNAL", `the server answered ${results.length} results for ${batch.length} activity outcomes`);
            for (const entry of batch) entry.reject(error);
            return;
          }
          batch.forEach((entry, i) => {
            const { code, message } = results[i]!;
            if (code === 0) entry.resolve();
            else entry.reject(new DexError(codeName(code), message));
          });
        },
        (err: unknown) => {
          const error = DexError.from(err);
          if (error.code === "UNIMPLEMENTED") {
            if (unaryUntil === 0) logger.info(`the dex server does not take batched activity outcomes (${error.message}); reporting them one call each`);
            unaryUntil = Date.now() + UNARY_AFTER_UNIMPLEMENTED_MS;
            for (const entry of batch) entry.unary().then(() => entry.resolve(), entry.reject);
            return;
          }
          for (const entry of batch) entry.reject(error);
        },
      )
      .finally(() => {
        inFlight = false;
        schedule();
      });
  }

  return {
    complete(request, traceContext) {
      const bytes = 64 + (request.result?.data?.byteLength ?? 0);
      const report: Report = { outcome: { case: "complete", value: request }, ...(traceContext && { traceContext }) };
      return submit(report, bytes, () => connection.worker.completeActivityTask(request, traceContext && { metadata: traceContext }));
    },
    fail(request, traceContext) {
      const bytes = 64 + failureBytes(request.failure as Failure | undefined);
      const report: Report = { outcome: { case: "fail", value: request }, ...(traceContext && { traceContext }) };
      return submit(report, bytes, () => connection.worker.failActivityTask(request, traceContext && { metadata: traceContext }));
    },
  };
}

/** A failure's size, roughly: its texts and details down the cause chain. */
function failureBytes(failure: Partial<Failure> | undefined): number {
  let bytes = 0;
  for (let f = failure, depth = 0; f && depth < 64; f = f.cause, depth++) {
    bytes += 16 + (f.message?.length ?? 0) + (f.stack?.length ?? 0) + (f.type?.length ?? 0) + (f.details?.data?.byteLength ?? 0);
  }
  return bytes;
}
