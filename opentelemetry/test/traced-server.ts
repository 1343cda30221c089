/**
 * The OpenTelemetry tests' shared set-up: a real dex server on its own test database, traced into
 * an in-memory exporter, and real workers that close with it. One tracer provider serves the
 * server and the workers, so one exporter holds the whole trace.
 */
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider } from "@opentelemetry/sdk-trace";
import type { Tracer } from "@opentelemetry/api";
import { silentLogger, startServer, type DexServer, type ServerOptions } from "@dex/server";
import { createTestDatabase, type TestDatabase } from "@dex/testing";
import { createActivityWorker, createWorkflowWorker, type Activity, type Logger, type Worker, type WorkerInterceptor, type Workflow } from "@dex/sdk";
import { tracingWorkerInterceptor } from "../src/index.js";

export const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {} };

export interface TracedServer {
  readonly exporter: InMemorySpanExporter;
  /** The provider's tracer: the server's, and the default of startWorkers. */
  readonly tracer: Tracer;
  readonly db: TestDatabase;
  readonly server: DexServer;
  /**
   * Starts a workflow worker and an activity worker polling `taskQueue` (default "default") of
   * `address` (default the server's), with `interceptors` (default: traced with `tracer`).
   */
  startWorkers(options: WorkersOptions): Worker[];
  /** Stops the workers, the server and the provider, and drops the database. */
  close(): Promise<void>;
}

export interface WorkersOptions {
  workflows: Record<string, Workflow>;
  activities: Record<string, Activity>;
  taskQueue?: string;
  address?: string;
  interceptors?: WorkerInterceptor[];
}

export interface TracedServerOptions {
  /** The workflow and activity queues to create. Default ["default"]. */
  queues?: string[];
  /** The server's back-off before a failed workflow task runs again. Default the server's. */
  workflowTaskRetry?: ServerOptions["workflowTaskRetry"];
}

export async function startTracedServer(options: TracedServerOptions = {}): Promise<TracedServer> {
  const exporter = new InMemorySpanExporter();
  const provider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter })] });
  const tracer = provider.getTracer("test");
  const workers: Worker[] = [];
  const db = await createTestDatabase();
  let server: DexServer;
  try {
    const queues = options.queues ?? ["default"];
    server = await startServer({
      databaseUrl: db.url,
      port: 0,
      ensureQueues: queues.flatMap((name) => [
        { type: "workflow" as const, name },
        { type: "activity" as const, name },
      ]),
      logger: silentLogger,
      tracer,
      ...(options.workflowTaskRetry && { workflowTaskRetry: options.workflowTaskRetry }),
    });
  } catch (err) {
    await db.drop();
    throw err;
  }
  return {
    exporter,
    tracer,
    db,
    server,
    startWorkers({ workflows, activities, taskQueue = "default", address = server.address, interceptors = [tracingWorkerInterceptor({ tracer })] }) {
      const started = [
        createWorkflowWorker({ address, taskQueue, workflows, logger: quiet, interceptors }),
        createActivityWorker({ address, taskQueue, activities, logger: quiet, interceptors }),
      ];
      for (const worker of started) worker.start();
      workers.push(...started);
      return started;
    },
    async close() {
      await Promise.all(workers.map((w) => w.shutdown()));
      await server.close();
      await db.drop();
      await provider.shutdown();
    },
  };
}

/**
 * The activities the traced runs call: `greet` succeeds; `flaky` fails its first attempt, so a run
 * has a failed attempt report and a polled retry besides the eager first attempts.
 */
export const activities = {
  async greet(name: string) {
    return `hello ${name}`;
  },
  async flaky(_: undefined, ctx: { info: { attempt: number } }) {
    if (ctx.info.attempt === 1) throw new Error("first attempt fails");
    return ctx.info.attempt;
  },
};
