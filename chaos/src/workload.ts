/**
 * What the chaos suite runs: the workflows (registered in the worker
 * processes), the recording activity, and the load driver that starts runs
 * through outages. The activity writes each execution into chaos.executions
 * (same database, its own schema) before doing anything else, so the checker
 * can compare what history says ran with what actually ran.
 */
import { setTimeout as sleep } from "node:timers/promises";
import type postgres from "postgres";
import { DexError, type InstanceIdConflictPolicy } from "@dex/proto";
import { encodePayload, type ActivityContext, type Client, type WorkflowContext } from "@dex/sdk";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { StartWorkflowRequestSchema } from "@dex/proto";
import { chainWorkflow } from "./chain-workload.js";

/** The chaos schema: created after `dex migrate`, read by the checker. */
export const CHAOS_SCHEMA_SQL = `
  create schema if not exists chaos;
  create table if not exists chaos.executions (
    id bigint generated always as identity primary key,
    run_id uuid not null,
    seq integer not null,
    activity_name text not null,
    attempt integer not null,
    worker text not null,
    started_at timestamptz not null default clock_timestamp(),
    -- Set only when the activity was asked to (StepInput.recordEnd): three-servers' capacity check.
    ended_at timestamptz
  );
  create index if not exists executions_by_call on chaos.executions (run_id, seq);
`;

export interface StepInput {
  n: number;
  /** Upper bound of a random pause inside the activity, so kills land mid-attempt. */
  delayMs: number;
  /** Record when the execution ended too (chaos.executions.ended_at), for a concurrency check. */
  recordEnd?: boolean;
}

export interface StepResult {
  n: number;
  attempt: number;
  worker: string;
}

/** Records one execution of an activity call (run id, seq, attempt); returns the row's id. */
export async function recordExecution(sql: postgres.Sql, info: { runId: string; seq: number; activityName: string; attempt: number }, worker: string): Promise<string> {
  const [row] = await sql<{ id: string }[]>`insert into chaos.executions (run_id, seq, activity_name, attempt, worker)
            values (${info.runId}, ${info.seq}, ${info.activityName}, ${info.attempt}, ${worker}) returning id::text`;
  return row!.id;
}

/** The activities a worker process registers; `sql` is that process's own pool. */
export function createActivities(sql: postgres.Sql, worker: string) {
  return {
    async chaosStep(input: StepInput, ctx: ActivityContext): Promise<StepResult> {
      const id = await recordExecution(sql, ctx.info, worker);
      if (input.delayMs > 0) await sleep(Math.random() * input.delayMs);
      if (input.recordEnd) await sql`update chaos.executions set ended_at = clock_timestamp() where id = ${id}`;
      return { n: input.n, attempt: ctx.info.attempt, worker };
    },
  };
}

export interface OrderInput {
  timerMs: number;
  delayMs: number;
  /**
   * The activities' start-to-close timeout, their lease. Short (4 s) where workers are killed, so
   * an attempt comes back within seconds; long where a server restart must not outlast it.
   */
  leaseMs: number;
  /** Passed to the steps (StepInput.recordEnd). */
  recordEnd?: boolean;
}

/** Three activities and a short durable timer: step 1, sleep, then steps 2 and 3 in parallel. */
export async function chaosOrder(ctx: WorkflowContext, input: OrderInput): Promise<number[]> {
  const options = { startToCloseTimeout: input.leaseMs, retry: { initialInterval: "200ms", maximumInterval: "2s" } };
  const step = (n: number) => ctx.executeActivity<StepResult>("chaosStep", { n, delayMs: input.delayMs, recordEnd: input.recordEnd } satisfies StepInput, options);
  const first = await step(1);
  await ctx.sleep(input.timerMs);
  const rest = await Promise.all([step(2), step(3)]);
  return [first, ...rest].map((r) => r.n);
}

/**
 * Schedules `count` activities at once on the claim-race queue, served only by
 * the chaos process's raw pollers. A 1 s lease, so abandoned attempts come back quickly.
 */
export async function raceWorkflow(ctx: WorkflowContext, input: { count: number }): Promise<number> {
  const options = { taskQueue: RACE_QUEUE, startToCloseTimeout: "1s", retry: { initialInterval: "50ms", maximumInterval: "300ms" } };
  const results = await Promise.all(Array.from({ length: input.count }, (_, i) => ctx.executeActivity<number>("raceStep", i, options)));
  return results.length;
}
export const RACE_QUEUE = "race";
/** Lease of a race attempt: the start-to-close above (no heartbeat timeout). */
export const RACE_LEASE_MS = 1_000;

/** Holds its run open for a while (so a start storm meets an open run), then completes. */
export async function stormWorkflow(ctx: WorkflowContext, input: { holdMs: number }): Promise<string> {
  await ctx.sleep(input.holdMs);
  return "done";
}

export const workflows = { chaosOrder, raceWorkflow, stormWorkflow, chainWorkflow };

export type StartRequest = MessageInitShape<typeof StartWorkflowRequestSchema>;

/** A StartWorkflow request on the default queue; the request id is derived from the instance id unless given. */
export function startRequest(
  workflowName: string,
  instanceId: string,
  input: unknown,
  extra: { requestId?: string; conflictPolicy?: InstanceIdConflictPolicy } = {},
): StartRequest {
  return { workflowName, instanceId, taskQueue: "default", input: encodePayload(input), requestId: `req-${instanceId}`, ...extra };
}

export interface StartStats {
  /** Run id by instance id. */
  runs: Map<string, string>;
  /** Calls that failed and were retried (server away). */
  retries: number;
  /** Errors that were not retried (a violation: every start must land). */
  failures: string[];
}

/**
 * Starts every request, `concurrency` at a time, spread over `spreadMs`,
 * retrying until `deadline` whatever the error short of a refusal: the same
 * request id makes a retry of a start that did land return the same run.
 */
export async function startRuns(
  client: Client,
  requests: StartRequest[],
  options: { concurrency: number; spreadMs: number; deadline: number },
): Promise<StartStats> {
  const stats: StartStats = { runs: new Map(), retries: 0, failures: [] };
  const began = Date.now();
  let next = 0;
  const refused = new Set(["INVALID_ARGUMENT", "ALREADY_EXISTS", "NOT_FOUND", "FAILED_PRECONDITION"]);
  async function lane(): Promise<void> {
    while (next < requests.length) {
      const index = next++;
      const request = requests[index]!;
      const due = began + (options.spreadMs * index) / requests.length;
      if (due > Date.now()) await sleep(due - Date.now());
      for (;;) {
        try {
          const response = await client.raw.client.startWorkflow(request, { deadline: 10_000 });
          stats.runs.set(request.instanceId!, response.runId);
          break;
        } catch (err) {
          const error = DexError.from(err);
          if (refused.has(error.code) || Date.now() > options.deadline) {
            stats.failures.push(`${request.instanceId}: ${error.code}: ${error.message}`);
            break;
          }
          stats.retries++;
          await sleep(250);
        }
      }
    }
  }
  await Promise.all(Array.from({ length: options.concurrency }, lane));
  return stats;
}

export interface Settled {
  ms: number;
  /** Runs still open at the deadline, with their status. */
  open: Array<{ id: string; status: string }>;
}

/** Waits (by reading dex.runs) until none of `runIds` is open, or the deadline. */
export async function waitForRunsToEnd(sql: postgres.Sql, runIds: string[], timeoutMs: number): Promise<Settled> {
  const began = Date.now();
  for (;;) {
    const open = await sql<{ id: string; status: string }[]>`
      select id, status from dex.runs where id = any(${runIds}::uuid[]) and status in ('CREATED', 'RUNNING')`;
    if (open.length === 0 || Date.now() - began > timeoutMs) return { ms: Date.now() - began, open: [...open] };
    await sleep(250);
  }
}
