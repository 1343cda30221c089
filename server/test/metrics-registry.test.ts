import { describe, expect, it } from "vitest";
import { DexMetrics, type QueueGauges } from "../src/metrics/dex-metrics.js";
import { silentLogger } from "../src/index.js";

const queue: QueueGauges = { type: "activity", queue: "q", depth: 3, inFlight: 1, capacity: 5, paused: true, oldestPendingAgeSeconds: 2.5, failingWorkflowTasks: 0 };

function sample(text: string, line: string): number | undefined {
  const found = text.split("\n").find((l) => l.startsWith(`${line} `));
  return found === undefined ? undefined : Number(found.slice(line.length + 1));
}

describe("DexMetrics (prom-client)", () => {
  it("reads the queues once per scrape for all six queue families, and drops queues that went away", async () => {
    let reads = 0;
    let queues = [queue, { ...queue, queue: "gone" }];
    const metrics = new DexMetrics({ readCluster: async () => (reads++, { queues, overdueTimerSeconds: 1.25 }), logger: silentLogger });
    const first = await metrics.render();
    expect(reads).toBe(1);
    expect(sample(first, "dex_task_queue_stats_up")).toBe(1);
    expect(sample(first, 'dex_task_queue_depth{type="activity",queue="q"}')).toBe(3);
    expect(sample(first, 'dex_task_queue_paused{type="activity",queue="q"}')).toBe(1);
    expect(sample(first, 'dex_task_queue_oldest_pending_age_seconds{type="activity",queue="q"}')).toBe(2.5);
    expect(sample(first, 'dex_task_queue_depth{type="activity",queue="gone"}')).toBe(3);
    expect(sample(first, "dex_timers_overdue_seconds")).toBe(1.25);
    queues = [queue];
    const second = await metrics.render();
    expect(reads).toBe(2);
    expect(sample(second, 'dex_task_queue_depth{type="activity",queue="gone"}')).toBeUndefined();
  });

  it("keeps serving the in-process metrics when the queue read fails, with stats_up 0", async () => {
    const metrics = new DexMetrics({ readCluster: () => Promise.reject(new Error("database down")), logger: silentLogger });
    metrics.runStarted("default");
    const text = await metrics.render();
    expect(sample(text, "dex_task_queue_stats_up")).toBe(0);
    expect(sample(text, 'dex_runs_started_total{queue="default"}')).toBe(1);
    expect(text).not.toContain("dex_task_queue_depth{");
    // Not 0: that would say every timer fired on time.
    expect(sample(text, "dex_timers_overdue_seconds")).toBeNaN();
  });

  it("counts a backwards clock step as a zero duration, and has Node's runtime metrics", async () => {
    const metrics = new DexMetrics({ readCluster: async () => ({ queues: [], overdueTimerSeconds: 0 }), logger: silentLogger });
    metrics.dispatched("workflow", "default", -40);
    metrics.executed("activity", "q", "completed", Number.NaN);
    metrics.executed("activity", "q", "completed", 1_500);
    const text = await metrics.render();
    expect(sample(text, 'dex_task_dispatch_latency_seconds_bucket{le="0.005",type="workflow",queue="default"}')).toBe(1);
    expect(sample(text, 'dex_task_execution_seconds_sum{type="activity",queue="q",outcome="completed"}')).toBe(1.5);
    expect(sample(text, 'dex_task_execution_seconds_count{type="activity",queue="q",outcome="completed"}')).toBe(2);
    expect(text).toContain("# TYPE process_cpu_user_seconds_total counter");
    expect(text).toContain("# TYPE nodejs_eventloop_lag_seconds gauge");
    expect(metrics.contentType).toBe("text/plain; version=0.0.4; charset=utf-8");
  });
});
