/**
 * Whether this server can reach its database, for grpc.health.v1: a load
 * balancer or compose routes around a server whose every call would fail.
 *
 * A probe (`select 1` on a connection of its own) runs every intervalMs.
 * Why its own connection: on the main pool a probe would queue behind busy
 * transactions, and a server that is merely loaded would report itself down
 * and shed its load onto its peers. Why not only the errors real calls see: an
 * idle server sees none, so it would stay SERVING through an outage until the
 * first caller hit it. Those errors do call nudge(), which probes at once, so
 * a busy server notices within one round trip rather than one interval.
 *
 * Two probes in a row must fail (the second at once, on a fresh connection)
 * before health says NOT_SERVING: one killed backend is not an outage. One
 * success makes it SERVING again. Each transition is logged once.
 *
 * Cost while idle: one trivial statement per interval (default 2 s, so 0.5
 * statements/s against the idle-fleet budget of 5 in docs/performance.md) and
 * one idle connection.
 */
import type { Logger } from "./logger.js";

export const DEFAULT_DATABASE_PROBE_INTERVAL_MS = 2_000;
export const DEFAULT_DATABASE_PROBE_TIMEOUT_MS = 3_000;

export interface DatabaseHealthOptions {
  /** One probe: resolves when the database answered. */
  ping: () => Promise<void>;
  /** Time between probes. */
  intervalMs: number;
  /** A probe with no answer after this long has failed (the connection is replaced by its watchdog). */
  timeoutMs: number;
  logger: Logger;
  /** Told of each transition (false: unreachable). */
  onChange: (reachable: boolean) => void;
}

export class DatabaseHealth {
  private reachableNow = true;
  private timer: NodeJS.Timeout | undefined;
  private probing: Promise<void> | undefined;
  private lastProbeAt = 0;
  private downSince = 0;
  private stopped = false;

  constructor(private readonly options: DatabaseHealthOptions) {}

  get reachable(): boolean {
    return this.reachableNow;
  }

  start(): void {
    this.schedule();
  }

  /**
   * A call just failed for want of the database: probe now rather than at the next interval.
   * Cheap to call on every failure: at most one probe runs at a time, and a server already
   * NOT_SERVING keeps to its interval (the recovery is found by the regular probes).
   */
  nudge(): void {
    if (this.stopped || !this.reachableNow || this.probing) return;
    if (performance.now() - this.lastProbeAt < this.options.intervalMs / 4) return;
    clearTimeout(this.timer);
    this.probe();
  }

  /** No probe starts after this; one in flight is not waited for (closing its pool ends it). */
  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => this.probe(), this.options.intervalMs);
    this.timer.unref();
  }

  private probe(): void {
    this.lastProbeAt = performance.now();
    this.probing = this.check().finally(() => {
      this.probing = undefined;
      this.schedule();
    });
  }

  private async check(): Promise<void> {
    let err = await this.attempt();
    // Confirm a failure at once: postgres.js opens a new connection for the retry, so a
    // terminated backend or a connection the watchdog replaced does not flip health.
    if (err !== undefined && this.reachableNow && !this.stopped) err = await this.attempt();
    if (this.stopped) return;
    if (err === undefined && !this.reachableNow) {
      this.reachableNow = true;
      this.options.logger.info("database reachable again; health checks answer SERVING", {
        outageMs: Math.round(performance.now() - this.downSince),
      });
      this.options.onChange(true);
    } else if (err !== undefined && this.reachableNow) {
      this.reachableNow = false;
      this.downSince = performance.now();
      this.options.logger.warn("database unreachable; health checks answer NOT_SERVING until it answers again", { err });
      this.options.onChange(false);
    }
  }

  /** One ping; undefined when it succeeded, else why not. */
  private async attempt(): Promise<unknown> {
    let timer: NodeJS.Timeout | undefined;
    // The race bounds the probe even where postgres.js would wait on (a connection attempt it
    // retries quietly); the connection's own watchdog and connect_timeout clean up behind it.
    const timeout = new Promise<Error>((resolve) => {
      timer = setTimeout(() => resolve(new Error(`no answer from the database within ${this.options.timeoutMs} ms`)), this.options.timeoutMs);
    });
    try {
      return await Promise.race([this.options.ping().then(() => undefined, (err: unknown) => err ?? new Error("ping failed")), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }
}
