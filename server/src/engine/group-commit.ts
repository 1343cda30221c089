/**
 * Group commit: requests that arrive while a batch is being written join the
 * next batch; with nothing in flight a request starts its batch at once (in
 * the same tick, after the other requests that tick delivered). One request
 * alone therefore waits for nobody, and under load the batch grows with the
 * arrival rate, with no flush interval to tune (design notes, "Batching
 * without losing latency").
 */
export type Settled<R> = { ok: true; value: R } | { ok: false; error: unknown };

/** Requests submitted and not yet taken by a batch, per operation, across this process's engines. */
const waitingByOperation = new Map<string, number>();

/**
 * How many requests of `operation` wait for the next batch in this process. Tests read it to form
 * a batch on purpose (the batch in flight held up, the rest sent, then released).
 */
export function waitingForBatch(operation: string): number {
  return waitingByOperation.get(operation) ?? 0;
}

export class GroupCommit<I, R> {
  private queued: Array<{ item: I; resolve: (value: R) => void; reject: (error: unknown) => void }> = [];
  private inFlight = 0;
  private scheduled = false;

  /**
   * @param write settles every item of a batch (same length and order); a throw rejects them all.
   * @param options.maxBatch the most items one batch takes; the rest wait for the next.
   * @param options.maxInFlight how many batches may be written at once.
   * @param options.operation names the requests in waitingForBatch.
   */
  constructor(
    private readonly write: (items: I[]) => Promise<Settled<R>[]>,
    private readonly options: { maxBatch: number; maxInFlight: number; operation: string },
  ) {}

  submit(item: I): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.queued.push({ item, resolve, reject });
      this.countWaiting(1);
      this.schedule();
    });
  }

  private countWaiting(change: number): void {
    const { operation } = this.options;
    waitingByOperation.set(operation, (waitingByOperation.get(operation) ?? 0) + change);
  }

  private schedule(): void {
    if (this.scheduled || this.inFlight >= this.options.maxInFlight || this.queued.length === 0) return;
    this.scheduled = true;
    queueMicrotask(() => {
      this.scheduled = false;
      this.flush();
    });
  }

  private flush(): void {
    if (this.inFlight >= this.options.maxInFlight || this.queued.length === 0) return;
    const batch = this.queued.splice(0, this.options.maxBatch);
    this.countWaiting(-batch.length);
    this.inFlight++;
    this.write(batch.map((entry) => entry.item))
      .then(
        (settled) => {
          batch.forEach((entry, i) => {
            const outcome = settled[i];
            if (!outcome) entry.reject(new Error(`group commit: no outcome for item ${i} of ${batch.length}`));
            else if (outcome.ok) entry.resolve(outcome.value);
            else entry.reject(outcome.error);
          });
        },
        (error: unknown) => {
          for (const entry of batch) entry.reject(error);
        },
      )
      .finally(() => {
        this.inFlight--;
        this.schedule();
      });
    // More queued than one batch takes, and room for another batch: start it too.
    this.schedule();
  }
}

/**
 * One GroupCommit per engine, made on first use (an engine is built once per server; tests build
 * several): `perEngine(make)(engine)` returns that engine's.
 */
export function perEngine<E extends object, I, R>(make: (engine: E) => GroupCommit<I, R>): (engine: E) => GroupCommit<I, R> {
  const made = new WeakMap<E, GroupCommit<I, R>>();
  return (engine) => {
    let committer = made.get(engine);
    if (!committer) made.set(engine, (committer = make(engine)));
    return committer;
  };
}
