/**
 * Retention of ended runs: the queue setting's validation, the sweep that
 * deletes runs past their queue's retention (every server runs one; a
 * cluster-wide lock lets one batch run at a time, see store/retention.ts),
 * and DeleteRun. Rules and measurements: docs/decisions/0021-retention.md.
 */
import type { Duration } from "@bufbuild/protobuf/wkt";
import { DexError } from "@dex/proto";
import type { Logger } from "../logger.js";
import type { Sql } from "../store/db.js";
import { deleteEndedRun, queuesWithEndedRuns, sweepBatch, type DeletedRows } from "../store/retention.js";
import type { Engine } from "./context.js";
import { invalid, uuid } from "./validation.js";

/** Longest retention: 3650 days (also the migration's check). Longer is "forever": say 0. */
export const MAX_RETENTION_SECONDS = 3650 * 86_400;
/** How often an idle sweep looks for expired runs. */
export const DEFAULT_SWEEP_INTERVAL_MS = 60_000;
/** Runs per sweep transaction (decision 0021: ~500 runs of 12 events held locks for ~0.1 s). */
export const DEFAULT_SWEEP_BATCH_SIZE = 500;
/** Longest pause between two batches of a backlog; the pause is the last batch's duration, up to this. */
const MAX_BATCH_PAUSE_MS = 1_000;

/**
 * A retention from the API, in whole seconds: 0 (forever) or 1 s to 3650
 * days; undefined when unset. Fractions are refused rather than rounded: the
 * caller meant something a sweep measured in seconds cannot honour.
 */
export function retentionSeconds(field: string, value: Duration | undefined): number | undefined {
  if (!value) return undefined;
  const seconds = Number(value.seconds);
  if (seconds < 0 || value.nanos < 0 || value.nanos >= 1e9) {
    throw invalid(`${field} must not be negative: give 0 to keep runs forever, or 1 s to 3650 days`);
  }
  if (value.nanos !== 0) throw invalid(`${field} must be whole seconds, got ${seconds}.${String(value.nanos).padStart(9, "0")} s`);
  if (seconds > MAX_RETENTION_SECONDS) {
    throw invalid(`${field} must be at most 3650 days (${MAX_RETENTION_SECONDS} s), got ${seconds} s; give 0 to keep runs forever`);
  }
  return seconds;
}

/** The same limits for a server option (CLI flag, embedding code): a TypeError, as for the other options. */
export function checkDefaultRetention(seconds: number): number {
  if (!Number.isInteger(seconds) || seconds < 0 || seconds > MAX_RETENTION_SECONDS) {
    throw new TypeError(`defaultRetentionSeconds must be whole seconds from 0 (keep forever) to ${MAX_RETENTION_SECONDS} (3650 days), got ${seconds}`);
  }
  return seconds;
}

export interface RetentionSweepOptions {
  /** The sweep's own pool (one connection): a batch never takes a connection from the call path. */
  sql: Sql;
  logger: Logger;
  /** Retention of queues that set none, in seconds; 0 keeps them forever. */
  defaultRetentionSeconds: number;
  /** Pause between passes when there is no backlog. Default DEFAULT_SWEEP_INTERVAL_MS. */
  intervalMs?: number;
  /** Runs per transaction. Default DEFAULT_SWEEP_BATCH_SIZE. */
  batchSize?: number;
  /** Runs deleted, committed (metrics). */
  onDeleted?: (queue: string, runs: number) => void;
}

/**
 * The periodic sweep. Idle cost: one pass per interval, which reads the
 * queues with ended runs (a loose index scan) and runs one small transaction
 * per queue with a retention. A pass that finds a full batch keeps going,
 * pausing between batches as long as the last batch took, so a backlog of a
 * million runs is worked off at about half of one connection and never
 * crowds out dispatch (bench/src/retention-sweep.ts measures that).
 */
export class RetentionSweeper {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> = Promise.resolve();
  private stopped = false;
  private failing = false;
  private readonly intervalMs: number;
  private readonly batchSize: number;

  constructor(private readonly options: RetentionSweepOptions) {
    this.intervalMs = options.intervalMs ?? DEFAULT_SWEEP_INTERVAL_MS;
    this.batchSize = options.batchSize ?? DEFAULT_SWEEP_BATCH_SIZE;
    if (!Number.isInteger(this.intervalMs) || this.intervalMs < 1) throw new TypeError(`retention sweep interval must be a whole number of ms, 1 or more, got ${this.intervalMs}`);
    if (!Number.isInteger(this.batchSize) || this.batchSize < 1 || this.batchSize > 10_000) throw new TypeError(`retention sweep batch size must be an integer from 1 to 10000, got ${this.batchSize}`);
  }

  /** First pass after one interval: a fleet restarting at once does not sweep all at the same moment. */
  start(): void {
    this.schedule(this.intervalMs);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.running = this.passLogged().finally(() => this.schedule(this.intervalMs));
    }, ms);
    this.timer.unref();
  }

  private async passLogged(): Promise<void> {
    try {
      await this.pass();
      if (this.failing) this.options.logger.info("retention sweep recovered");
      this.failing = false;
    } catch (err) {
      // The first failure of a streak only: an outage must not flood the log.
      if (!this.failing) this.options.logger.warn("retention sweep failed; retrying next interval", { err });
      this.failing = true;
    }
  }

  /** One pass over every queue; returns the runs deleted (tests call it to sweep now). */
  async pass(): Promise<number> {
    let total = 0;
    for (const { queue, retentionSeconds } of await queuesWithEndedRuns(this.options.sql)) {
      const retention = retentionSeconds ?? this.options.defaultRetentionSeconds;
      if (retention === 0) continue;
      for (;;) {
        if (this.stopped) return total;
        const batch = await sweepBatch(this.options.sql, queue, retention, this.batchSize);
        // Another server holds the sweep: the work is its until the next interval.
        if (!batch.locked) return total;
        if (batch.deleted.runs > 0) this.deleted(queue, batch.deleted, batch.ms);
        total += batch.deleted.runs;
        if (batch.deleted.runs < this.batchSize) break;
        await new Promise((resolve) => setTimeout(resolve, Math.min(MAX_BATCH_PAUSE_MS, Math.ceil(batch.ms))));
      }
    }
    return total;
  }

  private deleted(queue: string, rows: DeletedRows, ms: number): void {
    this.options.onDeleted?.(queue, rows.runs);
    this.options.logger.info("retention sweep deleted ended runs", { queue, ...rows, lockMs: Math.round(ms) });
  }
}

/** DeleteRun: an ended run and everything it owns, now. */
export async function deleteRun(engine: Engine, runIdText: string): Promise<{ runId: string; historyEventsDeleted: number }> {
  const runId = uuid("run_id", runIdText);
  const result = await deleteEndedRun(engine.sql, runId);
  switch (result.outcome) {
    case "missing":
      throw new DexError("NOT_FOUND", `run ${runId} does not exist (never started, or already deleted by DeleteRun or retention)`);
    case "open":
      throw new DexError(
        "FAILED_PRECONDITION",
        `run ${runId} is ${result.status}: only an ended run can be deleted; cancel or terminate it first`,
      );
    case "open_children":
      throw new DexError(
        "FAILED_PRECONDITION",
        `run ${runId} has ${result.children} open child run${result.children === 1 ? "" : "s"}, which report to it when they end; ` +
          `delete it once they have ended`,
      );
    case "deleted":
      engine.observer.runsDeleted?.(result.taskQueue, "request", 1);
      engine.logger.info("run deleted", { runId, ...result.deleted });
      return { runId, historyEventsDeleted: result.deleted.historyEvents };
  }
}
