/**
 * Eager activity dispatch (docs/worker-protocol.md "Eager activities"), through real gRPC on a
 * real Postgres: a workflow-task completion that offers activity slots gets the activity tasks it
 * creates back, leased as a poll would lease them, and their tokens fence exactly as polled ones.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TaskQueueType, type ActivityTask } from "@dex/proto";
import { waitFor } from "@dex/testing";
import { newKey, clientsWith } from "./auth-support.js";
import {
  byRunId,
  completeRun,
  json,
  kinds,
  pollWorkflowTaskOf,
  rejectsWith,
  scheduleActivity,
  startHarness,
  uniqueId,
  type Harness,
} from "./helpers.js";

const ms = (n: number) => ({ seconds: BigInt(Math.floor(n / 1000)), nanos: (n % 1000) * 1e6 });
const micros = (t: { seconds: bigint; nanos: number }) => Number(t.seconds) * 1e6 + Math.floor(t.nanos / 1000);

let h: Harness;
beforeAll(async () => {
  h = await startHarness({ metricsPort: 0 });
});
afterAll(async () => {
  await h?.close();
});

async function newQueue(type: TaskQueueType, prefix: string, capacity = 0): Promise<string> {
  const name = uniqueId(prefix).replace(/[^A-Za-z0-9._-]/g, "_").slice(0, 64);
  await h.queues.createTaskQueue({ name, type, capacity });
  return name;
}

/** A started run's first workflow task, polled from its own workflow queue. */
async function firstTask(workflowQueue: string) {
  const { runId } = await h.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("eager"), taskQueue: workflowQueue });
  return { runId, task: await pollWorkflowTaskOf(h, runId, "w1", workflowQueue) };
}

type TaskRow = { seq: number; attempt: number; lock_version: number; lease_id: string | null; worker_id: string | null; leased_until_us: string | null; attempt_deadline: Date | null };

async function taskRows(runId: string): Promise<TaskRow[]> {
  return h.sql<TaskRow[]>`
    select seq, attempt, lock_version, lease_id, worker_id, attempt_deadline,
           (extract(epoch from leased_until) * 1000000)::bigint::text as leased_until_us
    from dex.activity_tasks where run_id = ${runId} order by seq`;
}

/** Everything a call with an activity token could write for this run. */
async function snapshot(runId: string): Promise<unknown> {
  const [row] = await h.sql<{ s: unknown }[]>`
    select jsonb_build_object(
      'tasks', (select jsonb_agg(to_jsonb(t) order by t.seq) from dex.activity_tasks t where t.run_id = ${runId}),
      'inbox', (select jsonb_agg(to_jsonb(i) order by i.id) from dex.inbox i where i.run_id = ${runId}),
      'history', (select count(*) from dex.history_events e where e.run_id = ${runId}),
      'workflowTasks', (select jsonb_agg(to_jsonb(w)) from dex.workflow_tasks w where w.run_id = ${runId})) as s`;
  return row!.s;
}

async function eagerCount(queue: string): Promise<number> {
  const text = await (await fetch(`http://${h.server.metricsAddress}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`dex_tasks_dispatched_eagerly_total{type="activity",queue="${queue}"}`));
  return line ? Number(line.split(" ").at(-1)) : 0;
}

function offer(taskQueue: string, slots: number, workerId = "eager-worker") {
  return [{ taskQueue, slots, workerId }];
}

describe("eager activity dispatch", () => {
  it("hands out up to the offered slots leased to the offering worker, the rest waits for a poll", async () => {
    const wq = await newQueue(TaskQueueType.WORKFLOW, "eager-w");
    const aq = await newQueue(TaskQueueType.ACTIVITY, "eager-a");
    const { runId, task } = await firstTask(wq);
    const [before] = await h.sql<{ now_us: string }[]>`select (extract(epoch from now()) * 1000000)::bigint::text as now_us`;
    const answer = await h.worker.completeWorkflowTask({
      taskToken: task.taskToken,
      commands: [1, 2, 3].map((seq) => scheduleActivity(seq, `act${seq}`, { taskQueue: aq, input: json(seq), startToCloseTimeout: ms(30_000) })),
      eagerActivitySlots: offer(aq, 2),
    });
    expect(answer.historyLength).toBe(5n);
    expect(answer.activityTasks.map((t) => [t.seq, t.activityName, t.attempt, t.taskQueue, t.runId])).toEqual([
      [1, "act1", 1, aq, runId],
      [2, "act2", 1, aq, runId],
    ]);
    const eager = answer.activityTasks[0]!;
    expect(eager.startToCloseTimeout).toMatchObject(ms(30_000));
    expect(new TextDecoder().decode(eager.input!.data)).toBe("1");
    // Leased exactly as a claim leases: attempt 1, lock version 1, the offering worker, a lease of start-to-close.
    const rows = await taskRows(runId);
    expect(rows.map((r) => [r.seq, r.attempt, r.lock_version, r.worker_id, r.lease_id !== null])).toEqual([
      [1, 1, 1, "eager-worker", true],
      [2, 1, 1, "eager-worker", true],
      [3, 0, 0, null, false],
    ]);
    const leaseUs = micros(eager.leaseDeadline!);
    expect(leaseUs).toBe(Math.floor(Number(rows[0]!.leased_until_us) / 1000) * 1000);
    expect(leaseUs).toBeGreaterThanOrEqual(Number(before!.now_us) + 30_000_000 - 1_000);
    expect(rows[0]!.attempt_deadline!.getTime() * 1000).toBe(leaseUs);
    // A poll finds only the task that was not handed out eagerly.
    const polled = await h.worker.pollActivityTasks({ taskQueue: aq, workerId: "poller", maxTasks: 10, maxWait: ms(500) });
    expect(polled.tasks.map((t) => t.seq)).toEqual([3]);
    expect(await eagerCount(aq)).toBe(2);
  });

  it("an eager token completes exactly once; the outcome reaches history once", async () => {
    const wq = await newQueue(TaskQueueType.WORKFLOW, "eager-w");
    const aq = await newQueue(TaskQueueType.ACTIVITY, "eager-a");
    const { runId, task } = await firstTask(wq);
    const answer = await h.worker.completeWorkflowTask({
      taskToken: task.taskToken,
      commands: [scheduleActivity(1, "once", { taskQueue: aq })],
      eagerActivitySlots: offer(aq, 5),
    });
    const [eager] = answer.activityTasks;
    const results = await Promise.allSettled([1, 2, 3].map((i) => h.worker.completeActivityTask({ taskToken: eager!.taskToken, result: json(i) })));
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
    const after = await snapshot(runId);
    await rejectsWith(h.worker.completeActivityTask({ taskToken: eager!.taskToken, result: json("late") }), "NOT_FOUND");
    await rejectsWith(h.worker.failActivityTask({ taskToken: eager!.taskToken, failure: { message: "late" } }), "NOT_FOUND");
    await rejectsWith(h.worker.heartbeatActivityTask({ taskToken: eager!.taskToken }), "NOT_FOUND");
    expect(await snapshot(runId), "rejected calls change nothing").toEqual(after);
    const next = await pollWorkflowTaskOf(h, runId, "w1", wq);
    expect(kinds(next.newEvents)).toEqual(["activityCompleted"]);
    await h.worker.completeWorkflowTask({ taskToken: next.taskToken, commands: [completeRun("done")] });
    const { events } = await h.client.getRunHistory({ run: byRunId(runId) });
    expect(kinds(events).filter((k) => k === "activityCompleted")).toHaveLength(1);
  });

  it("a stale eager token (lease expired, the reaper retried, another worker claimed) is NOT_FOUND and writes nothing", async () => {
    const wq = await newQueue(TaskQueueType.WORKFLOW, "eager-w");
    const aq = await newQueue(TaskQueueType.ACTIVITY, "eager-a");
    const { runId, task } = await firstTask(wq);
    const answer = await h.worker.completeWorkflowTask({
      taskToken: task.taskToken,
      commands: [
        scheduleActivity(1, "slow", {
          taskQueue: aq,
          heartbeatTimeout: ms(300),
          startToCloseTimeout: ms(60_000),
          retryPolicy: { initialInterval: ms(10), backoffCoefficient: 1, maximumAttempts: 5 },
        }),
      ],
      eagerActivitySlots: offer(aq, 1),
    });
    const eager = answer.activityTasks[0]!;
    expect(eager.heartbeatTimeout).toMatchObject(ms(300));
    // The heartbeat timeout is the lease, as for a polled task.
    expect(micros(eager.leaseDeadline!) - micros(eager.scheduleTime!)).toBeLessThan(1_000_000);
    await h.worker.heartbeatActivityTask({ taskToken: eager.taskToken, details: json("beat") });
    // The lease runs out; the reaper times the attempt out and schedules attempt 2.
    await waitFor(
      async () => {
        const [row] = await taskRows(runId);
        return row && row.lease_id === null && row.attempt === 1;
      },
      { message: "the reaper to time out the eager attempt" },
    );
    const reaped = await snapshot(runId);
    await rejectsWith(h.worker.completeActivityTask({ taskToken: eager.taskToken, result: json("stale") }), "NOT_FOUND");
    await rejectsWith(h.worker.heartbeatActivityTask({ taskToken: eager.taskToken }), "NOT_FOUND");
    await rejectsWith(h.worker.failActivityTask({ taskToken: eager.taskToken, failure: { message: "stale" } }), "NOT_FOUND");
    expect(await snapshot(runId), "calls with the reaped token change nothing").toEqual(reaped);
    // Another worker claims attempt 2, with the eager attempt's heartbeat details.
    let retry: ActivityTask | undefined;
    await waitFor(async () => {
      const { tasks } = await h.worker.pollActivityTasks({ taskQueue: aq, workerId: "other", maxTasks: 1, maxWait: ms(500) });
      retry = tasks[0];
      return retry !== undefined;
    }, { message: "attempt 2 to be claimed" });
    expect(retry!.attempt).toBe(2);
    expect(new TextDecoder().decode(retry!.heartbeatDetails!.data)).toBe(JSON.stringify("beat"));
    const claimed = await snapshot(runId);
    await rejectsWith(h.worker.completeActivityTask({ taskToken: eager.taskToken, result: json("stale") }), "NOT_FOUND");
    await rejectsWith(h.worker.failActivityTask({ taskToken: eager.taskToken, failure: { message: "stale" } }), "NOT_FOUND");
    expect(await snapshot(runId), "calls with the eager token after another worker's claim change nothing").toEqual(claimed);
    await h.worker.completeActivityTask({ taskToken: retry!.taskToken, result: json("second") });
    const next = await pollWorkflowTaskOf(h, runId, "w1", wq);
    expect(next.newEvents.map((e) => [e.attributes.case, (e.attributes.value as { attempt?: number }).attempt])).toEqual([["activityCompleted", 2]]);
  });

  it("a paused queue, or one at its capacity, hands out nothing eagerly", async () => {
    const wq = await newQueue(TaskQueueType.WORKFLOW, "eager-w");
    const paused = await newQueue(TaskQueueType.ACTIVITY, "eager-p");
    await h.queues.pauseTaskQueue({ name: paused, type: TaskQueueType.ACTIVITY });
    const one = await firstTask(wq);
    const a = await h.worker.completeWorkflowTask({
      taskToken: one.task.taskToken,
      commands: [scheduleActivity(1, "p", { taskQueue: paused })],
      eagerActivitySlots: offer(paused, 3),
    });
    expect(a.activityTasks).toEqual([]);
    expect((await taskRows(one.runId)).map((r) => [r.attempt, r.lease_id])).toEqual([[0, null]]);

    // Capacity 2, one task leased by a poll: one slot left, whatever the offer.
    const capped = await newQueue(TaskQueueType.ACTIVITY, "eager-c", 2);
    const two = await firstTask(wq);
    await h.worker.completeWorkflowTask({ taskToken: two.task.taskToken, commands: [scheduleActivity(1, "c", { taskQueue: capped })] });
    const { tasks } = await h.worker.pollActivityTasks({ taskQueue: capped, workerId: "poller", maxTasks: 1, maxWait: ms(1_000) });
    expect(tasks).toHaveLength(1);
    const three = await firstTask(wq);
    const b = await h.worker.completeWorkflowTask({
      taskToken: three.task.taskToken,
      commands: [1, 2, 3].map((seq) => scheduleActivity(seq, "c", { taskQueue: capped })),
      eagerActivitySlots: offer(capped, 3),
    });
    expect(b.activityTasks.map((t) => t.seq)).toEqual([1]);
    // Now at capacity: a poll gets nothing, and so does the next offer.
    const full = await h.worker.pollActivityTasks({ taskQueue: capped, workerId: "poller", maxTasks: 5, maxWait: ms(200) });
    expect(full.tasks).toEqual([]);
    const four = await firstTask(wq);
    const c = await h.worker.completeWorkflowTask({
      taskToken: four.task.taskToken,
      commands: [scheduleActivity(1, "c", { taskQueue: capped })],
      eagerActivitySlots: offer(capped, 3),
    });
    expect(c.activityTasks).toEqual([]);
  });

  it("nothing eager without an offer, for a queue not offered, or when the completion ends the run", async () => {
    const wq = await newQueue(TaskQueueType.WORKFLOW, "eager-w");
    const aq = await newQueue(TaskQueueType.ACTIVITY, "eager-a");
    const other = await newQueue(TaskQueueType.ACTIVITY, "eager-o");
    const one = await firstTask(wq);
    const a = await h.worker.completeWorkflowTask({ taskToken: one.task.taskToken, commands: [scheduleActivity(1, "x", { taskQueue: aq })] });
    expect(a.activityTasks).toEqual([]);
    const two = await firstTask(wq);
    const b = await h.worker.completeWorkflowTask({
      taskToken: two.task.taskToken,
      commands: [scheduleActivity(1, "x", { taskQueue: aq })],
      eagerActivitySlots: [...offer(other, 4), { taskQueue: "no-such-queue", slots: 4, workerId: "x" }],
    });
    expect(b.activityTasks).toEqual([]);
    const three = await firstTask(wq);
    const c = await h.worker.completeWorkflowTask({
      taskToken: three.task.taskToken,
      commands: [scheduleActivity(1, "x", { taskQueue: aq }), completeRun("at once")],
      eagerActivitySlots: offer(aq, 4),
    });
    expect(c.activityTasks).toEqual([]);
    expect(await taskRows(three.runId)).toEqual([]);
  });

  it("refuses malformed offers with INVALID_ARGUMENT and writes nothing", async () => {
    const wq = await newQueue(TaskQueueType.WORKFLOW, "eager-w");
    const aq = await newQueue(TaskQueueType.ACTIVITY, "eager-a");
    const { runId, task } = await firstTask(wq);
    const before = await snapshot(runId);
    const commands = [scheduleActivity(1, "x", { taskQueue: aq })];
    const bad = [
      [{ taskQueue: aq, slots: 101, workerId: "w" }],
      [{ taskQueue: aq, slots: -1, workerId: "w" }],
      [{ taskQueue: aq, slots: 1, workerId: "" }],
      [{ taskQueue: "bad name!", slots: 1, workerId: "w" }],
      [{ taskQueue: aq, slots: 1, workerId: "w" }, { taskQueue: aq, slots: 1, workerId: "w" }],
      Array.from({ length: 21 }, (_, i) => ({ taskQueue: `q${i}`, slots: 1, workerId: "w" })),
    ];
    for (const eagerActivitySlots of bad) {
      await rejectsWith(h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands, eagerActivitySlots }), "INVALID_ARGUMENT", /eager_activity_slots/);
    }
    expect(await snapshot(runId)).toEqual(before);
  });
});

describe("eager activity dispatch with API keys", () => {
  let k: Harness;
  beforeAll(async () => {
    k = await startHarness({ requireApiKeys: true, apiKeyCacheMs: 0 });
  });
  afterAll(async () => {
    await k?.close();
  });

  it("a worker key limited to some queues gets no eager task on a queue it may not poll", async () => {
    const admin = clientsWith(k, (await newKey(k.sql, "admin")).text);
    const queue = (prefix: string) => uniqueId(prefix).replace(/[^A-Za-z0-9._-]/g, "_").slice(0, 64);
    const [wq, allowed, foreign] = [queue("k-w"), queue("k-a"), queue("k-f")];
    await admin.queues.createTaskQueue({ name: wq, type: TaskQueueType.WORKFLOW });
    await admin.queues.createTaskQueue({ name: allowed, type: TaskQueueType.ACTIVITY });
    await admin.queues.createTaskQueue({ name: foreign, type: TaskQueueType.ACTIVITY });
    const worker = clientsWith(k, (await newKey(k.sql, "worker", [wq, allowed])).text);
    try {
      const { runId } = await admin.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("k"), taskQueue: wq });
      let task;
      await waitFor(async () => {
        const { tasks } = await worker.worker.pollWorkflowTasks({ taskQueue: wq, workerId: "kw", maxTasks: 1, maxWait: ms(500) });
        task = tasks.find((t) => t.runId === runId);
        return task !== undefined;
      }, { message: "the run's workflow task" });
      const answer = await worker.worker.completeWorkflowTask({
        taskToken: task!.taskToken,
        commands: [scheduleActivity(1, "mine", { taskQueue: allowed }), scheduleActivity(2, "theirs", { taskQueue: foreign })],
        eagerActivitySlots: [
          { taskQueue: allowed, slots: 5, workerId: "ka" },
          { taskQueue: foreign, slots: 5, workerId: "ka" },
        ],
      });
      expect(answer.activityTasks.map((t) => [t.seq, t.taskQueue])).toEqual([[1, allowed]]);
      const rows = await k.sql<{ seq: number; lease_id: string | null }[]>`select seq, lease_id from dex.activity_tasks where run_id = ${runId} order by seq`;
      expect(rows.map((r) => [r.seq, r.lease_id !== null])).toEqual([
        [1, true],
        [2, false],
      ]);
    } finally {
      admin.close();
      worker.close();
    }
  });
});
