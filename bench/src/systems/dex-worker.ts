/**
 * A dex worker process of the bench: one or more SDK workers (workflow or
 * activity, one queue each), configured by BENCH_WORKER (JSON, see
 * WorkerProcessConfig). With `countBytes`, the workers connect through a
 * loopback TCP relay in this process that counts the bytes the server sends
 * to it: the wire size (HTTP/2 frames of gRPC messages) of everything the
 * workers receive, measured on the worker side without touching the SDK.
 * Answers {type: "stats"} IPC messages with those counts. BENCH_DEX_EAGER=0 turns
 * eager activity dispatch off in the workflow workers (the SDK's default is on),
 * for an A/B of it.
 */
import { createConnection, createServer, type Socket } from "node:net";
import { createActivityWorker, createConsoleLogger, createWorkflowWorker, type Worker } from "@dex/sdk";
import { activities, workflows } from "./dex-workload.js";

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
const started: Worker[] = config.workers.map((w) =>
  w.kind === "workflow"
    ? createWorkflowWorker({ address, taskQueue: w.queue, workflows, maxConcurrentTasks: w.concurrency, logger, eagerActivities })
    : createActivityWorker({ address, taskQueue: w.queue, activities, maxConcurrentActivities: w.concurrency, logger }),
);

process.on("message", (m: { type?: string }) => {
  if (m?.type === "stats") process.send?.({ type: "stats", bytesFromServer, bytesToServer });
});
process.stdin.on("end", () => process.exit(3));
process.stdin.resume();
const done = Promise.all(started.map((w) => w.run()));
process.stdout.write("bench worker ready\n");
await done;
process.exit(0);
