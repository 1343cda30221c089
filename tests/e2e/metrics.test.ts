/**
 * /metrics, scraped over HTTP from a real server while work is queued and in
 * flight: the per-queue gauges equal what the database says, the counters
 * move as runs start and end and polls come back, and every histogram is
 * well-formed. Work is parked so the numbers hold still while compared: a
 * paused workflow queue holds its tasks, and leased activity tasks stay
 * leased for their 5-minute start-to-close timeout.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { E2E_TEST_TIMEOUT_MS } from "@dex/testing";
import { create } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { CommandSchema, PayloadSchema, WorkflowTaskFailedCause, type Command } from "@dex/proto";
import { startServer } from "@dex/server";
import postgres from "postgres";
import { quietLogger, startHarness, type Harness } from "../support/harness.js";
import { createQueue, pauseQueue } from "../support/queue-admin.js";

const json = (value: unknown) =>
  create(PayloadSchema, { encoding: "json/plain", data: new TextEncoder().encode(JSON.stringify(value)) });

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

interface Scrape {
  text: string;
  samples: Sample[];
  types: Map<string, string>;
}

const SAMPLE_LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

/** Parses the text format strictly: every line is HELP, TYPE (before its samples), a sample or empty (the format ignores those). */
function parse(text: string): Scrape {
  expect(text.endsWith("\n")).toBe(true);
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  for (const line of text.trimEnd().split("\n")) {
    if (line === "") continue;
    const meta = /^# (HELP|TYPE) (\S+) (.+)$/.exec(line);
    if (meta) {
      if (meta[1] === "TYPE") types.set(meta[2]!, meta[3]!);
      continue;
    }
    const match = SAMPLE_LINE.exec(line);
    if (!match) throw new Error(`not a Prometheus text line: ${line}`);
    const [, name, labelText = "", raw] = match;
    const family = [...types.keys()].find((f) => name === f || /^_(bucket|sum|count)$/.test(name!.slice(f.length)) && name!.startsWith(f));
    if (!family) throw new Error(`sample before its # TYPE line: ${line}`);
    const labels: Record<string, string> = {};
    for (const [, key, value] of labelText.matchAll(LABEL)) labels[key!] = value!;
    samples.push({ name: name!, labels, value: raw === "+Inf" ? Infinity : Number(raw) });
  }
  return { text, samples, types };
}

function value(scrape: Scrape, name: string, labels: Record<string, string>): number | undefined {
  const matching = scrape.samples.filter(
    (s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v) && Object.keys(s.labels).length === Object.keys(labels).length,
  );
  expect(matching.length, `${name} ${JSON.stringify(labels)} appears at most once`).toBeLessThanOrEqual(1);
  return matching[0]?.value;
}

describe("Prometheus metrics", { timeout: E2E_TEST_TIMEOUT_MS }, () => {
  let h: Harness;
  let sql: postgres.Sql;
  let url: string;

  const scrape = async (): Promise<Scrape> => {
    const response = await fetch(url);
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
    return parse(await response.text());
  };
  const startRun = async (instanceId: string, taskQueue = "default") =>
    (await h.client.raw.client.startWorkflow({ workflowName: "manual", instanceId, taskQueue, input: json(instanceId) })).runId;
  /** Polls the default workflow queue until it hands out `runId`'s task, then completes it with `commands`. */
  const completeTaskOf = async (runId: string, commands: Command[]) => {
    const { tasks } = await h.client.raw.worker.pollWorkflowTasks({ taskQueue: "default", workerId: "metrics-test", maxTasks: 1 });
    expect(tasks.map((t) => t.runId)).toEqual([runId]);
    await h.client.raw.worker.completeWorkflowTask({ taskToken: tasks[0]!.taskToken, commands });
  };

  beforeAll(async () => {
    h = await startHarness({ metricsPort: 0 });
    sql = postgres(h.db.url, { max: 1, onnotice: () => {} });
    expect(h.server.metricsPort).toBeGreaterThan(0);
    url = `http://${h.server.metricsAddress}/metrics`;
  });
  afterAll(async () => {
    await sql?.end();
    await h?.close();
  });

  it("answers only /metrics", async () => {
    expect((await fetch(`http://${h.server.metricsAddress}/`)).status).toBe(404);
    expect((await fetch(url, { method: "POST" })).status).toBe(405);
    const first = await scrape();
    expect(value(first, "dex_task_queue_stats_up", {})).toBe(1);
    expect(first.types.get("dex_task_dispatch_latency_seconds")).toBe("histogram");
    expect(first.types.get("dex_runs_started_total")).toBe("counter");
  });

  it("reports per-queue depth, in-flight, capacity, paused and oldest age as the database has them", async () => {
    await createQueue(h.client, "workflow", "m-held");
    await createQueue(h.client, "activity", "m-acts", 5);
    await pauseQueue(h.client, "workflow", "m-held");
    for (const i of [1, 2, 3]) await startRun(`m-held-${i}`, "m-held");
    // A run on the default queue schedules three activities on m-acts; two are leased and held.
    const runId = await startRun("m-activities");
    const schedule = (seq: number) =>
      create(CommandSchema, { command: { case: "scheduleActivity", value: { seq, activityName: "hold", taskQueue: "m-acts", input: json(seq) } } });
    await completeTaskOf(runId, [schedule(1), schedule(2), schedule(3)]);
    const leased = await h.client.raw.worker.pollActivityTasks({ taskQueue: "m-acts", workerId: "metrics-test", maxTasks: 2 });
    expect(leased.tasks).toHaveLength(2);

    const scraped = await scrape();
    const expected = await sql<{ type: string; name: string; capacity: number; paused: boolean; depth: number; in_flight: number; oldest_age: number }[]>`
      select q.type, q.name, q.capacity, q.status = 'paused' as paused,
             coalesce(t.depth, 0)::int as depth, coalesce(t.in_flight, 0)::int as in_flight,
             coalesce(extract(epoch from now() - t.oldest), 0)::float8 as oldest_age
      from dex.task_queues q
      left join (
        select 'workflow' as type, queue_name,
               count(*) filter (where not leased) as depth, count(*) filter (where leased) as in_flight,
               min(visible_at) filter (where not leased and visible_at <= now()) as oldest
        from (select queue_name, visible_at, leased_until is not null and visible_at > now() as leased from dex.workflow_tasks) w
        group by queue_name
        union all
        select 'activity', queue_name,
               count(*) filter (where not leased), count(*) filter (where leased),
               min(visible_at) filter (where not leased and visible_at <= now())
        from (select queue_name, visible_at, leased_until is not null and visible_at > now() as leased from dex.activity_tasks) a
        group by queue_name
      ) t on t.type = q.type and t.queue_name = q.name`;
    expect(expected.map((q) => `${q.type}:${q.name}`).sort()).toEqual(
      ["activity:default", "activity:m-acts", "workflow:default", "workflow:m-held"],
    );
    for (const q of expected) {
      const labels = { type: q.type, queue: q.name };
      expect({ queue: labels, depth: value(scraped, "dex_task_queue_depth", labels) }).toEqual({ queue: labels, depth: q.depth });
      expect({ queue: labels, inFlight: value(scraped, "dex_task_queue_in_flight", labels) }).toEqual({ queue: labels, inFlight: q.in_flight });
      expect({ queue: labels, capacity: value(scraped, "dex_task_queue_capacity", labels) }).toEqual({ queue: labels, capacity: q.capacity });
      expect({ queue: labels, paused: value(scraped, "dex_task_queue_paused", labels) }).toEqual({ queue: labels, paused: q.paused ? 1 : 0 });
      // The age moves with the clock: the scrape came first, so it is at most the later reading.
      const age = value(scraped, "dex_task_queue_oldest_pending_age_seconds", labels)!;
      expect(age).toBeLessThanOrEqual(q.oldest_age + 0.001);
      expect(age).toBeGreaterThan(q.oldest_age - 5);
    }
    // And the numbers the setup made, so the comparison above is not vacuous.
    expect(value(scraped, "dex_task_queue_depth", { type: "workflow", queue: "m-held" })).toBe(3);
    expect(value(scraped, "dex_task_queue_paused", { type: "workflow", queue: "m-held" })).toBe(1);
    expect(value(scraped, "dex_task_queue_oldest_pending_age_seconds", { type: "workflow", queue: "m-held" })).toBeGreaterThan(0);
    expect(value(scraped, "dex_task_queue_in_flight", { type: "activity", queue: "m-acts" })).toBe(2);
    expect(value(scraped, "dex_task_queue_depth", { type: "activity", queue: "m-acts" })).toBe(1);
    expect(value(scraped, "dex_task_queue_capacity", { type: "activity", queue: "m-acts" })).toBe(5);

    // Another server on the same database, which handled none of this work, reports the same queues.
    const other = await startServer({ databaseUrl: h.db.url, port: 0, metricsPort: 0, logger: quietLogger });
    try {
      const response = await fetch(`http://${other.metricsAddress}/metrics`);
      const theirs = parse(await response.text());
      const gauges = (s: Scrape) =>
        s.samples.filter((x) => /^dex_task_queue_(depth|in_flight|capacity|paused)$/.test(x.name));
      expect(gauges(theirs)).toEqual(gauges(scraped));
      expect(value(theirs, "dex_runs_started_total", { queue: "default" })).toBeUndefined();
    } finally {
      await other.close();
    }

    // The two leased activities were dispatched (available -> claimed), and so were the workflow tasks
    // that scheduled them. One attempt
    // fails (it backs off, so the run gets no workflow task the next test would have to take).
    await h.client.raw.worker.failActivityTask({ taskToken: leased.tasks[0]!.taskToken, failure: { message: "try again" } });
    const after = await scrape();
    expect(value(after, "dex_task_dispatch_latency_seconds_count", { type: "activity", queue: "m-acts" })).toBe(2);
    expect(value(after, "dex_task_dispatch_latency_seconds_count", { type: "workflow", queue: "default" })).toBeGreaterThan(0);
    expect(value(after, "dex_task_execution_seconds_count", { type: "activity", queue: "m-acts", outcome: "failed" })).toBe(1);
    expect(value(after, "dex_task_queue_in_flight", { type: "activity", queue: "m-acts" })).toBe(1);
  });

  it("counts runs started and ended by status, polls by outcome, and workflow task executions", async () => {
    const before = await scrape();
    const count = (s: Scrape, name: string, labels: Record<string, string>) => value(s, name, labels) ?? 0;

    const terminated = await startRun("m-terminated");
    await h.client.getHandle({ runId: terminated }).terminate("metrics test");
    const completed = await startRun("m-completed");
    await completeTaskOf(completed, [create(CommandSchema, { command: { case: "completeRun", value: { result: json("ok") } } })]);
    // The paused queue answers an empty poll.
    const empty = await h.client.raw.worker.pollWorkflowTasks({ taskQueue: "m-held", workerId: "metrics-test", maxWait: durationFromMs(50) });
    expect(empty.tasks).toHaveLength(0);

    const after = await scrape();
    const delta = (name: string, labels: Record<string, string>) => count(after, name, labels) - count(before, name, labels);
    expect(delta("dex_runs_started_total", { queue: "default" })).toBe(2);
    expect(delta("dex_runs_ended_total", { queue: "default", status: "TERMINATED" })).toBe(1);
    expect(delta("dex_runs_ended_total", { queue: "default", status: "COMPLETED" })).toBe(1);
    expect(delta("dex_polls_total", { type: "workflow", queue: "default", result: "tasks" })).toBe(1);
    expect(delta("dex_polls_total", { type: "workflow", queue: "m-held", result: "empty" })).toBe(1);
    expect(delta("dex_task_execution_seconds_count", { type: "workflow", queue: "default", outcome: "completed" })).toBe(1);
  });

  it("reports what an operator pages on: failing workflow tasks by cause and by queue, overdue timers, calls by code", async () => {
    const before = await scrape();
    const count = (s: Scrape, name: string, labels: Record<string, string>) => value(s, name, labels) ?? 0;
    const runId = await startRun("m-failing");
    const { tasks } = await h.client.raw.worker.pollWorkflowTasks({ taskQueue: "default", workerId: "metrics-test", maxTasks: 1 });
    expect(tasks.map((t) => t.runId)).toEqual([runId]);
    await h.client.raw.worker.failWorkflowTask({
      taskToken: tasks[0]!.taskToken,
      cause: WorkflowTaskFailedCause.NON_DETERMINISM,
      failure: { message: "diverged" },
    });
    // A refused call is counted with its code.
    await expect(h.client.raw.client.describeRun({ run: { target: { case: "runId", value: "not-a-uuid" } } })).rejects.toThrow();

    const after = await scrape();
    const delta = (name: string, labels: Record<string, string>) => count(after, name, labels) - count(before, name, labels);
    expect(delta("dex_workflow_task_failures_total", { queue: "default", cause: "NON_DETERMINISM" })).toBe(1);
    expect(value(after, "dex_task_queue_failing_workflow_tasks", { type: "workflow", queue: "default" })).toBe(1);
    expect(value(after, "dex_task_queue_failing_workflow_tasks", { type: "activity", queue: "m-acts" })).toBe(0);
    expect(delta("grpc_server_handled_total", { grpc_service: "dex.v1.WorkerService", grpc_method: "FailWorkflowTask", grpc_code: "OK" })).toBe(1);
    expect(delta("grpc_server_handled_total", { grpc_service: "dex.v1.ClientService", grpc_method: "DescribeRun", grpc_code: "INVALID_ARGUMENT" })).toBe(1);
    expect(count(after, "grpc_server_handling_seconds_count", { grpc_service: "dex.v1.WorkerService", grpc_method: "FailWorkflowTask" })).toBeGreaterThan(0);
    // No timer is due in this database: none is late.
    expect(value(after, "dex_timers_overdue_seconds", {})).toBe(0);
    await h.client.getHandle({ runId }).terminate("metrics test: done with the failing run");
  });

  it("renders every histogram with cumulative buckets ending in +Inf = _count, and a _sum", async () => {
    const scraped = await scrape();
    const histograms = [...scraped.types].filter(([name, type]) => type === "histogram" && name.startsWith("dex_")).map(([name]) => name);
    expect(histograms.sort()).toEqual(["dex_group_commit_batch_size", "dex_task_dispatch_latency_seconds", "dex_task_execution_seconds"]);
    expect(scraped.types.get("grpc_server_handling_seconds")).toBe("histogram");
    // Node's runtime metrics come from the library (prom-client's defaults).
    expect(scraped.types.get("nodejs_eventloop_lag_seconds")).toBe("gauge");
    expect(scraped.types.get("process_resident_memory_bytes")).toBe("gauge");
    let series = 0;
    for (const name of histograms) {
      const buckets = scraped.samples.filter((s) => s.name === `${name}_bucket`);
      const keyOf = (labels: Record<string, string>) => JSON.stringify(Object.entries(labels).filter(([k]) => k !== "le").sort());
      for (const key of new Set(buckets.map((b) => keyOf(b.labels)))) {
        series++;
        const mine = buckets.filter((b) => keyOf(b.labels) === key);
        const bounds = mine.map((b) => (b.labels.le === "+Inf" ? Infinity : Number(b.labels.le)));
        expect(bounds.every((b, i) => i === 0 || b > bounds[i - 1]!), `${name} ${key}: le ascending`).toBe(true);
        expect(bounds.at(-1)).toBe(Infinity);
        expect(mine.every((b, i) => i === 0 || b.value >= mine[i - 1]!.value), `${name} ${key}: cumulative`).toBe(true);
        const labels = Object.fromEntries(JSON.parse(key) as Array<[string, string]>);
        const total = value(scraped, `${name}_count`, labels);
        const sum = value(scraped, `${name}_sum`, labels);
        expect(total).toBe(mine.at(-1)!.value);
        expect(total).toBeGreaterThan(0);
        expect(sum).toBeGreaterThanOrEqual(0);
      }
    }
    // Dispatch of the m-acts activities, executions of workflow and activity tasks.
    expect(series).toBeGreaterThanOrEqual(3);
  });
});
