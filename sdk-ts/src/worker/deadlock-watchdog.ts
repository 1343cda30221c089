/**
 * Workflow code that never yields (a busy loop) blocks the worker's event
 * loop, so no timer of that thread can stop it. The watchdog is a second
 * thread that notices and stops the process (deadlock-watchdog-thread.ts,
 * decision 0014).
 *
 * Activations (replay + the new events, no I/O inside) run one at a time, so
 * the activation in progress is the one whose code is stuck, and the watchdog
 * can name its run. Before each, the main thread writes for the watchdog the
 * FailWorkflowTask request it would send (shared memory, no message); the watchdog sends it only if the
 * main thread stops answering its pings.
 *
 * Query replays and query handlers (query-tasks.ts) run workflow code too, so
 * they pass through the same gate: otherwise a busy loop in one would either
 * go unnoticed (no activation in flight: the worker hangs) or be blamed on
 * the workflow task whose activation happened to be marked running. A query
 * has no task token, so for one the watchdog only writes its stderr line,
 * naming the run and the query, and stops the process.
 */
import { createRequire } from "node:module";
import { Worker as Thread } from "node:worker_threads";
import { create, toBinary } from "@bufbuild/protobuf";
import { FailureKind, FailWorkflowTaskRequestSchema, WorkflowTaskFailedCause, type QueryTask, type WorkflowTask } from "@dex/proto";
import type { ResolvedConnection } from "../client/environment.js";
import type { Logger } from "../common/logger.js";
import { deadlockWatchdogSource, WATCHDOG_HEADER, type WatchdogThreadData } from "./deadlock-watchdog-thread.js";

export interface ActivationGate {
  /** Runs one activation of `task`'s run: after the previous one ended, watched if the watchdog is on. */
  run<T>(task: WorkflowTask, activation: () => Promise<T>): Promise<T>;
  /** Runs a query's replay or handler (workflow code) the same way, in the same line. */
  runQuery<T>(task: QueryTask, activation: () => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

/** The failure the watchdog reports for a run whose code did not yield. */
export function deadlockMessage(task: Pick<WorkflowTask, "runId" | "workflowName">, timeoutMs: number): string {
  return (
    `workflow code of run ${task.runId} (workflow "${task.workflowName}") did not yield for more than ${timeoutMs / 1000} s ` +
    "(a busy loop, or a long synchronous computation): the worker process running it was stopped. " +
    "Workflow code must only orchestrate; move heavy computation into an activity, fix the loop, and deploy."
  );
}

export function createActivationGate(options: { timeoutMs: number; connection: ResolvedConnection; logger: Logger }): ActivationGate {
  let tail: Promise<unknown> = Promise.resolve();
  // Started with the first activation: a worker that is created and never started costs no thread.
  let watchdog: Watchdog | undefined;
  let closed = false;
  const enqueue = <T>(subject: () => WatchedSubject, activation: () => Promise<T>): Promise<T> => {
    const watched = async (): Promise<T> => {
      if (options.timeoutMs <= 0 || closed) return activation();
      watchdog ??= startWatchdog(options.timeoutMs, options.connection, options.logger);
      watchdog.begin(subject());
      try {
        return await activation();
      } finally {
        watchdog.end();
      }
    };
    const result = tail.then(watched, watched);
    tail = result.catch(() => {});
    return result;
  };
  return {
    run: (task, activation) =>
      enqueue(() => ({ label: `run ${task.runId} (workflow "${task.workflowName}", task attempt ${task.attempt})`, request: failRequest(task, options.timeoutMs), query: false }), activation),
    runQuery: (task, activation) =>
      enqueue(() => ({ label: `run ${task.runId} (workflow "${task.workflowName}") answering query "${task.queryName}"`, request: undefined, query: true }), activation),
    async close() {
      closed = true;
      await watchdog?.thread.terminate();
    },
  };
}

/** What the watchdog reports if the code now running does not yield: the FailWorkflowTask request, if any. */
interface WatchedSubject {
  label: string;
  request: Uint8Array | undefined;
  query: boolean;
}

interface Watchdog {
  readonly thread: Thread;
  begin(subject: WatchedSubject): void;
  end(): void;
}

/** Request and label together: a token, ids of at most 255 characters and the message fit many times. */
const SHARED_BYTES = 16 * 1024;

function startWatchdog(timeoutMs: number, connection: ResolvedConnection, logger: Logger): Watchdog {
  const shared = new SharedArrayBuffer(WATCHDOG_HEADER * 4 + SHARED_BYTES);
  const state = new Int32Array(shared, 0, WATCHDOG_HEADER);
  const bytes = new Uint8Array(shared, WATCHDOG_HEADER * 4);
  const encoder = new TextEncoder();
  const workerData: WatchdogThreadData = {
    timeoutMs,
    shared,
    grpcPath: createRequire(import.meta.url).resolve("@grpc/grpc-js"),
    target: connection.target.target,
    tls: connection.tls as WatchdogThreadData["tls"],
    apiKey: connection.apiKey,
  };
  const thread = new Thread(deadlockWatchdogSource, { eval: true, workerData });
  // A ping: answered only when this thread's event loop is free, which is the whole point.
  thread.on("message", () => thread.postMessage(0));
  // Without a handler, an error of the thread would be thrown in the worker's process.
  thread.on("error", (err) => logger.error(`the deadlock watchdog thread failed; workflow code that never yields will not be detected: ${err.message}`));
  // The watchdog never keeps the process alive on its own.
  thread.unref();
  let counter = 0;
  return {
    thread,
    begin({ label, request, query }) {
      const length = request && request.length <= SHARED_BYTES / 2 ? request.length : 0;
      if (request && length > 0) bytes.set(request);
      const written = encoder.encodeInto(label, bytes.subarray(length)).written;
      Atomics.store(state, 1, length);
      Atomics.store(state, 2, written);
      Atomics.store(state, 3, query ? 1 : 0);
      // Odd: an activation runs. Stored last, so the thread never sees it before its request.
      Atomics.store(state, 0, ++counter);
    },
    end() {
      Atomics.store(state, 0, ++counter);
    },
  };
}

function failRequest(task: WorkflowTask, timeoutMs: number): Uint8Array {
  return toBinary(
    FailWorkflowTaskRequestSchema,
    create(FailWorkflowTaskRequestSchema, {
      taskToken: task.taskToken,
      cause: WorkflowTaskFailedCause.WORKER_ERROR,
      failure: { kind: FailureKind.APPLICATION, type: "WorkflowTaskDeadlock", message: deadlockMessage(task, timeoutMs) },
    }),
  );
}
