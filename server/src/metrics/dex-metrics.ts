/**
 * dex's metrics, kept by prom-client in a registry of this server's own (not
 * the library's global one: tests run several servers in one process). Three
 * kinds:
 * - per queue gauges and the timers' lag, read from the database at scrape
 *   time (queue-gauges.ts): cluster-wide, the same on every server;
 * - per server counters and histograms (runs, polls, dispatch latency,
 *   execution time), observed in-process: sum them across servers;
 * - Node's runtime metrics (process_*, nodejs_*: CPU, memory, event-loop lag,
 *   GC), prom-client's defaults.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import type { Logger } from "../logger.js";
import type { QueueType } from "../engine/model.js";
import type { EngineObserver, TaskOutcome } from "./observer.js";
import { registerClusterGauges, type ClusterGauges } from "./queue-gauges.js";

export type { ClusterGauges, QueueGauges } from "./queue-gauges.js";

/** Seconds, for waits and executions from a few milliseconds to an hour. */
const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600];
/** Group commit batch sizes: powers of two up to the largest batch (engine/activity-completions.ts). */
const BATCH_SIZE_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256];

export class DexMetrics implements EngineObserver {
  private readonly registry = new Registry();
  private readonly runsStarted = this.counter("dex_runs_started_total", "Runs created by this server (starts, children, continue-as-new), by workflow task queue.", ["queue"]);
  private readonly runsEnded = this.counter("dex_runs_ended_total", "Runs that reached a terminal status on this server, by workflow task queue and status.", ["queue", "status"]);
  private readonly polls = this.counter("dex_polls_total", "Task polls this server answered, by queue and whether they handed out tasks (result=tasks) or none (result=empty).", ["type", "queue", "result"]);
  private readonly eager = this.counter("dex_tasks_dispatched_eagerly_total", "Tasks this server handed out eagerly, in an answer instead of a poll's: activity tasks in a workflow-task completion's, workflow tasks in a start's (eager workflow start); also counted in dex_task_dispatch_latency_seconds; by type and queue.", ["type", "queue"]);
  private readonly dispatch = this.histogram("dex_task_dispatch_latency_seconds", "Time from a task becoming available (created, retry due, lease expired) to a worker claiming it, on this server.", ["type", "queue"], DURATION_BUCKETS);
  private readonly execution = this.histogram("dex_task_execution_seconds", "Time from a task's claim to its completion or failure reaching this server.", ["type", "queue", "outcome"], DURATION_BUCKETS);
  private readonly taskFailures = this.counter("dex_workflow_task_failures_total", "Workflow tasks workers reported failed (FailWorkflowTask) to this server, by workflow task queue and cause (NON_DETERMINISM, UNKNOWN_WORKFLOW, PAYLOAD, WORKER_ERROR, UNSPECIFIED).", ["queue", "cause"]);
  // The names and labels of go-grpc-prometheus, which gRPC dashboards already read.
  private readonly rpcs = this.counter("grpc_server_handled_total", "Calls this server answered, by service, method and status code (OK or the error's code name).", ["grpc_service", "grpc_method", "grpc_code"]);
  private readonly rpcSeconds = this.histogram("grpc_server_handling_seconds", "Time this server took to answer a call (long polls included: up to their wait), by service and method.", ["grpc_service", "grpc_method"], DURATION_BUCKETS);
  private readonly runsDeletedTotal = this.counter("dex_retention_runs_deleted_total", "Ended runs this server deleted with their history, by workflow task queue and by whom (by=sweep: the retention sweep; by=request: DeleteRun).", ["queue", "by"]);
  private readonly batches = this.histogram("dex_group_commit_batch_size", "Requests written together by one group commit on this server (requests that arrive while a batch is written share the next one), by operation.", ["operation"], BATCH_SIZE_BUCKETS);

  constructor(options: { readCluster: () => Promise<ClusterGauges>; logger: Logger; readRetentionOverdue?: () => Promise<number> }) {
    registerClusterGauges(this.registry, options.readCluster, options.logger);
    const readOverdue = options.readRetentionOverdue;
    if (readOverdue) {
      new Gauge({
        name: "dex_retention_overdue_seconds",
        help: "How long past its queue's retention the oldest deletable ended run is, cluster-wide (0: the sweep is caught up; NaN: the read failed). Growing: no server sweeps, or the sweep falls behind.",
        registers: [this.registry],
        async collect() {
          this.set(await readOverdue().catch(() => Number.NaN));
        },
      });
    }
    // The event-loop delay monitor samples every `eventLoopMonitoringPrecision` ms on a libuv timer:
    // prom-client's default 10 ms costs an idle server 0.6 % of a core (measured: 1.1 vs 0.44 %
    // for a bare Node process over 20 s); 100 ms costs nothing visible and still sees every stall.
    collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: 100 });
  }

  /** The exposition format's content type, for the HTTP answer. */
  get contentType(): string {
    return this.registry.contentType;
  }

  render(): Promise<string> {
    return this.registry.metrics();
  }

  polled(type: QueueType, queue: string, tasks: number): void {
    this.polls.inc({ type, queue, result: tasks > 0 ? "tasks" : "empty" });
  }

  dispatched(type: QueueType, queue: string, waitedMs: number): void {
    this.dispatch.observe({ type, queue }, seconds(waitedMs));
  }

  dispatchedEagerly(type: QueueType, queue: string, tasks: number): void {
    this.eager.inc({ type, queue }, tasks);
  }

  executed(type: QueueType, queue: string, outcome: TaskOutcome, ms: number): void {
    this.execution.observe({ type, queue, outcome }, seconds(ms));
  }

  runStarted(queue: string): void {
    this.runsStarted.inc({ queue });
  }

  runEnded(queue: string, status: string): void {
    this.runsEnded.inc({ queue, status });
  }

  workflowTaskFailed(queue: string, cause: string): void {
    this.taskFailures.inc({ queue, cause });
  }

  /** A gRPC call was answered (see grpcService's onAnswered). */
  answered(call: { service: string; method: string; code: string; ms: number }): void {
    this.rpcs.inc({ grpc_service: call.service, grpc_method: call.method, grpc_code: call.code });
    this.rpcSeconds.observe({ grpc_service: call.service, grpc_method: call.method }, seconds(call.ms));
  }

  runsDeleted(queue: string, by: "sweep" | "request", count: number): void {
    this.runsDeletedTotal.inc({ queue, by }, count);
  }

  committedBatch(operation: string, size: number): void {
    this.batches.observe({ operation }, size);
  }

  private counter<L extends string>(name: string, help: string, labelNames: readonly L[]): Counter<L> {
    return new Counter({ name, help, labelNames, registers: [this.registry] });
  }

  private histogram<L extends string>(name: string, help: string, labelNames: readonly L[], buckets: number[]): Histogram<L> {
    return new Histogram({ name, help, labelNames, buckets, registers: [this.registry] });
  }
}

/** A clock step backwards between two hosts must not record a negative duration (nor NaN). */
function seconds(ms: number): number {
  return Number.isFinite(ms) && ms > 0 ? ms / 1000 : 0;
}
