/**
 * When a worker last polled each queue, cluster-wide, for describe's "no
 * worker has polled ... recently". A poll only marks its queue in memory;
 * every POLL_FLUSH_INTERVAL_MS one statement writes `last_polled_at` for the
 * queues polled since the last round plus the queues with polls parked right
 * now (a worker in a 20 s long poll is polling all along, not only when it
 * asked). So the poll path never waits for, nor pays, a write, and a queue's
 * row is written at most once per interval per server. Until a round has
 * written it, this server's own polls are known here (polledWithin), so
 * describe on the server a worker polls is right at once.
 */
import type { Logger } from "../logger.js";
import type { QueueType } from "../engine/model.js";
import type { EngineObserver } from "./observer.js";

export const POLL_FLUSH_INTERVAL_MS = 5_000;

export interface PolledQueue {
  type: string;
  name: string;
}

/** This server's own knowledge of polls, ahead of the batched write. */
export interface RecentPolls {
  /** Whether a poll of the queue is parked in this server now or answered within the last `ms`. */
  polledWithin(type: string, queue: string, ms: number): boolean;
}

export class PollTracker implements Pick<EngineObserver, "polled">, RecentPolls {
  private polledSince = new Map<string, PolledQueue>();
  /** Local clock of the last answered poll per queue; one entry per queue this server was polled for. */
  private readonly lastPoll = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> = Promise.resolve();
  private running = false;
  private failing = false;

  constructor(
    private readonly options: {
      /** Writes last_polled_at = now() for these queues. */
      write: (queues: PolledQueue[]) => Promise<void>;
      /** Queues with a poll parked in this server now. */
      parked: () => Array<{ type: string; queue: string }>;
      logger: Logger;
      intervalMs?: number;
    },
  ) {}

  polled(type: QueueType, queue: string): void {
    this.polledSince.set(`${type}:${queue}`, { type, name: queue });
    this.lastPoll.set(`${type}:${queue}`, Date.now());
  }

  polledWithin(type: string, queue: string, ms: number): boolean {
    const last = this.lastPoll.get(`${type}:${queue}`);
    if (last !== undefined && Date.now() - last <= ms) return true;
    return this.options.parked().some((p) => p.type === type && p.queue === queue);
  }

  start(): void {
    this.timer = setInterval(() => {
      if (this.running) return; // a slow round is still going: skip, never pile up
      this.running = true;
      this.flushing = this.flush().finally(() => (this.running = false));
    }, this.options.intervalMs ?? POLL_FLUSH_INTERVAL_MS);
    this.timer.unref();
  }

  /** One round: the queues polled since the last round and those with parked polls. */
  async flush(): Promise<void> {
    const queues = this.polledSince;
    this.polledSince = new Map();
    for (const { type, queue } of this.options.parked()) queues.set(`${type}:${queue}`, { type, name: queue });
    if (queues.size === 0) return;
    try {
      await this.options.write([...queues.values()]);
      if (this.failing) this.options.logger.info("recording queue polls recovered");
      this.failing = false;
    } catch (err) {
      // Keep them for the next round; log the first failure of a streak only.
      for (const [key, queue] of queues) if (!this.polledSince.has(key)) this.polledSince.set(key, queue);
      if (!this.failing) this.options.logger.warn("recording queue polls failed; retrying", { err });
      this.failing = true;
    }
  }

  /** Stops the rounds; the one in flight ends before this resolves (before the pool closes). */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.flushing;
  }
}
