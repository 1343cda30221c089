/**
 * Task queue capacity, pause and priority end to end: a real server (and a
 * second one on the same database), real SDK workers, and activities that
 * record for themselves how many of them run at once.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TaskQueueType } from "@dex/proto";
import { createActivityWorker, type ActivityContext, type WorkflowContext } from "@dex/sdk";
import { silentLogger, startServer, type DexServer } from "@dex/server";
import { E2E_TEST_TIMEOUT_MS, waitFor } from "@dex/testing";
import postgres from "postgres";
import { deferred, quietLogger, startHarness, type Harness } from "../support/harness.js";
import { runDex } from "../support/server-process.js";

const ACT = TaskQueueType.ACTIVITY;

/** What the activities saw, per test tag: how many run now, the most at once, the order they started in, where. */
const running = new Map<string, number>();
const most = new Map<string, number>();
const started = new Map<string, string[]>();
const servers = new Map<string, Set<string>>();
/** Activities of a tag wait here until the test opens the gate (no gate: they finish at once). */
const gates = new Map<string, { promise: Promise<void>; resolve: () => void }>();

function activitiesOn(server: string) {
  return {
    async held(input: { tag: string; id: string }, _ctx: ActivityContext) {
      const now = (running.get(input.tag) ?? 0) + 1;
      running.set(input.tag, now);
      most.set(input.tag, Math.max(most.get(input.tag) ?? 0, now));
      started.set(input.tag, [...(started.get(input.tag) ?? []), input.id]);
      servers.set(input.tag, (servers.get(input.tag) ?? new Set()).add(server));
      try {
        await gates.get(input.tag)?.promise;
      } finally {
        running.set(input.tag, running.get(input.tag)! - 1);
      }
      return input.id;
    },
  };
}
type Activities = ReturnType<typeof activitiesOn>;

async function fanOut(ctx: WorkflowContext, input: { queue: string; tag: string; n: number }) {
  const acts = ctx.activities<Activities>({ taskQueue: input.queue, startToCloseTimeout: "2m" });
  return Promise.all(Array.from({ length: input.n }, (_, i) => acts.held({ tag: input.tag, id: String(i) })));
}

async function single(ctx: WorkflowContext, input: { queue: string; tag: string; id: string }) {
  return ctx.activities<Activities>({ taskQueue: input.queue, startToCloseTimeout: "2m" }).held({ tag: input.tag, id: input.id });
}

describe("task queues end to end", { timeout: E2E_TEST_TIMEOUT_MS }, () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
    h.workflowWorker({ fanOut, single });
  });
  afterAll(async () => {
    for (const gate of gates.values()) gate.resolve();
    await h?.close();
  });

  const queues = () => h.client.raw.queues;
  const view = async (name: string) => (await queues().listTaskQueues({ type: ACT })).queues.find((q) => q.name === name)!;
  const gate = (tag: string) => {
    const g = deferred<void>();
    gates.set(tag, g);
    return g;
  };
  const runningNow = (tag: string, n: number) => () => (running.get(tag) ?? 0) === n;

  it("capacity 2: three workers of 5 never run more than 2 at once; raising it lets more run, without a restart", async () => {
    await queues().createTaskQueue({ name: "capped", type: ACT, capacity: 2 });
    for (let i = 0; i < 3; i++) h.activityWorker(activitiesOn("one"), { taskQueue: "capped", maxConcurrentActivities: 5 });

    const first = gate("cap-a");
    const handle = await h.client.start(fanOut, { instanceId: "cap-a", input: { queue: "capped", tag: "cap-a", n: 8 } });
    await waitFor(runningNow("cap-a", 2), { message: "two activities running" });
    expect(await view("capped")).toMatchObject({ capacity: 2, inFlight: 2n, depth: 6n });
    first.resolve(); // the rest run as slots free up
    expect(await handle.result()).toEqual(["0", "1", "2", "3", "4", "5", "6", "7"]);
    expect(most.get("cap-a")).toBe(2);

    const second = gate("cap-b");
    const raised = await h.client.start(fanOut, { instanceId: "cap-b", input: { queue: "capped", tag: "cap-b", n: 8 } });
    await waitFor(runningNow("cap-b", 2), { message: "two activities running" });
    await queues().updateTaskQueue({ name: "capped", type: ACT, capacity: 5 });
    await waitFor(runningNow("cap-b", 5), { message: "five activities running after the raise" });
    second.resolve();
    await raised.result();
    expect(most.get("cap-b")).toBe(5);
  });

  /** The queue's LIST partition of dex.activity_tasks, if it exists (pg_inherits). */
  const partitionOf = async (name: string): Promise<string | undefined> => {
    const sql = postgres(h.db.url, { max: 1, onnotice: () => {} });
    try {
      const rows = await sql<{ relname: string }[]>`
        select c.relname from pg_inherits i join pg_class c on c.oid = i.inhrelid
        where i.inhparent = 'dex.activity_tasks'::regclass
          and c.relname = (select partition_name from dex.task_queues where type = 'activity' and name = ${name})`;
      return rows[0]?.relname;
    } finally {
      await sql.end();
    }
  };

  it("a paused queue dispatches nothing while its depth grows; resume drains it", async () => {
    await queues().createTaskQueue({ name: "paused", type: ACT });
    const partition = await partitionOf("paused");
    expect(partition, "the queue's partition").toBeDefined();
    h.activityWorker(activitiesOn("one"), { taskQueue: "paused", maxConcurrentActivities: 5 });
    await queues().pauseTaskQueue({ name: "paused", type: ACT });
    const first = await h.client.start(fanOut, { instanceId: "pause-1", input: { queue: "paused", tag: "pause", n: 2 } });
    await waitFor(async () => (await view("paused")).depth === 2n, { message: "depth 2" });
    const second = await h.client.start(fanOut, { instanceId: "pause-2", input: { queue: "paused", tag: "pause", n: 3 } });
    await waitFor(async () => (await view("paused")).depth === 5n, { message: "depth 5" });
    // Every activity was scheduled, none was dispatched: a worker with free slots polls the queue all along.
    expect(started.get("pause") ?? []).toEqual([]);
    expect((await view("paused")).inFlight).toBe(0n);

    // The worker polls the paused queue all along: its last poll time appears once a batch of polls is written (every 5 s).
    await waitFor(async () => (await view("paused")).lastPollTime !== undefined, { timeoutMs: 20_000, message: "last_poll_time of a polled queue" });

    // The CLI shows the same numbers.
    const table = await runDex(["queue", "list", "--address", h.server.address]);
    expect(table.stdout).toMatch(/LAST POLL/);
    expect(table.stdout.split("\n").find((line) => line.startsWith("paused "))).toMatch(/ \d+s ago /);
    const listed = await runDex(["queue", "list", "--json", "--address", h.server.address]);
    expect(listed.code, listed.stderr).toBe(0);
    const row = (JSON.parse(listed.stdout) as Array<Record<string, unknown>>).find((q) => q.name === "paused");
    expect(row).toEqual({
      name: "paused",
      type: "activity",
      status: "paused",
      capacity: 0,
      depth: 5,
      inFlight: 0,
      oldestPendingAgeMs: expect.any(Number),
      lastPollTime: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
    });
    const refused = await runDex(["queue", "delete", "paused", "--type", "activity", "--address", h.server.address]);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain('activity task queue "paused" is not empty: it holds 5 tasks');

    await queues().resumeTaskQueue({ name: "paused", type: ACT });
    expect(await first.result()).toEqual(["0", "1"]);
    expect(await second.result()).toEqual(["0", "1", "2"]);
    expect(started.get("pause")).toHaveLength(5);
    // Runs by workflow task queue, through the SDK and the CLI (ListRunsRequest.task_queue).
    const onDefault = (await h.client.list({ taskQueue: "default", pageSize: 1000 })).runs.map((r) => r.instanceId);
    expect(onDefault.indexOf("pause-2")).toBeLessThan(onDefault.indexOf("pause-1"));
    expect(onDefault.indexOf("pause-2")).toBeGreaterThanOrEqual(0);
    expect((await h.client.list({ taskQueue: "no-runs-here" })).runs).toEqual([]);
    const cliList = await runDex(["workflow", "list", "--queue", "default", "--json", "--address", h.server.address]);
    expect(cliList.code, cliList.stderr).toBe(0);
    expect((JSON.parse(cliList.stdout) as Array<{ instanceId: string; taskQueue: string }>).find((r) => r.instanceId === "pause-1")?.taskQueue).toBe("default");
    const badQueue = await runDex(["workflow", "list", "--queue", "two words", "--address", h.server.address]);
    expect(badQueue.code).not.toBe(0);
    expect(badQueue.stderr).toMatch(/task_queue "two words" is not a valid task queue name/);
    expect(await view("paused")).toMatchObject({ depth: 0n, inFlight: 0n });
    const deleted = await runDex(["queue", "delete", "paused", "--type", "activity", "--json", "--address", h.server.address]);
    expect(deleted.code, deleted.stderr).toBe(0);
    expect(JSON.parse(deleted.stdout)).toEqual({ name: "paused", type: "activity", deleted: true });
    expect(await view("paused")).toBeUndefined();
    // The partition went with the queue.
    const sql = postgres(h.db.url, { max: 1, onnotice: () => {} });
    try {
      expect(await sql`select 1 from pg_class where relname = ${partition!}`).toHaveLength(0);
    } finally {
      await sql.end();
    }
  });

  it("dispatches higher priority first, and equal priorities in the order they were scheduled", async () => {
    await queues().createTaskQueue({ name: "ranked", type: ACT });
    // One slot: one task at a time, so the start order is the dispatch order.
    h.activityWorker(activitiesOn("one"), { taskQueue: "ranked", maxConcurrentActivities: 1 });
    await queues().pauseTaskQueue({ name: "ranked", type: ACT });
    const runs: Array<[string, number]> = [["low-1", 10], ["high-1", 90], ["mid", 50], ["high-2", 90], ["low-2", 10], ["high-3", 90]];
    const handles = [];
    for (const [id, priority] of runs) {
      // The activity inherits the run's priority.
      handles.push(await h.client.start(single, { instanceId: `rank-${id}`, priority, input: { queue: "ranked", tag: "rank", id } }));
      await waitFor(async () => (await view("ranked")).depth === BigInt(handles.length), { message: `${id} scheduled` });
    }
    await queues().resumeTaskQueue({ name: "ranked", type: ACT });
    for (const handle of handles) await handle.result();
    expect(started.get("rank")).toEqual(["high-1", "high-2", "high-3", "mid", "low-1", "low-2"]);
  });

  it("two servers on one database respect one capacity", async () => {
    await queues().createTaskQueue({ name: "two-servers", type: ACT, capacity: 2 });
    const other: DexServer = await startServer({ databaseUrl: h.db.url, port: 0, logger: silentLogger });
    const remote: Array<ReturnType<typeof createActivityWorker>> = [];
    try {
      const held = gate("two");
      // One slot on server one: once it runs one activity, the second slot can only go to server two.
      h.activityWorker(activitiesOn("one"), { taskQueue: "two-servers", maxConcurrentActivities: 1 });
      const handle = await h.client.start(fanOut, { instanceId: "two-servers", input: { queue: "two-servers", tag: "two", n: 10 } });
      await waitFor(runningNow("two", 1), { message: "server one running one activity" });
      for (let i = 0; i < 2; i++) {
        const worker = createActivityWorker({
          address: other.address,
          taskQueue: "two-servers",
          activities: activitiesOn("two"),
          maxConcurrentActivities: 5,
          logger: quietLogger,
        });
        worker.start();
        remote.push(worker);
      }
      await waitFor(runningNow("two", 2), { message: "server two running the second" });
      expect([...servers.get("two")!].sort()).toEqual(["one", "two"]);
      held.resolve();
      expect(await handle.result()).toHaveLength(10);
      expect(most.get("two")).toBe(2);
    } finally {
      gates.get("two")?.resolve(); // a failed wait must not leave activities holding the workers' shutdown
      await Promise.all(remote.map((w) => w.shutdown()));
      await other.close();
    }
  });
});
