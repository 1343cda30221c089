/**
 * What a replay check returns: the per-run results as an async iterable (in
 * the order they finish, so a caller can print as it goes) and the summary per
 * workflow name, built as the results pass.
 */
import type { RunReplayResult } from "./replay-run.js";

export interface WorkflowReplaySummary {
  workflowName: string;
  /** Runs of this workflow checked. */
  checked: number;
  /** Runs the new code replays. */
  replays: number;
  /** Runs that would fail: every status but "replays". */
  fails: number;
  /** The results of the runs that would fail, in the order they finished. */
  failures: RunReplayResult[];
}

export interface ReplaySummary {
  checked: number;
  replays: number;
  fails: number;
  /** One entry per workflow name, sorted by name. */
  workflows: WorkflowReplaySummary[];
}

/** An async iterable of per-run results that also sums them up. Iterate once. */
export interface ReplayCheck extends AsyncIterable<RunReplayResult> {
  /**
   * The summary of every run checked: runs the whole check first if nobody
   * iterated it yet (or finishes an iteration left half-way).
   */
  summary(): Promise<ReplaySummary>;
}

/** Wraps a generator of results into a ReplayCheck. */
export function createReplayCheck(results: AsyncGenerator<RunReplayResult>): ReplayCheck {
  const byName = new Map<string, WorkflowReplaySummary>();
  let iterated = false;
  let done = false;

  async function* counted(): AsyncGenerator<RunReplayResult> {
    for await (const result of results) {
      add(byName, result);
      yield result;
    }
    done = true;
  }
  const iterator = counted();

  return {
    [Symbol.asyncIterator]() {
      if (iterated) throw new Error("a replay check can be iterated once; its summary() holds the totals");
      iterated = true;
      return iterator;
    },
    async summary() {
      iterated = true;
      if (!done) for await (const _ of iterator);
      return summarise(byName);
    },
  };
}

function add(byName: Map<string, WorkflowReplaySummary>, result: RunReplayResult): void {
  let entry = byName.get(result.workflowName);
  if (!entry) {
    entry = { workflowName: result.workflowName, checked: 0, replays: 0, fails: 0, failures: [] };
    byName.set(result.workflowName, entry);
  }
  entry.checked++;
  if (result.status === "replays") {
    entry.replays++;
  } else {
    entry.fails++;
    entry.failures.push(result);
  }
}

function summarise(byName: Map<string, WorkflowReplaySummary>): ReplaySummary {
  const workflows = [...byName.values()].sort((a, b) => (a.workflowName < b.workflowName ? -1 : a.workflowName > b.workflowName ? 1 : 0));
  const total = (pick: (w: WorkflowReplaySummary) => number) => workflows.reduce((sum, w) => sum + pick(w), 0);
  return { checked: total((w) => w.checked), replays: total((w) => w.replays), fails: total((w) => w.fails), workflows };
}

/**
 * Applies `fn` to the items with at most `concurrency` calls in flight, yielding
 * results as they finish. Items are pulled only when a slot is free, so a paged
 * source is read no faster than it is checked. A call that rejects ends the
 * iteration with its error (calls still in flight finish unobserved).
 */
export async function* mapConcurrently<T, R>(items: AsyncIterable<T>, concurrency: number, fn: (item: T) => Promise<R>): AsyncGenerator<R> {
  const source = items[Symbol.asyncIterator]();
  // Settled calls in the order they settled; a queue rather than Promise.race over the running calls,
  // which would add a reaction to every pending call on every result.
  const settled: Array<{ ok: true; value: R } | { ok: false; error: unknown }> = [];
  let wake: (() => void) | undefined;
  let running = 0;
  let exhausted = false;
  const settle = (outcome: (typeof settled)[number]) => {
    running--;
    settled.push(outcome);
    wake?.();
  };
  try {
    for (;;) {
      while (!exhausted && running < concurrency) {
        const next = await source.next();
        if (next.done) {
          exhausted = true;
          break;
        }
        running++;
        fn(next.value).then(
          (value) => settle({ ok: true, value }),
          (error: unknown) => settle({ ok: false, error }),
        );
      }
      const outcome = settled.shift();
      if (outcome === undefined) {
        if (running === 0) return;
        await new Promise<void>((resolve) => (wake = resolve));
        wake = undefined;
        continue;
      }
      if (!outcome.ok) throw outcome.error;
      yield outcome.value;
    }
  } finally {
    if (!exhausted) await source.return?.();
  }
}
