/**
 * A dex worker process of the bench: one or more SDK workers (workflow or
 * activity, one queue each), configured by BENCH_WORKER (JSON, see
 * WorkerProcessConfig). With `countBytes`, the workers connect through a
 * loopback TCP relay in this process that counts the bytes the server sends
 * to it: the wire size (HTTP/2 frames of gRPC messages) of everything the
 * workers receive, measured on the worker side without touching the SDK.
 * Answers {type: "stats"} IPC messages with those counts.
 *
 * Eager activity dispatch (the SDK's default) needs the activity workers in the
 * workflow worker's process; the scenarios start them in processes of their own.
 * For its A/B: BENCH_DEX_COLOCATE=1 runs, in each process with a workflow
 * worker, activity workers on every bench activity queue (the workflow worker's
 * concurrency each), and none in the activity-only processes (they start idle);
 * BENCH_DEX_EAGER=0 turns eager dispatch off in the workflow workers;
 * BENCH_DEX_WATCHDOG=0 their deadlock watchdog (decision 0014).
 *
 * Eager workflow start needs the client in the workflow worker's process: a
 * {type: "latency"} IPC message makes this process run the latency scenario's
 * loop itself (start, then await the result, one run at a time) with a client
 * on the workers' address, `eager` on or off, and answer the latencies
 * (scenarios/dex-latency.ts, BENCH_DEX_EAGER_START).
 */
import { createConnection, createServer, type Socket } from "node:net";
import { createActivityWorker, createClient, createConsoleLogger, createWorkflowWorker, type Worker } from "@dex/sdk";
import { ACTIVITY_QUEUES, activities, workflows } from "./dex-workload.js";

export interface WorkerProcessConfig {
  address: string;
  workers: Array<{ kind: "workflow" | "activity"; queue: string; concurrency: number }>;
  countBytes?: boolean;
}

const config = JSON.parse(process.env.BENCH_WORKER ?? "null") as WorkerProcessConfig | null;
if (!config) throw new Error("BENCH_WORKER is not set: this process is started by the bench");

let bytesFromServer = 0;
let bytesToServer = 0;

/** Relays loopback connections to the server, counting bytes each way. */
async function startRelay(upstream: string): Promise<string> {
  const [host, port] = [upstream.slice(0, upstream.lastIndexOf(":")), Number(upstream.slice(upstream.lastIndexOf(":") + 1))];
  const server = createServer((local: Socket) => {
    const remote = createConnection({ host, port });
    // No Nagle on either leg, like grpc-js's own sockets: otherwise small frames wait for delayed ACKs (~40 ms).
    local.setNoDelay(true);
    remote.setNoDelay(true);
    local.on("data", (chunk) => (bytesToServer += chunk.length));
    remote.on("data", (chunk) => (bytesFromServer += chunk.length));
    local.pipe(remote).pipe(local);
    local.on("error", () => remote.destroy());
    remote.on("error", () => local.destroy());
    local.on("close", () => remote.destroy());
    remote.on("close", () => local.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  if (!address || typeof address === "string") throw new Error("relay has no port");
  server.unref();
  return `127.0.0.1:${address.port}`;
}

const address = config.countBytes ? await startRelay(config.address) : config.address;
const logger = createConsoleLogger({ level: "warn", prefix: `[bench-worker ${process.pid}]` });
const eagerActivities = process.env.BENCH_DEX_EAGER !== "0";
if (process.env.BENCH_DEX_COLOCATE === "1") {
  const workflow = config.workers.find((w) => w.kind === "workflow");
  config.workers = config.workers.filter((w) => w.kind === "workflow");
  if (workflow) config.workers.push(...ACTIVITY_QUEUES.map((queue) => ({ kind: "activity" as const, queue, concurrency: workflow.concurrency })));
}
const started: Worker[] = config.workers.map((w) =>
  w.kind === "workflow"
    ? createWorkflowWorker({ address, taskQueue: w.queue, workflows, maxConcurrentTasks: w.concurrency, logger, eagerActivities, ...(process.env.BENCH_DEX_WATCHDOG === "0" ? { deadlockDetectionTimeout: 0 } : {}) })
    : createActivityWorker({ address, taskQueue: w.queue, activities, maxConcurrentActivities: w.concurrency, logger }),
);

/**
 * The latency loop, run here so that a start can hand its first task to this process's workflow
 * worker. `eager`: "ab" alternates eager on and off run by run, so both sides meet the same load.
 */
interface LatencyRequest {
  type: "latency";
  queue: string;
  runs: number;
  warmUp: number;
  eager: "on" | "off" | "ab";
}

async function latencyLoop(m: LatencyRequest): Promise<{ on: number[]; off: number[] }> {
  const client = createClient({ address });
  try {
    const once = async (id: string, i: number, eager: boolean) =>
      (await client.start("oneStep", { instanceId: id, input: i, taskQueue: m.queue, eager })).result();
    const eagerFor = (i: number) => (m.eager === "ab" ? i % 2 === 0 : m.eager === "on");
    for (let i = 0; i < m.warmUp; i++) await once(`warm-${i}`, i, eagerFor(i));
    const out = { on: [] as number[], off: [] as number[] };
    for (let i = 0; i < m.runs; i++) {
      const eager = eagerFor(i);
      const t0 = performance.now();
      await once(`lat-${i}`, i, eager);
      (eager ? out.on : out.off).push(performance.now() - t0);
    }
    return out;
  } finally {
    client.close();
  }
}

process.on("message", (m: { type?: string }) => {
  if (m?.type === "stats") process.send?.({ type: "stats", bytesFromServer, bytesToServer });
  if (m?.type === "latency") {
    latencyLoop(m as LatencyRequest).then(
      (latencies) => process.send?.({ type: "latency", ...latencies }),
      (err: unknown) => process.send?.({ type: "latency", error: String(err) }),
    );
  }
});
process.stdin.on("end", () => process.exit(3));
process.stdin.resume();
// A process left without workers (BENCH_DEX_COLOCATE) idles until the bench stops it.
const done = started.length > 0 ? Promise.all(started.map((w) => w.run())) : new Promise<never>(() => {});
process.stdout.write("bench worker ready\n");
await done;
process.exit(0);
