/**
 * dex's metrics. Two kinds:
 * - per queue gauges (depth, in-flight, capacity, paused, oldest pending
 *   age), read from the database at scrape time: every server reports the
 *   same cluster-wide numbers, so take one server's, or `max by (queue, type)`;
 * - per server counters and histograms (runs, polls, dispatch latency,
 *   execution time), observed in-process: sum them across servers.
 */
import type { Logger } from "../logger.js";
import type { QueueType } from "../engine/model.js";
import { Histogram } from "./histogram.js";
import type { EngineObserver, TaskOutcome } from "./observer.js";
import { Counter, Registry } from "./registry.js";
import type { MetricFamily, Sample } from "./text.js";

export interface QueueGauges {
  type: string;
  queue: string;
  /** Tasks not leased: waiting for a worker or backing off. */
  depth: number;
  /** Tasks leased now. */
  inFlight: number;
  /** 0: unlimited. */
  capacity: number;
  paused: boolean;
  /** Of the oldest task a worker could take now; 0 when there is none. */
  oldestPendingAgeSeconds: number;
}

export class DexMetrics implements EngineObserver {
  private readonly registry = new Registry();
  private readonly runsStarted = new Counter("dex_runs_started_total", "Runs created by this server (starts, children, continue-as-new), by workflow task queue.", ["queue"]);
  private readonly runsEnded = new Counter("dex_runs_ended_total", "Runs that reached a terminal status on this server, by workflow task queue and status.", ["queue", "status"]);
  private readonly polls = new Counter("dex_polls_total", "Task polls this server answered, by queue and whether they handed out tasks (result=tasks) or none (result=empty).", ["type", "queue", "result"]);
  private readonly eager = new Counter("dex_tasks_dispatched_eagerly_total", "Tasks this server handed out eagerly, in an answer instead of a poll's: activity tasks in a workflow-task completion's, workflow tasks in a start's (eager workflow start); also counted in dex_task_dispatch_latency_seconds; by type and queue.", ["type", "queue"]);
  private readonly dispatch = new Histogram("dex_task_dispatch_latency_seconds", "Time from a task becoming available (created, retry due, lease expired) to a worker claiming it, on this server.", ["type", "queue"]);
  private readonly execution = new Histogram("dex_task_execution_seconds", "Time from a task's claim to its completion or failure reaching this server.", ["type", "queue", "outcome"]);
  private readonly batches = new Histogram("dex_group_commit_batch_size", "Requests written together by one group commit on this server (requests that arrive while a batch is written share the next one), by operation.", ["operation"], BATCH_SIZE_BUCKETS);

  constructor(options: { readQueues: () => Promise<QueueGauges[]>; logger: Logger }) {
    this.registry.register(new QueueCollector(options.readQueues, options.logger));
    for (const metric of [this.runsStarted, this.runsEnded, this.polls, this.eager, this.dispatch, this.execution, this.batches]) {
      this.registry.register(metric);
    }
  }

  render(): Promise<string> {
    return this.registry.render();
  }

  polled(type: QueueType, queue: string, tasks: number): void {
    this.polls.inc({ type, queue, result: tasks > 0 ? "tasks" : "empty" });
  }

  dispatched(type: QueueType, queue: string, waitedMs: number): void {
    this.dispatch.observe({ type, queue }, waitedMs / 1000);
  }

  dispatchedEagerly(type: QueueType, queue: string, tasks: number): void {
    this.eager.inc({ type, queue }, tasks);
  }

  executed(type: QueueType, queue: string, outcome: TaskOutcome, ms: number): void {
    this.execution.observe({ type, queue, outcome }, ms / 1000);
  }

  runStarted(queue: string): void {
    this.runsStarted.inc({ queue });
  }

  runEnded(queue: string, status: string): void {
    this.runsEnded.inc({ queue, status });
  }

  committedBatch(operation: string, size: number): void {
    this.batches.observe({ operation }, size);
  }
}

/** Group commit batch sizes: powers of two up to the largest batch (engine/activity-completions.ts). */
const BATCH_SIZE_BUCKETS: readonly number[] = [1, 2, 4, 8, 16, 32, 64, 128, 256];

const QUEUE_GAUGES: Array<{ name: string; help: string; value: (q: QueueGauges) => number }> = [
  { name: "dex_task_queue_depth", help: "Tasks of the queue not leased (waiting for a worker or backing off), cluster-wide.", value: (q) => q.depth },
  { name: "dex_task_queue_in_flight", help: "Tasks of the queue leased to workers now, cluster-wide.", value: (q) => q.inFlight },
  { name: "dex_task_queue_capacity", help: "Maximum tasks of the queue leased at once, cluster-wide (0: unlimited).", value: (q) => q.capacity },
  { name: "dex_task_queue_paused", help: "1 while the queue is paused (hands out no tasks), else 0.", value: (q) => (q.paused ? 1 : 0) },
  { name: "dex_task_queue_oldest_pending_age_seconds", help: "Age of the oldest task a worker could take now (0: none).", value: (q) => q.oldestPendingAgeSeconds },
];

/**
 * Reads the queues at scrape time. A failed or timed-out read (the database
 * is down or slow) does not fail the scrape: the in-process metrics are still
 * worth having, so the queue families come back empty and
 * dex_task_queue_stats_up says 0.
 */
class QueueCollector {
  private failing = false;

  constructor(
    private readonly read: () => Promise<QueueGauges[]>,
    private readonly logger: Logger,
  ) {}

  async collect(): Promise<MetricFamily[]> {
    let queues: QueueGauges[] = [];
    let up = 1;
    try {
      queues = await this.read();
      if (this.failing) this.logger.info("reading queue metrics recovered");
      this.failing = false;
    } catch (err) {
      up = 0;
      // The first failure of a streak only: a scrape every few seconds must not flood the log.
      if (!this.failing) this.logger.warn("reading queue metrics failed; the queue gauges are left out", { err });
      this.failing = true;
    }
    const families: MetricFamily[] = [
      {
        name: "dex_task_queue_stats_up",
        help: "1 if the per-queue gauges of this scrape were read from the database, 0 if the read failed.",
        type: "gauge",
        samples: [{ name: "dex_task_queue_stats_up", labels: {}, value: up }],
      },
    ];
    for (const gauge of QUEUE_GAUGES) {
      const samples: Sample[] = queues.map((q) => ({ name: gauge.name, labels: { type: q.type, queue: q.queue }, value: gauge.value(q) }));
      families.push({ name: gauge.name, help: gauge.help, type: "gauge", samples });
    }
    return families;
  }
}
