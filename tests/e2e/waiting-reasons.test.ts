/**
 * "Why is it waiting": DescribeRun's waiting reasons, through the SDK client
 * and `dex workflow describe`, for each cause a user can act on: no worker
 * polls the queue, the queue is paused, the queue is at capacity, the task
 * backs off after a failure, the run waits for its concurrency key. Each case
 * gets queues of its own, so the states do not interfere; tasks are held by
 * raw worker polls (no SDK worker runs) so they stay where the test put them.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { CommandSchema, PayloadSchema, type Command } from "@dex/proto";
import { createClient } from "@dex/sdk";
import { startServer } from "@dex/server";
import { E2E_TEST_TIMEOUT_MS, waitFor } from "@dex/testing";
import postgres from "postgres";
import { quietLogger, startHarness, type Harness } from "../support/harness.js";
import { createQueue, pauseQueue, setCapacity } from "../support/queue-admin.js";
import { runDex } from "../support/server-process.js";

const json = (value: unknown) =>
  create(PayloadSchema, { encoding: "json/plain", data: new TextEncoder().encode(JSON.stringify(value)) });

const schedule = (seq: number, taskQueue: string, retry?: { initialMs: number }): Command =>
  create(CommandSchema, {
    command: {
      case: "scheduleActivity",
      value: {
        seq,
        activityName: "wait",
        taskQueue,
        input: json(seq),
        ...(retry ? { retryPolicy: { initialInterval: durationFromMs(retry.initialMs) } } : {}),
      },
    },
  });

const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

describe("why a run is waiting", { timeout: E2E_TEST_TIMEOUT_MS }, () => {
  let h: Harness;
  let sql: postgres.Sql;

  const start = async (instanceId: string, taskQueue: string, extra: { concurrencyKey?: string; concurrencyLimit?: number } = {}) =>
    (await h.client.raw.client.startWorkflow({ workflowName: "manual", instanceId, taskQueue, input: json(instanceId), ...extra })).runId;
  const describeRun = (runId: string) => h.client.getHandle({ runId }).describe();
  /** Takes the run's workflow task from its queue (the only task there) and completes it with `commands`. */
  const completeTask = async (runId: string, taskQueue: string, commands: Command[]) => {
    const { tasks } = await h.client.raw.worker.pollWorkflowTasks({ taskQueue, workerId: "reasons-test", maxTasks: 1 });
    expect(tasks.map((t) => t.runId)).toEqual([runId]);
    await h.client.raw.worker.completeWorkflowTask({ taskToken: tasks[0]!.taskToken, commands });
  };
  const cli = async (runId: string, json = false) => {
    const out = await runDex(["workflow", "describe", runId, "--address", h.server.address, ...(json ? ["--json"] : [])]);
    expect(out.code, out.stderr).toBe(0);
    return out.stdout;
  };

  beforeAll(async () => {
    // Long back-offs keep a failed task backing off for as long as the test looks at it.
    h = await startHarness({ workflowTaskRetry: { initialMs: 600_000, maxMs: 600_000 } });
    sql = postgres(h.db.url, { max: 1, onnotice: () => {} });
  });
  afterAll(async () => {
    await sql?.end();
    await h?.close();
  });

  it("says when no worker has polled the queue, and stops saying it once one has", async () => {
    await createQueue(h.client, "workflow", "wr-idle");
    const runId = await start("wr-idle-1", "wr-idle");
    const reason = 'no worker has polled workflow task queue "wr-idle" in the last 60 s; start a worker for it';
    expect((await describeRun(runId)).waitingReason).toBe(reason);
    expect(await cli(runId)).toMatch(/^waiting:\s+no worker has polled workflow task queue "wr-idle" in the last 60 s/m);

    // A worker polls (and takes the task); the poll is recorded within a few seconds, cluster-wide.
    await completeTask(runId, "wr-idle", [create(CommandSchema, { command: { case: "completeRun", value: {} } })]);
    await waitFor(
      async () => (await sql`select 1 from dex.task_queues where name = 'wr-idle' and last_polled_at is not null`).length > 0,
      { message: "the poll of wr-idle to be recorded" },
    );
    const next = await start("wr-idle-2", "wr-idle");
    const polling = 'waiting for a workflow worker polling task queue "wr-idle"';
    expect((await describeRun(next)).waitingReason).toBe(polling);
    // Another server, which never saw the poll, reads the same from the database.
    const other = await startServer({ databaseUrl: h.db.url, port: 0, logger: quietLogger });
    const otherClient = createClient({ address: other.address });
    try {
      expect((await otherClient.getHandle({ runId: next }).describe()).waitingReason).toBe(polling);
    } finally {
      otherClient.close();
      await other.close();
    }
  });

  it("says when the run's queue or its activity's queue is paused", async () => {
    await createQueue(h.client, "workflow", "wr-paused");
    await pauseQueue(h.client, "workflow", "wr-paused");
    const held = await start("wr-paused-1", "wr-paused");
    const paused = 'workflow task queue "wr-paused" is paused; its tasks are handed out again once it is resumed';
    expect((await describeRun(held)).waitingReason).toBe(paused);

    await createQueue(h.client, "workflow", "wr-wf");
    await createQueue(h.client, "activity", "wr-acts-paused");
    await pauseQueue(h.client, "activity", "wr-acts-paused");
    const runId = await start("wr-paused-2", "wr-wf");
    await completeTask(runId, "wr-wf", [schedule(1, "wr-acts-paused")]);
    const d = await describeRun(runId);
    const activityPaused = 'activity task queue "wr-acts-paused" is paused; its tasks are handed out again once it is resumed';
    expect(d.pendingActivities.map((a) => a.waitingReason)).toEqual([activityPaused]);
    expect(d.waitingReason).toBe(`waiting for 1 activity (${activityPaused})`);

    const text = await cli(runId);
    expect(text).toContain(`waiting:`);
    expect(text).toContain(`seq 1 is waiting: ${activityPaused}`);
    const view = JSON.parse(await cli(runId, true)) as { waitingReason: string; pendingActivities: Array<{ waitingReason: string }> };
    expect(view.pendingActivities[0]!.waitingReason).toBe(activityPaused);
    expect(view.waitingReason).toBe(d.waitingReason);
  });

  it("says when the queue is at capacity, with the leased count", async () => {
    await createQueue(h.client, "workflow", "wr-capped");
    await setCapacity(h.client, "workflow", "wr-capped", 1);
    const first = await start("wr-capped-1", "wr-capped");
    const second = await start("wr-capped-2", "wr-capped");
    // The first task is leased and held (a workflow task lease lasts 10 s; describe runs at once).
    const { tasks } = await h.client.raw.worker.pollWorkflowTasks({ taskQueue: "wr-capped", workerId: "reasons-test", maxTasks: 2 });
    expect(tasks.map((t) => t.runId)).toEqual([first]);
    expect((await describeRun(first)).waitingReason).toBeUndefined();
    expect((await describeRun(second)).waitingReason).toBe('workflow task queue "wr-capped" is at capacity (1 of 1 tasks leased)');

    // The same for an activity queue (an activity lease lasts 5 minutes).
    await createQueue(h.client, "workflow", "wr-wf-2");
    await createQueue(h.client, "activity", "wr-acts-capped", 1);
    const runId = await start("wr-capped-3", "wr-wf-2");
    await completeTask(runId, "wr-wf-2", [schedule(1, "wr-acts-capped"), schedule(2, "wr-acts-capped")]);
    const leased = await h.client.raw.worker.pollActivityTasks({ taskQueue: "wr-acts-capped", workerId: "reasons-test", maxTasks: 2 });
    expect(leased.tasks.map((t) => t.seq)).toEqual([1]);
    const d = await describeRun(runId);
    const full = 'activity task queue "wr-acts-capped" is at capacity (1 of 1 tasks leased)';
    expect(d.pendingActivities.map((a) => [a.seq, a.running, a.waitingReason])).toEqual([
      [1, true, undefined],
      [2, false, full],
    ]);
    expect(d.waitingReason).toBe(`waiting for 2 activities (${full})`);
    expect(await cli(runId)).toContain(`seq 2 is waiting: ${full}`);
  });

  it("says when a workflow task or an activity backs off after a failure, and until when", async () => {
    await createQueue(h.client, "workflow", "wr-retry");
    const runId = await start("wr-retry-1", "wr-retry");
    const { tasks } = await h.client.raw.worker.pollWorkflowTasks({ taskQueue: "wr-retry", workerId: "reasons-test" });
    const failed = await h.client.raw.worker.failWorkflowTask({ taskToken: tasks[0]!.taskToken, failure: { message: "boom" } });
    const retryAt = new Date(Number(failed.nextAttemptTime!.seconds) * 1000 + failed.nextAttemptTime!.nanos / 1e6);
    // Nobody polls wr-retry now (the poll above was recorded or is about to be): the reason is the back-off, then the queue's.
    expect((await describeRun(runId)).waitingReason).toMatch(
      new RegExp(`^workflow task attempt 1 failed; retrying at ${escape(retryAt.toISOString())}`),
    );

    await createQueue(h.client, "workflow", "wr-wf-3");
    await createQueue(h.client, "activity", "wr-acts-retry");
    const withActivity = await start("wr-retry-2", "wr-wf-3");
    await completeTask(withActivity, "wr-wf-3", [schedule(1, "wr-acts-retry", { initialMs: 600_000 })]);
    const act = await h.client.raw.worker.pollActivityTasks({ taskQueue: "wr-acts-retry", workerId: "reasons-test" });
    const outcome = await h.client.raw.worker.failActivityTask({ taskToken: act.tasks[0]!.taskToken, failure: { message: "flaky" } });
    expect(outcome.willRetry).toBe(true);
    const [activity] = (await describeRun(withActivity)).pendingActivities;
    expect(activity!.waitingReason).toMatch(/^backing off after attempt 1 failed; next attempt at \d{4}-\d\d-\d\dT/);
    expect(await cli(withActivity)).toMatch(/backing off/);
  });

  it("says when a run waits for its concurrency key, naming the limit and the runs holding it", async () => {
    await createQueue(h.client, "workflow", "wr-keyed");
    const holder = await start("wr-key-1", "wr-keyed", { concurrencyKey: "tenant-42", concurrencyLimit: 1 });
    // The second run is started from the CLI (the default limit is 1).
    const started = await runDex([
      "workflow", "start", "manual", "--id", "wr-key-2", "--queue", "wr-keyed",
      "--concurrency-key", "tenant-42", "--json", "--address", h.server.address,
    ]);
    expect(started.code, started.stderr).toBe(0);
    const waiting = (JSON.parse(started.stdout) as { runId: string }).runId;
    // The key's line: the second run is CREATED without a workflow task.
    const [state] = await sql<{ status: string; tasks: number }[]>`
      select status, (select count(*) from dex.workflow_tasks where run_id = ${waiting})::int as tasks
      from dex.runs where id = ${waiting}`;
    expect(state).toEqual({ status: "CREATED", tasks: 0 });
    const reason = `waiting for concurrency key "tenant-42" (limit 1, held by run ${holder})`;
    const d = await describeRun(waiting);
    expect(d.status).toBe("CREATED");
    expect(d.waitingReason).toBe(reason);
    const text = await cli(waiting);
    expect(text).toMatch(/^concurrency key:\s+tenant-42$/m);
    expect(text.split("\n").find((line) => line.startsWith("waiting:"))).toMatch(new RegExp(`^waiting:\\s+${escape(reason)}$`));
  });
});
