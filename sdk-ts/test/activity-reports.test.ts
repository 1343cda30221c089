/**
 * The activity worker reports outcomes in batches (worker/activity-reporter.ts, decision 0011):
 * a real worker with many activities finishing together sends fewer ReportActivityTasks calls
 * than outcomes (counted by the server's metrics), every run completes, and retried failures
 * go through batches too. Against a server without ReportActivityTasks (an older server: here a
 * real gRPC proxy that forwards every other dex.v1 method and, like an old server, answers
 * UNIMPLEMENTED for the new one) the worker falls back to unary calls and every run completes.
 */
import * as grpc from "@grpc/grpc-js";
import { ClientService, TaskQueueService, WorkerService } from "@dex/proto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { silentLogger, startServer, type DexServer } from "@dex/server";
import { createTestDatabase, DEFAULT_WAIT_MS, type TestDatabase } from "@dex/testing";
import {
  createActivityWorker,
  createClient,
  createWorkflowWorker,
  type ActivityContext,
  type Client,
  type Logger,
  type Worker,
  type WorkflowContext,
} from "../src/index.js";

const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {} };
/** Three runs of FAN_OUT first attempts fit in one worker (a poll asks for at most 100 tasks). */
const FAN_OUT = 32;

/** Activities whose first attempts finish at once: each run's first attempts wait until all `FAN_OUT` of them run. */
function gatedActivities() {
  const gates = new Map<string, { running: number; open: () => void; opened: Promise<void> }>();
  return {
    async step(input: { i: number; failFirst: boolean }, ctx: ActivityContext) {
      if (ctx.info.attempt === 1) {
        let gate = gates.get(ctx.info.runId);
        if (!gate) {
          let open!: () => void;
          const opened = new Promise<void>((resolve) => (open = resolve));
          gates.set(ctx.info.runId, (gate = { running: 0, open, opened }));
        }
        if (++gate.running === FAN_OUT) gate.open();
        await gate.opened;
        if (input.failFirst) throw new Error(`step ${input.i} fails its first attempt`);
      }
      return input.i * 2;
    },
  };
}

async function fanOut(ctx: WorkflowContext, n: number) {
  const acts = ctx.activities<ReturnType<typeof gatedActivities>>({ startToCloseTimeout: "60s", retry: { initialInterval: "10ms" } });
  const results = await Promise.all(Array.from({ length: n }, (_, i) => acts.step({ i, failFirst: i % 4 === 0 })));
  return results.reduce((a, b) => a + b, 0);
}

/** A run's result within DEFAULT_WAIT_MS: a worker stuck on its reports fails the test with a reason, not a hang. */
function resultWithin<T>(handle: { result(options: { signal: AbortSignal }): Promise<T> }, what: string): Promise<T> {
  const signal = AbortSignal.timeout(DEFAULT_WAIT_MS);
  return handle.result({ signal }).catch((err: unknown) => {
    throw signal.aborted ? new Error(`${what}: no result within ${DEFAULT_WAIT_MS} ms (the activity outcomes were not recorded)`) : err;
  });
}

async function reportStats(server: DexServer, operation: string): Promise<{ count: number; sum: number }> {
  const text = await (await fetch(`http://${server.metricsAddress}/metrics`)).text();
  const read = (name: string) => Number(text.split("\n").find((l) => l.startsWith(`${name}{operation="${operation}"}`))?.split(" ").at(-1) ?? 0);
  return { count: read("dex_group_commit_batch_size_count"), sum: read("dex_group_commit_batch_size_sum") };
}

/**
 * A gRPC server that forwards every unary dex.v1 method to `upstream` except ReportActivityTasks,
 * which it does not serve: grpc-js answers UNIMPLEMENTED, as a server built before the RPC does.
 */
async function olderServerProxy(upstream: string): Promise<{ address: string; close(): void }> {
  const channel = new grpc.Client(upstream, grpc.credentials.createInsecure());
  const server = new grpc.Server();
  for (const service of [ClientService, WorkerService, TaskQueueService]) {
    const definition: grpc.ServiceDefinition = {};
    const implementation: grpc.UntypedServiceImplementation = {};
    for (const method of service.methods) {
      if (method.name === "ReportActivityTasks") continue;
      const path = `/${service.typeName}/${method.name}`;
      const raw = (b: Buffer) => b;
      (definition as Record<string, grpc.MethodDefinition<Buffer, Buffer>>)[method.localName] = { path, requestStream: false, responseStream: false, requestSerialize: raw, requestDeserialize: raw, responseSerialize: raw, responseDeserialize: raw };
      implementation[method.localName] = ((call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
        channel.makeUnaryRequest(path, raw, raw, call.request, new grpc.Metadata(), { deadline: call.getDeadline() }, (err, res) => callback(err, res));
      }) as grpc.handleUnaryCall<Buffer, Buffer>;
    }
    server.addService(definition, implementation);
  }
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  return {
    address: `127.0.0.1:${port}`,
    close() {
      server.forceShutdown();
      channel.close();
    },
  };
}

describe("batched activity outcomes", () => {
  let db: TestDatabase;
  let server: DexServer;
  let client: Client;
  const workers: Worker[] = [];
  const closers: Array<() => void> = [];

  beforeAll(async () => {
    db = await createTestDatabase();
    server = await startServer({
      databaseUrl: db.url,
      port: 0,
      metricsPort: 0,
      ensureQueues: [
        { type: "workflow", name: "default" },
        { type: "activity", name: "default" },
        { type: "workflow", name: "old" },
        { type: "activity", name: "old" },
      ],
      logger: silentLogger,
    });
    client = createClient({ address: server.address });
  });

  afterAll(async () => {
    await Promise.all(workers.map((w) => w.shutdown()));
    for (const close of closers) close();
    client?.close();
    await server?.close();
    await db?.drop();
  });

  it("a worker with many activities finishing together reports them in fewer calls than outcomes, and every run completes", async () => {
    workers.push(
      createWorkflowWorker({ address: server.address, taskQueue: "default", workflows: { fanOut }, logger: quiet }),
      createActivityWorker({ address: server.address, taskQueue: "default", activities: gatedActivities(), maxConcurrentActivities: 96, logger: quiet }),
    );
    for (const w of workers.slice(-2)) w.start();
    const before = await reportStats(server, "activity_report");
    const runs = 3;
    const handles = await Promise.all(Array.from({ length: runs }, (_, i) => client.start(fanOut, { instanceId: `fan-${i}-${Date.now()}`, input: FAN_OUT })));
    const expected = FAN_OUT * (FAN_OUT - 1);
    expect(await Promise.all(handles.map((h) => resultWithin(h, "fan-out run")))).toEqual(Array(runs).fill(expected));

    const after = await reportStats(server, "activity_report");
    // Every outcome went through ReportActivityTasks: a completion per activity, plus the failed first attempts.
    const outcomes = runs * FAN_OUT + runs * (FAN_OUT / 4);
    expect(after.sum - before.sum).toBe(outcomes);
    // Outcomes arriving together shared calls: far fewer calls than outcomes.
    expect(after.count - before.count).toBeLessThanOrEqual(outcomes / 4);
  });

  it("falls back to unary calls against a server that answers UNIMPLEMENTED, and every run completes", async () => {
    const proxy = await olderServerProxy(server.address);
    closers.push(() => proxy.close());
    const old = [
      createWorkflowWorker({ address: proxy.address, taskQueue: "old", workflows: { fanOut }, logger: quiet }),
      createActivityWorker({ address: proxy.address, taskQueue: "old", activities: gatedActivities(), maxConcurrentActivities: FAN_OUT, logger: quiet }),
    ];
    workers.push(...old);
    for (const w of old) w.start();
    const reportsBefore = await reportStats(server, "activity_report");
    const handle = await client.start(fanOut, { instanceId: `old-${Date.now()}`, input: FAN_OUT, taskQueue: "old" });
    expect(await resultWithin(handle, "run behind the older server")).toBe(FAN_OUT * (FAN_OUT - 1));
    // No batch reached the server: every outcome went as a unary call.
    expect((await reportStats(server, "activity_report")).count).toBe(reportsBefore.count);
    const completed = (await handle.history()).filter((e) => e.attributes.case === "activityCompleted");
    expect(completed).toHaveLength(FAN_OUT);
  });
});
