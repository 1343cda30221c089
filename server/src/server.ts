/**
 * startServer: wires the pools, the engine, the background loops, the gRPC port and the HTTP
 * endpoints together, and takes them apart again, in order, on close(). What it accepts and
 * returns is in server-options.ts.
 */
import { randomBytes } from "node:crypto";
import { setMaxListeners } from "node:events";
import { startBackgroundLoops, type BackgroundLoops } from "./background.js";
import { DatabaseHealth, DEFAULT_DATABASE_PROBE_INTERVAL_MS, DEFAULT_DATABASE_PROBE_TIMEOUT_MS } from "./database-health.js";
import { checkDatabase, openServerPools } from "./database-pools.js";
import { serverApplicationName } from "./store/connected-servers.js";
import { buildRelease, loadMigrations } from "./store/migrator.js";
import { Authenticator } from "./engine/authenticator.js";
import type { Engine } from "./engine/context.js";
import { resolveLimits } from "./engine/limits.js";
import { DEFAULT_WORKFLOW_TASK_RETRY, QueueType } from "./engine/model.js";
import { announceQueues } from "./engine/notifier.js";
import { ensureQueues } from "./engine/task-queues.js";
import { checkDefaultRetention, RetentionSweeper } from "./engine/retention.js";
import { createTestClock } from "./engine/test-clock.js";
import { onScheduleChange } from "./engine/schedules.js";
import { ScheduleLoop } from "./engine/schedules-loop.js";
import { TimerLoop } from "./engine/timer-loop.js";
import { RunTimeoutQueue, timeOutRun } from "./engine/run-timeouts.js";
import { Wakeups } from "./engine/wakeups.js";
import { startHttpEndpoints, type HttpEndpoints } from "./http/endpoints.js";
import { createJsonLogger, withLogFields } from "./logger.js";
import { DexMetrics } from "./metrics/dex-metrics.js";
import { combineObservers } from "./metrics/observer.js";
import { POLL_FLUSH_INTERVAL_MS, PollTracker } from "./metrics/poll-tracker.js";
import { createRpcServices } from "./rpc-services.js";
import { apiKeyCacheMs, DEFAULT_HOST, DEFAULT_PORT, positiveMs, stickyFallbackMs, type DexServer, type ServerOptions } from "./server-options.js";
import { countLiveApiKeys } from "./store/api-keys.js";
import { redactUrl } from "./store/db.js";
import { listenForWakeups, type WakeupListener } from "./store/notify.js";
import { rpcSpans } from "./tracing.js";
import { pingDatabase } from "./store/ping.js";
import { readOverdueTimerSeconds, readQueueGauges, recordQueuePolls } from "./store/queue-stats.js";
import { oldestOverdueSeconds } from "./store/retention.js";
import { testClockInstalled } from "./store/test-clock.js";
import { createTransport } from "./transport.js";

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
  // Read before any pool opens: each connection says this build's release (store/connected-servers.ts).
  const migrations = await loadMigrations(options.migrationsDir);
  const build = { ...buildRelease(migrations), knownVersion: migrations.at(-1)?.version ?? 0 };
  const pools = openServerPools(options, logger, probeTimeoutMs, (pool) => serverApplicationName(pool, build, origin));
  const { sql, dispatchSql, metricsSql, probeSql, retentionSql } = pools;
  let listener: WakeupListener | undefined;
  // Started along the way; a failed start stops them before the pools close.
  let timers: TimerLoop | undefined;
  let schedules: ScheduleLoop | undefined;
  let background: BackgroundLoops | undefined;
  let polls: PollTracker | undefined;
  let sweeper: RetentionSweeper | undefined;
  let endpoints: HttpEndpoints | undefined;
  let databaseHealth: DatabaseHealth | undefined;
  try {
    await checkDatabase(sql, options.databaseUrl, migrations, logger);
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
        runTimeouts: new RunTimeoutQueue((runId) => timeOutRun(engine, runId), logger),
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
      testClock: options.testClock === true,
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
    const onInternalError = (err: unknown, method: string) => logger.error("internal error", { method, err });
    const onAnswered = metrics && ((call: Parameters<DexMetrics["answered"]>[0]) => metrics.answered(call));
    const hooks = { onInternalError, shutdownSignal: shutdown.signal, onAnswered, onCall: options.tracer && rpcSpans(options.tracer) };
    const authenticator = keyCacheMs === undefined ? undefined : new Authenticator(sql, keyCacheMs);
    const rpc = createRpcServices(engine, {
      serverOptions: transport.serverOptions,
      hooks,
      authenticator,
      defaultRetentionSeconds,
      onUnavailable: (method, err) => {
        logger.warn("database unavailable", { method, err });
        databaseHealth?.nudge();
      },
      logger,
    });
    const probe = (databaseHealth = new DatabaseHealth({
      ping: () => pingDatabase(probeSql),
      intervalMs: probeIntervalMs,
      timeoutMs: probeTimeoutMs,
      logger,
      onChange: (reachable) => rpc.health.setServing(reachable),
    }));
    probe.start();
    // Before the gRPC port: a port that is taken fails the start with nothing else listening.
    const http = (endpoints = await startHttpEndpoints({
      host,
      logger,
      metricsPort: options.metricsPort,
      metrics,
      uiPort: options.uiPort,
      services: rpc.served,
      hooks,
    }));
    const port = await rpc.listen(host, options.port ?? DEFAULT_PORT, transport.credentials);
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
        rpc.health.shutdown();
        probe.stop();
        engine.wakeups.close();
        shutdown.abort();
        // Background statements (and a scrape's read) end before the pools close.
        await Promise.all([loops.stop(), timerLoop.stop(), scheduleLoop.stop(), pollTracker.stop(), retentionSweep.stop(), http.close()]);
        await rpc.close(options.shutdownGraceMs);
        await listener?.stop().catch(() => {});
        await pools.end(5);
        logger.info("dex server stopped");
      })());
    const testClock = options.testClock ? createTestClock({ sql, timerLoop, scheduleLoop, wakeups: engine.wakeups }) : undefined;
    return { port, address, metricsPort: http.metrics?.port, metricsAddress: http.metrics?.address, uiAddress: http.ui?.address, close, testClock };
  } catch (err) {
    databaseHealth?.stop();
    await Promise.all([background?.stop(), timers?.stop(), schedules?.stop(), polls?.stop(), sweeper?.stop(), endpoints?.close()]);
    await listener?.stop().catch(() => {});
    await pools.end(1).catch(() => {});
    throw err;
  }
}
