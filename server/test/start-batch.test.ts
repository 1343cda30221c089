/**
 * Starts share transactions (engine/start-batch.ts): plain starts arriving together are written by
 * one statement. What a start answers must not change: at most one open run per instance id, the
 * same run for the same request id, ALREADY_EXISTS / USE_EXISTING / reuse policies, NOT_FOUND for a
 * missing queue, and every run begins with run_started and has its workflow task.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DexError, InstanceIdConflictPolicy, InstanceIdReusePolicy } from "@dex/proto";
import postgres from "postgres";
import { uuidv7 } from "uuidv7";
import { waitFor } from "@dex/testing";
import { byRunId, completeRun, fromJson, groupCommitStats, json, pollWorkflowTaskOf, startHarness, uniqueId, type Harness } from "./helpers.js";

type StartInput = Parameters<Harness["client"]["startWorkflow"]>[0];
type Answer = { ok: true; runId: string; started: boolean } | { ok: false; code: string; message: string };

async function answer(promise: Promise<{ runId: string; started: boolean }>): Promise<Answer> {
  return promise.then(
    ({ runId, started }) => ({ ok: true as const, runId, started }),
    (err: unknown) => {
      if (!(err instanceof DexError)) throw err;
      return { ok: false as const, code: err.code, message: err.message };
    },
  );
}

async function runsOf(h: Harness, instanceId: string): Promise<number> {
  const [row] = await h.sql<{ count: number }[]>`select count(*)::int as count from dex.runs where instance_id = ${instanceId}`;
  return row!.count;
}

/** Server statements waiting for a lock: starts waiting for another transaction's open run. */
async function lockWaiters(h: Harness): Promise<number> {
  const [row] = await h.sql<{ waiting: number }[]>`
    select count(*)::int as waiting from pg_stat_activity
    where datname = current_database() and wait_event_type = 'Lock' and application_name like 'dex-server %'`;
  return row!.waiting;
}

/**
 * An open run of `instanceId` inserted by a transaction (on `sql`) that stays open until end():
 * a start of that instance waits for it (the unique index), and with it the batch it is in.
 */
async function holdOpenRun(sql: postgres.Sql, instanceId: string) {
  const runId = uuidv7();
  let finish!: (commit: boolean) => void;
  const finished = new Promise<boolean>((r) => (finish = r));
  let inserted!: () => void;
  const isInserted = new Promise<void>((r) => (inserted = r));
  const holder = sql
    .begin(async (tx) => {
      await tx`insert into dex.runs (id, instance_id, workflow_name, task_queue, status)
               values (${runId}, ${instanceId}, 'held', 'default', 'CREATED')`;
      inserted();
      if (!(await finished)) throw new Error("rollback");
    })
    .catch((err: unknown) => {
      if (!(err instanceof Error && err.message === "rollback")) throw err;
    });
  await isInserted;
  return {
    runId,
    instanceId,
    async end(commit: boolean) {
      finish(commit);
      await holder;
    },
  };
}

/** How many batches of starts the server writes at once (engine/start-batch.ts MAX_IN_FLIGHT). */
const BATCHES_IN_FLIGHT = 2;

/**
 * Fills every batch slot of the server's start group commit with a start waiting for a held run,
 * so that the starts sent next collect into one batch. release() lets the held runs go (rolled
 * back: the gated starts then start) and returns the gated starts' answers.
 */
async function holdBatchSlots(h: Harness, sql: postgres.Sql) {
  const gates: Array<{ held: Awaited<ReturnType<typeof holdOpenRun>>; start: Promise<Answer> }> = [];
  for (let i = 1; i <= BATCHES_IN_FLIGHT; i++) {
    const held = await holdOpenRun(sql, uniqueId("gate"));
    const start = answer(h.client.startWorkflow({ workflowName: "wf", instanceId: held.instanceId }));
    await waitFor(async () => (await lockWaiters(h)) >= i, { message: "a gated start to wait" });
    gates.push({ held, start });
  }
  return {
    async release(): Promise<Answer[]> {
      for (const gate of gates) await gate.held.end(false);
      return Promise.all(gates.map((g) => g.start));
    },
  };
}

/**
 * Resolves once every call sent before it on the harness's channel has reached the server: calls on
 * one channel share one HTTP/2 connection and are handed to their handlers in order, and a start's
 * handler submits to the group commit without awaiting anything first (api/client-service.ts,
 * engine/start.ts). So once a later call has been answered, the burst is queued for one batch.
 */
const reached = async (h: Harness) => {
  await h.queues.listTaskQueues({});
};

/** Sends the starts together while the batch slots are held, so that they are written as one batch. */
async function burst(h: Harness, holders: postgres.Sql, starts: StartInput[]): Promise<Answer[]> {
  const slots = await holdBatchSlots(h, holders);
  const pending = starts.map((s) => answer(h.client.startWorkflow(s)));
  await reached(h);
  for (const gated of await slots.release()) expect(gated).toMatchObject({ ok: true, started: true });
  return Promise.all(pending);
}

describe("starts share transactions", () => {
  let h: Harness;
  /** Connections for the transactions the tests hold open (h.sql has two). */
  let holders: postgres.Sql;
  beforeAll(async () => {
    h = await startHarness({ metricsPort: 0 });
    holders = postgres(h.db.url, { max: 4, onnotice: () => {} });
  });
  afterAll(async () => {
    await holders.end();
    await h.close();
  });

  it("concurrent starts of distinct instance ids are batched, each started with its history, task, labels and priority", async () => {
    const before = await groupCommitStats(h, "start_workflow");
    const starts = Array.from({ length: 40 }, (_, i) => ({
      workflowName: "wf",
      instanceId: uniqueId("many"),
      input: json(i),
      labels: { n: String(i) },
      priority: i,
      requestId: `req-${i}`,
    }));
    const results = await Promise.all(starts.map((s) => h.client.startWorkflow(s)));
    expect(results.every((r) => r.started)).toBe(true);
    expect(new Set(results.map((r) => r.runId)).size).toBe(starts.length);
    const after = await groupCommitStats(h, "start_workflow");
    expect(after.sum - before.sum).toBe(starts.length);
    expect(after.count - before.count).toBeLessThan(starts.length);

    const runIds = results.map((r) => r.runId);
    const rows = await h.sql<{ id: string; instance_id: string; priority: number; labels: unknown; request_id: string; tasks: number }[]>`
      select r.id, r.instance_id, r.priority, r.labels, r.request_id,
             (select count(*)::int from dex.workflow_tasks t where t.run_id = r.id) as tasks
      from dex.runs r where r.id = any(${runIds}::uuid[])`;
    const byId = new Map(rows.map((r) => [r.id, r]));
    for (const [i, start] of starts.entries()) {
      const row = byId.get(runIds[i]!)!;
      expect(row).toMatchObject({ instance_id: start.instanceId, priority: i, labels: { n: String(i) }, request_id: `req-${i}`, tasks: 1 });
      const history = await h.client.getRunHistory({ run: byRunId(runIds[i]!) });
      expect(history.events).toHaveLength(1);
      const first = history.events[0]!;
      expect(first.sequence).toBe(1n);
      expect(first.attributes.case).toBe("runStarted");
      if (first.attributes.case !== "runStarted") continue;
      expect(first.attributes.value).toMatchObject({ workflowName: "wf", instanceId: start.instanceId, taskQueue: "default", priority: i });
      expect(fromJson(first.attributes.value.input)).toBe(i);
    }
    // The workflow tasks are there for a worker (and a retried start still finds its run).
    const task = await pollWorkflowTaskOf(h, runIds[0]!);
    expect(task.runId).toBe(runIds[0]);
    expect(await h.client.startWorkflow(starts[0]!)).toMatchObject({ runId: runIds[0], started: false });
  });

  it("starts of one instance id in one burst: one run, and every other start gets the one-by-one answer", async () => {
    const before = await groupCommitStats(h, "start_workflow");
    const slots = await holdBatchSlots(h, holders);
    const instanceId = uniqueId("dup");
    const mine: StartInput[] = [
      ...Array.from({ length: 4 }, () => ({ workflowName: "wf", instanceId, requestId: "same" })),
      ...Array.from({ length: 3 }, (_, i) => ({ workflowName: "wf", instanceId, requestId: `other-${i}` })),
      ...Array.from({ length: 2 }, (_, i) => ({
        workflowName: "wf",
        instanceId,
        requestId: `use-${i}`,
        conflictPolicy: InstanceIdConflictPolicy.USE_EXISTING,
      })),
    ];
    const others: StartInput[] = Array.from({ length: 10 }, () => ({ workflowName: "wf", instanceId: uniqueId("dup-other") }));
    const pending = [...mine, ...others].map((s) => answer(h.client.startWorkflow(s)));
    await reached(h);
    for (const gated of await slots.release()) expect(gated).toMatchObject({ ok: true, started: true });
    const answers = await Promise.all(pending);

    const winners = answers.slice(0, mine.length).flatMap((a, i) => (a.ok && a.started ? [{ ...a, request: mine[i]! }] : []));
    expect(winners).toHaveLength(1);
    const winner = winners[0]!;
    expect(await runsOf(h, instanceId)).toBe(1);
    mine.forEach((start, i) => {
      const got = answers[i]!;
      if (got.ok && got.started) return;
      if (start.requestId === winner.request.requestId || start.conflictPolicy === InstanceIdConflictPolicy.USE_EXISTING) {
        expect(got).toEqual({ ok: true, runId: winner.runId, started: false });
      } else {
        expect(got).toMatchObject({ ok: false, code: "ALREADY_EXISTS" });
        if (!got.ok) expect(got.message).toContain(winner.runId);
      }
    });
    for (const a of answers.slice(mine.length)) expect(a).toMatchObject({ ok: true, started: true });
    const after = await groupCommitStats(h, "start_workflow");
    // The gated starts, the winner and the others: started by batches, in fewer batches than that.
    const started = BATCHES_IN_FLIGHT + 1 + others.length;
    expect(after.sum - before.sum).toBe(started);
    expect(after.count - before.count).toBeLessThan(started);
  });

  it("a batch meeting a run another transaction is inserting waits for it; that start then answers as one by one", async () => {
    for (const commit of [true, false]) {
      const before = await groupCommitStats(h, "start_workflow");
      const held = await holdOpenRun(holders, uniqueId("held"));
      const slots = await holdBatchSlots(h, holders);
      const others: StartInput[] = Array.from({ length: 5 }, () => ({ workflowName: "wf", instanceId: uniqueId("held-other") }));
      const pending = [{ workflowName: "wf", instanceId: held.instanceId }, ...others].map((s) => answer(h.client.startWorkflow(s)));
      await reached(h);
      for (const gated of await slots.release()) expect(gated).toMatchObject({ ok: true, started: true });
      // The unique index makes the insert wait for the held run's transaction, as a plain insert would.
      await waitFor(async () => (await lockWaiters(h)) >= 1, { message: "the batch to wait for the held run" });
      await held.end(commit);
      const [got, ...rest] = await Promise.all(pending);
      if (commit) {
        expect(got).toMatchObject({ ok: false, code: "ALREADY_EXISTS" });
        if (!got!.ok) expect(got!.message).toContain(held.runId);
      } else {
        expect(got).toMatchObject({ ok: true, started: true });
      }
      for (const a of rest) expect(a).toMatchObject({ ok: true, started: true });
      expect(await runsOf(h, held.instanceId)).toBe(1);
      const after = await groupCommitStats(h, "start_workflow");
      const started = BATCHES_IN_FLIGHT + others.length + (commit ? 0 : 1);
      expect(after.sum - before.sum).toBe(started);
      expect(after.count - before.count).toBeLessThan(started);
    }
  });

  it("a missing queue in a burst fails that start alone, writing nothing for it", async () => {
    const missing = uniqueId("noqueue");
    const starts: StartInput[] = [
      ...Array.from({ length: 10 }, () => ({ workflowName: "wf", instanceId: uniqueId("q") })),
      { workflowName: "wf", instanceId: missing, taskQueue: "nope" },
      ...Array.from({ length: 10 }, () => ({ workflowName: "wf", instanceId: uniqueId("q") })),
    ];
    const answers = await burst(h, holders, starts);
    answers.forEach((a, i) => {
      if (i === 10) {
        expect(a).toMatchObject({ ok: false, code: "NOT_FOUND" });
        if (!a.ok) expect(a.message).toMatch(/nope.*does not exist/);
      } else {
        expect(a).toMatchObject({ ok: true, started: true });
      }
    });
    expect(await runsOf(h, missing)).toBe(0);
  });

  it("reuse policies and same-request retries of ended runs are answered in a burst as one by one", async () => {
    const ended = async (requestId: string) => {
      const instanceId = uniqueId("ended");
      const { runId } = await h.client.startWorkflow({ workflowName: "wf", instanceId, requestId });
      const task = await pollWorkflowTaskOf(h, runId);
      await h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [completeRun(1)] });
      return { instanceId, runId };
    };
    const rejected = await ended("r-a");
    const ifFailed = await ended("r-b");
    const retried = await ended("r-c");
    const reused = await ended("r-d");
    const answers = await burst(h, holders, [
      { workflowName: "wf", instanceId: rejected.instanceId, reusePolicy: InstanceIdReusePolicy.REJECT },
      { workflowName: "wf", instanceId: ifFailed.instanceId, reusePolicy: InstanceIdReusePolicy.ALLOW_IF_FAILED },
      { workflowName: "wf", instanceId: retried.instanceId, requestId: "r-c", reusePolicy: InstanceIdReusePolicy.REJECT },
      { workflowName: "wf", instanceId: reused.instanceId },
      ...Array.from({ length: 10 }, () => ({ workflowName: "wf", instanceId: uniqueId("reuse-other") })),
    ]);
    expect(answers[0]).toMatchObject({ ok: false, code: "ALREADY_EXISTS" });
    if (!answers[0]!.ok) expect(answers[0]!.message).toContain(rejected.runId);
    expect(answers[1]).toMatchObject({ ok: false, code: "ALREADY_EXISTS" });
    expect(answers[2]).toEqual({ ok: true, runId: retried.runId, started: false });
    expect(answers[3]).toMatchObject({ ok: true, started: true });
    expect(answers[3]!.ok && answers[3]!.runId).not.toBe(reused.runId);
    for (const a of answers.slice(4)) expect(a).toMatchObject({ ok: true, started: true });
  });

  it("a batch that fails as a whole is retried one by one: only the bad start fails", async () => {
    const bad = uniqueId("boom");
    await h.sql.unsafe(`
      create function dex.test_boom() returns trigger language plpgsql as $$
      begin
        if new.instance_id = '${bad}' then raise exception 'boom'; end if;
        return new;
      end $$;
      create trigger test_boom before insert on dex.runs for each row execute function dex.test_boom();`);
    try {
      const answers = await burst(h, holders, [
        ...Array.from({ length: 5 }, () => ({ workflowName: "wf", instanceId: uniqueId("ok") })),
        { workflowName: "wf", instanceId: bad },
        ...Array.from({ length: 5 }, () => ({ workflowName: "wf", instanceId: uniqueId("ok") })),
      ]);
      answers.forEach((a, i) => {
        if (i === 5) expect(a).toMatchObject({ ok: false, code: "INTERNAL" });
        else expect(a).toMatchObject({ ok: true, started: true });
      });
      expect(await runsOf(h, bad)).toBe(0);
    } finally {
      await h.sql.unsafe(`drop trigger test_boom on dex.runs; drop function dex.test_boom();`);
    }
  });
});

