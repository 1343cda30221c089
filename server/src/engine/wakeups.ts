/**
 * In-process wake-ups for long polls and run waiters.
 *
 * A parked poll subscribes to its queue *before* it tries to claim, so a task
 * committed between the claim and the park is never missed: the wake resolves
 * the subscription already held. Queue wakes are counted: a commit that made
 * n tasks wakes at most n polls (oldest first), so one new task does not send
 * every parked poll to the database. A poll that fills its batch passes a wake
 * on (there may be more); the fallback tick and the LISTEN reconnect hook
 * cover anything lost in between.
 *
 * Due times (wakeQueueAt: a retry or back-off coming due) are known only to
 * the server whose commit set them; when one comes due that server also tells
 * the others (`announceDue`, wired to engine/notifier.ts by server.ts), so a
 * poll parked on another server takes the task at once, not at its tick.
 */

/**
 * setTimeout's longest delay (about 24.8 days). A longer one fires after 1 ms,
 * so a retry ten years away (FailActivityTask's next_retry_delay may ask for
 * one) re-armed its timer every millisecond. Capped, the timer fires early,
 * finds nothing due and re-arms once more.
 */
const MAX_TIMEOUT_MS = 2 ** 31 - 1;

export interface Subscription {
  /** Resolves when woken, closed, or the subscription is cancelled. */
  readonly woken: Promise<void>;
  /** True once woken (or closed); cancelling does not set it. */
  readonly fired: boolean;
  /** True when only a wake by worker name (wakeWorker) fired it; see subscribeQueue. */
  readonly byName?: boolean;
  cancel(): void;
}

interface Waiter {
  fired: boolean;
  resolve: () => void;
}

class WaiterSet {
  private readonly waiters = new Map<string, Set<Waiter>>();

  subscribe(key: string, closed: boolean): Subscription {
    let resolve!: () => void;
    const woken = new Promise<void>((r) => (resolve = r));
    const waiter: Waiter = { fired: false, resolve: () => {} };
    waiter.resolve = () => {
      waiter.fired = true;
      resolve();
    };
    if (closed) waiter.resolve();
    else {
      let set = this.waiters.get(key);
      if (!set) this.waiters.set(key, (set = new Set()));
      set.add(waiter);
    }
    const remove = () => {
      const set = this.waiters.get(key);
      if (!set) return;
      set.delete(waiter);
      if (set.size === 0) this.waiters.delete(key);
    };
    return {
      woken,
      get fired() {
        return waiter.fired;
      },
      // Cancelling ends the wait but is not a wake: `fired` stays as it was. A poll reads its
      // previous subscription's byName after cancelling it (engine/workflow-tasks.ts); marking
      // both halves fired there made byName always false, and two sticky owners on a paused queue
      // woke each other in a loop (server/test/sticky-paused-queue.test.ts).
      cancel: () => {
        remove();
        resolve();
      },
    };
  }

  /** Wakes up to `count` waiters in subscription order; returns how many were woken. */
  wake(key: string, count = Number.POSITIVE_INFINITY): number {
    const set = this.waiters.get(key);
    if (!set) return 0;
    let woken = 0;
    for (const waiter of set) {
      if (woken >= count) break;
      set.delete(waiter);
      waiter.resolve();
      woken++;
    }
    if (set.size === 0) this.waiters.delete(key);
    return woken;
  }

  keys(): string[] {
    return [...this.waiters.keys()];
  }

  wakeAll(): void {
    for (const key of this.keys()) this.wake(key);
  }
}

interface DueTimes {
  /** Due buckets (ms), sorted, each with whether its coming due is announced to the other servers. */
  due: Array<{ at: number; everywhere: boolean }>;
  timer: NodeJS.Timeout | undefined;
  armedAt: number;
}

/** Who a due time concerns: polls on every server (a retry, a back-off) or only this server's (see wakeQueueAt). */
export type DueScope = "everywhere" | "here";

export interface WakeupsOptions {
  /** Called when due times of the queue marked "everywhere" came due: tell the other servers (engine/notifier.ts). */
  announceDue?: (type: string, queue: string) => void;
}

export function queueKey(type: string, queue: string): string {
  return `${type}:${queue}`;
}

export class Wakeups {
  private readonly queues = new WaiterSet();
  /** Parked polls by queue and worker id: a sticky task's owner is woken by name (store/workflow-tasks.ts). */
  private readonly workers = new WaiterSet();
  private readonly runs = new WaiterSet();
  private readonly runEnds = new WaiterSet();
  private readonly timers = new Map<string, DueTimes>();
  private closed = false;

  constructor(private readonly options: WakeupsOptions = {}) {}

  /**
   * With `workerId`, the poll can also be woken by name (wakeWorker); a
   * queue wake still counts it like any other parked poll.
   */
  subscribeQueue(type: string, queue: string, workerId?: string): Subscription {
    const byQueue = this.queues.subscribe(queueKey(type, queue), this.closed);
    if (workerId === undefined) return byQueue;
    const byWorker = this.workers.subscribe(`${queueKey(type, queue)}:${workerId}`, this.closed);
    const woken = Promise.race([byQueue.woken, byWorker.woken]);
    return {
      woken,
      get fired() {
        return byQueue.fired || byWorker.fired;
      },
      get byName() {
        return byWorker.fired && !byQueue.fired;
      },
      cancel: () => {
        byQueue.cancel();
        byWorker.cancel();
      },
    };
  }

  /** Wakes the polls of one worker parked on the queue (the owner of a sticky task another poll left alone). */
  wakeWorker(type: string, queue: string, workerId: string): void {
    this.workers.wake(`${queueKey(type, queue)}:${workerId}`);
  }

  wakeQueue(type: string, queue: string, count = 1): void {
    this.queues.wake(queueKey(type, queue), count);
  }

  /** Queues that have parked polls right now (for the fallback tick). */
  parkedQueues(): Array<{ type: string; queue: string }> {
    return this.queues.keys().map((key) => {
      const at = key.indexOf(":");
      return { type: key.slice(0, at), queue: key.slice(at + 1) };
    });
  }

  /**
   * Wakes a poll of the queue at `at`. Due times are kept per queue in 50 ms
   * buckets (at most 1000 per queue; beyond that the fallback tick covers),
   * with one timer armed for the earliest. `scope`: "everywhere" (a retry or
   * back-off: a task becomes claimable for any server's polls) also announces
   * the queue to the other servers when the time comes; "here" (sticky
   * routing's fallback end, which each server's polls arm for themselves)
   * does not.
   */
  wakeQueueAt(type: string, queue: string, at: Date, scope: DueScope = "everywhere"): void {
    if (this.closed) return;
    const key = queueKey(type, queue);
    const due = Math.ceil(at.getTime() / 50) * 50;
    let entry = this.timers.get(key);
    if (!entry) this.timers.set(key, (entry = { due: [], timer: undefined, armedAt: Infinity }));
    const bucket = entry.due.find((d) => d.at === due);
    if (bucket) bucket.everywhere ||= scope === "everywhere";
    else {
      if (entry.due.length >= 1000) return;
      entry.due.push({ at: due, everywhere: scope === "everywhere" });
      entry.due.sort((a, b) => a.at - b.at);
    }
    this.arm(key, entry, type, queue);
  }

  private arm(key: string, entry: DueTimes, type: string, queue: string): void {
    const next = entry.due[0]?.at;
    if (next === undefined) {
      this.timers.delete(key);
      return;
    }
    if (entry.timer && entry.armedAt <= next) return;
    if (entry.timer) clearTimeout(entry.timer);
    entry.armedAt = next;
    entry.timer = setTimeout(() => {
      entry.timer = undefined;
      entry.armedAt = Infinity;
      const now = Date.now();
      let count = 0;
      let everywhere = false;
      while (entry.due.length > 0 && entry.due[0]!.at <= now) {
        // Not `everywhere ||= entry.due.shift()…`: ||= skips its right side once true, the shift
        // with it, and the loop never ended (a server spun at 100% CPU in chaos claim-race).
        const bucket = entry.due.shift()!;
        if (bucket.everywhere) everywhere = true;
        count++;
      }
      if (count > 0) this.queues.wake(key, count);
      if (everywhere && !this.closed) this.options.announceDue?.(type, queue);
      this.arm(key, entry, type, queue);
    }, Math.min(MAX_TIMEOUT_MS, Math.max(0, next - Date.now()) + 5));
    entry.timer.unref();
  }

  /** Wakes on any change of the run (history waiters). */
  subscribeRun(runId: string): Subscription {
    return this.runs.subscribe(runId, this.closed);
  }

  /** Wakes only when the run may have ended (result waiters): its other changes cost them no read. */
  subscribeRunEnd(runId: string): Subscription {
    return this.runEnds.subscribe(runId, this.closed);
  }

  /**
   * The run changed. `ended: false` when the writer knows the run is still open (a workflow task
   * that did not end it); unknown (a NOTIFY from another server) counts as maybe ended.
   */
  wakeRun(runId: string, change: { ended?: boolean } = {}): void {
    this.runs.wake(runId);
    if (change.ended !== false) this.runEnds.wake(runId);
  }

  /** Every waiter re-checks: after the LISTEN connection reconnects, notifications may have been missed. */
  wakeEverything(): void {
    this.queues.wakeAll();
    this.workers.wakeAll();
    this.runs.wakeAll();
    this.runEnds.wakeAll();
  }

  /** Answers every parked poll and waiter now, and every later subscription at once (shutdown). */
  close(): void {
    this.closed = true;
    for (const { timer } of this.timers.values()) if (timer) clearTimeout(timer);
    this.timers.clear();
    this.wakeEverything();
  }

  get isClosed(): boolean {
    return this.closed;
  }
}
