/**
 * Benchmark client process: calls a benchmark server's WorkerService with
 * either @grpc/grpc-js (through dex's own `createServiceClient`) or
 * @connectrpc/connect-node's gRPC transport, and reports the results to the
 * parent over IPC.
 *
 *   node --import tsx bench/transport/client.ts grpc-js|connect-node PORT SECONDS CONCURRENCY
 */
import { loadavg } from "node:os";
import { performance } from "node:perf_hooks";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { WorkerService, createServiceClient } from "@dex/proto";
import * as grpc from "@grpc/grpc-js";
import { completeActivityTaskRequest, pollWorkflowTasksRequest } from "./messages.js";
import { cases, isImpl, type Case, type CaseResult, type ClientDone } from "./protocol.js";

const [impl, portArg, secondsArg, concurrencyArg] = process.argv.slice(2);
if (!isImpl(impl)) throw new Error(`usage: client.ts grpc-js|connect-node PORT SECONDS CONCURRENCY (got ${impl})`);
const port = Number(portArg);
const seconds = Number(secondsArg ?? 3);
const concurrency = Number(concurrencyArg ?? 64);

/** The two calls, each returning how many tasks came back (a cheap check that the answer was decoded). */
type Calls = Record<Case, () => Promise<number>>;

function grpcJsCalls(): { calls: Calls; close: () => void } {
  const channel = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const client = createServiceClient(WorkerService, channel);
  return {
    calls: {
      "complete-activity-task": async () => (await client.completeActivityTask(completeActivityTaskRequest), 0),
      "poll-workflow-tasks": async () => (await client.pollWorkflowTasks(pollWorkflowTasksRequest)).tasks.length,
    },
    close: () => channel.close(),
  };
}

function connectNodeCalls(): { calls: Calls; close: () => void } {
  // No compression, as on the server side: see server.ts.
  const transport = createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}`, acceptCompression: [] });
  const client = createClient(WorkerService, transport);
  return {
    calls: {
      "complete-activity-task": async () => (await client.completeActivityTask(completeActivityTaskRequest), 0),
      "poll-workflow-tasks": async () => (await client.pollWorkflowTasks(pollWorkflowTasksRequest)).tasks.length,
    },
    close: () => {},
  };
}

/** Runs `concurrency` loops of back-to-back calls for `ms`; returns completed calls per second. */
async function throughput(call: () => Promise<number>, ms: number): Promise<number> {
  const start = performance.now();
  const end = start + ms;
  let done = 0;
  const loop = async () => {
    while (performance.now() < end) {
      await call();
      done++;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, loop));
  return done / ((performance.now() - start) / 1000);
}

/** Makes one call at a time for `ms`; returns each call's latency in ms, sorted. */
async function sequential(call: () => Promise<number>, ms: number): Promise<number[]> {
  const end = performance.now() + ms;
  const latencies: number[] = [];
  while (performance.now() < end) {
    const t = performance.now();
    await call();
    latencies.push(performance.now() - t);
  }
  return latencies.sort((a, b) => a - b);
}

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;
}

const { calls, close } = impl === "grpc-js" ? grpcJsCalls() : connectNodeCalls();
const expectedTasks: Record<Case, number> = { "complete-activity-task": 0, "poll-workflow-tasks": 10 };
const results: CaseResult[] = [];
for (const name of cases) {
  const call = calls[name];
  const got = await call();
  if (got !== expectedTasks[name]) throw new Error(`${name}: expected ${expectedTasks[name]} tasks, got ${got}`);
  const loadStart = loadavg()[0] ?? 0;
  // Warm up both the JIT and the connection, in both shapes of traffic.
  await throughput(call, 1000);
  await sequential(call, 300);
  const callsPerSecond = await throughput(call, seconds * 1000);
  const latencies = await sequential(call, seconds * 1000);
  results.push({
    case: name,
    callsPerSecond,
    p50: quantile(latencies, 0.5),
    p99: quantile(latencies, 0.99),
    sequentialCalls: latencies.length,
    load: [loadStart, loadavg()[0] ?? 0],
  });
}
close();
const done: ClientDone = { type: "done", results };
process.send?.(done, () => process.exit(0));
