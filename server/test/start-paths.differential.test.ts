/**
 * The start statement (store/runs.ts insertRuns) has two shapes generated from one definition: one
 * run is a row of parameters, several are unnest over arrays. Every case here runs through both, on
 * fresh instance ids with the same history before it: alone (the one-row shape), and in a call with
 * other runs around it (the unnest shape). The outcome and every row written (the dex.runs columns,
 * the run_started event, the workflow task or its absence) must be the same, and as expected.
 * Then the wake-up after commit: a start on one server wakes a poll parked on another, alone and
 * through the group commit (one NOTIFY per queue per batch, none from inside the statement).
 */
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createServiceClient, WorkerService } from "@dex/proto";
import { waitFor } from "@dex/testing";
import { uuidv7 } from "uuidv7";
import { silentLogger, startServer, type DexServer } from "../src/index.js";
import { insertRun, insertRuns, type InsertRunOutcome, type NewRun } from "../src/store/runs.js";
import { groupCommitStats, PARK, parkPoll, startHarness, uniqueId, WAKES_ONLY, watchParking, wokenBy, type Harness } from "./helpers.js";

type Shape = "alone" | "in a batch";
const SHAPES: readonly Shape[] = ["alone", "in a batch"];

/** A start as the engine builds it (engine/start.ts newRun), with what each case changes. */
function run(instanceId: string, extra: Partial<NewRun> = {}): NewRun {
  return {
    id: uuidv7(),
    instanceId,
    workflowName: "wf",
    taskQueue: "default",
    priority: 3,
    labels: { team: "a", "k:v": "x'y" },
    requestId: "",
    concurrencyKey: null,
    concurrencyLimit: null,
    concurrencyWaiting: false,
    input: new Uint8Array([1, 2, 3, 0, 255]),
    startedEvent: new Uint8Array([10, 20, 30]),
    reusePolicy: "allow",
    parent: null,
    continuedFromRunId: null,
    ...extra,
  };
}

/** The case's start through one shape: alone, or between two other starts (which must start). */
async function startThrough(h: Harness, shape: Shape, start: NewRun): Promise<InsertRunOutcome> {
  if (shape === "alone") return insertRun(h.sql, start);
  const [before, outcome, after] = await insertRuns(h.sql, [run(uniqueId("filler")), start, run(uniqueId("filler"))]);
  expect(before).toMatchObject({ outcome: "started" });
  expect(after).toMatchObject({ outcome: "started" });
  return outcome!;
}

/** A run of the instance, started alone, then ended with `status` if given. */
async function priorRun(h: Harness, instanceId: string, extra: Partial<NewRun> = {}, status?: string): Promise<string> {
  const prior = run(instanceId, extra);
  expect(await insertRun(h.sql, prior)).toEqual({ outcome: "started", runId: prior.id });
  if (status) await h.sql`update dex.runs set status = ${status}, ended_at = now() where id = ${prior.id}`;
  return prior.id;
}

/**
 * Everything the instance's runs are made of, run ids and concurrency keys replaced by their role in
 * the case (ids, keys and times differ between the two setups, nothing else may).
 */
async function written(h: Harness, instanceId: string, roles: Map<string, string>) {
  const role = (id: string | null) => (id === null ? null : (roles.get(id) ?? `unknown ${id}`));
  const runs = await h.sql<Record<string, unknown>[]>`
    select id, workflow_name, task_queue, status, priority, labels, concurrency_key, concurrency_limit,
           concurrency_waiting, request_id, parent_run_id, parent_seq, parent_close_policy,
           continued_from_run_id, continued_as_run_id, encode(input, 'hex') as input, result, failure,
           history_length, history_size::int as history_size, sticky_worker_id, cancel_requested_at,
           started_at, ended_at is not null as ended,
           (select json_agg(json_build_object('sequence', e.sequence, 'kind', e.kind, 'event', encode(e.event, 'hex'),
                                              'at_creation', e.created_at = r.created_at) order by e.sequence)
            from dex.history_events e where e.run_id = r.id) as history,
           (select json_agg(json_build_object('queue', t.queue_name, 'priority', t.priority,
                                              'visible_at_creation', t.visible_at = r.created_at))
            from dex.workflow_tasks t where t.run_id = r.id) as tasks
    from dex.runs r where instance_id = ${instanceId} order by id`;
  return runs.map((r): Record<string, unknown> => ({
    ...r,
    id: role(r.id as string),
    concurrency_key: role(r.concurrency_key as string | null),
    parent_run_id: role(r.parent_run_id as string | null),
    continued_from_run_id: role(r.continued_from_run_id as string | null),
  }));
}

function named(outcome: InsertRunOutcome, roles: Map<string, string>): unknown {
  if (outcome.outcome === "started" || outcome.outcome === "same_request") return { ...outcome, runId: roles.get(outcome.runId) };
  if (outcome.outcome === "reuse_rejected") return { ...outcome, latestRunId: roles.get(outcome.latestRunId) };
  return outcome;
}

interface Case {
  name: string;
  /** Writes what the instance has before the start; returns the start and the roles of run ids. */
  setup(h: Harness, instanceId: string): Promise<{ start: NewRun; roles: Record<string, string> }>;
  outcome: unknown;
  /** What the new run's row must say (the rest is compared between the shapes). */
  row?: Record<string, unknown>;
}

const started = { outcome: "started", runId: "new" };

const CASES: Case[] = [
  {
    name: "started, with request id, labels, priority and input",
    setup: async (_h, instanceId) => {
      const start = run(instanceId, { requestId: "req-1" });
      return { start, roles: { [start.id]: "new" } };
    },
    outcome: started,
    row: { status: "CREATED", request_id: "req-1", priority: 3, labels: { team: "a", "k:v": "x'y" }, input: "01020300ff", history_length: 1, history_size: 3 },
  },
  {
    name: "queue missing",
    setup: async (_h, instanceId) => ({ start: run(instanceId, { taskQueue: "no-such-queue" }), roles: {} }),
    outcome: { outcome: "queue_missing" },
  },
  {
    name: "same request id while the run is open",
    setup: async (h, instanceId) => {
      const prior = await priorRun(h, instanceId, { requestId: "same" });
      return { start: run(instanceId, { requestId: "same", reusePolicy: "reject" }), roles: { [prior]: "prior" } };
    },
    outcome: { outcome: "same_request", runId: "prior" },
  },
  {
    name: "same request id after the run ended",
    setup: async (h, instanceId) => {
      const prior = await priorRun(h, instanceId, { requestId: "same" }, "COMPLETED");
      return { start: run(instanceId, { requestId: "same", reusePolicy: "reject" }), roles: { [prior]: "prior" } };
    },
    outcome: { outcome: "same_request", runId: "prior" },
  },
  {
    name: "reuse policy reject after a completed run",
    setup: async (h, instanceId) => {
      const prior = await priorRun(h, instanceId, {}, "COMPLETED");
      return { start: run(instanceId, { reusePolicy: "reject" }), roles: { [prior]: "prior" } };
    },
    outcome: { outcome: "reuse_rejected", latestRunId: "prior", latestStatus: "COMPLETED" },
  },
  {
    name: "reuse policy allow_if_failed after a failed run",
    setup: async (h, instanceId) => {
      const prior = await priorRun(h, instanceId, {}, "FAILED");
      const start = run(instanceId, { reusePolicy: "allow_if_failed" });
      return { start, roles: { [prior]: "prior", [start.id]: "new" } };
    },
    outcome: started,
  },
  {
    name: "reuse policy allow_if_failed after a completed run",
    setup: async (h, instanceId) => {
      const prior = await priorRun(h, instanceId, {}, "COMPLETED");
      return { start: run(instanceId, { reusePolicy: "allow_if_failed" }), roles: { [prior]: "prior" } };
    },
    outcome: { outcome: "reuse_rejected", latestRunId: "prior", latestStatus: "COMPLETED" },
  },
  {
    name: "reuse policy allow after a completed run",
    setup: async (h, instanceId) => {
      const prior = await priorRun(h, instanceId, {}, "COMPLETED");
      const start = run(instanceId, { reusePolicy: "allow" });
      return { start, roles: { [prior]: "prior", [start.id]: "new" } };
    },
    outcome: started,
  },
  {
    name: "an open run of the instance exists",
    setup: async (h, instanceId) => {
      const prior = await priorRun(h, instanceId, { requestId: "first" });
      return { start: run(instanceId, { requestId: "second" }), roles: { [prior]: "prior" } };
    },
    outcome: { outcome: "open_run_exists" },
  },
  {
    name: "a child run with its parent's fields",
    setup: async (h, instanceId) => {
      const parent = await priorRun(h, uniqueId("parent"));
      const start = run(instanceId, { parent: { runId: parent, seq: 7, closePolicy: "abandon" } });
      return { start, roles: { [parent]: "parent", [start.id]: "new" } };
    },
    outcome: started,
    row: { parent_run_id: "parent", parent_seq: 7, parent_close_policy: "abandon", tasks: [{ queue: "default", priority: 3, visible_at_creation: true }] },
  },
  {
    name: "a keyed run waiting for its slot: no workflow task",
    setup: async (_h, instanceId) => {
      const key = uniqueId("key");
      const start = run(instanceId, { concurrencyKey: key, concurrencyLimit: 2, concurrencyWaiting: true });
      return { start, roles: { [start.id]: "new", [key]: "key" } };
    },
    outcome: started,
    row: { concurrency_key: "key", concurrency_limit: 2, concurrency_waiting: true, tasks: null },
  },
  {
    name: "continue-as-new: the next run holds the slot of the run it continues, with its parent link",
    setup: async (h, instanceId) => {
      const key = uniqueId("key");
      const parent = await priorRun(h, uniqueId("parent"));
      const keyed = { concurrencyKey: key, concurrencyLimit: 1, parent: { runId: parent, seq: 2, closePolicy: "cancel" } };
      const old = await priorRun(h, instanceId, keyed, "CONTINUED_AS_NEW");
      const start = run(instanceId, { ...keyed, continuedFromRunId: old });
      return { start, roles: { [parent]: "parent", [old]: "old", [start.id]: "new", [key]: "key" } };
    },
    outcome: started,
    row: { continued_from_run_id: "old", parent_run_id: "parent", parent_seq: 2, concurrency_key: "key", concurrency_limit: 1, concurrency_waiting: false, tasks: [{ queue: "default", priority: 3, visible_at_creation: true }] },
  },
];

describe("the start statement answers and writes the same through both shapes", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(async () => {
    await h.close();
  });

  it.each(CASES)("$name", async (c) => {
    const results = [];
    for (const shape of SHAPES) {
      const instanceId = uniqueId("diff");
      const { start, roles } = await c.setup(h, instanceId);
      const names = new Map(Object.entries(roles));
      const outcome = named(await startThrough(h, shape, start), names);
      results.push({ shape, outcome, rows: await written(h, instanceId, names) });
    }
    const [alone, batched] = results;
    expect(alone!.outcome, "the outcome alone").toEqual(c.outcome);
    expect(batched!.outcome, "the outcome in a batch").toEqual(c.outcome);
    expect(batched!.rows).toEqual(alone!.rows);
    const mine = alone!.rows.filter((r) => r.id === "new");
    expect(mine).toHaveLength(c.outcome === started ? 1 : 0);
    if (mine[0]) {
      expect(mine[0]).toMatchObject({ status: "CREATED", workflow_name: "wf", history_length: 1, started_at: null, ended: false });
      expect(mine[0].history).toEqual([{ sequence: 1, kind: "run_started", event: "0a141e", at_creation: true }]);
      if (c.row) expect(mine[0]).toMatchObject(c.row);
    }
  });

  it("two starts of one instance in one call: the first wins, the second meets it as an open run", async () => {
    const instanceId = uniqueId("twice");
    const [first, second] = [run(instanceId, { requestId: "a" }), run(instanceId, { requestId: "b" })];
    expect(await insertRuns(h.sql, [first, second])).toEqual([{ outcome: "started", runId: first.id }, { outcome: "open_run_exists" }]);
    const rows = await h.sql`select id from dex.runs where instance_id = ${instanceId}`;
    expect(rows.map((r) => r.id)).toEqual([first.id]);
  });
});

describe("a start wakes a poll parked on another server, after its commit", () => {
  let h: Harness;
  let other: DexServer;
  let channel: grpc.Client;
  let parking: ReturnType<typeof watchParking>;
  beforeAll(async () => {
    parking = watchParking();
    // No fallback tick, 60 s polls: a parked poll answered at all was answered by a wake-up.
    h = await startHarness({ ...WAKES_ONLY, metricsPort: 0 });
    await h.queues.createTaskQueue({ name: "cross-one", type: 1 });
    await h.queues.createTaskQueue({ name: "cross-many", type: 1 });
    other = await startServer({ databaseUrl: h.db.url, port: 0, logger: silentLogger, ...WAKES_ONLY });
    channel = new grpc.Client(other.address, grpc.credentials.createInsecure());
  });
  afterAll(async () => {
    channel?.close();
    await other?.close();
    await h.close();
    parking.restore();
  });

  /** Resolves once the poll parked, with its answer to come (wrapped, so that awaiting this does not wait for it). */
  const parkOnOther = (queue: string) => {
    const worker = createServiceClient(WorkerService, channel);
    return parkPoll(parking, "workflow", queue, () => worker.pollWorkflowTasks({ taskQueue: queue, workerId: "b", maxTasks: 100, maxWait: PARK }));
  };

  it("a start alone", async () => {
    const poll = (await parkOnOther("cross-one")).answer;
    const { runId } = await h.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("one"), taskQueue: "cross-one" });
    const { tasks } = await wokenBy(poll, "the NOTIFY after the start's commit");
    expect(tasks.map((t) => t.runId)).toEqual([runId]);
  });

  it("starts through the group commit: at most one NOTIFY per queue per batch", async () => {
    const payloads: string[] = [];
    const listening = await h.sql.listen("dex_wakeup", (payload) => {
      if (payload.startsWith("workflow:cross-many:")) payloads.push(payload);
    });
    try {
      const poll = (await parkOnOther("cross-many")).answer;
      const before = await groupCommitStats(h, "start_workflow");
      const starts = await Promise.all(
        Array.from({ length: 30 }, () => h.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("many"), taskQueue: "cross-many" })),
      );
      const { tasks } = await wokenBy(poll, "the NOTIFY after a batch's commit");
      expect(tasks.length).toBeGreaterThan(0);
      const runIds = new Set(starts.map((s) => s.runId));
      for (const task of tasks) expect(runIds.has(task.runId)).toBe(true);
      const after = await groupCommitStats(h, "start_workflow");
      expect(after.sum - before.sum).toBe(starts.length);
      const batches = after.count - before.count;
      expect(batches).toBeLessThan(starts.length);
      await waitFor(() => payloads.length >= 1, { message: "the batches' NOTIFY" });
      // One payload per queue per batch (the notifier may fold several batches' into one).
      expect(payloads.length).toBeLessThanOrEqual(batches);
    } finally {
      await listening.unlisten();
    }
  });
});
