/**
 * The cluster-wide gauges (per queue, and the timers' lag), read from the
 * database at scrape time so that every server reports the same numbers (take
 * one server's, or `max by (queue, type)`). prom-client collects a registry's
 * metrics concurrently, each gauge through its own `collect`; the families
 * share one read per scrape (`SharedRead`).
 */
import { Gauge, type Registry } from "prom-client";
import type { Logger } from "../logger.js";

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
  /** Workflow queues: runs whose current workflow task failed at least once and has not completed since. */
  failingWorkflowTasks: number;
}

/** What one scrape reads from the database. */
export interface ClusterGauges {
  queues: QueueGauges[];
  /** How long the most overdue timer has been due without firing; 0 when none is. */
  overdueTimerSeconds: number;
}

const QUEUE_GAUGES: Array<{ name: string; help: string; value: (q: QueueGauges) => number }> = [
  { name: "dex_task_queue_depth", help: "Tasks of the queue not leased (waiting for a worker or backing off), cluster-wide.", value: (q) => q.depth },
  { name: "dex_task_queue_in_flight", help: "Tasks of the queue leased to workers now, cluster-wide.", value: (q) => q.inFlight },
  { name: "dex_task_queue_capacity", help: "Maximum tasks of the queue leased at once, cluster-wide (0: unlimited).", value: (q) => q.capacity },
  { name: "dex_task_queue_paused", help: "1 while the queue is paused (hands out no tasks), else 0.", value: (q) => (q.paused ? 1 : 0) },
  { name: "dex_task_queue_oldest_pending_age_seconds", help: "Age of the oldest task a worker could take now (0: none).", value: (q) => q.oldestPendingAgeSeconds },
  {
    name: "dex_task_queue_failing_workflow_tasks",
    help: "Runs of the workflow queue whose current workflow task failed at least once and has not completed since (a bug or a non-determinism error holds them), cluster-wide. 0 for activity queues.",
    value: (q) => q.failingWorkflowTasks,
  },
];

/**
 * A failed or timed-out read (the database is down or slow) does not fail the
 * scrape: the in-process metrics are still worth having, so the queue
 * families come back empty and dex_task_queue_stats_up says 0.
 */
export function registerClusterGauges(registry: Registry, read: () => Promise<ClusterGauges>, logger: Logger): void {
  const shared = new SharedRead(read, logger);
  new Gauge({
    name: "dex_task_queue_stats_up",
    help: "1 if the cluster-wide gauges of this scrape (queues, timers) were read from the database, 0 if the read failed.",
    registers: [registry],
    async collect() {
      this.set((await shared.get()) ? 1 : 0);
    },
  });
  new Gauge({
    name: "dex_timers_overdue_seconds",
    help: "How long the most overdue timer has been due without firing, cluster-wide (0: none; NaN: the read failed). Growing: no server fires timers.",
    registers: [registry],
    async collect() {
      // NaN, not 0, when the read failed: 0 would say all is well (and NaN trips no threshold alert).
      this.set((await shared.get())?.overdueTimerSeconds ?? Number.NaN);
    },
  });
  for (const gauge of QUEUE_GAUGES) {
    new Gauge({
      name: gauge.name,
      help: gauge.help,
      labelNames: ["type", "queue"],
      registers: [registry],
      async collect() {
        const queues = (await shared.get())?.queues ?? [];
        // A queue deleted since the last scrape must not linger with its old value.
        this.reset();
        for (const q of queues) this.set({ type: q.type, queue: q.queue }, gauge.value(q));
      },
    });
  }
}

/** One read for the collectors of one scrape: callers while a read is in flight share it. */
class SharedRead {
  private inFlight: Promise<ClusterGauges | undefined> | undefined;
  private failing = false;

  constructor(
    private readonly read: () => Promise<ClusterGauges>,
    private readonly logger: Logger,
  ) {}

  get(): Promise<ClusterGauges | undefined> {
    this.inFlight ??= this.readOnce().finally(() => (this.inFlight = undefined));
    return this.inFlight;
  }

  private async readOnce(): Promise<ClusterGauges | undefined> {
    try {
      const read = await this.read();
      if (this.failing) this.logger.info("reading queue metrics recovered");
      this.failing = false;
      return read;
    } catch (err) {
      // The first failure of a streak only: a scrape every few seconds must not flood the log.
      if (!this.failing) this.logger.warn("reading queue metrics failed; the queue gauges are left out", { err });
      this.failing = true;
      return undefined;
    }
  }
}
