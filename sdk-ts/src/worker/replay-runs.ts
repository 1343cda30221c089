/**
 * `replayRuns`: checks a deploy before it happens. Lists the runs of a server
 * (by default every open run) through the public API, reads each one's
 * history and replays it against the new workflow code in this process
 * (docs/decisions/0016-pre-deploy-replay.md).
 *
 * Memory stays bounded by design: runs are listed a page at a time and pulled
 * only when a replay slot is free; each run's history is read in pages and
 * handed to the replay core as it arrives (replay-run.ts); a finished run
 * leaves nothing behind but its result (and only a failing run's result is
 * kept, in the summary).
 */
import type { HistoryEvent } from "@dex/proto";
import type { Client, ListRunsFilter } from "../client/client.js";
import { createClient } from "../client/client.js";
import type { RunSummary } from "../client/convert.js";
import type { ConnectionOptions } from "../client/environment.js";
import type { RunStatusName } from "../common/errors.js";
import { createReplayCheck, mapConcurrently, type ReplayCheck } from "./replay-report.js";
import { replayRun, type RunReplayResult, type WorkflowRegistry } from "./replay-run.js";

/** Which runs to check; filters combine with AND. */
export interface ReplayRunsFilter {
  /** Only runs of this workflow. */
  workflowName?: string;
  /** Only runs on this workflow task queue (checked here: ListRuns has no queue filter). */
  taskQueue?: string;
  /** Only runs carrying all of these labels with these values. */
  labels?: Record<string, string>;
  /** Only runs in these statuses. Default: the open ones, CREATED and RUNNING. */
  status?: RunStatusName | RunStatusName[];
  /** Only runs of this instance id. */
  instanceId?: string;
}

export interface ReplayRunsOptions extends ConnectionOptions {
  /** The new workflow code, by registered name, exactly as given to createWorkflowWorker. Required. */
  workflows: WorkflowRegistry;
  /**
   * The client to read through (its retry policy applies); it stays open. Default: a client made from
   * `address`, `tls` and `apiKey` (or DEX_ADDRESS, DEX_TLS_*, DEX_API_KEY), closed when the check ends.
   */
  client?: Client;
  filter?: ReplayRunsFilter;
  /**
   * Runs checked at once. Replay itself is CPU work on this thread; the slots overlap its history reads
   * with other runs' replay. Default 32 (see the decision record for the measurement); 1 to 256.
   */
  concurrency?: number;
  /** History events per GetRunHistory page. Default 1000; 1 to 10000 (the server's limit). */
  historyPageSize?: number;
  /** Runs per ListRuns page. Default 1000 (the server's limit); 1 to 1000. */
  listPageSize?: number;
}

export const REPLAY_DEFAULTS = { concurrency: 32, historyPageSize: 1_000, listPageSize: 1_000 } as const;
const OPEN_STATUSES: RunStatusName[] = ["CREATED", "RUNNING"];

/**
 * Replays every run the filter selects against `workflows`. Iterate the
 * result for per-run results as they finish, or await `summary()`.
 */
export function replayRuns(options: ReplayRunsOptions): ReplayCheck {
  const workflows = checkedRegistry(options.workflows, "replayRuns");
  const concurrency = bounded("replayRuns", "concurrency", options.concurrency ?? REPLAY_DEFAULTS.concurrency, 1, 256);
  const historyPageSize = bounded("replayRuns", "historyPageSize", options.historyPageSize ?? REPLAY_DEFAULTS.historyPageSize, 1, 10_000);
  const listPageSize = bounded("replayRuns", "listPageSize", options.listPageSize ?? REPLAY_DEFAULTS.listPageSize, 1, 1_000);
  const filter = options.filter ?? {};

  async function* results(): AsyncGenerator<RunReplayResult> {
    const client = options.client ?? createClient(options);
    try {
      const runs = listRuns(client, filter, listPageSize);
      yield* mapConcurrently(runs, concurrency, (run) =>
        replayRun(
          { runId: run.runId, instanceId: run.instanceId, workflowName: run.workflowName, taskQueue: run.taskQueue, source: "server" },
          workflows,
          () => historyPages(client, run.runId, historyPageSize),
        ),
      );
    } finally {
      if (!options.client) client.close();
    }
  }
  return createReplayCheck(results());
}

/** The selected runs, one ListRuns page in memory at a time. */
async function* listRuns(client: Client, filter: ReplayRunsFilter, pageSize: number): AsyncGenerator<RunSummary> {
  const query: ListRunsFilter = {
    status: filter.status ?? OPEN_STATUSES,
    pageSize,
    ...(filter.workflowName ? { workflowName: filter.workflowName } : {}),
    ...(filter.labels ? { labels: filter.labels } : {}),
    ...(filter.instanceId ? { instanceId: filter.instanceId } : {}),
  };
  let pageToken: string | undefined;
  do {
    const page = await client.list(pageToken ? { ...query, pageToken } : query);
    for (const run of page.runs) {
      if (filter.taskQueue === undefined || run.taskQueue === filter.taskQueue) yield run;
    }
    pageToken = page.nextPageToken;
  } while (pageToken);
}

/** A run's history in pages, pinned to its run id. */
async function* historyPages(client: Client, runId: string, pageSize: number): AsyncGenerator<HistoryEvent[]> {
  const run = { target: { case: "runId" as const, value: runId } };
  let after = 0n;
  for (;;) {
    const request = { run, afterSequence: after, pageSize };
    const page = await client.retrying(() => client.raw.client.getRunHistory(request));
    if (page.events.length > 0) yield page.events;
    const last = page.events.at(-1);
    if (!last || last.sequence >= page.historyLength) return;
    after = last.sequence;
  }
}

/** The registry as given to createWorkflowWorker, checked the same way. */
export function checkedRegistry(workflows: WorkflowRegistry | undefined, caller: string): WorkflowRegistry {
  if (typeof workflows !== "object" || workflows === null) throw new TypeError(`${caller}: workflows is required ({ name: workflowFunction })`);
  const names = Object.keys(workflows);
  if (names.length === 0) throw new TypeError(`${caller}: register at least one workflow in \`workflows\``);
  for (const name of names) {
    if (typeof workflows[name] !== "function") throw new TypeError(`${caller}: workflow "${name}" is not a function`);
  }
  return workflows;
}

export function bounded(caller: string, name: string, value: number, min: number, max: number): number {
  if (!Number.isInteger(value) || value < min || value > max) throw new RangeError(`${caller}: ${name} must be an integer from ${min} to ${max}, got ${value}`);
  return value;
}
