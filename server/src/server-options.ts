/**
 * What startServer accepts (ServerOptions, each field with its default) and what it returns
 * (DexServer), and the checks that refuse a bad value before anything opens.
 */
import type { Tracer } from "@opentelemetry/api";
import { DEFAULT_API_KEY_CACHE_MS } from "./engine/authenticator.js";
import type { Limits } from "./engine/limits.js";
import { DEFAULT_STICKY_FALLBACK_MS } from "./engine/model.js";
import type { TestClock } from "./engine/test-clock.js";
import type { Logger } from "./logger.js";
import type { ServerTlsOptions } from "./transport.js";

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

/** A duration option that must be 1 ms or more; `fallback` when unset. */
export function positiveMs(name: string, ms: number | undefined, fallback: number): number {
  if (ms === undefined) return fallback;
  if (!Number.isInteger(ms) || ms < 1) throw new TypeError(`${name} must be a whole number of milliseconds, 1 or more, got ${ms}`);
  return ms;
}

/** 0 (sticky routing off) or more; DEFAULT_STICKY_FALLBACK_MS when unset. */
export function stickyFallbackMs(ms: number | undefined): number {
  if (ms === undefined) return DEFAULT_STICKY_FALLBACK_MS;
  if (!Number.isInteger(ms) || ms < 0) throw new TypeError(`stickyFallbackMs must be a whole number of milliseconds, 0 or more, got ${ms}`);
  return ms;
}

/** 0 (read the key on every call) or more; DEFAULT_API_KEY_CACHE_MS when unset. */
export function apiKeyCacheMs(ms: number | undefined): number {
  if (ms === undefined) return DEFAULT_API_KEY_CACHE_MS;
  if (!Number.isInteger(ms) || ms < 0) throw new TypeError(`apiKeyCacheMs must be a whole number of milliseconds, 0 or more, got ${ms}`);
  return ms;
}
