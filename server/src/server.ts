/**
 * startServer: wires the pool, the engine, the background loops and the gRPC
 * transport together, and takes them apart again on close().
 */
import { randomBytes } from "node:crypto";
import { setMaxListeners } from "node:events";
import * as grpc from "@grpc/grpc-js";
import { ClientService, grpcService, ScheduleService, TaskQueueService, WorkerService } from "@dex/proto";
import { withApiKeys } from "./api/auth.js";
import { clientHandlers } from "./api/client-service.js";
import { guarded } from "./api/common.js";
import { addHealthAndReflection } from "./api/health.js";
import { scheduleHandlers } from "./api/schedule-service.js";
import { taskQueueHandlers } from "./api/task-queue-service.js";
import { workerHandlers } from "./api/worker-service.js";
import { startBackgroundLoops, type BackgroundLoops } from "./background.js";
import { DatabaseHealth, DEFAULT_DATABASE_PROBE_INTERVAL_MS, DEFAULT_DATABASE_PROBE_TIMEOUT_MS } from "./database-health.js";
import { Authenticator, DEFAULT_API_KEY_CACHE_MS } from "./engine/authenticator.js";
import type { Engine } from "./engine/context.js";
import { resolveLimits, type Limits } from "./engine/limits.js";
import { DEFAULT_STICKY_FALLBACK_MS, DEFAULT_WORKFLOW_TASK_RETRY, QueueType } from "./engine/model.js";
import { announceQueues } from "./engine/notifier.js";
import { ensureQueues } from "./engine/task-queues.js";
import { checkDefaultRetention, RetentionSweeper } from "./engine/retention.js";
import { createTestClock, type TestClock } from "./engine/test-clock.js";
import { onScheduleChange } from "./engine/schedules.js";
import { ScheduleLoop } from "./engine/schedules-loop.js";
import { TimerLoop } from "./engine/timer-loop.js";
import { fireRunTimeouts } from "./engine/run-timeouts.js";
import { Wakeups } from "./engine/wakeups.js";
import { createJsonLogger, type Logger, withLogFields } from "./logger.js";
import { DexMetrics } from "./metrics/dex-metrics.js";
import { startMetricsEndpoint, type MetricsEndpoint } from "./metrics/http.js";
import type { ServedService } from "./http/connect-services.js";
import { startUiEndpoint, type UiEndpoint } from "./http/ui-endpoint.js";
import { combineObservers } from "./metrics/observer.js";
import { POLL_FLUSH_INTERVAL_MS, PollTracker } from "./metrics/poll-tracker.js";
import { countLiveApiKeys } from "./store/api-keys.js";
import type { StalledConnection } from "./store/connection-watchdog.js";
import { openDatabase, redactUrl, type Sql } from "./store/db.js";
import { assertMigrated, loadMigrations } from "./store/migrator.js";
import { listenForWakeups, type WakeupListener } from "./store/notify.js";
import type { Tracer } from "@opentelemetry/api";
import { rpcSpans } from "./tracing.js";
import { pingDatabase } from "./store/ping.js";
import { readOverdueTimerSeconds, readQueueGauges, recordQueuePolls } from "./store/queue-stats.js";
import { oldestOverdueSeconds } from "./store/retention.js";
import { testClockInstalled } from "./store/test-clock.js";
import { createTransport, type ServerTlsOptions } from "./transport.js";

export const DEFAULT_PORT = 7460;
export const DEFAULT_HOST = "127.0.0.1";
/** statement_timeout of the scrape's queue read: a scrape must never become a long-running statement. */
const METRICS_STATEMENT_TIMEOUT_MS = 5_000;

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
  /**
   * Sticky routing: how long a run's next workflow task is kept for the worker that completed
   * the previous one (it has the run cached) before any worker of the queue may take it. A task
   * that failed or whose lease ran out goes to any worker at once. 0 turns sticky routing off.
   * Default 3 000 ms (DEFAULT_STICKY_FALLBACK_MS; Temporal's sticky timeout is 5 s).
   */
  stickyFallbackMs?: number;
  /** Back-off of failed workflow tasks: initialMs doubling up to maxMs. Default 1 000 / 10 000; afterDeadlock (workflow code that did not yield) 10 000 / 600 000. */
  workflowTaskRetry?: { initialMs: number; maxMs: number; afterDeadlock?: { initialMs: number; maxMs: number } };
  /**
   * Port of the Prometheus endpoint (GET /metrics over HTTP, on `host`). Default: none, no
   * endpoint. 0 picks a free port (see DexServer.metricsPort).
   */
  metricsPort?: number;
  /** How long close() lets in-flight calls finish before cutting them off (they end CANCELLED). Default 10 000 ms. */
  shutdownGraceMs?: number;
  /** TLS, or mutual TLS with `clientCaFile`, on the gRPC port (see ServerTlsOptions). Default: none, plaintext. */
  tls?: ServerTlsOptions;
  /**
   * Largest request message accepted, in bytes; a larger one is refused with RESOURCE_EXHAUSTED.
   * Default 16 MiB (DEFAULT_MAX_MESSAGE_BYTES); from 1024 to 2^31-1.
   */
  maxMessageBytes?: number;
  /**
   * What one request may carry and how long a run's history may grow; unset fields keep their
   * defaults: maxPayloadBytes 2 MiB per payload, maxHistoryEvents 50 000 per run (see engine/limits.ts
   * and docs/worker-protocol.md, "Limits").
   */
  limits?: Partial<Limits>;
  /**
   * Require an API key (metadata `authorization: Bearer <key>`, keys made with `dex auth create`)
   * on every dex.v1 call, checked against the roles in api/permissions.ts. Health checking and
   * reflection stay open. Default false: the library and `dex dev` serve open; `dex server` passes
   * true unless started with --insecure-no-auth.
   */
  requireApiKeys?: boolean;
  /**
   * OpenTelemetry tracer for a SERVER span per gRPC call (tracing.ts; `tracingFromEnvironment`
   * builds one from the OTEL_* variables). Default none: no spans.
   */
  tracer?: Tracer;
  /**
   * How long a key's row is cached per server, in ms (default 5 000): a revoked key is refused by
   * every server within this time. 0 reads the key on every call.
   */
  apiKeyCacheMs?: number;
  /**
   * statement_timeout of the server's statements (default 30 000 ms), and the margin past it
   * after which a connection still owing an answer counts as dead and is replaced (default
   * 5 000 ms; see store/connection-watchdog.ts).
   */
  statementTimeoutMs?: number;
  stallMarginMs?: number;
  /**
   * Connections of the server's main pool (polls, completions, starts). Default 10. Every
   * transaction holds its connection across several round trips, so under load this, not
   * Postgres, can be the limit (docs/performance.md); Postgres's max_connections must allow it
   * for every server.
   */
  databasePoolSize?: number;
  /**
   * Connections of the poll path's own pool (workflow task claims and the histories they hand
   * out). Default 4; 0 lets polls share the main pool. During a backlog drain the main pool is
   * busy with completions, and a claim queued behind their transactions (postgres.js pipelines
   * a statement onto a busy connection) waited 40-400 ms for a statement that runs in about 1 ms
   * (docs/performance.md).
   */
  dispatchPoolSize?: number;
  /**
   * Period of the fallback tick that nudges one parked poll per queue in case a wake-up was lost
   * (background.ts). Default 2 000 ms. Infinity turns it off: tests do, so that a parked poll
   * answered before its deadline proves a wake-up reached it.
   */
  fallbackTickMs?: number;
  /**
   * Longest sleep of the timer loop between passes: how soon this server's loop finds a timer
   * created through another server (timers created here wake it at their fire time). Default
   * 1 000 ms. Tests raise it so that only another server's loop fires their timers.
   */
  timerMaxSleepMs?: number;
  /**
   * How often the server checks, on a connection of its own, that its database answers
   * (`select 1`); while two checks in a row fail, grpc.health.v1 answers NOT_SERVING, and one
   * success makes it SERVING again. Default 2 000 ms (see database-health.ts for the cost).
   */
  databaseProbeIntervalMs?: number;
  /** A database check with no answer after this long has failed. Default 3 000 ms. */
  databaseProbeTimeoutMs?: number;
  /**
   * Test only (@dex/test-environment): the server's clock can be moved forward through
   * DexServer.testClock. The database must have been prepared with installTestClock before it
   * was migrated; the start fails otherwise. Default false.
   */
  testClock?: boolean;
  /**
   * How long ended runs are kept, in seconds, on workflow queues that set no retention of their
   * own (TaskQueue.retention); older ones are deleted with their history by the retention sweep.
   * 0 keeps them forever. Default 0: nothing is deleted unless an operator says so. Every server
   * of a cluster should be given the same value: whichever server sweeps applies its own.
   * At most 3650 days (engine/retention.ts; docs/decisions/0021-retention.md).
   */
  defaultRetentionSeconds?: number;
  /**
   * How often the retention sweep looks for expired runs when it has no backlog, in ms. Default
   * 60 000. Tests and the chaos suite lower it.
   */
  retentionSweepIntervalMs?: number;
  /** Runs deleted per sweep transaction. Default 500 (decision 0021). */
  retentionBatchSize?: number;
  /**
   * Tests and upgrade drills only: the directory of migrations this server believes it knows,
   * instead of the ones shipped with it; a copy without the newest file stands in for the
   * previous release's server (decision 0028). Default: the package's migrations/.
   */
  migrationsDir?: string;
  /**
   * Port of the web UI (HTTP, on `host`): the app at /, and the dex.v1 services over the Connect
   * protocol for it, through the same handlers and API-key checks as the gRPC port. Plain HTTP
   * even when the gRPC port has TLS: put it behind a TLS proxy to expose it. Default: none, no
   * UI. 0 picks a free port (see DexServer.uiAddress).
   */
  uiPort?: number;
}

export interface DexServer {
  /** The port actually bound (useful with port 0). */
  readonly port: number;
  /** "host:port", ready for a client. */
  readonly address: string;
  /** The metrics endpoint's port actually bound; undefined without `metricsPort`. */
  readonly metricsPort: number | undefined;
  /** "host:port" of the metrics endpoint (scrape http://<metricsAddress>/metrics); undefined without `metricsPort`. */
  readonly metricsAddress: string | undefined;
  /** "host:port" of the web UI (open http://<uiAddress>/); undefined without `uiPort`. */
  readonly uiAddress: string | undefined;
  /** Graceful: parked polls answer empty at once, in-flight calls finish, then the pool closes. */
  close(): Promise<void>;
  /** The movable clock of a server started with `testClock: true`; undefined otherwise. */
  readonly testClock?: TestClock;
}

/** Connections of the poll path's pool unless ServerOptions.dispatchPoolSize says otherwise. */
const DEFAULT_DISPATCH_POOL_SIZE = 4;

/** How long close() lets in-flight calls finish before cutting them off. */
const SHUTDOWN_GRACE_MS = 10_000;

export async function startServer(options: ServerOptions): Promise<DexServer> {
  // This server's id: the origin of its wake-ups, and the `server` field of each of its log lines.
  const origin = randomBytes(6).toString("hex");
  const logger = withLogFields(options.logger ?? createJsonLogger("info"), { server: origin });
  const host = options.host ?? DEFAULT_HOST;
  // First: an unreadable certificate fails the start before any pool opens.
  const transport = createTransport(options);
  const keyCacheMs = options.requireApiKeys ? apiKeyCacheMs(options.apiKeyCacheMs) : undefined;
  const stickyMs = stickyFallbackMs(options.stickyFallbackMs);
  const defaultRetentionSeconds = checkDefaultRetention(options.defaultRetentionSeconds ?? 0);
  const probeTimeoutMs = positiveMs("databaseProbeTimeoutMs", options.databaseProbeTimeoutMs, DEFAULT_DATABASE_PROBE_TIMEOUT_MS);
  const probeIntervalMs = positiveMs("databaseProbeIntervalMs", options.databaseProbeIntervalMs, DEFAULT_DATABASE_PROBE_INTERVAL_MS);
  const database = {
    url: options.databaseUrl,
    statementTimeoutMs: options.statementTimeoutMs,
    stallMarginMs: options.stallMarginMs,
    onStalledConnection: (info: StalledConnection) =>
      logger.warn("database connection silent past statement_timeout with an answer due; replacing it", { ...info }),
  };
  const sql = openDatabase({ ...database, maxConnections: options.databasePoolSize, applicationName: "dex-server" });
  // The scrape's own connection, with a short statement timeout: a slow count
  // fails the queue gauges of one scrape instead of holding a snapshot open.
  const metricsSql =
    options.metricsPort === undefined
      ? undefined
      : openDatabase({
          ...database,
          maxConnections: 1,
          applicationName: "dex-server-metrics",
          statementTimeoutMs: METRICS_STATEMENT_TIMEOUT_MS,
        });
  // Claims commit asynchronously: nothing depends on a claim being durable until the claimed
  // task's completion commits, and that synchronous commit flushes the WAL past the claim's
  // record. A claim lost in a crash only hands the task out again, fenced by a new lease.
  const dispatchPoolSize = options.dispatchPoolSize ?? DEFAULT_DISPATCH_POOL_SIZE;
  const dispatchSql =
    dispatchPoolSize === 0
      ? undefined
      : openDatabase({
          ...database,
          maxConnections: dispatchPoolSize,
          applicationName: "dex-server-dispatch",
          synchronousCommit: "off",
        });
  // The health probe's own connection: on a shared pool it would queue behind busy transactions.
  const probeSql = openDatabase({
    ...database,
    maxConnections: 1,
    applicationName: "dex-server-health",
    statementTimeoutMs: probeTimeoutMs,
    stallMarginMs: 1_000,
  });
  // The retention sweep's own connection: a batch (~0.1 s) never holds one of the call path's.
  const retentionSql = openDatabase({ ...database, maxConnections: 1, applicationName: "dex-server-retention" });
  const pools = [sql, probeSql, retentionSql, ...(metricsSql ? [metricsSql] : []), ...(dispatchSql ? [dispatchSql] : [])];
  let listener: WakeupListener | undefined;
  // Started along the way; a failed start stops them before the pools close.
  let timers: TimerLoop | undefined;
  let schedules: ScheduleLoop | undefined;
  let background: BackgroundLoops | undefined;
  let polls: PollTracker | undefined;
  let sweeper: RetentionSweeper | undefined;
  let endpoint: MetricsEndpoint | undefined;
  let ui: UiEndpoint | undefined;
  let databaseHealth: DatabaseHealth | undefined;
  try {
    await checkDatabase(sql, options.databaseUrl, options.migrationsDir, logger);
    if (options.testClock && !(await testClockInstalled(sql))) {
      throw new Error(`testClock: the database at ${redactUrl(options.databaseUrl)} has no test clock; prepare it with installTestClock before migrating it`);
    }
    const liveKeys = keyCacheMs === undefined ? undefined : await countLiveApiKeys(sql);
    // Cross-server wakes go after the commit, through engine/notifier.ts (store/notify.ts):
    // due times when they come due, timers' queues after each pass. Both run once the engine
    // below exists (the loop starts later; a due time is armed only by a call).
    const wakeups = new Wakeups({ announceDue: (type, queue) => announceQueues(engine, type, [queue]) });
    const timerLoop = (timers = new TimerLoop(
      {
        sql,
        wakeups,
        logger,
        announce: (queues) => announceQueues(engine, QueueType.WORKFLOW, queues),
        fireRunTimeouts: (runIds) => fireRunTimeouts(engine, runIds),
      },
      options.timerMaxSleepMs === undefined ? {} : { maxSleepMs: positiveMs("timerMaxSleepMs", options.timerMaxSleepMs, 1_000) },
    ));
    // Always on: describe's "no worker has polled" needs it whether or not metrics are exposed.
    const pollTracker = (polls = new PollTracker({
      write: (queues) => recordQueuePolls(sql, queues, POLL_FLUSH_INTERVAL_MS),
      parked: () => wakeups.parkedQueues(),
      logger,
    }));
    const metrics = metricsSql
      ? new DexMetrics({
          readCluster: async () => ({ queues: await readQueueGauges(metricsSql), overdueTimerSeconds: await readOverdueTimerSeconds(metricsSql) }),
          readRetentionOverdue: () => oldestOverdueSeconds(metricsSql, defaultRetentionSeconds),
          logger,
        })
      : undefined;
    const engine: Engine = {
      sql,
      dispatchSql,
      wakeups,
      logger,
      origin,
      maxPollWaitMs: options.maxPollWaitMs ?? 20_000,
      workflowTaskRetry: options.workflowTaskRetry ?? DEFAULT_WORKFLOW_TASK_RETRY,
      stickyFallbackMs: stickyMs,
      limits: resolveLimits(options.limits),
      knownQueues: new Set(),
      observer: combineObservers(pollTracker, metrics),
      recentPolls: pollTracker,
      timerHint: (at) => timerLoop.hint(at),
    };
    if (options.ensureQueues?.length) {
      await ensureQueues(
        engine,
        options.ensureQueues.map((q) => ({ type: q.type === "workflow" ? QueueType.WORKFLOW : QueueType.ACTIVITY, name: q.name })),
      );
    }
    // Schedules fire from their own loop (engine/schedules-loop.ts), woken by changes here and elsewhere.
    const scheduleLoop = (schedules = new ScheduleLoop(engine, logger));
    onScheduleChange(engine, () => scheduleLoop.wake());
    listener = await listenForWakeups(
      sql,
      (wakeup) => {
        if (wakeup.origin === engine.origin) return;
        if (wakeup.kind === "schedules") return scheduleLoop.wake();
        if (wakeup.kind === "queue") engine.wakeups.wakeQueue(wakeup.type, wakeup.queue);
        else engine.wakeups.wakeRun(wakeup.runId);
      },
      // (Re)connected: anything sent while the connection was down is lost; everyone re-checks.
      () => {
        engine.wakeups.wakeEverything();
        scheduleLoop.wake();
      },
    );
    const loops = (background = startBackgroundLoops(engine, { fallbackTickMs: options.fallbackTickMs }));
    pollTracker.start();
    const retentionSweep = (sweeper = new RetentionSweeper({
      sql: retentionSql,
      logger,
      defaultRetentionSeconds,
      intervalMs: options.retentionSweepIntervalMs,
      batchSize: options.retentionBatchSize,
      onDeleted: (queue, runs) => engine.observer.runsDeleted?.(queue, "sweep", runs),
    }));
    retentionSweep.start();
    // First pass at once: timers that came due while no server ran fire now.
    timerLoop.start();
    scheduleLoop.start();
    const shutdown = new AbortController();
    // Every call in flight listens on this signal; there may be thousands.
    setMaxListeners(0, shutdown.signal);
    const server = new grpc.Server(transport.serverOptions);
    const onInternalError = (err: unknown, method: string) => logger.error("internal error", { method, err });
    const onUnavailable = (method: string, err: unknown) => {
      logger.warn("database unavailable", { method, err });
      databaseHealth?.nudge();
    };
    const onInternal = (method: string, err: unknown, errorId: string) =>
      logger.error("internal error", { method, errorId, err });
    const hooks = { onInternalError, shutdownSignal: shutdown.signal, onAnswered: metrics && ((call: Parameters<DexMetrics["answered"]>[0]) => metrics.answered(call)), onCall: options.tracer && rpcSpans(options.tracer) };
    // Inside guarded(): a key lookup while the database is away answers UNAVAILABLE like any call.
    const authenticator = keyCacheMs === undefined ? undefined : new Authenticator(sql, keyCacheMs);
    const checked = <H>(service: Parameters<typeof withApiKeys>[0], handlers: H): H =>
      authenticator ? (withApiKeys(service, handlers as never, { authenticator, engine, logger }) as H) : handlers;
    // Built once, served on the gRPC port and (with uiPort) over Connect for the web UI.
    const clientChecked = guarded(checked(ClientService, clientHandlers(engine)), onUnavailable, onInternal);
    const workerChecked = guarded(checked(WorkerService, workerHandlers(engine)), onUnavailable, onInternal);
    const queueChecked = guarded(checked(TaskQueueService, taskQueueHandlers(engine, { defaultRetentionSeconds })), onUnavailable, onInternal);
    const scheduleChecked = guarded(checked(ScheduleService, scheduleHandlers(engine)), onUnavailable, onInternal);
    for (const { definition, implementation } of [
      grpcService(ClientService, clientChecked, hooks),
      grpcService(WorkerService, workerChecked, hooks),
      grpcService(TaskQueueService, queueChecked, hooks),
      grpcService(ScheduleService, scheduleChecked, hooks),
    ]) {
      server.addService(definition, implementation);
    }
    const servedServices = [
      { service: ClientService, handlers: clientChecked },
      { service: WorkerService, handlers: workerChecked },
      { service: TaskQueueService, handlers: queueChecked },
      { service: ScheduleService, handlers: scheduleChecked },
    ] as unknown as ServedService[];
    const health = addHealthAndReflection(server, [ClientService.typeName, WorkerService.typeName, TaskQueueService.typeName, ScheduleService.typeName]);
    const probe = (databaseHealth = new DatabaseHealth({
      ping: () => pingDatabase(probeSql),
      intervalMs: probeIntervalMs,
      timeoutMs: probeTimeoutMs,
      logger,
      onChange: (reachable) => health.setServing(reachable),
    }));
    probe.start();
    // Before the gRPC port: a metrics port that is taken fails the start with nothing else listening.
    if (metrics && options.metricsPort !== undefined) {
      endpoint = await startMetricsEndpoint({ host, port: options.metricsPort, render: () => metrics.render(), contentType: metrics.contentType, logger });
      logger.info("dex metrics listening", { url: `http://${endpoint.address}/metrics` });
    }
    const metricsEndpoint = endpoint;
    if (options.uiPort !== undefined) {
      ui = await startUiEndpoint({ host, port: options.uiPort, services: servedServices, hooks, logger });
      logger.info("dex web UI listening", { url: `http://${ui.address}/` });
    }
    const uiEndpoint = ui;
    const port = await bind(server, host, options.port ?? DEFAULT_PORT, transport.credentials);
    const address = `${host.includes(":") ? `[${host}]` : host}:${port}`;
    logger.info("dex server listening", {
      address,
      transport: transport.security,
      auth: authenticator ? "api keys" : "none",
      database: redactUrl(options.databaseUrl),
    });
    if (liveKeys === 0) {
      logger.warn(
        "no API key exists yet, so every call is refused: create an admin key with " +
          "`dex auth create --name admin --role admin` (same --database-url or DEX_DATABASE_URL as this server)",
      );
    }

    let closing: Promise<void> | undefined;
    const close = () =>
      (closing ??= (async () => {
        logger.info("dex server shutting down");
        health.shutdown();
        probe.stop();
        engine.wakeups.close();
        shutdown.abort();
        // Background statements (and a scrape's read) end before the pools close.
        await Promise.all([loops.stop(), timerLoop.stop(), scheduleLoop.stop(), pollTracker.stop(), retentionSweep.stop(), metricsEndpoint?.close(), uiEndpoint?.close()]);
        await new Promise<void>((resolve) => {
          const force = setTimeout(() => {
            logger.warn("in-flight calls did not finish in time; cutting them off");
            server.forceShutdown();
            resolve();
          }, options.shutdownGraceMs ?? SHUTDOWN_GRACE_MS);
          server.tryShutdown(() => {
            clearTimeout(force);
            resolve();
          });
        });
        await listener?.stop().catch(() => {});
        await Promise.all(pools.map((pool) => pool.end({ timeout: 5 })));
        logger.info("dex server stopped");
      })());
    const testClock = options.testClock ? createTestClock({ sql, timerLoop, scheduleLoop, wakeups: engine.wakeups }) : undefined;
    return { port, address, metricsPort: metricsEndpoint?.port, metricsAddress: metricsEndpoint?.address, uiAddress: uiEndpoint?.address, close, testClock };
  } catch (err) {
    databaseHealth?.stop();
    await Promise.all([background?.stop(), timers?.stop(), schedules?.stop(), polls?.stop(), sweeper?.stop(), endpoint?.close(), ui?.close()]);
    await listener?.stop().catch(() => {});
    await Promise.all(pools.map((pool) => pool.end({ timeout: 1 }))).catch(() => {});
    throw err;
  }
}

async function checkDatabase(sql: Sql, url: string, migrationsDir: string | undefined, logger: Logger): Promise<void> {
  try {
    await pingDatabase(sql);
  } catch (err) {
    throw new Error(
      `cannot reach the database at ${redactUrl(url)}: ${err instanceof Error ? err.message : String(err)}; ` +
        `check the URL and that Postgres is running`,
      { cause: err },
    );
  }
  const schema = await assertMigrated(sql, await loadMigrations(migrationsDir));
  if (schema.databaseVersion > schema.knownVersion) {
    // Expected mid-upgrade; worth a line so that a fleet left half-upgraded is noticed.
    logger.info("database schema is one version newer than this dex (rolling upgrade; docs/upgrades.md)", { ...schema });
  }
}

function positiveMs(name: string, ms: number | undefined, fallback: number): number {
  if (ms === undefined) return fallback;
  if (!Number.isInteger(ms) || ms < 1) throw new TypeError(`${name} must be a whole number of milliseconds, 1 or more, got ${ms}`);
  return ms;
}

function stickyFallbackMs(ms: number | undefined): number {
  if (ms === undefined) return DEFAULT_STICKY_FALLBACK_MS;
  if (!Number.isInteger(ms) || ms < 0) throw new TypeError(`stickyFallbackMs must be a whole number of milliseconds, 0 or more, got ${ms}`);
  return ms;
}

function apiKeyCacheMs(ms: number | undefined): number {
  if (ms === undefined) return DEFAULT_API_KEY_CACHE_MS;
  if (!Number.isInteger(ms) || ms < 0) throw new TypeError(`apiKeyCacheMs must be a whole number of milliseconds, 0 or more, got ${ms}`);
  return ms;
}

function bind(server: grpc.Server, host: string, port: number, credentials: grpc.ServerCredentials): Promise<number> {
  return new Promise((resolve, reject) => {
    server.bindAsync(`${host.includes(":") ? `[${host}]` : host}:${port}`, credentials, (err, bound) => {
      if (err) reject(new Error(`cannot listen on ${host}:${port}: ${err.message}`, { cause: err }));
      else resolve(bound);
    });
  });
}
