/**
 * Eager workflow start (docs/worker-protocol.md "Eager workflow start"), through real gRPC on a
 * real Postgres: a start that names a worker gets the new run's first workflow task in its answer,
 * leased to that worker exactly as a poll leases it, and its token fences exactly as a polled one.
 * A start that did not start a new run, on a paused queue, or for a run waiting for its concurrency
 * slot gets none, and the task waits for a poll; a client key gets the task, a worker key completes it.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InstanceIdConflictPolicy, TaskQueueType } from "@dex/proto";
import { clientsWith, newKey } from "./auth-support.js";
import {
  byRunId,
  completeRun,
  kinds,
  parkPoll,
  PARK,
  pollWorkflowTaskOf,
  rejectsWith,
  startHarness,
  uniqueId,
  WAKES_ONLY,
  watchParking,
  type Harness,
} from "./helpers.js";

let h: Harness;
beforeAll(async () => {
  // No fallback tick: a poll parked on the queue is answered only by a wake (the deferred-wake test).
  h = await startHarness({ ...WAKES_ONLY, metricsPort: 0 });
});
afterAll(async () => {
  await h?.close();
});

async function newQueue(queues: Pick<Harness, "queues"> = h, prefix = "es"): Promise<string> {
  const name = uniqueId(prefix).replace(/[^A-Za-z0-9._-]/g, "_").slice(0, 64);
  await queues.queues.createTaskQueue({ name, type: TaskQueueType.WORKFLOW });
  return name;
}

async function metric(line: string): Promise<number> {
  const text = await (await fetch(`http://${h.server.metricsAddress}/metrics`)).text();
  const found = text.split("\n").find((l) => l.startsWith(line));
  return found ? Number(found.split(" ").at(-1)) : 0;
}
const eagerStarts = (queue: string) => metric(`dex_tasks_dispatched_eagerly_total{type="workflow",queue="${queue}"}`);
const workflowPolls = (queue: string) =>
  Promise.all(["tasks", "empty"].map((r) => metric(`dex_polls_total{type="workflow",queue="${queue}",result="${r}"}`))).then(([a, b]) => a! + b!);

type TaskRow = { attempt: number; lock_version: number; worker_id: string | null; lease_id: string | null };
async function taskRow(runId: string): Promise<TaskRow | undefined> {
  const [row] = await h.sql<TaskRow[]>`select attempt, lock_version, worker_id, lease_id from dex.workflow_tasks where run_id = ${runId}`;
  return row;
}
async function runRow(runId: string) {
  const [row] = await h.sql<{ status: string; sticky_worker_id: string | null }[]>`select status, sticky_worker_id from dex.runs where id = ${runId}`;
  return row!;
}

/** Everything a call with a workflow task token could write for this run. */
async function snapshot(runId: string): Promise<unknown> {
  const [row] = await h.sql<{ s: unknown }[]>`
    select jsonb_build_object(
      'run', (select to_jsonb(r) - 'updated_at' from dex.runs r where r.id = ${runId}),
      'task', (select to_jsonb(w) from dex.workflow_tasks w where w.run_id = ${runId}),
      'history', (select count(*) from dex.history_events e where e.run_id = ${runId})) as s`;
  return row!.s;
}

describe("eager workflow start", () => {
  it("hands the new run's first task to the named worker; the run completes without a poll for it", async () => {
    const queue = await newQueue();
    const started = await h.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("es"), taskQueue: queue, eager: { workerId: "ew" } });
    expect(started.started).toBe(true);
    const task = started.eagerTask!;
    expect(task, "the answer carries the task").toBeDefined();
    expect([task.runId, task.taskQueue, task.workflowName, task.attempt, task.historyLength]).toEqual([started.runId, queue, "wf", 1, 1n]);
    expect(kinds(task.history), "the full history, as a first poll gets it").toEqual(["runStarted"]);
    expect(task.leaseDeadline).toBeDefined();
    // Leased as a claim leases: the worker, attempt 1, version 1; the run RUNNING.
    expect(await taskRow(started.runId)).toMatchObject({ attempt: 1, lock_version: 1, worker_id: "ew" });
    expect((await runRow(started.runId)).status).toBe("RUNNING");
    expect(await eagerStarts(queue)).toBe(1);

    // Completed as any task; the run is then sticky to the eager worker (decision 0009).
    await h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [] });
    expect((await runRow(started.runId)).sticky_worker_id).toBe("ew");
    await h.client.sendEvent({ run: byRunId(started.runId), eventId: "go" });
    const next = await pollWorkflowTaskOf(h, started.runId, "ew", queue);
    expect(next.history, "a sticky task carries no history").toEqual([]);
    expect(kinds(next.newEvents)).toEqual(["externalEventReceived"]);
    await h.worker.completeWorkflowTask({ taskToken: next.taskToken, commands: [completeRun("done")] });
    const result = await h.client.getRunResult({ run: byRunId(started.runId) });
    expect(new TextDecoder().decode(result.result!.data)).toBe('"done"');
    // One poll in all on this queue: the second task's. The first was never polled for.
    expect(await workflowPolls(queue)).toBe(1);
    expect(await eagerStarts(queue)).toBe(1);
  });

  it("a poll parked on the queue is not woken for an eager run, so it cannot race the lease", async () => {
    const queue = await newQueue();
    const parking = watchParking();
    const abort = new AbortController();
    try {
      const { answer } = await parkPoll(parking, "workflow", queue, () =>
        h.worker.pollWorkflowTasks({ taskQueue: queue, workerId: "parked", maxTasks: 1, maxWait: PARK }, { signal: abort.signal }),
      );
      answer.catch(() => undefined);
      for (let i = 0; i < 5; i++) {
        const started = await h.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("race"), taskQueue: queue, eager: { workerId: "ew" } });
        expect(started.eagerTask?.runId, `start ${i}`).toBe(started.runId);
      }
      expect(await eagerStarts(queue)).toBe(5);
    } finally {
      abort.abort();
      parking.restore();
    }
  });

  it("fencing: an eager task whose lease ran out goes to another worker; the eager token is then NOT_FOUND", async () => {
    const queue = await newQueue();
    const started = await h.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("fence"), taskQueue: queue, eager: { workerId: "ew" } });
    const eager = started.eagerTask!;
    // Expire the lease (as if 10 s had passed) instead of waiting for it.
    await h.sql`update dex.workflow_tasks set visible_at = now(), leased_until = now() where run_id = ${started.runId}`;
    const second = await pollWorkflowTaskOf(h, started.runId, "other", queue);
    expect(second.attempt).toBe(2);
    expect(kinds(second.history)).toEqual(["runStarted"]);
    const before = await snapshot(started.runId);
    await rejectsWith(h.worker.completeWorkflowTask({ taskToken: eager.taskToken, commands: [completeRun("late")] }), "NOT_FOUND");
    await rejectsWith(h.worker.failWorkflowTask({ taskToken: eager.taskToken, failure: { message: "late" } }), "NOT_FOUND");
    expect(await snapshot(started.runId), "the stale eager token changed nothing").toEqual(before);
    await h.worker.completeWorkflowTask({ taskToken: second.taskToken, commands: [completeRun("on time")] });
    const history = await h.client.getRunHistory({ run: byRunId(started.runId) });
    const marker = history.events[1]!.attributes;
    expect(marker.case === "workflowTaskCompleted" && marker.value).toMatchObject({ workerId: "other", attempt: 2 });
  });

  it("a paused queue gets no eager task; the task waits for a poll after the resume", async () => {
    const queue = await newQueue();
    await h.queues.pauseTaskQueue({ name: queue, type: TaskQueueType.WORKFLOW });
    const started = await h.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("paused"), taskQueue: queue, eager: { workerId: "ew" } });
    expect(started.started).toBe(true);
    expect(started.eagerTask).toBeUndefined();
    expect(await taskRow(started.runId)).toMatchObject({ attempt: 0, lock_version: 0, lease_id: null });
    expect((await runRow(started.runId)).status).toBe("CREATED");
    await h.queues.resumeTaskQueue({ name: queue, type: TaskQueueType.WORKFLOW });
    const polled = await pollWorkflowTaskOf(h, started.runId, "w1", queue);
    expect(polled.attempt).toBe(1);
    expect(await eagerStarts(queue)).toBe(0);
  });

  it("a start that returns an existing run (use-existing, repeated request id) gets no eager task", async () => {
    const queue = await newQueue();
    const instanceId = uniqueId("existing");
    const first = await h.client.startWorkflow({ workflowName: "wf", instanceId, taskQueue: queue, requestId: "r1", eager: { workerId: "ew" } });
    expect(first.eagerTask).toBeDefined();
    const retried = await h.client.startWorkflow({ workflowName: "wf", instanceId, taskQueue: queue, requestId: "r1", eager: { workerId: "ew2" } });
    expect([retried.runId, retried.started, retried.eagerTask]).toEqual([first.runId, false, undefined]);
    const existing = await h.client.startWorkflow({
      workflowName: "wf",
      instanceId,
      taskQueue: queue,
      conflictPolicy: InstanceIdConflictPolicy.USE_EXISTING,
      eager: { workerId: "ew3" },
    });
    expect([existing.runId, existing.started, existing.eagerTask]).toEqual([first.runId, false, undefined]);
    // The first lease stands, untouched by either.
    expect(await taskRow(first.runId)).toMatchObject({ attempt: 1, lock_version: 1, worker_id: "ew" });
    // An open run that was started without eager keeps its queued task for a poll.
    const other = uniqueId("existing");
    const plain = await h.client.startWorkflow({ workflowName: "wf", instanceId: other, taskQueue: queue });
    const again = await h.client.startWorkflow({
      workflowName: "wf",
      instanceId: other,
      taskQueue: queue,
      conflictPolicy: InstanceIdConflictPolicy.USE_EXISTING,
      eager: { workerId: "ew" },
    });
    expect([again.started, again.eagerTask]).toEqual([false, undefined]);
    expect(await taskRow(plain.runId)).toMatchObject({ attempt: 0, lock_version: 0, lease_id: null });
    expect(await eagerStarts(queue)).toBe(1);
  });

  it("a run waiting for its concurrency key's slot has no task to hand out", async () => {
    const queue = await newQueue();
    const key = uniqueId("key");
    const holder = await h.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("k"), taskQueue: queue, concurrencyKey: key, eager: { workerId: "ew" } });
    expect(holder.eagerTask, "the key's free slot: the task is there at once").toBeDefined();
    const waiting = await h.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("k"), taskQueue: queue, concurrencyKey: key, eager: { workerId: "ew" } });
    expect([waiting.started, waiting.eagerTask]).toEqual([true, undefined]);
    expect(await taskRow(waiting.runId)).toBeUndefined();
  });

  it("validates the worker id", async () => {
    const queue = await newQueue();
    await rejectsWith(h.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("v"), taskQueue: queue, eager: { workerId: "" } }), "INVALID_ARGUMENT", /eager\.worker_id is required/);
    await rejectsWith(
      h.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("v"), taskQueue: queue, eager: { workerId: "x".repeat(256) } }),
      "INVALID_ARGUMENT",
      /eager\.worker_id/,
    );
  });
});

describe("eager workflow start with API keys", () => {
  let k: Harness;
  beforeAll(async () => {
    k = await startHarness({ requireApiKeys: true, apiKeyCacheMs: 0 });
  });
  afterAll(async () => {
    await k?.close();
  });

  it("hands a client key the task, which only a worker key can complete", async () => {
    const admin = clientsWith(k, (await newKey(k.sql, "admin")).text);
    const client = clientsWith(k, (await newKey(k.sql, "client")).text);
    const worker = clientsWith(k, (await newKey(k.sql, "worker")).text);
    try {
      const queue = await newQueue(admin, "esk");
      const started = await client.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("perm"), taskQueue: queue, eager: { workerId: "ew" } });
      const task = started.eagerTask!;
      expect(task.runId).toBe(started.runId);
      // The token is no use to the client key: WorkerService calls need a worker key.
      await rejectsWith(client.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [completeRun("by the client")] }), "PERMISSION_DENIED");
      await worker.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [completeRun("by the worker")] });
      const [row] = await k.sql<{ status: string }[]>`select status from dex.runs where id = ${started.runId}::uuid`;
      expect(row!.status).toBe("COMPLETED");
    } finally {
      admin.close();
      client.close();
      worker.close();
    }
  });
});
