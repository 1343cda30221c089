/**
 * Completion-reporting benchmark behind docs/decisions/0011-batched-completions.md:
 * what reporting an activity completion costs, per completion, as
 *   (a) unary   one CompleteActivityTask call per completion (before 0011),
 *   (b) batch   ReportActivityTasks calls, group-commit style: a call goes out at once when
 *               none is in flight; what arrives during a flight goes in the next call,
 *   (c) stream  one long-lived bidi stream per worker, one ActivityTaskReport message per
 *               completion and one ActivityTaskReportResult back (answers in order).
 * Server and client are separate Node processes on loopback (grpc-js on both sides, protobuf-es
 * codecs, the real dex.v1 messages); the server answers at once, so this measures the transport
 * and codec cost only. CPU per completion (user+system of both processes, process.cpuUsage) is
 * the steady figure on a shared machine; rates move with the load.
 *
 *   pnpm bench:transport --completions [--seconds 3] [--concurrency 64] [--rounds 2]
 */
import { fork } from "node:child_process";
import { loadavg } from "node:os";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { create, fromBinary, toBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import {
  ActivityTaskReportResultSchema,
  ActivityTaskReportSchema,
  type ActivityTaskReport,
  type ActivityTaskReportResult,
  CompleteActivityTaskRequestSchema,
  CompleteActivityTaskResponseSchema,
  ReportActivityTasksRequestSchema,
  ReportActivityTasksResponseSchema,
} from "@dex/proto";
import * as grpc from "@grpc/grpc-js";
import { completeActivityTaskRequest } from "./messages.js";

const MODES = ["unary", "batch", "stream"] as const;
type Mode = (typeof MODES)[number];
const MAX_BATCH = 100;

const ser = <D extends DescMessage>(schema: D) => (m: MessageShape<D>) => {
  const b = toBinary(schema, m);
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength);
};
const de = <D extends DescMessage>(schema: D) => (b: Buffer) => fromBinary(schema, b);

const UNARY = {
  path: "/dex.v1.WorkerService/CompleteActivityTask",
  requestStream: false,
  responseStream: false,
  requestSerialize: ser(CompleteActivityTaskRequestSchema),
  requestDeserialize: de(CompleteActivityTaskRequestSchema),
  responseSerialize: ser(CompleteActivityTaskResponseSchema),
  responseDeserialize: de(CompleteActivityTaskResponseSchema),
};
const BATCH = {
  path: "/dex.v1.WorkerService/ReportActivityTasks",
  requestStream: false,
  responseStream: false,
  requestSerialize: ser(ReportActivityTasksRequestSchema),
  requestDeserialize: de(ReportActivityTasksRequestSchema),
  responseSerialize: ser(ReportActivityTasksResponseSchema),
  responseDeserialize: de(ReportActivityTasksResponseSchema),
};
/** Not part of dex.v1: the stream alternative, measured only here. */
const STREAM = {
  path: "/bench.Completions/Report",
  requestStream: true,
  responseStream: true,
  requestSerialize: ser(ActivityTaskReportSchema),
  requestDeserialize: de(ActivityTaskReportSchema),
  responseSerialize: ser(ActivityTaskReportResultSchema),
  responseDeserialize: de(ActivityTaskReportResultSchema),
};

const OK = create(ActivityTaskReportResultSchema, { code: 0 });
const report = create(ActivityTaskReportSchema, { outcome: { case: "complete", value: completeActivityTaskRequest } });

// ---------------------------------------------------------------- server process
async function serve(): Promise<void> {
  const server = new grpc.Server();
  server.addService({ unary: UNARY, batch: BATCH } as unknown as grpc.ServiceDefinition, {
    unary: (_call: unknown, cb: grpc.sendUnaryData<unknown>) => cb(null, create(CompleteActivityTaskResponseSchema, {})),
    batch: (call: grpc.ServerUnaryCall<MessageShape<typeof ReportActivityTasksRequestSchema>, unknown>, cb: grpc.sendUnaryData<unknown>) =>
      cb(null, create(ReportActivityTasksResponseSchema, { results: call.request.items.map(() => OK) })),
  });
  server.addService({ stream: STREAM } as unknown as grpc.ServiceDefinition, {
    stream: (call: grpc.ServerDuplexStream<ActivityTaskReport, ActivityTaskReportResult>) => {
      call.on("data", () => call.write(OK));
      call.on("end", () => call.end());
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  process.send!({ type: "ready", port });
  process.on("message", (m: { type: string }) => {
    if (m.type === "cpu") process.send!({ type: "cpu", usage: process.cpuUsage() });
  });
  process.on("disconnect", () => process.exit(0));
}

// ---------------------------------------------------------------- client process
type Reporter = { report(): Promise<void>; close(): void };

function reporter(mode: Mode, port: number): Reporter {
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const close = () => client.close();
  if (mode === "unary") {
    return {
      report: () =>
        new Promise((resolve, reject) =>
          client.makeUnaryRequest(UNARY.path, UNARY.requestSerialize, UNARY.responseDeserialize, completeActivityTaskRequest, (err) =>
            err ? reject(err) : resolve(),
          ),
        ),
      close,
    };
  }
  if (mode === "batch") {
    let queued: Array<() => void> = [];
    let inFlight = false;
    const flush = () => {
      if (inFlight || queued.length === 0) return;
      const batch = queued.splice(0, MAX_BATCH);
      inFlight = true;
      const request = create(ReportActivityTasksRequestSchema, { items: batch.map(() => report) });
      client.makeUnaryRequest(BATCH.path, BATCH.requestSerialize, BATCH.responseDeserialize, request, (err, res) => {
        inFlight = false;
        if (err || res!.results.length !== batch.length) throw err ?? new Error("short answer");
        for (const done of batch) done();
        flush();
      });
    };
    return {
      report: () =>
        new Promise<void>((resolve) => {
          queued.push(resolve);
          // After the other completions of this event-loop turn, as the SDK's batcher does.
          if (queued.length === 1) queueMicrotask(flush);
        }),
      close,
    };
  }
  const call = client.makeBidiStreamRequest(STREAM.path, STREAM.requestSerialize, STREAM.responseDeserialize);
  const waiting: Array<() => void> = [];
  call.on("data", () => waiting.shift()!());
  call.on("error", () => {});
  return {
    report: () =>
      new Promise<void>((resolve) => {
        waiting.push(resolve);
        call.write(report);
      }),
    close: () => {
      call.end();
      close();
    },
  };
}

async function drive(): Promise<void> {
  const [mode, portArg, secondsArg, concurrencyArg] = process.argv.slice(3);
  const seconds = Number(secondsArg);
  const concurrency = Number(concurrencyArg);
  const r = reporter(mode as Mode, Number(portArg));
  const serverCpu = () =>
    new Promise<NodeJS.CpuUsage>((resolve) => {
      process.once("message", (m: { usage: NodeJS.CpuUsage }) => resolve(m.usage));
      process.send!({ type: "server-cpu" });
    });
  const cpuMs = (u: NodeJS.CpuUsage) => (u.user + u.system) / 1000;
  async function loaded(ms: number) {
    let done = 0;
    const until = performance.now() + ms;
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (performance.now() < until) {
          await r.report();
          done++;
        }
      }),
    );
    return done;
  }
  await loaded(1_300); // warm-up
  const s0 = await serverCpu();
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const n = await loaded(seconds * 1_000);
  const elapsed = performance.now() - t0;
  const c1 = process.cpuUsage(c0);
  const s1 = await serverCpu();
  const clientUs = (cpuMs(c1) * 1000) / n;
  const serverUs = ((cpuMs(s1) - cpuMs(s0)) * 1000) / n;
  // Lone completions: one at a time.
  const lat: number[] = [];
  const until = performance.now() + seconds * 1_000;
  while (performance.now() < until) {
    const t = performance.now();
    await r.report();
    lat.push(performance.now() - t);
  }
  lat.sort((a, b) => a - b);
  const q = (p: number) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))]!;
  r.close();
  process.send!({ type: "done", result: { perSecond: (n * 1000) / elapsed, clientUs, serverUs, p50: q(0.5), p99: q(0.99) } });
}

// ---------------------------------------------------------------- parent
type Result = { perSecond: number; clientUs: number; serverUs: number; p50: number; p99: number };

async function once(mode: Mode, seconds: number, concurrency: number): Promise<Result> {
  const self = fileURLToPath(import.meta.url);
  const server = fork(self, ["--role", "server"]);
  try {
    const port = await new Promise<number>((resolve) => server.once("message", (m: { port: number }) => resolve(m.port)));
    const client = fork(self, ["--role", "client", mode, String(port), String(seconds), String(concurrency)]);
    return await new Promise<Result>((resolve, reject) => {
      client.on("exit", (code) => code && reject(new Error(`client exited ${code}`)));
      client.on("message", (m: { type: string; result?: Result }) => {
        if (m.type === "server-cpu") {
          server.once("message", (r: { usage: NodeJS.CpuUsage }) => client.send({ usage: r.usage }));
          server.send({ type: "cpu" });
        } else if (m.type === "done") resolve(m.result!);
      });
    });
  } finally {
    server.kill();
  }
}

export async function runCompletions(options: { seconds: number; concurrency: number; rounds: number }): Promise<void> {
  const fmt = (n: number, d = 0) => n.toLocaleString("en-US", { maximumFractionDigits: d, minimumFractionDigits: d });
  console.log(`# completion reporting, ${new Date().toISOString()}, Node ${process.version}, load ${loadavg()[0]!.toFixed(2)}`);
  console.log(`${options.concurrency} completions in flight for ${options.seconds} s (after 1.3 s warm-up); then one at a time for p50/p99.`);
  console.log();
  console.log("| round | mode | completions/s | client CPU µs/completion | server CPU µs/completion | total µs | lone p50 ms | lone p99 ms | load |");
  console.log("|---|---|--:|--:|--:|--:|--:|--:|--:|");
  for (let round = 1; round <= options.rounds; round++) {
    // Interleaved: each round runs every mode once, so a change in the machine's load hits all of them.
    for (const mode of MODES) {
      const r = await once(mode, options.seconds, options.concurrency);
      console.log(
        `| ${round} | ${mode} | ${fmt(r.perSecond)} | ${fmt(r.clientUs, 1)} | ${fmt(r.serverUs, 1)} | ${fmt(r.clientUs + r.serverUs, 1)} | ${fmt(r.p50, 3)} | ${fmt(r.p99, 3)} | ${loadavg()[0]!.toFixed(2)} |`,
      );
    }
  }
}

const roleAt = process.argv.indexOf("--role");
if (roleAt === 2 && process.argv[3] === "server") await serve();
else if (roleAt === 2 && process.argv[3] === "client") {
  process.argv.splice(3, 1);
  await drive();
}
