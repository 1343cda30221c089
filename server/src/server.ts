/**
 * startServer: wires the pool, the engine, the background loops and the gRPC
 * transport together, and takes them apart again on close().
 */
import { randomBytes } from "node:crypto";
import { setMaxListeners } from "node:events";
import * as grpc from "@grpc/grpc-js";
import { drizzle } from "drizzle-orm/postgres-js";
import { ClientService, grpcService, TaskQueueService, WorkerService } from "@dex/proto";
import { clientHandlers } from "./api/client-service.js";
import { guarded } from "./api/common.js";
import { addHealthAndReflection } from "./api/health.js";
import { taskQueueHandlers } from "./api/task-queue-service.js";
import { workerHandlers } from "./api/worker-service.js";
import { startBackgroundLoops, type BackgroundLoops } from "./background.js";
import type { Engine } from "./engine/context.js";
import { DEFAULT_WORKFLOW_TASK_RETRY, QueueType } from "./engine/model.js";
import { ensureQueues } from "./engine/task-queues.js";
import { TimerLoop } from "./engine/timer-loop.js";
import { Wakeups } from "./engine/wakeups.js";
import { createJsonLogger, type Logger } from "./logger.js";
import { openDatabase, redactUrl, type Sql } from "./store/db.js";
import { assertMigrated } from "./store/migrator.js";
import { listenForWakeups, type WakeupListener } from "./store/notify.js";

export const DEFAULT_PORT = 7460;
export const DEFAULT_HOST = "127.0.0.1";

export interface ServerOptions {
  /** Postgres URL of a database migrated with `dex migrate`. */
  databaseUrl: string;
  /** Interface to listen on. Default "127.0.0.1". */
  host?: string;
  /** Port to listen on. Default 7460; 0 picks a free port (see DexServer.port). */
  port?: number;
  /** Where logs go. Default: JSON lines on stderr at level info. */
  logger?: Logger;
  /** Queues created at startup if missing (`dex dev` passes the two `default` queues). */
  ensureQueues?: Array<{ type: "workflow" | "activity"; name: string }>;
  /** Cap for long polls (PollWorkflowTasks, PollActivityTasks, waits for results and history). Default 20 000 ms. */
  maxPollWaitMs?: number;
  /** Back-off of failed workflow tasks: initialMs doubling up to maxMs. Default 1 000 / 10 000. */
  workflowTaskRetry?: { initialMs: number; maxMs: number };
}

export interface DexServer {
  /** The port actually bound (useful with port 0). */
  readonly port: number;
  /** "host:port", ready for a client. */
  readonly address: string;
  /** Graceful: parked polls answer empty at once, in-flight calls finish, then the pool closes. */
  close(): Promise<void>;
}

/** How long close() lets in-flight calls finish before cutting them off. */
const SHUTDOWN_GRACE_MS = 10_000;

export async function startServer(options: ServerOptions): Promise<DexServer> {
  const logger = options.logger ?? createJsonLogger("info");
  const host = options.host ?? DEFAULT_HOST;
  const sql = openDatabase({ url: options.databaseUrl, applicationName: "dex-server" });
  // drizzle installs its own type parsers on the client it is given (timestamps
  // as strings), which would change what the hand-written SQL reads; so the
  // drizzle queries (admin reads, not hot) get a small pool of their own.
  const adminSql = openDatabase({ url: options.databaseUrl, maxConnections: 3, applicationName: "dex-server-admin" });
  let listener: WakeupListener | undefined;
  // Started along the way; a failed start stops them before the pools close.
  let timers: TimerLoop | undefined;
  let background: BackgroundLoops | undefined;
  try {
    await checkDatabase(sql, options.databaseUrl);
    const wakeups = new Wakeups();
    const origin = randomBytes(6).toString("hex");
    const timerLoop = (timers = new TimerLoop({ sql, wakeups, logger, origin }));
    const engine: Engine = {
      sql,
      db: drizzle({ client: adminSql }),
      wakeups,
      logger,
      origin,
      maxPollWaitMs: options.maxPollWaitMs ?? 20_000,
      workflowTaskRetry: options.workflowTaskRetry ?? DEFAULT_WORKFLOW_TASK_RETRY,
      knownQueues: new Set(),
      timerHint: (at) => timerLoop.hint(at),
    };
    if (options.ensureQueues?.length) {
      await ensureQueues(
        engine,
        options.ensureQueues.map((q) => ({ type: q.type === "workflow" ? QueueType.WORKFLOW : QueueType.ACTIVITY, name: q.name })),
      );
    }
    listener = await listenForWakeups(
      sql,
      (wakeup) => {
        if (wakeup.origin === engine.origin) return;
        if (wakeup.kind === "queue") engine.wakeups.wakeQueue(wakeup.type, wakeup.queue);
        else engine.wakeups.wakeRun(wakeup.runId);
      },
      // (Re)connected: anything sent while the connection was down is lost; everyone re-checks.
      () => engine.wakeups.wakeEverything(),
    );
    const loops = (background = startBackgroundLoops(engine));
    // First pass at once: timers that came due while no server ran fire now.
    timerLoop.start();
    const shutdown = new AbortController();
    // Every call in flight listens on this signal; there may be thousands.
    setMaxListeners(0, shutdown.signal);
    const server = new grpc.Server();
    const onInternalError = (err: unknown, method: string) => logger.error("internal error", { method, err });
    const onUnavailable = (method: string, err: unknown) => logger.warn("database unavailable", { method, err });
    const onInternal = (method: string, err: unknown, errorId: string) =>
      logger.error("internal error", { method, errorId, err });
    const hooks = { onInternalError, shutdownSignal: shutdown.signal };
    for (const { definition, implementation } of [
      grpcService(ClientService, guarded(clientHandlers(engine), onUnavailable, onInternal), hooks),
      grpcService(WorkerService, guarded(workerHandlers(engine), onUnavailable, onInternal), hooks),
      grpcService(TaskQueueService, guarded(taskQueueHandlers(engine), onUnavailable, onInternal), hooks),
    ]) {
      server.addService(definition, implementation);
    }
    const health = addHealthAndReflection(server, [ClientService.typeName, WorkerService.typeName, TaskQueueService.typeName]);
    const port = await bind(server, host, options.port ?? DEFAULT_PORT);
    const address = `${host.includes(":") ? `[${host}]` : host}:${port}`;
    logger.info("dex server listening", { address, database: redactUrl(options.databaseUrl) });

    let closing: Promise<void> | undefined;
    const close = () =>
      (closing ??= (async () => {
        logger.info("dex server shutting down");
        health.shutdown();
        engine.wakeups.close();
        shutdown.abort();
        // Background statements end before the pool closes.
        await Promise.all([loops.stop(), timerLoop.stop()]);
        await new Promise<void>((resolve) => {
          const force = setTimeout(() => {
            logger.warn("in-flight calls did not finish in time; cutting them off");
            server.forceShutdown();
            resolve();
          }, SHUTDOWN_GRACE_MS);
          server.tryShutdown(() => {
            clearTimeout(force);
            resolve();
          });
        });
        await listener?.stop().catch(() => {});
        await Promise.all([sql.end({ timeout: 5 }), adminSql.end({ timeout: 5 })]);
        logger.info("dex server stopped");
      })());
    return { port, address, close };
  } catch (err) {
    await Promise.all([background?.stop(), timers?.stop()]);
    await listener?.stop().catch(() => {});
    await Promise.all([sql.end({ timeout: 1 }), adminSql.end({ timeout: 1 })]).catch(() => {});
    throw err;
  }
}

async function checkDatabase(sql: Sql, url: string): Promise<void> {
  try {
    await sql`select 1`;
  } catch (err) {
    throw new Error(
      `cannot reach the database at ${redactUrl(url)}: ${err instanceof Error ? err.message : String(err)}; ` +
        `check the URL and that Postgres is running`,
      { cause: err },
    );
  }
  await assertMigrated(sql);
}

function bind(server: grpc.Server, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.bindAsync(`${host.includes(":") ? `[${host}]` : host}:${port}`, grpc.ServerCredentials.createInsecure(), (err, bound) => {
      if (err) reject(new Error(`cannot listen on ${host}:${port}: ${err.message}`, { cause: err }));
      else resolve(bound);
    });
  });
}
