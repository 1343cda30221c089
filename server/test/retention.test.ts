/**
 * Retention against a real server and database: the sweep deletes exactly the
 * ended runs past their queue's retention, with every row they own, and
 * nothing else; DeleteRun; two servers sweeping one database.
 * Runs are ended through the API and then aged by moving ended_at back: the
 * sweep compares ended_at with now(), so that is the one thing a test cannot
 * wait out in seconds.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ParentClosePolicy, TaskQueueType } from "@dex/proto";
import { waitFor } from "@dex/testing";
import { RetentionSweeper } from "../src/engine/retention.js";
import { silentLogger } from "../src/index.js";
import {
  byRunId,
  rejectsWith,
  scheduleActivity,
  serveDatabase,
  startChild,
  startHarness,
  startWith,
  uniqueId,
  type Harness,
} from "./helpers.js";

const HOUR = 3_600;
/** No sweep of its own during a test that sweeps by hand. */
const NO_AUTO_SWEEP = { retentionSweepIntervalMs: 2 ** 31 - 1 };

/** Rows a run owns, per table. */
async function ownedRows(h: Harness, runId: string) {
  const [row] = await h.sql<
    { runs: number; history: number; inbox: number; timers: number; workflow_tasks: number; activity_tasks: number; event_ids: number; chains: number }[]
  >`
    select (select count(*)::int from dex.runs where id = ${runId}) as runs,
           (select count(*)::int from dex.history_events where run_id = ${runId}) as history,
           (select count(*)::int from dex.inbox where run_id = ${runId}) as inbox,
           (select count(*)::int from dex.timers where run_id = ${runId}) as timers,
           (select count(*)::int from dex.workflow_tasks where run_id = ${runId}) as workflow_tasks,
           (select count(*)::int from dex.activity_tasks where run_id = ${runId}) as activity_tasks,
           (select count(*)::int from dex.event_ids where run_id = ${runId}) as event_ids,
           (select count(*)::int from dex.run_chains where run_id = ${runId}) as chains`;
  return row!;
}

const NOTHING = { runs: 0, history: 0, inbox: 0, timers: 0, workflow_tasks: 0, activity_tasks: 0, event_ids: 0, chains: 0 };

async function endedRun(h: Harness, taskQueue = "default"): Promise<string> {
  const runId = await startWith(h, [scheduleActivity(1, "slow")], { taskQueue });
  await h.client.terminateRun({ run: byRunId(runId), reason: "done" });
  return runId;
}

async function age(h: Harness, runId: string, seconds: number): Promise<void> {
  await h.sql`update dex.runs set ended_at = now() - make_interval(secs => ${seconds}) where id = ${runId}`;
}

/**
 * Rows an ended run should no longer have, put back by hand: the sweep must delete them too.
 * Empty events (valid, empty messages), and a task no poll hands out (visible tomorrow).
 */
async function addLeftovers(h: Harness, runId: string, queue: string): Promise<void> {
  await h.sql`insert into dex.inbox (run_id, kind, event) values (${runId}, 'external_event_received', '')`;
  await h.sql`
    insert into dex.timers (run_id, seq, kind, fire_at, workflow_queue, priority, event)
    values (${runId}, 99, 'timer', now() + interval '1 day', ${queue}, 50, '')`;
  await h.sql`insert into dex.workflow_tasks (queue_name, run_id, priority, visible_at) values (${queue}, ${runId}, 50, now() + interval '1 day')`;
  // The dedup record of an event the run accepted, and its continue-as-new chain (decision 0022).
  await h.sql`insert into dex.event_ids (chain_id, event_id, run_id) values (${runId}, 'order-paid', ${runId})`;
  await h.sql`insert into dex.run_chains (run_id, chain_id) values (${runId}, ${runId})`;
}

function sweeper(h: Harness, defaultRetentionSeconds: number, batchSize?: number): RetentionSweeper {
  return new RetentionSweeper({ sql: h.sql, logger: silentLogger, defaultRetentionSeconds, batchSize, intervalMs: 2 ** 31 - 1 });
}

describe("retention sweep", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ ...NO_AUTO_SWEEP, defaultRetentionSeconds: HOUR });
    await h.queues.createTaskQueue({ name: "keep", type: TaskQueueType.WORKFLOW, retention: { seconds: 0n } });
    await h.queues.createTaskQueue({ name: "short", type: TaskQueueType.WORKFLOW, retention: { seconds: 60n } });
  });
  afterAll(async () => {
    await h.close();
  });

  it("deletes exactly the ended runs past their queue's retention, with all their rows, and nothing else", async () => {
    const expired = await endedRun(h); // default queue: server default, 1 h
    await age(h, expired, 2 * HOUR);
    await addLeftovers(h, expired, "default");
    const recent = await endedRun(h);
    await age(h, recent, HOUR / 2);
    const open = await startWith(h, [scheduleActivity(1, "slow")]);
    await h.sql`update dex.runs set created_at = now() - interval '10 days' where id = ${open}`;
    const forever = await endedRun(h, "keep");
    await age(h, forever, 1_000 * 86_400);
    const shortExpired = await endedRun(h, "short");
    await age(h, shortExpired, 120);
    const shortRecent = await endedRun(h, "short");
    await age(h, shortRecent, 30);
    const before = { recent: await ownedRows(h, recent), open: await ownedRows(h, open), forever: await ownedRows(h, forever), shortRecent: await ownedRows(h, shortRecent) };
    expect(before.open.activity_tasks).toBe(1);

    expect(await sweeper(h, HOUR).pass()).toBe(2);

    expect(await ownedRows(h, expired)).toEqual(NOTHING);
    expect(await ownedRows(h, shortExpired)).toEqual(NOTHING);
    expect(await ownedRows(h, recent)).toEqual(before.recent);
    expect(await ownedRows(h, open)).toEqual(before.open);
    expect(await ownedRows(h, forever)).toEqual(before.forever);
    expect(await ownedRows(h, shortRecent)).toEqual(before.shortRecent);
    // A second pass finds nothing more.
    expect(await sweeper(h, HOUR).pass()).toBe(0);
  });

  it("keeps a parent while it has an open child; the ended child goes on its own retention", async () => {
    const abandoned = uniqueId("abandoned");
    const finished = uniqueId("finished");
    const parent = await startWith(h, [startChild(1, abandoned, ParentClosePolicy.ABANDON), startChild(2, finished, ParentClosePolicy.ABANDON)]);
    const children = await h.sql<{ id: string; instance_id: string }[]>`select id, instance_id from dex.runs where parent_run_id = ${parent}`;
    const openChild = children.find((c) => c.instance_id === abandoned)!.id;
    const endedChild = children.find((c) => c.instance_id === finished)!.id;
    await h.client.terminateRun({ run: byRunId(endedChild), reason: "done" });
    await h.client.terminateRun({ run: byRunId(parent), reason: "done" });
    await age(h, parent, 2 * HOUR);
    await age(h, endedChild, 2 * HOUR);

    expect(await sweeper(h, HOUR).pass()).toBe(1);
    expect((await ownedRows(h, endedChild)).runs).toBe(0);
    expect((await ownedRows(h, parent)).runs).toBe(1);
    const [child] = await h.sql<{ status: string; history_length: number; events: number }[]>`
      select status, history_length, (select count(*)::int from dex.history_events where run_id = ${openChild}) as events
      from dex.runs where id = ${openChild}`;
    expect(["CREATED", "RUNNING"]).toContain(child!.status);
    expect(child!.events).toBe(child!.history_length);

    // Once the child has ended (and told nobody: its parent is closed), the parent may go; the child stays
    // within its own retention and keeps its link, a pointer to a run that no longer exists.
    await h.client.terminateRun({ run: byRunId(openChild), reason: "done" });
    expect(await sweeper(h, HOUR).pass()).toBe(1);
    expect((await ownedRows(h, parent)).runs).toBe(0);
    const [kept] = await h.sql<{ parent_run_id: string }[]>`select parent_run_id from dex.runs where id = ${openChild}`;
    expect(kept!.parent_run_id).toBe(parent);
  });

  it("works off a backlog in batches, and a server default of 0 keeps runs of queues without a retention", async () => {
    const ids = await insertEndedRuns(h, "default", 23, 2 * HOUR);
    expect(await sweeper(h, 0).pass()).toBe(0);
    expect(await sweeper(h, HOUR, 5).pass()).toBe(23);
    const [left] = await h.sql<{ n: number }[]>`select count(*)::int as n from dex.history_events where run_id = any(${ids}::uuid[])`;
    expect(left!.n).toBe(0);
  });

  it("a continue-as-new chain: each run is its own ended run", async () => {
    const runId = await startWith(h, [{ command: { case: "continueAsNew" as const, value: {} } }]);
    const [next] = await h.sql<{ id: string }[]>`select id from dex.runs where continued_from_run_id = ${runId}`;
    await age(h, runId, 2 * HOUR);
    expect(await sweeper(h, HOUR).pass()).toBe(1);
    expect((await ownedRows(h, runId)).runs).toBe(0);
    // The new run is open and whole; its link back names the deleted run.
    const [row] = await h.sql<{ status: string; continued_from_run_id: string }[]>`select status, continued_from_run_id from dex.runs where id = ${next!.id}`;
    expect(row).toMatchObject({ continued_from_run_id: runId });
    expect(["CREATED", "RUNNING"]).toContain(row!.status);
  });
});

/** `n` ended runs of `queue`, each with 3 history events, ended `agoSeconds` ago, straight in SQL. */
async function insertEndedRuns(h: Harness, queue: string, n: number, agoSeconds: number): Promise<string[]> {
  const rows = await h.sql<{ id: string }[]>`
    insert into dex.runs (id, instance_id, workflow_name, task_queue, status, history_length, created_at, ended_at)
    select gen_random_uuid(), 'bulk-' || gen_random_uuid(), 'wf', ${queue}, 'COMPLETED', 3,
           now() - make_interval(secs => ${agoSeconds + 1}), now() - make_interval(secs => ${agoSeconds})
    from generate_series(1, ${n})
    returning id`;
  const ids = rows.map((r) => r.id);
  await h.sql`
    insert into dex.history_events (run_id, sequence, kind, event)
    select id, s, 'marker', '\\x00' from unnest(${ids}::uuid[]) as id, generate_series(1, 3) as s`;
  return ids;
}

describe("DeleteRun", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness(NO_AUTO_SWEEP);
  });
  afterAll(async () => {
    await h.close();
  });

  it("deletes an ended run with its rows; NOT_FOUND afterwards and for an unknown run", async () => {
    const runId = await endedRun(h);
    await addLeftovers(h, runId, "default");
    const { historyEvents } = { historyEvents: (await ownedRows(h, runId)).history };
    const answer = await h.client.deleteRun({ runId });
    expect(answer).toMatchObject({ runId, historyEventsDeleted: BigInt(historyEvents) });
    expect(await ownedRows(h, runId)).toEqual(NOTHING);
    await rejectsWith(h.client.deleteRun({ runId }), "NOT_FOUND", /does not exist/);
    await rejectsWith(h.client.describeRun({ run: byRunId(runId) }), "NOT_FOUND");
  });

  it("refuses an open run with its status, and a run with open children", async () => {
    const open = await startWith(h, [scheduleActivity(1, "slow")]);
    await rejectsWith(h.client.deleteRun({ runId: open }), "FAILED_PRECONDITION", /is RUNNING: only an ended run can be deleted; cancel or terminate it first/);
    expect((await ownedRows(h, open)).runs).toBe(1);

    const parent = await startWith(h, [startChild(1, uniqueId("kid"), ParentClosePolicy.ABANDON)]);
    await h.client.terminateRun({ run: byRunId(parent), reason: "done" });
    await rejectsWith(h.client.deleteRun({ runId: parent }), "FAILED_PRECONDITION", /1 open child run, which report/);
  });

  it("answers INVALID_ARGUMENT for a missing or malformed run id", async () => {
    await rejectsWith(h.client.deleteRun({ runId: "" }), "INVALID_ARGUMENT", /run_id is required/);
    await rejectsWith(h.client.deleteRun({ runId: "order-17" }), "INVALID_ARGUMENT", /not a run id/);
  });
});

describe("retention settings", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ ...NO_AUTO_SWEEP, defaultRetentionSeconds: 30 * 86_400 });
  });
  afterAll(async () => {
    await h.close();
  });

  it("a queue shows its own retention and the one in force; update changes only what the mask names", async () => {
    const name = uniqueId("q").slice(0, 60);
    const created = await h.queues.createTaskQueue({ name, type: TaskQueueType.WORKFLOW, capacity: 7 });
    expect(created.queue?.retention).toBeUndefined();
    expect(created.queue?.effectiveRetention?.seconds).toBe(BigInt(30 * 86_400));

    const set = await h.queues.updateTaskQueue({ name, type: TaskQueueType.WORKFLOW, retention: { seconds: 3_600n }, updateMask: { paths: ["retention"] } });
    expect(set.queue).toMatchObject({ capacity: 7, retention: { seconds: 3_600n }, effectiveRetention: { seconds: 3_600n } });

    const capacityOnly = await h.queues.updateTaskQueue({ name, type: TaskQueueType.WORKFLOW, capacity: 3 });
    expect(capacityOnly.queue).toMatchObject({ capacity: 3, retention: { seconds: 3_600n } });

    const back = await h.queues.updateTaskQueue({ name, type: TaskQueueType.WORKFLOW, updateMask: { paths: ["retention"] } });
    expect(back.queue).toMatchObject({ capacity: 3, effectiveRetention: { seconds: BigInt(30 * 86_400) } });
    expect(back.queue?.retention).toBeUndefined();

    const [row] = await h.sql<{ retention_seconds: number | null }[]>`select retention_seconds from dex.task_queues where type = 'workflow' and name = ${name}`;
    expect(row!.retention_seconds).toBeNull();
    const listed = (await h.queues.listTaskQueues({})).queues;
    expect(listed.find((q) => q.name === "default" && q.type === TaskQueueType.ACTIVITY)?.effectiveRetention).toBeUndefined();
  });

  it("rejects retentions that are negative, fractional, too long or on an activity queue, and unknown mask paths", async () => {
    const wf = { name: uniqueId("v").slice(0, 60), type: TaskQueueType.WORKFLOW };
    await rejectsWith(h.queues.createTaskQueue({ ...wf, retention: { seconds: -1n } }), "INVALID_ARGUMENT", /retention must not be negative/);
    await rejectsWith(h.queues.createTaskQueue({ ...wf, retention: { seconds: 1n, nanos: 500_000_000 } }), "INVALID_ARGUMENT", /whole seconds/);
    await rejectsWith(h.queues.createTaskQueue({ ...wf, retention: { seconds: BigInt(3651 * 86_400) } }), "INVALID_ARGUMENT", /at most 3650 days/);
    await rejectsWith(
      h.queues.createTaskQueue({ name: wf.name, type: TaskQueueType.ACTIVITY, retention: { seconds: 60n } }),
      "INVALID_ARGUMENT",
      /workflow task queues only/,
    );
    await rejectsWith(h.queues.updateTaskQueue({ name: "default", type: TaskQueueType.WORKFLOW, updateMask: { paths: ["status"] } }), "INVALID_ARGUMENT", /unknown path "status"/);
    // Nothing was created or changed by the refusals.
    expect((await h.queues.listTaskQueues({})).queues.some((q) => q.name === wf.name)).toBe(false);
  });
});

describe("two servers sweeping one database", () => {
  it("delete every expired run once between them, without errors, and leave the rest", async () => {
    const options = { defaultRetentionSeconds: 60, retentionSweepIntervalMs: 100, retentionBatchSize: 7, metricsPort: 0 };
    const warnings: string[] = [];
    const logger = { ...silentLogger, warn: (message: string) => warnings.push(message), error: (message: string) => warnings.push(message) };
    const a = await startHarness({ ...options, logger });
    const b = await serveDatabase(a.db, { ...options, logger });
    try {
      const expired = await insertEndedRuns(a, "default", 120, 600);
      const kept = await insertEndedRuns(a, "default", 10, 5);
      await waitFor(async () => {
        const [row] = await a.sql<{ n: number }[]>`select count(*)::int as n from dex.runs where id = any(${expired}::uuid[])`;
        return row!.n === 0;
      }, { message: "the expired runs to be swept" });
      const [left] = await a.sql<{ runs: number; events: number }[]>`
        select (select count(*)::int from dex.runs where id = any(${kept}::uuid[])) as runs,
               (select count(*)::int from dex.history_events where run_id = any(${expired}::uuid[])) as events`;
      expect(left).toEqual({ runs: 10, events: 0 });
      const counted = (await deletedTotal(a)) + (await deletedTotal(b));
      expect(counted).toBe(120);
      expect(warnings).toEqual([]);
    } finally {
      await b.close();
      await a.close();
    }
  });
});

async function deletedTotal(h: Harness): Promise<number> {
  const text = await (await fetch(`http://${h.server.metricsAddress}/metrics`)).text();
  return text
    .split("\n")
    .filter((l) => l.startsWith("dex_retention_runs_deleted_total{"))
    .reduce((sum, l) => sum + Number(l.split(" ").at(-1)), 0);
}
