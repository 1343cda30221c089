/**
 * Concurrency keys against a real server and database: the line (priority,
 * then FIFO), hand-over on every kind of end, continue-as-new keeping its
 * slot, waiting runs receiving events and leaving the line, limits above 1,
 * and many concurrent starts and ends on two servers never exceeding a limit.
 */
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ClientService, createServiceClient, FailureKind, RunStatus, WorkerService } from "@dex/proto";
import { waitFor } from "@dex/testing";
import { silentLogger, startServer, type DexServer } from "../src/index.js";
import { keyHelpers } from "./concurrency-keys-support.js";
import { byInstance, byRunId, completeRun, json, kinds, pollWorkflowTaskOf, rejectsWith, startHarness, uniqueId, type Harness } from "./helpers.js";

describe("concurrency keys", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(async () => {
    await h.close();
  });

  const { start, keyState, complete } = keyHelpers(() => h);

  it("limit 1: one run holds the slot, the others wait without a task and get it in priority-then-FIFO order", async () => {
    const key = uniqueId("key");
    const a = await start(key);
    const b = await start(key);
    const c = await start(key, { priority: 80 });
    const d = await start(key);
    expect(await keyState(key)).toEqual({ holders: [a], waiting: [c, b, d], withTask: [a] });
    const waiter = await h.client.describeRun({ run: byRunId(b) });
    expect(waiter.info?.status).toBe(RunStatus.CREATED);

    await complete(a);
    expect(await keyState(key)).toEqual({ holders: [c], waiting: [b, d], withTask: [c] });
    await complete(c);
    expect(await keyState(key)).toEqual({ holders: [b], waiting: [d], withTask: [b] });
    await complete(b);
    await complete(d);
    expect(await keyState(key)).toEqual({ holders: [], waiting: [], withTask: [] });
    for (const runId of [a, b, c, d]) expect((await h.client.getRunResult({ run: byRunId(runId) })).status).toBe(RunStatus.COMPLETED);
  });

  it("runs with other keys, or none, are not held back by a busy key", async () => {
    const busy = uniqueId("key");
    await start(busy);
    await start(busy);
    const other = await start(uniqueId("key"));
    const { runId: free } = await h.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("nokey") });
    const [row] = await h.sql<{ n: number }[]>`
      select count(*)::int as n from dex.workflow_tasks where run_id in (${other}, ${free})`;
    expect(row!.n).toBe(2);
    await complete(other);
    await complete(free);
  });

  it("a failed or cancelled holder hands its slot over too", async () => {
    const key = uniqueId("key");
    const a = await start(key);
    const b = await start(key);
    const c = await start(key);
    const task = await pollWorkflowTaskOf(h, a);
    await h.worker.completeWorkflowTask({
      taskToken: task.taskToken,
      commands: [{ command: { case: "failRun", value: { failure: { message: "broke" } } } }],
    });
    expect(await keyState(key)).toEqual({ holders: [b], waiting: [c], withTask: [b] });
    const taskB = await pollWorkflowTaskOf(h, b);
    await h.worker.completeWorkflowTask({ taskToken: taskB.taskToken, commands: [{ command: { case: "cancelRun", value: {} } }] });
    expect(await keyState(key)).toEqual({ holders: [c], waiting: [], withTask: [c] });
    await complete(c);
  });

  it("TerminateRun of the holder hands the slot to the next run, even with its task in flight", async () => {
    const key = uniqueId("key");
    const a = await start(key);
    const b = await start(key);
    const inFlight = await pollWorkflowTaskOf(h, a);
    await h.client.terminateRun({ run: byRunId(a), reason: "stop" });
    expect(await keyState(key)).toEqual({ holders: [b], waiting: [], withTask: [b] });
    await rejectsWith(h.worker.completeWorkflowTask({ taskToken: inFlight.taskToken, commands: [completeRun("late")] }), "NOT_FOUND");
    await complete(b);
  });

  it("a waiting run that is terminated leaves the line and never runs", async () => {
    const key = uniqueId("key");
    const a = await start(key);
    const b = await start(key);
    const c = await start(key);
    await h.client.terminateRun({ run: byRunId(b), reason: "not needed" });
    expect(await keyState(key)).toEqual({ holders: [a], waiting: [c], withTask: [a] });
    const history = await h.client.getRunHistory({ run: byRunId(b) });
    expect(kinds(history.events)).toEqual(["runStarted", "runTerminated"]);
    await complete(a);
    expect(await keyState(key)).toEqual({ holders: [c], waiting: [], withTask: [c] });
    await complete(c);
  });

  it("events sent to a waiting run wait in its inbox and come with its first task", async () => {
    const key = uniqueId("key");
    const a = await start(key);
    const instanceId = uniqueId("ck-events");
    const b = await start(key, { instanceId });
    expect(await h.client.sendEvent({ run: byInstance(instanceId), eventId: "e1", payload: json(1) })).toMatchObject({ runId: b, duplicate: false });
    // SendEventWithStart finds the open (waiting) run and delivers to it.
    const viaStart = await h.client.sendEventWithStart({
      start: { workflowName: "wf", instanceId, concurrencyKey: key },
      eventId: "e2",
    });
    expect(viaStart).toMatchObject({ runId: b, started: false, duplicate: false });
    expect(await keyState(key)).toEqual({ holders: [a], waiting: [b], withTask: [a] });

    await complete(a);
    const task = await pollWorkflowTaskOf(h, b);
    expect(kinds(task.history)).toEqual(["runStarted"]);
    expect(kinds(task.newEvents)).toEqual(["externalEventReceived", "externalEventReceived"]);
    await h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [completeRun("b")] });
  });

  it("SendEventWithStart with a key starts the run waiting when the key is busy", async () => {
    const key = uniqueId("key");
    const a = await start(key);
    const started = await h.client.sendEventWithStart({
      start: { workflowName: "wf", instanceId: uniqueId("ck-sews"), concurrencyKey: key },
      eventId: "go",
    });
    expect(started.started).toBe(true);
    expect(await keyState(key)).toEqual({ holders: [a], waiting: [started.runId], withTask: [a] });
    await complete(a);
    const task = await pollWorkflowTaskOf(h, started.runId);
    expect(kinds(task.newEvents)).toEqual(["externalEventReceived"]);
    await h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [completeRun("ok")] });
  });

  it("CancelRun of a waiting run ends it CANCELLED at once, keeping what it was sent in its history", async () => {
    const key = uniqueId("key");
    const a = await start(key);
    const b = await start(key);
    const c = await start(key);
    await h.client.sendEvent({ run: byRunId(b), eventId: "early" });
    const outcome = await h.client.cancelRun({ run: byRunId(b), reason: "changed my mind" });
    expect(outcome).toMatchObject({ runId: b, alreadyRequested: false });
    const result = await h.client.getRunResult({ run: byRunId(b) });
    expect(result.status).toBe(RunStatus.CANCELLED);
    expect(result.failure).toMatchObject({ kind: FailureKind.CANCELLED });
    expect(result.failure?.message).toMatch(/before it started.*changed my mind/);
    const history = await h.client.getRunHistory({ run: byRunId(b) });
    expect(kinds(history.events)).toEqual(["runStarted", "externalEventReceived", "cancelRequested"]);
    expect(history.historyLength).toBe(3n);
    const [pending] = await h.sql<{ n: number }[]>`
      select (select count(*) from dex.inbox where run_id = ${b})::int + (select count(*) from dex.workflow_tasks where run_id = ${b})::int as n`;
    expect(pending!.n).toBe(0);
    expect(await keyState(key)).toEqual({ holders: [a], waiting: [c], withTask: [a] });
    await rejectsWith(h.client.cancelRun({ run: byRunId(b) }), "FAILED_PRECONDITION", /CANCELLED/);

    // A holder's cancellation is only a request, as for any running run.
    expect(await h.client.cancelRun({ run: byRunId(a) })).toMatchObject({ alreadyRequested: false });
    expect(await keyState(key)).toEqual({ holders: [a], waiting: [c], withTask: [a] });
    await complete(a);
    expect(await keyState(key)).toEqual({ holders: [c], waiting: [], withTask: [c] });
    await complete(c);
  });

  it("CancelRun of a waiting run removes its run timeout timer", async () => {
    const key = uniqueId("key");
    const a = await start(key);
    const { runId: b } = await h.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("ck"), concurrencyKey: key, runTimeout: { seconds: 3600n } });
    const timers = async () => (await h.sql<{ n: number }[]>`select count(*)::int as n from dex.timers where run_id = ${b}`)[0]!.n;
    expect(await timers()).toBe(1);
    await h.client.cancelRun({ run: byRunId(b), reason: "not needed" });
    expect((await h.client.getRunResult({ run: byRunId(b) })).status).toBe(RunStatus.CANCELLED);
    expect(await timers()).toBe(0);
    await complete(a);
  });

  it("continue-as-new keeps the slot: the new run starts at once, ahead of the line", async () => {
    const key = uniqueId("key");
    const instanceId = uniqueId("ck-can");
    const a = await start(key, { instanceId, limit: 1 });
    const b = await start(key, { priority: 90 });
    const task = await pollWorkflowTaskOf(h, a);
    await h.worker.completeWorkflowTask({
      taskToken: task.taskToken,
      commands: [{ command: { case: "continueAsNew", value: { input: json(2) } } }],
    });
    const next = await h.client.describeRun({ run: byInstance(instanceId) });
    const a2 = next.info!.runId;
    expect(a2).not.toBe(a);
    expect(next.info?.concurrencyKey).toBe(key);
    expect(await keyState(key)).toEqual({ holders: [a2], waiting: [b], withTask: [a2] });
    await complete(a2);
    expect(await keyState(key)).toEqual({ holders: [b], waiting: [], withTask: [b] });
    await complete(b);
  });

  it("limit 2 lets two run; a run's own limit is checked at the head of the line, which nobody overtakes", async () => {
    const key = uniqueId("key");
    const a = await start(key, { limit: 2 });
    const b = await start(key, { limit: 2 });
    const c = await start(key, { limit: 2 });
    expect(await keyState(key)).toEqual({ holders: [a, b].sort(), waiting: [c], withTask: [a, b].sort() });
    await complete(a);
    expect(await keyState(key)).toEqual({ holders: [b, c].sort(), waiting: [], withTask: [b, c].sort() });

    // One holder (c ended, b holds). A limit-1 run waits (1 >= 1); a limit-3
    // run behind it waits too although 1 < 3: the head is not overtaken.
    await complete(c);
    const strict = await start(key, { limit: 1 });
    const loose = await start(key, { limit: 3 });
    expect(await keyState(key)).toEqual({ holders: [b], waiting: [strict, loose], withTask: [b] });
    // b ends: the head fits (0 < 1), and then so does the run behind it (1 < 3).
    await complete(b);
    expect(await keyState(key)).toEqual({ holders: [strict, loose].sort(), waiting: [], withTask: [strict, loose].sort() });
    await complete(strict);
    await complete(loose);
  });

  it("concurrent starts and ends of one key on two servers never exceed the limit, and every run runs", async () => {
    const key = uniqueId("key");
    const limit = 3;
    const second: DexServer = await startServer({ databaseUrl: h.db.url, port: 0, logger: silentLogger, maxPollWaitMs: 2_000 });
    const channel = new grpc.Client(second.address, grpc.credentials.createInsecure());
    const servers = [
      { client: h.client, worker: h.worker },
      { client: createServiceClient(ClientService, channel), worker: createServiceClient(WorkerService, channel) },
    ];
    const holders = async () =>
      (
        await h.sql<{ n: number }[]>`
          select count(*)::int as n from dex.runs
          where concurrency_key = ${key} and status in ('CREATED', 'RUNNING') and not concurrency_waiting`
      )[0]!.n;
    const startMany = (from: number, count: number) =>
      Promise.all(
        Array.from({ length: count }, (_, i) =>
          servers[(from + i) % 2]!.client.startWorkflow({
            workflowName: "wf",
            instanceId: `${key}-${from + i}`,
            concurrencyKey: key,
            concurrencyLimit: limit,
          }),
        ),
      );
    try {
      // No worker yet: whatever the starts decided stays in place to be counted.
      await startMany(0, 50);
      expect(await holders()).toBe(limit);
      const [tasks] = await h.sql<{ n: number }[]>`
        select count(*)::int as n from dex.workflow_tasks w join dex.runs r on r.id = w.run_id where r.concurrency_key = ${key}`;
      expect(tasks!.n).toBe(limit);

      // Drain with one worker per server completing concurrently, while more
      // starts race with the ends and a monitor counts the holders.
      let draining = true;
      let maxHolders = 0;
      const monitor = (async () => {
        while (draining) maxHolders = Math.max(maxHolders, await holders());
      })();
      const work = async (worker: (typeof servers)[number]["worker"], workerId: string) => {
        while (draining) {
          const { tasks } = await worker.pollWorkflowTasks({ taskQueue: "default", workerId, maxTasks: 10, maxWait: { seconds: 1n } });
          await Promise.all(tasks.map((t) => worker.completeWorkflowTask({ taskToken: t.taskToken, commands: [completeRun(t.runId)] })));
        }
      };
      const workers = [work(servers[0]!.worker, "w-a"), work(servers[1]!.worker, "w-b")];
      await startMany(50, 10);
      try {
        await waitFor(
          async () => {
            const [row] = await h.sql<{ n: number }[]>`
              select count(*)::int as n from dex.runs where concurrency_key = ${key} and status = 'COMPLETED'`;
            return row!.n === 60;
          },
          { timeoutMs: 60_000, message: "all 60 runs of the key to complete" },
        );
      } finally {
        draining = false;
        await Promise.all([monitor, ...workers]);
      }
      expect(maxHolders).toBeGreaterThan(0);
      expect(maxHolders).toBeLessThanOrEqual(limit);
      // Each run ran exactly one workflow task, and nothing of the key is left behind.
      const [ran] = await h.sql<{ n: number }[]>`
        select count(*)::int as n from dex.history_events h join dex.runs r on r.id = h.run_id
        where r.concurrency_key = ${key} and h.kind = 'workflow_task_completed'`;
      expect(ran!.n).toBe(60);
      expect(await keyState(key)).toEqual({ holders: [], waiting: [], withTask: [] });
    } finally {
      channel.close();
      await second.close();
    }
  });
});
