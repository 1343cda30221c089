/**
 * Task queue administration over raw gRPC on a real server and database:
 * update, pause, resume and delete (statuses, messages, the partition), and
 * capacity and pause as the claim enforces them.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as grpc from "@grpc/grpc-js";
import { createServiceClient, TaskQueueService, TaskQueueStatus, TaskQueueType, WorkerService } from "@dex/proto";
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
const brief = { nanos: 100_000_000 }; // a poll expected to come back empty


describe("TaskQueueService administration", () => {
  let h: Harness;
  let parking: ReturnType<typeof watchParking>;
  beforeAll(async () => {
    parking = watchParking();
    // No fallback tick: a parked poll answered before its deadline was answered by a wake-up.
    h = await startHarness(WAKES_ONLY);
  });
  afterAll(async () => {
    await h.close();
    parking.restore();
  });

  const partitionOf = async (type: "workflow" | "activity", name: string) => {
    const [row] = await h.sql<{ partition: string | null; attached: boolean }[]>`
      select q.partition_name as partition,
             exists (select 1 from pg_inherits i join pg_class c on c.oid = i.inhrelid
                     join pg_class p on p.oid = i.inhparent
                     where p.relname = ${`${type}_tasks`} and c.relname = q.partition_name) as attached
      from dex.task_queues q where q.type = ${type} and q.name = ${name}`;
    return row;
  };
  const partitionExists = async (partition: string) =>
    (await h.sql`select 1 from pg_inherits i join pg_class c on c.oid = i.inhrelid where c.relname = ${partition}`).length > 0;

  /** Schedules activities on `queue` from one run (on the default workflow queue); returns the run id. */
  const schedule = (queue: string, activities: Array<{ seq: number; priority?: number }>) =>
    startWith(
      h,
      activities.map((a) => scheduleActivity(a.seq, `act${a.seq}`, { taskQueue: queue, ...(a.priority === undefined ? {} : { priority: a.priority }) })),
    );
  const leasedCount = async (queue: string) => {
    const [row] = await h.sql<{ n: string }[]>`
      select count(*) as n from dex.activity_tasks where queue_name = ${queue} and leased_until > now()`;
    return Number(row!.n);
  };
  const poll = (queue: string, maxTasks = 10, maxWait: { nanos?: number; seconds?: bigint } = brief, workerId = "admin-test") =>
    h.worker.pollActivityTasks({ taskQueue: queue, workerId, maxTasks, maxWait });

  it("updates, pauses and resumes with the queue in the answer; NOT_FOUND and INVALID_ARGUMENT say what is wrong", async () => {
    await h.queues.createTaskQueue({ name: "adm", type: ACT });
    const updated = await h.queues.updateTaskQueue({ name: "adm", type: ACT, capacity: 3 });
    expect(updated.queue).toMatchObject({ name: "adm", type: ACT, capacity: 3, status: TaskQueueStatus.ACTIVE, depth: 0n, inFlight: 0n });
    expect((await h.queues.pauseTaskQueue({ name: "adm", type: ACT })).queue).toMatchObject({ capacity: 3, status: TaskQueueStatus.PAUSED });
    // Pausing a paused queue is not an error (retries of the call are safe).
    expect((await h.queues.pauseTaskQueue({ name: "adm", type: ACT })).queue!.status).toBe(TaskQueueStatus.PAUSED);
    const listed = (await h.queues.listTaskQueues({ type: ACT })).queues.find((q) => q.name === "adm");
    expect(listed).toMatchObject({ capacity: 3, status: TaskQueueStatus.PAUSED });
    expect((await h.queues.resumeTaskQueue({ name: "adm", type: ACT })).queue!.status).toBe(TaskQueueStatus.ACTIVE);
    expect((await h.queues.updateTaskQueue({ name: "adm", type: ACT, capacity: 0 })).queue!.capacity).toBe(0);

    for (const call of [
      () => h.queues.updateTaskQueue({ name: "adm", type: WF, capacity: 1 }),
      () => h.queues.pauseTaskQueue({ name: "nope", type: ACT }),
      () => h.queues.resumeTaskQueue({ name: "nope", type: WF }),
      () => h.queues.deleteTaskQueue({ name: "nope", type: ACT }),
    ]) {
      const err = await failure(call());
      expect(err.code).toBe("NOT_FOUND");
      expect(err.message).toMatch(/task queue "(adm|nope)" does not exist/);
    }
    const invalid: Array<[() => Promise<unknown>, RegExp]> = [
      [() => h.queues.updateTaskQueue({ name: "adm", type: ACT, capacity: -1 }), /capacity must be an integer from 0 \(unlimited\) to 1000000000, got -1/],
      [() => h.queues.updateTaskQueue({ name: "adm", type: ACT, capacity: 2_000_000_000 }), /capacity must be an integer/],
      [() => h.queues.updateTaskQueue({ name: "", type: ACT, capacity: 1 }), /name is required/],
      [() => h.queues.pauseTaskQueue({ name: "a:b", type: ACT }), /name "a:b" is not a valid task queue name/],
      [() => h.queues.resumeTaskQueue({ name: "adm" }), /type is required/],
      [() => h.queues.deleteTaskQueue({ name: "adm", type: 7 as never }), /type has an unknown value 7/],
    ];
    for (const [call, message] of invalid) {
      const err = await failure(call());
      expect(err.code).toBe("INVALID_ARGUMENT");
      expect(err.message).toMatch(message);
    }
  });

  it("deletes an empty queue with its partition, and refuses (changing nothing) while tasks or open runs need it", async () => {
    await h.queues.createTaskQueue({ name: "doomed", type: WF });
    const before = await partitionOf("workflow", "doomed");
    expect(before).toMatchObject({ attached: true });
    await h.queues.deleteTaskQueue({ name: "doomed", type: WF });
    expect(await partitionOf("workflow", "doomed")).toBeUndefined();
    expect(await partitionExists(before!.partition!)).toBe(false);
    expect((await h.queues.listTaskQueues({})).queues.map((q) => `${q.type}:${q.name}`)).not.toContain(`${WF}:doomed`);
    expect((await failure(h.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("d"), taskQueue: "doomed" }))).code).toBe("NOT_FOUND");
    // The name can be used again, with a new partition.
    await h.queues.createTaskQueue({ name: "doomed", type: WF });
    expect((await partitionOf("workflow", "doomed"))!.attached).toBe(true);

    // An activity queue holding a task.
    await h.queues.createTaskQueue({ name: "busy", type: ACT });
    await schedule("busy", [{ seq: 1 }]);
    const held = await failure(h.queues.deleteTaskQueue({ name: "busy", type: ACT }));
    expect(held.code).toBe("FAILED_PRECONDITION");
    expect(held.message).toBe(
      'activity task queue "busy" is not empty: it holds 1 task (waiting, backing off or leased); a queue can be deleted ' +
        "once no task and no open run needs it (pause it to stop handing tasks out)",
    );
    expect((await partitionOf("activity", "busy"))!.attached).toBe(true);
    expect((await poll("busy")).tasks).toHaveLength(1);

    // A workflow queue whose run sleeps on a timer: no task now, but the run needs the queue.
    await h.queues.createTaskQueue({ name: "sleepy", type: WF });
    await startWith(h, [{ command: { case: "startTimer", value: { seq: 1, duration: { seconds: 3600n } } } }], { taskQueue: "sleepy" });
    const sleeping = await failure(h.queues.deleteTaskQueue({ name: "sleepy", type: WF }));
    expect(sleeping.code).toBe("FAILED_PRECONDITION");
    expect(sleeping.message).toMatch(/holds 1 open run whose next workflow tasks go to it/);
    expect((await partitionOf("workflow", "sleepy"))!.attached).toBe(true);
  });

  it("a workflow worker polling an activity queue (and the reverse) gets INVALID_ARGUMENT", async () => {
    await h.queues.createTaskQueue({ name: "only-acts", type: ACT });
    await h.queues.createTaskQueue({ name: "only-wfs", type: WF });
    const wrongWorker = await failure(h.worker.pollWorkflowTasks({ taskQueue: "only-acts", workerId: "w", maxWait: brief }));
    expect(wrongWorker.code).toBe("INVALID_ARGUMENT");
    expect(wrongWorker.message).toBe(
      'task_queue: "only-acts" is an activity task queue, and a workflow worker polls only workflow task queues ' +
        '(there is no workflow task queue "only-acts"); poll it with an activity worker',
    );
    const reverse = await failure(h.worker.pollActivityTasks({ taskQueue: "only-wfs", workerId: "w", maxWait: brief }));
    expect(reverse.code).toBe("INVALID_ARGUMENT");
    expect(reverse.message).toMatch(/"only-wfs" is a workflow task queue, and an activity worker polls only activity task queues/);
    expect((await failure(h.worker.pollActivityTasks({ taskQueue: "neither", workerId: "w", maxWait: brief }))).code).toBe("NOT_FOUND");
    // The default queues exist with both types: both workers may poll them.
    await h.worker.pollWorkflowTasks({ taskQueue: "default", workerId: "w", maxWait: brief });
  });

  it("capacity limits the tasks leased at once, also across concurrent polls, and applies from the next poll", async () => {
    await h.queues.createTaskQueue({ name: "capped", type: ACT, capacity: 2 });
    await schedule("capped", [1, 2, 3, 4, 5, 6, 7, 8].map((seq) => ({ seq })));
    const first = await poll("capped");
    expect(first.tasks).toHaveLength(2);
    expect((await poll("capped")).tasks).toHaveLength(0);
    expect(await leasedCount("capped")).toBe(2);

    // Free both slots; six pollers at once must still take two between them.
    for (const task of first.tasks) await h.worker.completeActivityTask({ taskToken: task.taskToken });
    const racing = await Promise.all(Array.from({ length: 6 }, (_, i) => poll("capped", 10, brief, `racer-${i}`)));
    const raced = racing.flatMap((r) => r.tasks);
    expect(raced).toHaveLength(2);
    expect(await leasedCount("capped")).toBe(2);

    // Lowered below in flight: in-flight tasks finish, nothing more until under the cap.
    expect((await h.queues.updateTaskQueue({ name: "capped", type: ACT, capacity: 1 })).queue).toMatchObject({ capacity: 1, inFlight: 2n, depth: 4n });
    expect((await poll("capped")).tasks).toHaveLength(0);
    await h.worker.completeActivityTask({ taskToken: raced[0]!.taskToken });
    expect((await poll("capped")).tasks).toHaveLength(0);
    await h.worker.completeActivityTask({ taskToken: raced[1]!.taskToken });
    const one = await poll("capped");
    expect(one.tasks).toHaveLength(1);

    // An expired lease is not in flight (the reaper will retry that attempt).
    await h.sql`update dex.activity_tasks set leased_until = now() - interval '1 second', visible_at = now() - interval '1 second'
                where queue_name = 'capped' and run_id = ${one.tasks[0]!.runId} and seq = ${one.tasks[0]!.seq}`;
    const afterExpiry = await poll("capped");
    expect(afterExpiry.tasks).toHaveLength(1);
    expect(afterExpiry.tasks[0]!.seq).not.toBe(one.tasks[0]!.seq);

    // Raised: the next poll takes up to the new capacity (1 leased, the expired one not counted).
    await h.queues.updateTaskQueue({ name: "capped", type: ACT, capacity: 3 });
    expect((await poll("capped")).tasks).toHaveLength(2);
    expect(await leasedCount("capped")).toBe(3);
  });

  it("an expired workflow task lease does not count against a workflow queue's capacity", async () => {
    await h.queues.createTaskQueue({ name: "wf-capped", type: WF, capacity: 1 });
    for (let i = 0; i < 2; i++) await h.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("cap"), taskQueue: "wf-capped" });
    const pollWf = () => h.worker.pollWorkflowTasks({ taskQueue: "wf-capped", workerId: "w", maxTasks: 10, maxWait: brief });
    const [held] = (await pollWf()).tasks;
    expect(held).toBeDefined();
    expect((await pollWf()).tasks).toHaveLength(0);
    await h.sql`update dex.workflow_tasks set leased_until = now() - interval '1 second', visible_at = now() - interval '1 second'
                where queue_name = 'wf-capped' and run_id = ${held!.runId}`;
    const next = await pollWf();
    expect(next.tasks).toHaveLength(1);
    // The first holder's token is fenced out; the new holder completes.
    expect((await failure(h.worker.completeWorkflowTask({ taskToken: held!.taskToken, commands: [completeRun(1)] }))).code).toBe("NOT_FOUND");
  });

  it("a paused queue hands out nothing while in-flight tasks finish; resume wakes a parked poll and hands out by priority, then FIFO", async () => {
    await h.queues.createTaskQueue({ name: "pausable", type: ACT });
    await schedule("pausable", [{ seq: 1 }]);
    const inFlight = await poll("pausable");
    expect(inFlight.tasks).toHaveLength(1);
    await h.queues.pauseTaskQueue({ name: "pausable", type: ACT });
    await schedule("pausable", [{ seq: 1, priority: 10 }, { seq: 2, priority: 90 }, { seq: 3, priority: 10 }, { seq: 4, priority: 90 }]);
    expect((await poll("pausable")).tasks).toHaveLength(0);
    await h.worker.completeActivityTask({ taskToken: inFlight.tasks[0]!.taskToken });
    const listed = (await h.queues.listTaskQueues({ type: ACT })).queues.find((q) => q.name === "pausable")!;
    expect(listed).toMatchObject({ status: TaskQueueStatus.PAUSED, depth: 4n, inFlight: 0n });

    // Resume hands them out by priority, then in scheduling order.
    const resumed = poll("pausable", 10, { seconds: 20n });
    await h.queues.resumeTaskQueue({ name: "pausable", type: ACT });
    expect((await resumed).tasks.map((t) => [t.activityName, t.seq])).toEqual([
      ["act2", 2],
      ["act4", 4],
      ["act1", 1],
      ["act3", 3],
    ]);
  });

  it("resume and a capacity raise wake a poll parked on the queue", async () => {
    // The server has no fallback tick and the poll waits longer than wokenBy's deadline: a missing
    // wake leaves the poll unanswered and fails the round, however loaded the machine.
    await h.queues.createTaskQueue({ name: "wake", type: ACT });
    for (let round = 0; round < 5; round++) {
      const raise = round % 2 === 1;
      const held: Uint8Array[] = [];
      if (raise) {
        // At capacity (1 leased) with one task waiting.
        await h.queues.updateTaskQueue({ name: "wake", type: ACT, capacity: 1 });
        await schedule("wake", [{ seq: 1 }, { seq: 2 }]);
        const hold = await poll("wake");
        expect(hold.tasks).toHaveLength(1);
        held.push(hold.tasks[0]!.taskToken);
      } else {
        await h.queues.pauseTaskQueue({ name: "wake", type: ACT });
        await schedule("wake", [{ seq: 1 }]);
      }
      // Its claim found the queue paused (or full) and it parked: only the change's wake can answer it.
      const parked = (await parkPoll(parking, "activity", "wake", () => poll("wake", 10, PARK))).answer;
      if (raise) await h.queues.updateTaskQueue({ name: "wake", type: ACT, capacity: 0 });
      else await h.queues.resumeTaskQueue({ name: "wake", type: ACT });
      const { tasks } = await wokenBy(parked, `round ${round}: the ${raise ? "raise" : "resume"}`);
      expect(tasks.length, `round ${round}`).toBeGreaterThan(0);
      for (const taskToken of [...held, ...tasks.map((t) => t.taskToken)]) await h.worker.completeActivityTask({ taskToken });
    }
  });

  it("lists depth (waiting and backing off), in-flight (leases not expired), oldest pending age, capacity and status", async () => {
    await h.queues.createTaskQueue({ name: "stats", type: ACT, capacity: 7 });
    await schedule("stats", [1, 2, 3, 4].map((seq) => ({ seq })));
    const leased = (await poll("stats", 2)).tasks;
    expect(leased).toHaveLength(2);
    // One attempt fails and backs off for a minute: still depth, not in flight.
    await h.worker.failActivityTask({ taskToken: leased[0]!.taskToken, failure: { message: "later" }, nextRetryDelay: { seconds: 60n } });
    // The oldest waiting task became available 5 s ago.
    await h.sql`update dex.activity_tasks set visible_at = now() - interval '5 seconds'
                where queue_name = 'stats' and leased_until is null and visible_at <= now()
                  and seq = (select min(seq) from dex.activity_tasks where queue_name = 'stats' and leased_until is null and visible_at <= now())`;
    const view = async () => (await h.queues.listTaskQueues({ type: ACT })).queues.find((q) => q.name === "stats")!;
    const listed = await view();
    expect(listed).toMatchObject({ capacity: 7, status: TaskQueueStatus.ACTIVE, depth: 3n, inFlight: 1n });
    const ageMs = Number(listed.oldestPendingAge!.seconds) * 1000 + listed.oldestPendingAge!.nanos / 1e6;
    expect(ageMs).toBeGreaterThanOrEqual(5_000);
    expect(ageMs).toBeLessThan(60_000);
    // An expired lease is not in flight: the attempt waits for the reaper's retry.
    await h.sql`update dex.activity_tasks set leased_until = now() - interval '1 second', visible_at = now() - interval '1 second'
                where queue_name = 'stats' and run_id = ${leased[1]!.runId} and seq = ${leased[1]!.seq}`;
    expect(await view()).toMatchObject({ depth: 4n, inFlight: 0n });
  });

  it("pause survives a restart: a new server on the same database hands out nothing until resumed", async () => {
    await h.queues.createTaskQueue({ name: "restart", type: ACT });
    await h.queues.pauseTaskQueue({ name: "restart", type: ACT });
    await schedule("restart", [{ seq: 1 }]);
    const other = await secondServer(h);
    try {
      expect((await other.queues.listTaskQueues({ type: ACT })).queues.find((q) => q.name === "restart")!.status).toBe(TaskQueueStatus.PAUSED);
      expect((await other.worker.pollActivityTasks({ taskQueue: "restart", workerId: "w", maxWait: brief })).tasks).toHaveLength(0);
      await other.queues.resumeTaskQueue({ name: "restart", type: ACT });
      expect((await other.worker.pollActivityTasks({ taskQueue: "restart", workerId: "w", maxWait: brief })).tasks).toHaveLength(1);
    } finally {
      await other.close();
    }
  });
});

/** A second server on the harness's database, with its own clients. */
async function secondServer(h: Harness, maxPollWaitMs = 20_000) {
  const server: DexServer = await startServer({ databaseUrl: h.db.url, port: 0, logger: silentLogger, maxPollWaitMs });
  const channel = new grpc.Client(server.address, grpc.credentials.createInsecure());
  return {
    queues: createServiceClient(TaskQueueService, channel),
    worker: createServiceClient(WorkerService, channel),
    async close() {
      channel.close();
      await server.close();
    },
  };
}
