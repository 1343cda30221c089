/**
 * End-to-end harness: a fresh database, a real dex server on port 0, and SDK
 * clients and workers connected to it over real gRPC.
 */
import { createClient, createActivityWorker, createWorkflowWorker, type Activity, type Client, type Workflow } from "@dex/sdk";
import { startServer, type DexServer, type ServerOptions } from "@dex/server";
import { createTestDatabase, type TestDatabase } from "@dex/testing";

export interface Harness {
  readonly db: TestDatabase;
  readonly server: DexServer;
  readonly client: Client;
  /** Starts a workflow worker on the `default` queue (or another); stopped by close(). */
  workflowWorker(workflows: Record<string, Workflow>, options?: { taskQueue?: string; identity?: string }): ReturnType<typeof createWorkflowWorker>;
  /** Starts an activity worker on the `default` queue (or another); stopped by close(). */
  activityWorker(activities: Record<string, Activity>, options?: { taskQueue?: string; maxConcurrentActivities?: number }): ReturnType<typeof createActivityWorker>;
  close(): Promise<void>;
}

export const DEFAULT_QUEUES: NonNullable<ServerOptions["ensureQueues"]> = [
  { type: "workflow", name: "default" },
  { type: "activity", name: "default" },
];

export async function startHarness(options: Partial<ServerOptions> = {}): Promise<Harness> {
  const db = await createTestDatabase();
  const server = await startServer({
    databaseUrl: db.url,
    port: 0,
    ensureQueues: DEFAULT_QUEUES,
    logger: quietLogger,
    ...options,
  });
  const client = createClient({ address: server.address });
  const workers: Array<{ shutdown(): Promise<void> }> = [];
  return {
    db,
    server,
    client,
    workflowWorker(workflows, workerOptions = {}) {
      const worker = createWorkflowWorker({
        address: server.address,
        taskQueue: workerOptions.taskQueue ?? "default",
        workflows,
        ...(workerOptions.identity ? { identity: workerOptions.identity } : {}),
        logger: quietLogger,
      });
      worker.start();
      workers.push(worker);
      return worker;
    },
    activityWorker(activities, workerOptions = {}) {
      const worker = createActivityWorker({
        address: server.address,
        taskQueue: workerOptions.taskQueue ?? "default",
        activities,
        ...(workerOptions.maxConcurrentActivities ? { maxConcurrentActivities: workerOptions.maxConcurrentActivities } : {}),
        logger: quietLogger,
      });
      worker.start();
      workers.push(worker);
      return worker;
    },
    async close() {
      await Promise.all(workers.map((worker) => worker.shutdown()));
      client.close();
      await server.close();
      await db.drop();
    },
  };
}

const noop = () => {};
/** Tests print only what fails; set DEX_TEST_LOG=1 to see server and worker logs. */
export const quietLogger =
  process.env.DEX_TEST_LOG === "1"
    ? { debug: noop, info: console.error, warn: console.error, error: console.error }
    : { debug: noop, info: noop, warn: noop, error: console.error };

/** A promise with its resolve function, for activities the test releases. */
export function deferred<T = void>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}
