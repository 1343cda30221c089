/**
 * Transport benchmark behind docs/decisions/0001-grpc-transport.md: unary
 * dex.v1.WorkerService calls over gRPC (plaintext HTTP/2, loopback), for each
 * pairing of @grpc/grpc-js and @connectrpc/connect-node as server and client,
 * each side in its own process. Handlers answer canned messages, so this
 * measures the transport and its protobuf-es codec use, nothing else.
 *
 *   pnpm bench:transport [--seconds 3] [--concurrency 64]
 *   pnpm bench:transport --completions [--rounds 2]   (completions.ts: unary vs batch vs stream)
 *
 * Prints a Markdown table. Run it on a quiet machine, or note the load: the
 * client, the server and anything else running share the same cores.
 */
import { fork, type ChildProcess } from "node:child_process";
import { cpus, loadavg } from "node:os";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import {
  CompleteActivityTaskRequestSchema,
  CompleteActivityTaskResponseSchema,
  PollWorkflowTasksRequestSchema,
  PollWorkflowTasksResponseSchema,
} from "@dex/proto";
import {
  completeActivityTaskRequest,
  completeActivityTaskResponse,
  encodedSize,
  pollWorkflowTasksRequest,
  pollWorkflowTasksResponse,
} from "./messages.js";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import type { DescMessage, MessageShape } from "@bufbuild/protobuf";
import type { CaseResult, ClientDone, Impl, ServerReady } from "./protocol.js";

const { values } = parseArgs({
  options: {
    seconds: { type: "string", default: "3" },
    concurrency: { type: "string", default: "64" },
    completions: { type: "boolean", default: false },
    rounds: { type: "string", default: "2" },
  },
});
const seconds = Number(values.seconds);
const concurrency = Number(values.concurrency);
if (values.completions) {
  // Decision 0011: unary vs batch vs stream completion reporting (completions.ts).
  const { runCompletions } = await import("./completions.js");
  await runCompletions({ seconds, concurrency, rounds: Number(values.rounds) });
  process.exit(0);
}

const pairings: Array<{ server: Impl; client: Impl }> = [
  { server: "grpc-js", client: "grpc-js" },
  { server: "connect-node", client: "grpc-js" },
  { server: "grpc-js", client: "connect-node" },
  { server: "connect-node", client: "connect-node" },
];

const here = (file: string) => fileURLToPath(new URL(file, import.meta.url));

/** Resolves with the first IPC message of `child`, rejects if it exits first. */
function firstMessage<T>(child: ChildProcess, what: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const onExit = (code: number | null) => reject(new Error(`${what} exited (code ${code}) before reporting`));
    child.once("exit", onExit);
    child.once("message", (message) => {
      child.off("exit", onExit);
      resolve(message as T);
    });
  });
}

async function runPairing(server: Impl, client: Impl): Promise<CaseResult[]> {
  const serverProcess = fork(here("./server.ts"), [server]);
  try {
    const { port } = await firstMessage<ServerReady>(serverProcess, `${server} server`);
    const clientProcess = fork(here("./client.ts"), [client, String(port), String(seconds), String(concurrency)]);
    const { results } = await firstMessage<ClientDone>(clientProcess, `${client} client`);
    return results;
  } finally {
    const exited = new Promise((resolve) => serverProcess.once("exit", resolve));
    serverProcess.kill();
    await exited;
  }
}

/**
 * Encode + decode time of one message with protobuf-es in this process: the
 * floor under any transport here, since both use these codecs.
 */
function codecMicros<D extends DescMessage>(schema: D, message: MessageShape<D>): number {
  const once = () => fromBinary(schema, toBinary(schema, create(schema, message)));
  for (let i = 0; i < 200; i++) once();
  let n = 0;
  const start = performance.now();
  while (performance.now() - start < 500) {
    once();
    n++;
  }
  return ((performance.now() - start) * 1000) / n;
}

const fmt = (n: number, digits = 0) => n.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });
const load = () => loadavg().map((n) => n.toFixed(2)).join(" ");

console.log(`# dex transport benchmark, ${new Date().toISOString()}`);
console.log(`Node ${process.version}, ${cpus().length} × ${cpus()[0]?.model ?? "unknown CPU"}, load average at start: ${load()}`);
console.log(
  `${concurrency} calls in flight for calls/s; one call at a time for p50/p99; ${seconds} s each after 1.3 s of warm-up.`,
);
console.log(
  `CompleteActivityTask: request ${encodedSize(CompleteActivityTaskRequestSchema, completeActivityTaskRequest)} B, ` +
    `response ${encodedSize(CompleteActivityTaskResponseSchema, completeActivityTaskResponse)} B. ` +
    `PollWorkflowTasks: request ${encodedSize(PollWorkflowTasksRequestSchema, pollWorkflowTasksRequest)} B, ` +
    `response ${encodedSize(PollWorkflowTasksResponseSchema, pollWorkflowTasksResponse)} B.`,
);
console.log(
  `protobuf-es encode + decode in one process: CompleteActivityTask request ` +
    `${fmt(codecMicros(CompleteActivityTaskRequestSchema, completeActivityTaskRequest), 1)} µs, ` +
    `PollWorkflowTasks response ${fmt(codecMicros(PollWorkflowTasksResponseSchema, pollWorkflowTasksResponse), 1)} µs.`,
);
console.log();

const rows: string[] = [];
for (const { server, client } of pairings) {
  process.stderr.write(`${server} server + ${client} client ...\n`);
  const results = await runPairing(server, client);
  const cells = results.flatMap((r) => [fmt(r.callsPerSecond), fmt(r.p50, 2), fmt(r.p99, 2)]);
  const loads = results.map((r) => `${r.load[0].toFixed(1)}–${r.load[1].toFixed(1)}`).join(", ");
  rows.push(`| \`${server}\` | \`${client}\` | ${cells.join(" | ")} | ${loads} |`);
}

console.log("| server | client | CompleteActivityTask calls/s | p50 ms | p99 ms | PollWorkflowTasks calls/s | p50 ms | p99 ms | load (1 min) |");
console.log("|---|---|--:|--:|--:|--:|--:|--:|---|");
for (const row of rows) console.log(row);
console.log();
console.log(`Load average at end: ${load()}`);
