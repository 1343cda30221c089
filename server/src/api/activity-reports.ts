/**
 * WorkerService.ReportActivityTasks: several activity outcomes in one call
 * (docs/decisions/0011-batched-completions.md). Each item is what one
 * CompleteActivityTask or FailActivityTask call would be, answered on its own:
 * the same validation, the same permission check (per item's queue), the same
 * engine functions. Every item of a call is handed to the engine in the same
 * tick, so their outcomes meet in the server's group commit
 * (engine/activity-completions.ts) and are written together.
 *
 * What fails the whole call (and writes nothing): no items, too many, an item
 * with no outcome. Everything else is per item: a malformed token or an
 * over-limit result is that item's INVALID_ARGUMENT, a stale or forged token
 * its NOT_FOUND, a database outage its UNAVAILABLE (the worker sends it again).
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import {
  Code,
  DexError,
  type ActivityTaskReport,
  type ActivityTaskReportResultSchema,
  type CallContext,
  type ReportActivityTasksRequest,
  type ReportActivityTasksResponseSchema,
} from "@dex/proto";
import { randomBytes } from "node:crypto";
import type { Engine } from "../engine/context.js";
import { invalid } from "../engine/validation.js";
import { checkCompletion, checkFailure } from "./activity-outcomes.js";
import { itemQueueLimit, refuseItemQueue } from "./auth.js";
import { normaliseError } from "./common.js";

/** Most items one call may carry (the proto's documented limit). */
export const MAX_REPORT_ITEMS = 500;

type ItemResult = MessageInitShape<typeof ActivityTaskReportResultSchema>;
type Work = () => Promise<ItemResult>;

export function reportActivityTasksHandler(engine: Engine) {
  return async (req: ReportActivityTasksRequest, context: CallContext): Promise<MessageInitShape<typeof ReportActivityTasksResponseSchema>> => {
    const items = req.items;
    if (items.length === 0) throw invalid("items is required: put 1 to 500 activity task outcomes in it");
    if (items.length > MAX_REPORT_ITEMS) {
      throw invalid(`items has ${items.length} outcomes, at most ${MAX_REPORT_ITEMS} per call: split them over several calls`);
    }
    items.forEach((item, i) => {
      if (item.outcome.case === undefined) throw invalid(`items[${i}] has no outcome: set items[${i}].complete or items[${i}].fail`);
    });
    // The worker's own group commit, seen from here: items per call (count = calls, sum = items).
    engine.observer.committedBatch("activity_report", items.length);
    // Validate every item before any is written; a refused item gets its answer, the others go on.
    const limit = itemQueueLimit(context);
    const results: Array<ItemResult | Promise<ItemResult>> = [];
    // Two items with one token are taken in order (the second then finds the task reported).
    const lastByToken = new Map<string, Promise<unknown>>();
    const work: Array<{ index: number; run: Work; token: string }> = [];
    items.forEach((item, index) => {
      try {
        const run = prepare(engine, item);
        if (limit) {
          const refused = refuseItemQueue(limit, run.queue, context, engine.logger);
          if (refused) throw refused;
        }
        work.push({ index, run: run.work, token: Buffer.from(tokenOf(item)).toString("base64") });
      } catch (err) {
        results[index] = errorResult(engine, err);
      }
    });
    for (const { index, run, token } of work) {
      const before = lastByToken.get(token);
      const result = (before ? before.then(run, run) : run()).catch((err: unknown) => errorResult(engine, err));
      lastByToken.set(token, result);
      results[index] = result;
    }
    return { results: await Promise.all(results) };
  };
}

function tokenOf(item: ActivityTaskReport): Uint8Array {
  return item.outcome.value!.taskToken;
}

/**
 * Checks an item as its unary call does (api/activity-outcomes.ts) and returns the work that records
 * it. Throws that call's error, word for word: the fields it names are the item's own, as in the unary
 * request, since the answer is the item's (results are positional); an SDK shows the message to
 * whoever wrote the activity, who never saw the batch.
 */
function prepare(engine: Engine, item: ActivityTaskReport): { queue: string; work: Work } {
  const outcome = item.outcome;
  if (outcome.case === "complete") {
    const checked = checkCompletion(engine, outcome.value);
    return { queue: checked.queue, work: async () => (await checked.record(), { code: Code.OK }) };
  }
  const checked = checkFailure(engine, outcome.value!);
  return { queue: checked.queue, work: async () => ({ code: Code.OK, fail: await checked.record() }) };
}

/** An item's error as its unary call would answer it (api/common.ts guarded): unexpected errors are INTERNAL with a logged id. */
function errorResult(engine: Engine, err: unknown): ItemResult {
  const normalised = normaliseError(err);
  if (normalised instanceof DexError) {
    if (normalised.code === "UNAVAILABLE" && !(err instanceof DexError)) engine.logger.warn("database unavailable", { method: "ReportActivityTasks", err });
    return { code: Code[normalised.code], message: normalised.message };
  }
  const id = randomBytes(4).toString("hex");
  engine.logger.error("internal error", { method: "ReportActivityTasks", errorId: id, err });
  return { code: Code.INTERNAL, message: `internal server error ${id}; the server log has the details` };
}
