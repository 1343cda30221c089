/**
 * The runs and queues pages' refresh schedule (src/refresher.ts), with fake timers: one read at a
 * time, none while the tab is hidden, a read at once when it is shown again, and a user's reload
 * that supersedes the read in flight.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { startRefresher, type Refresher } from "../src/refresher.js";

const INTERVAL = 2_000;

/** A load whose reads the test answers one by one. */
function controlledLoad() {
  const reads: Array<{ signal: AbortSignal; answer: (value: number) => void; fail: (err: Error) => void }> = [];
  const load = (signal: AbortSignal) =>
    new Promise<number>((answer, fail) => {
      reads.push({ signal, answer, fail });
    });
  return { reads, load };
}

describe("the pages' refresher", () => {
  let visible = true;
  let refresher: Refresher | undefined;
  const seen: number[] = [];
  const errors: string[] = [];
  const start = (load: (signal: AbortSignal) => Promise<number>) =>
    (refresher = startRefresher({ load, onData: (v) => seen.push(v), onError: (e) => errors.push(String(e)), intervalMs: INTERVAL, visible: () => visible }));

  beforeEach(() => {
    vi.useFakeTimers();
    visible = true;
    seen.length = 0;
    errors.length = 0;
  });
  afterEach(() => {
    refresher?.stop();
    vi.useRealTimers();
  });

  it("reads again an interval after the previous read ended, never while one is in flight", async () => {
    const { reads, load } = controlledLoad();
    start(load);
    expect(reads).toHaveLength(1);
    // A slow server: ten intervals pass and still only the one read is out.
    await vi.advanceTimersByTimeAsync(10 * INTERVAL);
    expect(reads).toHaveLength(1);
    reads[0]!.answer(1);
    await vi.advanceTimersByTimeAsync(INTERVAL - 1);
    expect(reads).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(reads).toHaveLength(2);
    // A failed read is reported and the next one still comes.
    reads[1]!.fail(new Error("unavailable"));
    await vi.advanceTimersByTimeAsync(INTERVAL);
    expect(reads).toHaveLength(3);
    expect({ seen, errors }).toEqual({ seen: [1], errors: ["Error: unavailable"] });
  });

  it("does not refresh while the tab is hidden, and reads at once when it is shown", async () => {
    const { reads, load } = controlledLoad();
    start(load);
    reads[0]!.answer(1);
    await vi.advanceTimersByTimeAsync(0);
    visible = false;
    refresher!.visibilityChanged();
    await vi.advanceTimersByTimeAsync(100 * INTERVAL);
    expect(reads).toHaveLength(1);
    visible = true;
    refresher!.visibilityChanged();
    expect(reads).toHaveLength(2);
    // Shown again while that read is out: no second read beside it.
    refresher!.visibilityChanged();
    expect(reads).toHaveLength(2);
  });

  it("hidden while a read is out: that read lands, and no next one is scheduled", async () => {
    const { reads, load } = controlledLoad();
    start(load);
    visible = false;
    refresher!.visibilityChanged();
    reads[0]!.answer(7);
    await vi.advanceTimersByTimeAsync(100 * INTERVAL);
    expect({ reads: reads.length, seen }).toEqual({ reads: 1, seen: [7] });
  });

  it("readNow aborts the read in flight and drops its late answer", async () => {
    const { reads, load } = controlledLoad();
    start(load);
    refresher!.readNow();
    expect(reads).toHaveLength(2);
    expect(reads[0]!.signal.aborted).toBe(true);
    reads[0]!.answer(1);
    reads[1]!.answer(2);
    await vi.advanceTimersByTimeAsync(0);
    expect(seen).toEqual([2]);
    // Only the newer read schedules the next one.
    await vi.advanceTimersByTimeAsync(INTERVAL);
    expect(reads).toHaveLength(3);
  });

  it("stop aborts the read in flight and reads nothing more", async () => {
    const { reads, load } = controlledLoad();
    start(load);
    refresher!.stop();
    expect(reads[0]!.signal.aborted).toBe(true);
    reads[0]!.answer(1);
    refresher!.readNow();
    refresher!.visibilityChanged();
    await vi.advanceTimersByTimeAsync(10 * INTERVAL);
    expect({ reads: reads.length, seen }).toEqual({ reads: 1, seen: [] });
  });
});
