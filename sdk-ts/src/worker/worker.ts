/**
 * The poll loop shared by workflow and activity workers: one queue, batch
 * polls sized to the free slots, a concurrency limit, back-off while the
 * server is away (the loss and the reconnection logged once per outage), and
 * graceful shutdown.
 */
import { hostname } from "node:os";
import { randomBytes } from "node:crypto";
import { DexError } from "@dex/proto";
import { backoffDelay, sleep } from "../common/backoff.js";
import type { Logger } from "../common/logger.js";
import { isTransient } from "../client/retry.js";

export interface Worker {
  /** Starts polling; returns at once. */
  start(): void;
  /** Stops polling (cancelling the parked poll), finishes in-flight tasks, closes the connection. */
  shutdown(): Promise<void>;
  /** Resolves once the worker has shut down. */
  readonly done: Promise<void>;
  /** Starts, shuts down on SIGINT/SIGTERM, and resolves when done. */
  run(): Promise<void>;
}

export interface PollLoopOptions<T> {
  /** "workflow" or "activity", for logs. */
  kind: string;
  address: string;
  taskQueue: string;
  maxConcurrent: number;
  logger: Logger;
  /** One poll, parked on the server for at most `waitMs`. */
  poll(maxTasks: number, signal: AbortSignal, waitMs: number): Promise<T[]>;
  handle(task: T): Promise<void>;
  /**
   * Free slots the next poll leaves for tasks handed over outside a poll (eager dispatch:
   * reserve/accept); default none. Called with the free slots; a parked poll holds what it asked
   * for, so without this no slot would be left to reserve while it waits.
   */
  holdBack?(free: number): number;
  /** Waits before the next poll after a failure; ends early when the connection comes up (Connection.pause). */
  pause(ms: number, signal: AbortSignal): Promise<void>;
  close(): void;
}

/**
 * The most tasks one poll may ask for (PollWorkflowTasksRequest / PollActivityTasksRequest max_tasks:
 * at most 100). A worker with more free slots asks for 100 and polls again for the rest; asking for
 * more is INVALID_ARGUMENT, which a worker would retry for ever.
 */
export const MAX_TASKS_PER_POLL = 100;

/** How long a poll parks on the server; shutdown cancels it, so this only bounds idle round trips. */
export const POLL_WAIT_MS = 20_000;
/**
 * The first poll after an outage parks this briefly: its answer, not a connection, is what says
 * the server serves again, and a 20 s park would hold back the "reconnected" line (and the
 * measured outage) by 20 s on an idle queue.
 */
const PROBE_WAIT_MS = 1;
/**
 * Back-off between failed polls, jittered. While the server is away (a transient code) it stays
 * at most 1 s, and the wait ends as soon as the connection is back (Connection.pause), so a worker
 * resumes within a second of its server's return. Other failures (a missing queue, a refused key)
 * need someone to act: up to 10 s, so a misconfigured worker does not hammer the server.
 */
const OUTAGE_BACKOFF = { initialMs: 100, maxMs: 1_000 };
const ERROR_BACKOFF = { initialMs: 100, maxMs: 10_000 };

export function defaultIdentity(): string {
  return `${hostname()}:${process.pid}:${randomBytes(4).toString("hex")}`;
}

/**
 * A polling worker that also runs tasks handed over outside its polls (eager activity dispatch,
 * eager-activities.ts): slots are reserved first, so polls and handed-over tasks together never
 * run more than maxConcurrent tasks at once.
 */
export interface PollingWorker<T> extends Worker {
  /** Reserves up to `want` free slots (0 once shutting down, or none free); returns how many. */
  reserve(want: number): number;
  /** Gives back `count` reserved slots that no task took. */
  release(count: number): void;
  /** Runs tasks handed over outside a poll, one in each slot reserved for it, like polled tasks. */
  accept(tasks: T[]): void;
}

export function createPollingWorker<T>(options: PollLoopOptions<T>): PollingWorker<T> {
  const { logger, maxConcurrent } = options;
  const stop = new AbortController();
  const inFlight = new Set<Promise<void>>();
  /** Slots reserved for tasks to be handed over (reserve), and the slots the outstanding poll asked for. */
  let reserved = 0;
  let asked = 0;
  let wakeSlotWaiter: (() => void) | undefined;
  let started = false;
  let closed = false;
  let resolveDone!: () => void;
  const done = new Promise<void>((resolve) => (resolveDone = resolve));
  const where = `${options.kind} queue "${options.taskQueue}" at ${options.address}`;

  function finish(): void {
    if (closed) return;
    closed = true;
    options.close();
    resolveDone();
  }

  function run(task: T): void {
    const running: Promise<void> = options
      .handle(task)
      .catch((err: unknown) => logger.error(`unexpected error handling a ${options.kind} task`, { error: String(err) }))
      .finally(() => {
        inFlight.delete(running);
        wakeSlotWaiter?.();
        wakeSlotWaiter = undefined;
      });
    inFlight.add(running);
  }

  async function loop(): Promise<void> {
    let failures = 0;
    let outageSince: number | undefined;
    let connected = false;
    let lastError = "";
    while (!stop.signal.aborted) {
      const free = maxConcurrent - inFlight.size - reserved;
      const ask = Math.min(MAX_TASKS_PER_POLL, free - Math.min(options.holdBack?.(free) ?? 0, free - 1));
      if (free <= 0) {
        await new Promise<void>((resolve) => (wakeSlotWaiter = resolve));
        continue;
      }
      let tasks: T[];
      try {
        asked = ask;
        tasks = await options.poll(ask, stop.signal, outageSince === undefined ? POLL_WAIT_MS : PROBE_WAIT_MS);
        if (outageSince !== undefined) {
          const seconds = ((Date.now() - outageSince) / 1_000).toFixed(1);
          logger.info(`${connected ? "reconnected" : "connected"} to ${options.address} after ${seconds} s; polling ${where} again`);
        } else if (lastError) {
          logger.info(`polling ${where} again`);
        }
        connected = true;
        failures = 0;
        outageSince = undefined;
        lastError = "";
      } catch (err) {
        asked = 0;
        if (stop.signal.aborted) break;
        failures++;
        const error = DexError.from(err);
        const transient = isTransient(error);
        if (transient) {
          // Once per outage, not once per failed poll: a restart is one event in the log.
          if (outageSince === undefined) {
            logger.warn(`${connected ? "lost the dex server" : "cannot reach the dex server"} for ${where} (${error.code}: ${outageReason(error.message)}); polling again as soon as it is back`);
          }
          outageSince ??= Date.now();
        } else if (error.message !== lastError) {
          logger.error(`polling ${where} failed: ${error.code}: ${error.message}`);
          lastError = error.message;
        }
        const delay = backoffDelay(failures, transient ? OUTAGE_BACKOFF : ERROR_BACKOFF);
        logger.debug(`poll failed (${error.code}), retry ${failures} in at most ${Math.round(delay)} ms`);
        if (transient) await options.pause(delay, stop.signal);
        else await sleep(delay, stop.signal);
        continue;
      }
      asked = 0;
      for (const task of tasks) run(task);
      // Let the tasks just handed out run up to their first I/O before the next poll: setting up
      // a gRPC call takes a few hundred microseconds, which otherwise sits in front of every task
      // (measured: a no-op activity 0.5 -> 0.1 ms, a workflow activation 0.4 -> 0.1 ms). A few
      // turns of the event loop: a workflow activation drains its microtasks over several.
      if (tasks.length > 0) for (let turn = 0; turn < 3 && !stop.signal.aborted; turn++) await new Promise<void>((r) => setImmediate(r));
    }
    // Tasks handed over while shutting down still run: they are leased to this worker.
    while (inFlight.size > 0 || reserved > 0) {
      await new Promise<void>((resolve) => (wakeSlotWaiter = resolve));
    }
  }

  const worker: PollingWorker<T> = {
    done,
    reserve(want) {
      if (stop.signal.aborted || !started) return 0;
      const n = Math.max(0, Math.min(want, maxConcurrent - inFlight.size - reserved - asked));
      reserved += n;
      return n;
    },
    release(count) {
      reserved -= count;
      wakeSlotWaiter?.();
      wakeSlotWaiter = undefined;
    },
    accept(tasks) {
      for (const task of tasks) {
        reserved--;
        run(task);
      }
    },
    start() {
      if (started || stop.signal.aborted) return;
      started = true;
      logger.info(`${options.kind} worker polling ${where}`);
      loop()
        .catch((err: unknown) => logger.error(`${options.kind} worker stopped unexpectedly`, { error: String(err) }))
        .finally(finish);
    },
    async shutdown() {
      stop.abort();
      wakeSlotWaiter?.();
      if (!started) finish();
      await done;
    },
    async run() {
      let signals = 0;
      const onSignal = (signal: NodeJS.Signals) => {
        signals++;
        if (signals > 1) {
          logger.warn(`${signal} again: exiting without waiting for in-flight tasks`);
          process.exit(130);
        }
        logger.info(`${signal}: finishing in-flight tasks (send it again to exit at once)`);
        void worker.shutdown();
      };
      process.on("SIGINT", onSignal);
      process.on("SIGTERM", onSignal);
      try {
        worker.start();
        await done;
      } finally {
        process.off("SIGINT", onSignal);
        process.off("SIGTERM", onSignal);
      }
    },
  };
  return worker;
}

/**
 * The cause inside grpc-js's wording of a failed connection ("round_robin: No connection
 * established. Last error: No connection established. Last error: Error: connect ECONNREFUSED
 * 127.0.0.1:7460. Resolution note: ") is the last "Last error"; other messages pass unchanged.
 */
export function outageReason(message: string): string {
  const at = message.lastIndexOf("Last error: ");
  if (at < 0) return message;
  return message.slice(at + "Last error: ".length).replace(/^Error: /, "").replace(/\.? Resolution note:.*$/s, "").trim() || message;
}
