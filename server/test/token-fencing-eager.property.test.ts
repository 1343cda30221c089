/**
 * Token fencing of EAGERLY dispatched activity tasks, property-based (issue 12): a workflow-task
 * completion schedules 1 to 3 activities and offers eager slots for some of them, so they come
 * back in its answer leased to the offering worker ("eager", attempt 1); the rest wait for a poll.
 * Then random actions race on them: completions, failures, heartbeats, concurrent duplicates, real
 * lease expiries (the reaper retries or fails the attempt), polls of another worker ("b") that
 * claim the waiting attempts and the retries, and forged tokens. Against the real gRPC API of a
 * real server on a real Postgres: THE FIRST VALID RESULT WINS, EVERY OTHER CALL IS REJECTED, A
 * REJECTED CALL CHANGES NOTHING, AND EACH ACTIVITY'S OUTCOME REACHES HISTORY EXACTLY ONCE.
 *
 * The rules are token-fencing.property.test.ts's (its header), applied per activity with its
 * model (token-fencing.model.ts ActivityModel, one per activity): an eager task is a claim made
 * by the completion, so the model starts it as claimed (token 0, attempt 1, the lease from the
 * answer's lease_deadline) and from then on it is an activity task like any other. The checks
 * here are the same ones, for several activities of one run at once: a poll hands out only
 * attempts the models say are waiting (or that the reaper retried during the poll); the state
 * snapshot (every activity row of the run, its inbox, its history) is unchanged by a rejected
 * call but for what the reaper did to an attempt whose lease had ended; at the end the run's next
 * workflow task carries each outcome once, and its completion puts each in history once.
 *
 * The runner is token-fencing.property.test.ts's (support/activity-fencing-run.ts); this file only
 * generates the scenarios. The run's first workflow task is generated too (eager-start-fencing.ts): handed out by an EAGER
 * START (leased in the start's answer) or a poll, then repeated starts, lease expiries with another
 * worker's claim, stale and forged tokens race on it before the current token completes it.
 *
 * Reproduce: DEX_FC_SEED=<seed> DEX_FC_PATH=<path> pnpm vitest run server/test/token-fencing-eager.property.test.ts;
 * DEX_FC_RUNS sets the number of scenarios, DEX_FC_COVERAGE=1 prints the paths taken.
 */
import { afterAll, beforeAll, describe, it } from "vitest";
import fc from "fast-check";
import { TaskQueueType } from "@dex/proto";
import { activityAction } from "./token-fencing.model.js";
import { startHarness, type Harness } from "./helpers.js";
import { firstTaskPlan } from "./eager-start-fencing.js";
import { ActivityFencingRun, type ActivityFencingScenario } from "./support/activity-fencing-run.js";
import { createQueue, fcParameters, printCoverage } from "./support/fencing-calls.js";

const HEARTBEAT_MS = 400;
const RUNS = Number(process.env.DEX_FC_RUNS ?? 50);
const AFTER_THE_END = 2;
const PROPERTY_TIME_LIMIT_MS = 75_000;

/** 1 to 3 activities, eager slots for 1 to all of them, actions on any, and the run's first task generated. */
const eagerScenario: fc.Arbitrary<ActivityFencingScenario> = fc
  .record({ activities: fc.integer({ min: 1, max: 3 }), maximumAttempts: fc.constantFrom(0, 1, 2, 3) })
  .chain(({ activities, maximumAttempts }) =>
    fc.record({
      activities: fc.constant(activities),
      slots: fc.integer({ min: 1, max: activities }),
      maximumAttempts: fc.constant(maximumAttempts),
      actions: fc.array(fc.record({ activity: fc.nat(activities - 1), action: activityAction }), { minLength: 1, maxLength: 10 }),
      firstTask: firstTaskPlan,
    }),
  );

describe("eager activity tasks are fenced like polled ones (property-based)", () => {
  let h: Harness;
  let workflowQueue: string;
  let activityQueue: string;

  beforeAll(async () => {
    h = await startHarness({ workflowTaskRetry: { initialMs: 20, maxMs: 50 } });
    workflowQueue = await createQueue(h, TaskQueueType.WORKFLOW, "eager-fw");
    activityQueue = await createQueue(h, TaskQueueType.ACTIVITY, "eager-fa");
  });
  afterAll(async () => {
    printCoverage();
    await h?.close();
  });

  it("the first valid result wins, stale and forged eager tokens change nothing, history once", { timeout: 150_000 }, async ({ signal }) => {
    await fc.assert(
      fc.asyncProperty(eagerScenario, async (s) => {
        signal.throwIfAborted();
        await new ActivityFencingRun({ h, workflowQueue, activityQueue, heartbeatMs: HEARTBEAT_MS, afterTheEnd: AFTER_THE_END }, s).run();
      }),
      fcParameters(RUNS, PROPERTY_TIME_LIMIT_MS),
    );
  });
});
