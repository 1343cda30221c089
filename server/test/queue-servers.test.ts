/**
 * Task queues with two servers on one database: one capacity for both, wakes
 * that cross servers (resume, raised capacity, a freed slot), a queue deleted
 * by one server while the other still knows it, and queue DDL racing itself
 * and the claims.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as grpc from "@grpc/grpc-js";
import { createServiceClient, DexError, TaskQueueService, TaskQueueType, WorkerService, type ServiceClient } from "@dex/proto";
import { waitFor } from "@dex/testing";
import { silentLogger, startServer, type DexServer } from "../src/index.js";
import {
  completeRun,
  failure,
  PARK,
  parkPoll,
  scheduleActivity,
  startHarness,
  startWith,
  uniqueId,
  WAKES_ONLY,
  watchParking,
  wokenBy,
  type Harness,
} from "./helpers.js";

const WF = TaskQueueType.WORKFLOW;
const ACT = TaskQueueType.ACTIVITY;
const brief = { nanos: 100_000_000 };

type Clients = { queues: ServiceClient<typeof TaskQueueService>; worker: ServiceClient<typeof WorkerService> };


describe("task queues on two servers sharing a database", () => {
  let h: Harness;
  let second: DexServer;
  let channel: grpc.Client;
  let one: Clients;
  let two: Clients;
  let parking: ReturnType<typeof watchParking>;
  beforeAll(async () => {
    parking = watchParking();
    // No fallback tick on either server: a parked poll answered before its deadline was woken.
    h = await startHarness(WAKES_ONLY);
    second = await startServer({ databaseUrl: h.db.url, port: 0, logger: silentLogger, ...WAKES_ONLY });
    channel = new grpc.Client(second.address, grpc.credentials.createInsecure());
    one = { queues: h.queues, worker: h.worker };
    two = { queues: createServiceClient(TaskQueueService, channel), worker: createServiceClient(WorkerService, channel) };
  });
  afterAll(async () => {
    channel?.close();
    await second?.close();
    await h.close();
    parking.restore();
  });
  const parkedPoll = (via: Clients, queue: string, workerId = "w") =>
    parkPoll(parking, "activity", queue, () => poll(via, queue, PARK, workerId));

  const schedule = (queue: string, seqs: number[]) =>
    startWith(h, seqs.map((seq) => scheduleActivity(seq, `act${seq}`, { taskQueue: queue })));
  const poll = (via: Clients, queue: string, maxWait: { nanos?: number; seconds?: bigint } = brief, workerId = "w") =>
    via.worker.pollActivityTasks({ taskQueue: queue, workerId, maxTasks: 10, maxWait });

  it("both servers together lease at most the queue's capacity", async () => {
    await one.queues.createTaskQueue({ name: "shared-cap", type: ACT, capacity: 2 });
    await schedule("shared-cap", [1, 2, 3, 4, 5, 6, 7, 8]);
    for (let round = 0; round < 3; round++) {
      const polls = await Promise.all(Array.from({ length: 8 }, (_, i) => poll(i % 2 === 0 ? one : two, "shared-cap", brief, `w${i}`)));
      const tasks = polls.flatMap((p) => p.tasks);
      expect(tasks, `round ${round}`).toHaveLength(2);
      await Promise.all(tasks.map((t, i) => (i % 2 === 0 ? one : two).worker.completeActivityTask({ taskToken: t.taskToken })));
    }
  });

  it("resume and a capacity raise send one NOTIFY for the queue (pause and a lowering none), and wake a poll parked on the other server", async () => {
    await one.queues.createTaskQueue({ name: "nq", type: ACT, capacity: 2 });
    const got: string[] = [];
    const listening = await h.sql.listen("dex_wakeup", (payload) => {
      if (payload.startsWith("activity:nq:")) got.push(payload);
    });
    try {
      await one.queues.pauseTaskQueue({ name: "nq", type: ACT });
      await one.queues.resumeTaskQueue({ name: "nq", type: ACT });
      // NOTIFYs arrive in commit order: a pause NOTIFY would be here first.
      await waitFor(() => got.length >= 1, { message: "the resume's NOTIFY" });
      expect(got).toHaveLength(1);
      await one.queues.updateTaskQueue({ name: "nq", type: ACT, capacity: 1 });
      await one.queues.updateTaskQueue({ name: "nq", type: ACT, capacity: 5 });
      await waitFor(() => got.length >= 2, { message: "the raise's NOTIFY" });
      expect(got).toHaveLength(2);
    } finally {
      await listening.unlisten();
    }

    // Parked on server two, resumed through server one: with no fallback tick, only the NOTIFY
    // can answer the poll (server one has no poll of the queue to wake in-process).
    for (let round = 0; round < 4; round++) {
      await one.queues.pauseTaskQueue({ name: "nq", type: ACT });
      await schedule("nq", [1]);
      const parked = wokenBy((await parkedPoll(two, "nq")).answer, `round ${round}: the resume's NOTIFY`);
      await one.queues.resumeTaskQueue({ name: "nq", type: ACT });
      const { tasks } = await parked;
      expect(tasks, `round ${round}`).toHaveLength(1);
      await two.worker.completeActivityTask({ taskToken: tasks[0]!.taskToken });
    }
  });

  it("a task that ends on a full queue wakes a parked poll, on its own server or (by NOTIFY) on the other", async () => {
    await one.queues.createTaskQueue({ name: "slots", type: ACT, capacity: 1 });
    for (let round = 0; round < 6; round++) {
      // Rounds alternate: the waiting poll on the completing server, then on the other one.
      const waiter = round % 2 === 0 ? one : two;
      await schedule("slots", [1, 2]);
      const held = await poll(one, "slots");
      expect(held.tasks).toHaveLength(1);
      // Parked (its claim found the queue full) before the slot frees: only the completion's wake can answer it.
      const parked = wokenBy((await parkedPoll(waiter, "slots", "waiter")).answer, `round ${round}: the freed slot's wake`);
      await one.worker.completeActivityTask({ taskToken: held.tasks[0]!.taskToken });
      const { tasks } = await parked;
      expect(tasks, `round ${round}`).toHaveLength(1);
      await one.worker.completeActivityTask({ taskToken: tasks[0]!.taskToken });
    }
  });

  it("a queue deleted through one server: the other, which knew it, answers NOT_FOUND or fails the activity call, never INTERNAL", async () => {
    await one.queues.createTaskQueue({ name: "stale", type: ACT });
    // Server two learns the queue: a completion scheduling on it, a poll of it.
    const first = await h.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("stale") });
    const task = await pollWorkflowOn(two, first.runId);
    await two.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [scheduleActivity(1, "a", { taskQueue: "stale" })] });
    const activity = (await poll(two, "stale")).tasks;
    expect(activity).toHaveLength(1);
    await two.worker.completeActivityTask({ taskToken: activity[0]!.taskToken });
    await one.queues.deleteTaskQueue({ name: "stale", type: ACT });

    // Server two still lists the queue as known: its poll reaches the claim, which finds no queue.
    const polled = await failure(poll(two, "stale"));
    expect(polled.code).toBe("NOT_FOUND");
    expect(polled.message).toMatch(/activity task queue "stale" does not exist/);

    // Server two's completion inserts into the dropped partition, rolls back, forgets the queue and
    // applies once more: the call is recorded, gets no task, and fails in the workflow.
    const next = await h.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("stale") });
    const nextTask = await pollWorkflowOn(two, next.runId);
    await two.worker.completeWorkflowTask({ taskToken: nextTask.taskToken, commands: [scheduleActivity(1, "a", { taskQueue: "stale" })] });
    expect(await h.sql`select seq from dex.activity_tasks where run_id = ${next.runId}`).toHaveLength(0);
    const failedTask = await pollWorkflowOn(two, next.runId);
    const failed = failedTask.newEvents.map((e) => e.attributes);
    expect(failed).toHaveLength(1);
    expect(failed[0]!.case === "activityFailed" && failed[0]!.value.failure).toMatchObject({
      type: "TaskQueueNotFound",
      message: 'activity task queue "stale" does not exist; create it with `dex queue create stale --type activity`',
    });
    await two.worker.completeWorkflowTask({ taskToken: failedTask.taskToken, commands: [completeRun("done")] });

    // A poll parked on a queue when it is deleted is answered NOT_FOUND, not left waiting.
    await one.queues.createTaskQueue({ name: "stale", type: ACT });
    const parked = failure(wokenBy((await parkedPoll(two, "stale")).answer, "the delete's wake")); // claimed before the delete
    await one.queues.deleteTaskQueue({ name: "stale", type: ACT });
    expect((await parked).code).toBe("NOT_FOUND");
  });

  it("creates and deletes racing on both servers, while capped queues are claimed, never deadlock", async () => {
    await one.queues.createTaskQueue({ name: "claimed", type: ACT, capacity: 3 });
    await schedule("claimed", [1, 2, 3, 4, 5, 6]);
    let claiming = true;
    const claimers = [one, two].map(async (via) => {
      while (claiming) {
        for (const t of (await poll(via, "claimed", { nanos: 20_000_000 })).tasks) {
          await via.worker.failActivityTask({ taskToken: t.taskToken, failure: { message: "again" }, nextRetryDelay: { nanos: 1_000_000 } });
        }
      }
    });
    const codes: string[] = [];
    const record = (p: Promise<unknown>) => p.then(() => codes.push("OK"), (e: DexError) => codes.push(e.code));
    try {
      for (let round = 0; round < 12; round++) {
        const type = round % 2 === 0 ? ACT : WF;
        await Promise.all([
          record(one.queues.createTaskQueue({ name: "churn", type })),
          record(two.queues.deleteTaskQueue({ name: "churn", type })),
          record(two.queues.createTaskQueue({ name: `churn-${round}`, type })),
          record(one.queues.deleteTaskQueue({ name: `churn-${round - 1}`, type: round % 2 === 0 ? WF : ACT })),
          record(one.queues.updateTaskQueue({ name: "claimed", type: ACT, capacity: 2 + (round % 3) })),
        ]);
      }
    } finally {
      claiming = false;
      await Promise.all(claimers);
    }
    // A deadlock would surface as UNAVAILABLE (40P01), anything unexpected as INTERNAL.
    expect(codes.filter((c) => !["OK", "ALREADY_EXISTS", "NOT_FOUND"].includes(c))).toEqual([]);
    expect(codes.filter((c) => c === "OK").length).toBeGreaterThan(12);
    // Every queue row has its partition and every partition its row.
    const [check] = await h.sql<{ rows: string; partitions: string; orphans: string }[]>`
      select (select count(*) from dex.task_queues) as rows,
             (select count(*) from pg_inherits i join pg_class p on p.oid = i.inhparent
              where p.relname in ('workflow_tasks', 'activity_tasks')) as partitions,
             (select count(*) from dex.task_queues q where not exists (
                select 1 from pg_inherits i join pg_class c on c.oid = i.inhrelid where c.relname = q.partition_name)) as orphans`;
    expect(check!.rows).toBe(check!.partitions);
    expect(check!.orphans).toBe("0");
  });
});

async function pollWorkflowOn(via: Clients, runId: string) {
  return waitFor(async () => {
    const { tasks } = await via.worker.pollWorkflowTasks({ taskQueue: "default", workerId: "w2", maxTasks: 1, maxWait: brief });
    return tasks.find((t) => t.runId === runId);
  }, { message: `the workflow task of run ${runId}` });
}
