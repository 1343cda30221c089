/**
 * Run timeouts and per-run workflow task timeouts against a real server and
 * database (docs/decisions/0027-run-timeouts.md): runs that cannot make
 * progress end TIMED_OUT, a run that ends in time leaves no timer behind, the
 * parent hears a timed-out child, two servers fire each run timeout once, and
 * a worker that holds a task past the run's workflow task timeout loses it.
 * Every wait is for a state, with a deadline; the timeouts are short (1-2 s).
 */
import { durationMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FailureKind, ResetPointKind, RunStatus, TaskQueueType, TimeoutType, WorkflowTaskFailedCause } from "@dex/proto";
import { createTestDatabase, waitFor } from "@dex/testing";
import {
  byRunId,
  completeRun,
  kinds,
  pollWorkflowTaskOf,
  rejectsWith,
  serveDatabase,
  startHarness,
  uniqueId,
  type Harness,
} from "./helpers.js";

const SECOND = { seconds: 1n };

async function statusOf(h: Harness, runId: string): Promise<RunStatus> {
  return (await h.client.getRunResult({ run: byRunId(runId) })).status;
}

async function timedOut(h: Harness, runId: string): Promise<void> {
  await waitFor(async () => (await statusOf(h, runId)) === RunStatus.TIMED_OUT, { message: `run ${runId} TIMED_OUT` });
}

async function timersOf(h: Harness, runId: string): Promise<number> {
  const [row] = await h.sql<{ n: number }[]>`select count(*)::int as n from dex.timers where run_id = ${runId}`;
  return row!.n;
}

describe("run timeouts", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
    await h.queues.createTaskQueue({ name: "nobody-polls", type: TaskQueueType.WORKFLOW });
  });
  afterAll(async () => {
    await h.close();
  });

  it("a run of a workflow no worker polls ends TIMED_OUT when its run timeout passes, and describe shows the limit", async () => {
    const { runId } = await h.client.startWorkflow({
      workflowName: "unknown-to-everyone",
      instanceId: uniqueId("no-worker"),
      taskQueue: "nobody-polls",
      runTimeout: SECOND,
      workflowTaskTimeout: { seconds: 3n },
    });
    const open = await h.client.describeRun({ run: byRunId(runId) });
    expect(durationMs(open.info!.runTimeout!)).toBe(1_000);
    expect(durationMs(open.info!.workflowTaskTimeout!)).toBe(3_000);
    expect(timestampMs(open.info!.runDeadline!) - timestampMs(open.info!.createTime!)).toBe(1_000);
    // The run timeout is not one of the workflow's timers.
    expect(open.pendingTimers).toEqual([]);

    await timedOut(h, runId);
    const result = await h.client.getRunResult({ run: byRunId(runId) });
    expect(result.failure).toMatchObject({ kind: FailureKind.TIMEOUT, timeoutType: TimeoutType.RUN, type: "RunTimedOut" });
    expect(result.failure?.message).toMatch(/run timeout of 1s/);
    const history = await h.client.getRunHistory({ run: byRunId(runId) });
    expect(kinds(history.events)).toEqual(["runStarted", "runTimedOut"]);
    const [row] = await h.sql<{ tasks: number }[]>`select count(*)::int as tasks from dex.workflow_tasks where run_id = ${runId}`;
    expect(row!.tasks).toBe(0);
    expect(await timersOf(h, runId)).toBe(0);
    const ended = await h.client.describeRun({ run: byRunId(runId) });
    expect(ended.info?.status).toBe(RunStatus.TIMED_OUT);
    expect(ended.info?.runDeadline).toBeDefined();
  });

  it("a run whose workflow task keeps failing on non-determinism ends TIMED_OUT instead of retrying forever", async () => {
    const { runId } = await h.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("nondet"), runTimeout: { seconds: 2n } });
    const task = await pollWorkflowTaskOf(h, runId);
    await h.worker.failWorkflowTask({
      taskToken: task.taskToken,
      failure: { message: "history does not match the code", type: "NonDeterminism", kind: FailureKind.NON_DETERMINISM },
      cause: WorkflowTaskFailedCause.NON_DETERMINISM,
    });
    await timedOut(h, runId);
    // The retried task is gone with the run: a worker finds nothing of it.
    const { tasks } = await h.worker.pollWorkflowTasks({ taskQueue: "default", workerId: "w9", maxTasks: 10, maxWait: { seconds: 0n, nanos: 1_000_000 } });
    expect(tasks.map((t) => t.runId)).not.toContain(runId);
  });

  it("a run that ends in time has its run timeout timer removed", async () => {
    const { runId } = await h.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("in-time"), runTimeout: { seconds: 3600n } });
    expect(await timersOf(h, runId)).toBe(1);
    const task = await pollWorkflowTaskOf(h, runId);
    await h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [completeRun("done")] });
    expect(await statusOf(h, runId)).toBe(RunStatus.COMPLETED);
    expect(await timersOf(h, runId)).toBe(0);
  });

  it("the parent of a timed-out child hears child_run_ended with TIMED_OUT", async () => {
    const { runId: parentId } = await h.client.startWorkflow({ workflowName: "parent", instanceId: uniqueId("parent") });
    const first = await pollWorkflowTaskOf(h, parentId);
    const childInstance = uniqueId("child");
    await h.worker.completeWorkflowTask({
      taskToken: first.taskToken,
      commands: [
        {
          command: {
            case: "startChildRun",
            value: { seq: 1, workflowName: "child", instanceId: childInstance, taskQueue: "nobody-polls", runTimeout: SECOND },
          },
        },
      ],
    });
    const next = await pollWorkflowTaskOf(h, parentId);
    const ended = [...next.newEvents].find((e) => e.attributes.case === "childRunEnded");
    expect(ended?.attributes.value).toMatchObject({ seq: 1, status: RunStatus.TIMED_OUT, failure: { kind: FailureKind.TIMEOUT } });
    await h.worker.completeWorkflowTask({ taskToken: next.taskToken, commands: [completeRun("saw it")] });
  });

  it("continue-as-new keeps the run timeout, afresh for the new run", async () => {
    const { runId } = await h.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("can"), runTimeout: { seconds: 3600n } });
    const task = await pollWorkflowTaskOf(h, runId);
    await h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [{ command: { case: "continueAsNew", value: {} } }] });
    const { continuedAsRunId } = await h.client.getRunResult({ run: byRunId(runId) });
    const next = await h.client.describeRun({ run: byRunId(continuedAsRunId) });
    expect(durationMs(next.info!.runTimeout!)).toBe(3_600_000);
    expect(timestampMs(next.info!.runDeadline!) - timestampMs(next.info!.createTime!)).toBe(3_600_000);
    expect(await timersOf(h, continuedAsRunId)).toBe(1);
    expect(await timersOf(h, runId)).toBe(0);
  });

  it("reset keeps the run timeout and the workflow task timeout, the run timeout afresh for the new run", async () => {
    const { runId } = await h.client.startWorkflow({
      workflowName: "wf",
      instanceId: uniqueId("reset"),
      runTimeout: { seconds: 3600n },
      workflowTaskTimeout: { seconds: 7n },
    });
    const task = await pollWorkflowTaskOf(h, runId);
    await h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [] });
    const reset = await h.client.resetRun({ run: byRunId(runId), to: ResetPointKind.FIRST_WORKFLOW_TASK });
    const next = await h.client.describeRun({ run: byRunId(reset.runId) });
    expect(durationMs(next.info!.runTimeout!)).toBe(3_600_000);
    expect(durationMs(next.info!.workflowTaskTimeout!)).toBe(7_000);
    expect(timestampMs(next.info!.runDeadline!) - timestampMs(next.info!.createTime!)).toBe(3_600_000);
    expect(await timersOf(h, reset.runId)).toBe(1);
  });

  it("refuses timeouts out of range with INVALID_ARGUMENT naming the field", async () => {
    const start = (extra: Record<string, unknown>) =>
      h.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("bad"), ...extra });
    await rejectsWith(start({ runTimeout: { seconds: -1n } }), "INVALID_ARGUMENT", /run_timeout must be a non-negative duration/);
    await rejectsWith(start({ runTimeout: { seconds: 0n } }), "INVALID_ARGUMENT", /run_timeout must be more than 0/);
    await rejectsWith(start({ runTimeout: { seconds: 400_000_000n } }), "INVALID_ARGUMENT", /run_timeout is too long/);
    await rejectsWith(start({ workflowTaskTimeout: { seconds: 0n, nanos: 500_000_000 } }), "INVALID_ARGUMENT", /workflow_task_timeout must be from 1 s to 10 min/);
    await rejectsWith(start({ workflowTaskTimeout: { seconds: 601n } }), "INVALID_ARGUMENT", /workflow_task_timeout must be from 1 s to 10 min/);
    await rejectsWith(
      h.client.sendEventWithStart({ start: { workflowName: "wf", instanceId: uniqueId("bad"), runTimeout: { seconds: -5n } }, eventId: "e" }),
      "INVALID_ARGUMENT",
      /start\.run_timeout/,
    );
    const { runId } = await h.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("bad-child") });
    const task = await pollWorkflowTaskOf(h, runId);
    await rejectsWith(
      h.worker.completeWorkflowTask({
        taskToken: task.taskToken,
        commands: [{ command: { case: "startChildRun", value: { seq: 1, workflowName: "c", instanceId: uniqueId("c"), runTimeout: { seconds: 0n } } } }],
      }),
      "INVALID_ARGUMENT",
      /start_child_run\.run_timeout must be more than 0/,
    );
  });

  it("a worker that holds a task past the run's workflow task timeout loses it", async () => {
    const { runId } = await h.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("lease"), workflowTaskTimeout: SECOND });
    const held = await pollWorkflowTaskOf(h, runId, "slow-worker");
    expect(timestampMs(held.leaseDeadline!) - timestampMs(held.taskTime!)).toBe(1_000);
    const again = await waitFor(
      async () => {
        const { tasks } = await h.worker.pollWorkflowTasks({ taskQueue: "default", workerId: "other", maxTasks: 1, maxWait: SECOND });
        return tasks.find((t) => t.runId === runId);
      },
      { message: "the task handed out again after its 1 s lease" },
    );
    expect(again.attempt).toBe(2);
    await rejectsWith(h.worker.completeWorkflowTask({ taskToken: held.taskToken, commands: [completeRun("late")] }), "NOT_FOUND");
    await h.worker.completeWorkflowTask({ taskToken: again.taskToken, commands: [completeRun("on time")] });
    expect(await statusOf(h, runId)).toBe(RunStatus.COMPLETED);
  });
});

describe("run timeouts on two servers", () => {
  it("each run timeout fires once: one run_timed_out event per run", async () => {
    const db = await createTestDatabase();
    const a = await serveDatabase(db);
    const b = await serveDatabase(db);
    try {
      await a.queues.createTaskQueue({ name: "nobody-polls", type: TaskQueueType.WORKFLOW });
      // Started together, so the group commit writes them in multi-run statements (the unnest shape).
      const runIds = await Promise.all(
        Array.from({ length: 30 }, async (_, i) => {
          const server = i % 2 === 0 ? a : b;
          const { runId } = await server.client.startWorkflow({
            workflowName: "wf",
            instanceId: uniqueId("two"),
            taskQueue: "nobody-polls",
            runTimeout: SECOND,
            workflowTaskTimeout: { seconds: 5n },
          });
          return runId;
        }),
      );
      const [written] = await a.sql<{ n: number }[]>`
        select count(*)::int as n from dex.runs where id = any(${runIds}::uuid[]) and run_timeout_ms = 1000 and workflow_task_timeout_ms = 5000`;
      expect(written!.n).toBe(30);
      await waitFor(
        async () => {
          const [row] = await a.sql<{ open: number }[]>`
            select count(*)::int as open from dex.runs where id = any(${runIds}::uuid[]) and status <> 'TIMED_OUT'`;
          return row!.open === 0;
        },
        { message: "all 30 runs TIMED_OUT" },
      );
      const events = await a.sql<{ run_id: string; n: number }[]>`
        select run_id, count(*)::int as n from dex.history_events
        where run_id = any(${runIds}::uuid[]) and kind = 'run_timed_out' group by run_id`;
      expect(events).toHaveLength(30);
      expect(events.every((e) => e.n === 1)).toBe(true);
      const history = await b.client.getRunHistory({ run: byRunId(runIds[0]!) });
      expect(kinds(history.events)).toEqual(["runStarted", "runTimedOut"]);
    } finally {
      await a.close();
      await b.close();
      await db.drop();
    }
  });
});
