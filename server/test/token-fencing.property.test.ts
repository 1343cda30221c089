/**
 * Token fencing, property-based (issue 5, scenario 10): over random sequences of claims,
 * completions, failures, heartbeats, real lease expiries, reclaims, concurrent duplicate
 * completions and forged tokens, against the real gRPC API of a real server on a real Postgres,
 * THE FIRST VALID RESULT WINS, EVERY OTHER CALL IS REJECTED, AND A REJECTED CALL CHANGES NOTHING.
 *
 * How: fast-check generates a scenario; a model (token-fencing.model.ts) says which token is valid
 * and whether the task has an outcome; after every action the server's answer (status code, and
 * what an accepted call returns) is checked against the model, and a snapshot of everything the
 * call could write (the task row, the run's inbox, its history, for workflow tasks the run row)
 * taken before and after a rejected call must be equal. At the end the history must be exactly
 * the model's: contiguous sequence numbers from 1, one activity outcome with the attempt (and
 * result or failure) of the first valid result. One server and database serve the whole file;
 * each property run (scenario) gets a fresh workflow run, and ends it (complete or terminate), so
 * the scenarios of a property can share its queues (any other run's task in a poll's answer
 * fails the scenario; it cannot pass unnoticed). Real time only: leases expire by waiting for
 * them (conditions polled with a deadline on the database clock), never by editing rows.
 *
 * The rules the model encodes (docs/worker-protocol.md "Tokens and leases", "Activities",
 * "Activity timeouts and heartbeats", "A completion refused because inputs arrived"; and the code
 * in server/src/engine/{activity-tasks,workflow-tasks,completion}.ts):
 * - A token names one attempt (lease id + lock version). Complete, fail and heartbeat are accepted
 *   only while the task row still carries that lease; otherwise NOT_FOUND, nothing written. Each
 *   claim makes a new lease, so the token of every earlier attempt is dead from then on; an ended
 *   task (deleted row) accepts no token at all.
 * - A token that does not decode (truncated, extended, empty, unknown version, the other kind of
 *   task, a bad queue name, seq 0, garbage) answers INVALID_ARGUMENT; one that decodes but names
 *   no current attempt (another lease id, version, run, queue or seq) answers NOT_FOUND.
 * - Activity task: the lease is the heartbeat timeout (HEARTBEAT_MS here; start-to-close is far
 *   away). A heartbeat with the current token extends the lease and stores its details (the next
 *   attempt receives the last accepted heartbeat's details) if the lease has not run out; once it
 *   ran out, the heartbeat answers NOT_FOUND even before the reaper came ("that attempt belongs to
 *   the reaper"). A COMPLETION OR FAILURE with the current token after the lease ran out but
 *   before the reaper handled it IS ACCEPTED (the row still carries the lease; the docs' rule is
 *   the lease id, not the clock), and wins over the reaper. The reaper (about every second) turns
 *   an expired lease into a failed attempt (TIMEOUT / HEARTBEAT) that goes through the retry
 *   policy; until then the task cannot be claimed again. Because the reaper runs whenever it
 *   likes, the model takes the lease end into account: with the database clock read before and
 *   after each call, a call is certain to meet a live lease when the lease ends after the "after"
 *   clock, certain to meet an ended one when it ended before the "before" clock, and in between
 *   either answer is accepted provided the state after the call shows which one happened (the
 *   reaper's outcome, checked in full, or the call's).
 * - FailActivityTask: retried (willRetry, no outcome, the lease dropped, next attempt after the
 *   back-off) unless non_retryable, its type is in non_retryable_error_types, or maximum_attempts
 *   is reached; otherwise the final activity_failed goes to the inbox. CompleteActivityTask puts
 *   activity_completed in the inbox. An activity's outcome reaches history only when the run's
 *   next workflow task completes (the end of each run checks that), so the history must not change
 *   at all while the activity runs.
 * - Workflow task: fail with the current token backs off (attempt counted); complete appends the
 *   block (handed-out inputs, the marker with the attempt and worker, the commands); complete_run
 *   while external events the task was not given wait in the inbox answers ABORTED, writes nothing
 *   and hands the task back at once without counting the attempt (its token is dead). A completed
 *   task's row is gone, so its token cannot complete the run's next task (same run, same lock
 *   version 1, another lease id). The workflow task lease is a fixed 10 s (WORKFLOW_TASK_LEASE_MS;
 *   there is no option and no injectable clock), far longer than a scenario, so real expiry is
 *   covered by "aged" scenarios: runs whose first task was claimed in beforeAll, more than 10 s
 *   before the workflow property starts (it waits, on the database clock, until every such lease
 *   has ended). There, the expired token still completes or fails the task until it is claimed
 *   again, and the claim hands out attempt 2 and kills the old token.
 * - Concurrent duplicates ("race"): of several completions/failures sent at once with one valid
 *   token exactly one is accepted (at most one if the lease may have ended meanwhile).
 * - Claims: a poll hands the task out (attempt = previous + 1; for an activity with the last
 *   accepted heartbeat's details, for a workflow task with the inbox as new events numbered after
 *   history) exactly when the model says it is available: an activity waiting for its next attempt
 *   (after a retryable failure or the reaper's time-out), a workflow task not leased or whose lease
 *   ran out. Otherwise the poll answers nothing and changes nothing.
 * Once the activity has its outcome (or the run ended) a scenario plays at most AFTER_THE_END more
 * actions: they all must be rejected, and more of them only cost time.
 *
 * The runners live in test/support: activity-fencing-run.ts (shared with the eager property, which
 * generates several activities, eager slots and the first workflow task) and workflow-fencing-run.ts.
 *
 * Reproduce a failure with the seed (and path) fast-check prints: DEX_FC_SEED=<seed>
 * DEX_FC_PATH=<path> pnpm vitest run server/test/token-fencing.property.test.ts. DEX_FC_RUNS
 * changes the number of runs of each property, DEX_FC_NO_SHRINK=1 stops at the first failure
 * (shrinking replays scenarios in real time, lease expiries included: it can take a minute or
 * two, and is cut off after PROPERTY_TIME_LIMIT_MS), DEX_FC_COVERAGE=1 prints how often each
 * path (accepted, stale, lost to the reaper, ...) was taken and how long each kind of action took.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import fc from "fast-check";
import { TaskQueueType } from "@dex/proto";
import { waitFor } from "@dex/testing";
import { activityScenario, workflowScenario } from "./token-fencing.model.js";
import { startHarness, uniqueId, type Harness } from "./helpers.js";
import { ActivityFencingRun, type ActivityFencingScenario } from "./support/activity-fencing-run.js";
import { createQueue, fcParameters, ms, pollForTask, printCoverage } from "./support/fencing-calls.js";
import { WorkflowScenarioRun, type AgedRun } from "./support/workflow-fencing-run.js";

/** The activity's lease (heartbeat timeout): short, so that expiries are real and cheap. */
const HEARTBEAT_MS = 500;
const ACTIVITY_RUNS = Number(process.env.DEX_FC_RUNS ?? 35);
/** Workflow scenarios are cheap (no real-time waits but the aged leases, prepared once). */
const WORKFLOW_RUNS = Number(process.env.DEX_FC_RUNS ?? 50);
/**
 * Runs prepared for aged workflow scenarios (half of the scenarios ask for one). Once they are
 * used up, aged scenarios are skipped (fc.pre) and fast-check draws others.
 */
const AGED_RUNS = Math.ceil(WORKFLOW_RUNS / 2);
/** Actions still played once the activity has its outcome, or the run has ended. */
const AFTER_THE_END = 3;
/** Bounds the whole property, shrinking included (a failure found before it is still reported). */
const PROPERTY_TIME_LIMIT_MS = 100_000;

/** One activity, scheduled by a polled first workflow task; the first action claims it, so there is a token to play with. */
const oneActivity: fc.Arbitrary<ActivityFencingScenario> = activityScenario.map((s) => ({
  activities: 1,
  slots: 0,
  maximumAttempts: s.maximumAttempts,
  actions: [{ op: "claim" as const }, ...s.actions].map((action) => ({ activity: 0, action })),
  firstTask: { eager: false, steps: [] },
}));

describe("task tokens fence every outcome (property-based)", () => {
  // Each property has its own server and database: one cut off by its timeout leaves nothing
  // behind that the other reads, and its loop stops at the test's abort signal.
  let activities: Harness;
  let workflows: Harness;
  const agedRuns: AgedRun[] = [];

  beforeAll(async () => {
    const options = { workflowTaskRetry: { initialMs: 20, maxMs: 50 } };
    // Sticky routing's fallback never passes within a property: whether a claim may take a task
    // kept for the other worker is then the model's rule alone, not a race with the clock.
    [activities, workflows] = await Promise.all([startHarness(options), startHarness({ ...options, stickyFallbackMs: 600_000 })]);
    const h = workflows;
    // Claimed now, their leases run out (for real) while the activity property runs. Each has a
    // queue of its own: a claim must find only that run's task.
    const ageRun = async () => {
      const queue = await createQueue(h, TaskQueueType.WORKFLOW, "aged");
      const { runId } = await h.client.startWorkflow({ workflowName: "fencing", instanceId: uniqueId("aged"), taskQueue: queue });
      const tasks = await pollForTask(() => h.worker.pollWorkflowTasks({ taskQueue: queue, workerId: "pool", maxTasks: 1, maxWait: ms(2_000) }));
      expect(tasks.map((t) => t.runId)).toEqual([runId]);
      const [row] = await h.sql<{ lease_end_us: string }[]>`
        select (extract(epoch from leased_until) * 1000000)::bigint::text as lease_end_us
        from dex.workflow_tasks where run_id = ${runId}`;
      agedRuns.push({ runId, queue, token: tasks[0]!.taskToken, workerId: "pool", leaseEndUs: Number(row!.lease_end_us) });
    };
    for (let i = 0; i < AGED_RUNS; i += 4) await Promise.all(Array.from({ length: Math.min(4, AGED_RUNS - i) }, ageRun));
  });
  afterAll(async () => {
    printCoverage();
    await Promise.all([activities?.close(), workflows?.close()]);
  });

  it("activity tasks: the first valid result wins, stale and forged tokens change nothing", { timeout: 180_000 }, async ({ signal }) => {
    const h = activities;
    const workflowQueue = await createQueue(h, TaskQueueType.WORKFLOW, "fencing-a");
    const activityQueue = await createQueue(h, TaskQueueType.ACTIVITY, "fencing-a");
    await fc.assert(
      fc.asyncProperty(oneActivity, (scenario) => {
        // Timed out: no further scenario writes (shrinking then ends at once).
        signal.throwIfAborted();
        return new ActivityFencingRun({ h, workflowQueue, activityQueue, heartbeatMs: HEARTBEAT_MS, afterTheEnd: AFTER_THE_END }, scenario).run();
      }),
      fcParameters(ACTIVITY_RUNS, PROPERTY_TIME_LIMIT_MS),
    );
  });

  it("workflow tasks: the first valid completion wins, stale and forged tokens change nothing", { timeout: 180_000 }, async ({ signal }) => {
    const h = workflows;
    const lastLeaseEnd = Math.max(...agedRuns.map((r) => r.leaseEndUs));
    await waitFor(
      async () => {
        const [row] = await h.sql<{ now_us: string }[]>`select (extract(epoch from now()) * 1000000)::bigint::text as now_us`;
        return Number(row!.now_us) > lastLeaseEnd;
      },
      { intervalMs: 100, message: "the leases of the aged workflow tasks to run out" },
    );
    const queue = await createQueue(h, TaskQueueType.WORKFLOW, "fencing-w");
    await fc.assert(
      fc.asyncProperty(workflowScenario, async (scenario) => {
        signal.throwIfAborted();
        let aged: AgedRun | undefined;
        if (scenario.aged) {
          aged = agedRuns.pop();
          // The prepared runs are used up (more aged scenarios than expected, or shrinking): draw another.
          fc.pre(aged !== undefined);
        }
        await new WorkflowScenarioRun(h, scenario, aged, queue, AFTER_THE_END).run();
      }),
      fcParameters(WORKFLOW_RUNS, PROPERTY_TIME_LIMIT_MS),
    );
  });
});
