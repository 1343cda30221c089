/**
 * Workflow code that never yields (a busy loop) blocks the worker's event
 * loop, so no timer of that thread can stop it. The watchdog is a second
 * thread that notices and stops the process (deadlock-watchdog-thread.ts,
 * decision 0014).
 *
 * Activations (replay + the new events, no I/O inside) run one at a time, so
 * the activation in progress is the one whose code is stuck, and the watchdog
 * can name its run. Before each, the main thread hands the watchdog the
 * FailWorkflowTask request it would send; the watchdog sends it only if the
 * main thread stops answering its pings.
 */
import { createRequire } from "node:module";
import { Worker as Thread } from "node:worker_threads";
import { create, toBinary } from "@bufbuild/protobuf";
import { FailureKind, FailWorkflowTaskRequestSchema, WorkflowTaskFailedCause, type WorkflowTask } from "@dex/proto";
import type { ResolvedConnection } from "../client/environment.js";
import { deadlockWatchdogThread, type WatchdogMessage, type WatchdogThreadData } from "./deadlock-watchdog-thread.js";

export interface ActivationGate {
  /** Runs one activation of `task`'s run: after the previous one ended, watched if the watchdog is on. */
  run<T>(task: WorkflowTask, activation: () => Promise<T>): Promise<T>;
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

export function createActivationGate(options: { timeoutMs: number; connection: ResolvedConnection }): ActivationGate {
  let tail: Promise<unknown> = Promise.resolve();
  // Started with the first activation: a worker that is created and never started costs no thread.
  let thread: Thread | undefined;
  let closed = false;
  return {
    run<T>(task: WorkflowTask, activation: () => Promise<T>): Promise<T> {
      const watched = async (): Promise<T> => {
        if (options.timeoutMs <= 0 || closed) return activation();
        thread ??= startThread(options.timeoutMs, options.connection);
        thread.postMessage({ kind: "start", runId: task.runId, workflowName: task.workflowName, attempt: task.attempt, failRequest: failRequest(task, options.timeoutMs) } satisfies WatchdogMessage);
        try {
          return await activation();
        } finally {
          thread.postMessage({ kind: "end" } satisfies WatchdogMessage);
        }
      };
      const result = tail.then(watched, watched);
      tail = result.catch(() => {});
      return result;
    },
    async close() {
      closed = true;
      await thread?.terminate();
    },
  };
}

function startThread(timeoutMs: number, connection: ResolvedConnection): Thread {
  const workerData: WatchdogThreadData = {
    timeoutMs,
    grpcPath: createRequire(import.meta.url).resolve("@grpc/grpc-js"),
    target: connection.target.target,
    tls: connection.tls as WatchdogThreadData["tls"],
    apiKey: connection.apiKey,
  };
  const thread = new Thread(`(${deadlockWatchdogThread.toString()})()`, { eval: true, workerData });
  thread.on("message", () => thread.postMessage({ kind: "pong" } satisfies WatchdogMessage));
  // The watchdog never keeps the process alive on its own.
  thread.unref();
  return thread;
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
