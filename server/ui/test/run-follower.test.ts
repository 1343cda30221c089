/**
 * The run page's follow schedule (src/run-follower.ts), with fake timers: a pause between caught-up
 * reads on a busy run (at most one history read and one describe per gap), a backlog read without
 * pauses, nothing held or started while the tab is hidden and a read at once when it is shown, and
 * the end of the follow once an ended run is read.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { startRunFollower, type FollowedPage, type RunFollower } from "../src/run-follower.js";

const GAP = 500;
const RETRY = 2_000;

interface Pending<T> {
  signal: AbortSignal;
  answer: (value: T) => void;
  fail: (err: Error) => void;
}

/** History reads and describes that the test answers one by one; `calls` is what was asked, in order. */
function controlledApi() {
  const reads: Array<Pending<FollowedPage> & { after: bigint }> = [];
  const describes: Array<Pending<void>> = [];
  const calls: string[] = [];
  return {
    reads,
    describes,
    calls,
    readHistory: (after: bigint, signal: AbortSignal) =>
      new Promise<FollowedPage>((answer, fail) => {
        calls.push(`read after ${after}`);
        reads.push({ signal, after, answer, fail });
      }),
    describe: (signal: AbortSignal) =>
      new Promise<void>((answer, fail) => {
        calls.push("describe");
        describes.push({ signal, answer, fail });
      }),
  };
}

/** A page of events `from`..`to` of a history `length` long. */
const page = (from: number, to: number, length: number, open = true): FollowedPage => ({
  events: Array.from({ length: to - from + 1 }, (_, i) => ({ sequence: BigInt(from + i) })),
  historyLength: BigInt(length),
  open,
});

describe("the run page's follow", () => {
  let visible = true;
  let follower: RunFollower | undefined;
  let api: ReturnType<typeof controlledApi>;
  const errors: string[] = [];
  const start = (onError: (err: unknown) => "retry" | "stop" = () => "retry") =>
    (follower = startRunFollower({
      readHistory: api.readHistory,
      describe: api.describe,
      onPage: () => {},
      onError: (err) => (errors.push(String(err)), onError(err)),
      visible: () => visible,
      gapMs: GAP,
      retryMs: RETRY,
    }));
  /** Lets the follower's awaits run (no time passes). */
  const settle = () => vi.advanceTimersByTimeAsync(0);

  beforeEach(() => {
    vi.useFakeTimers();
    visible = true;
    errors.length = 0;
    api = controlledApi();
  });
  afterEach(() => {
    follower?.stop();
    vi.useRealTimers();
  });

  it("on a busy run, pauses between caught-up reads: one read and one describe per gap at most", async () => {
    start();
    api.describes[0]!.answer();
    await settle();
    // A busy run: every long poll answers at once with new events.
    for (let n = 1; n <= 3; n++) {
      api.reads.at(-1)!.answer(page(n, n, n));
      await settle();
      api.describes.at(-1)!.answer();
      await settle();
      const asked = api.calls.length;
      await vi.advanceTimersByTimeAsync(GAP - 1);
      expect(api.calls).toHaveLength(asked);
      await vi.advanceTimersByTimeAsync(1);
      expect(api.calls).toHaveLength(asked + 1);
    }
    expect(api.calls).toEqual(["describe", "read after 0", "describe", "read after 1", "describe", "read after 2", "describe", "read after 3"]);
  });

  it("reads a backlog page after page without pausing, and describes the run once it is read", async () => {
    start();
    api.describes[0]!.answer();
    await settle();
    api.reads[0]!.answer(page(1, 1000, 2500));
    await settle();
    api.reads[1]!.answer(page(1001, 2000, 2500));
    await settle();
    api.reads[2]!.answer(page(2001, 2500, 2500));
    await settle();
    expect(api.calls).toEqual(["describe", "read after 0", "read after 1000", "read after 2000", "describe"]);
  });

  it("holds no read while the tab is hidden, and describes and reads at once when it is shown", async () => {
    start();
    api.describes[0]!.answer();
    await settle();
    api.reads[0]!.answer(page(1, 5, 5));
    await settle();
    api.describes[1]!.answer();
    await vi.advanceTimersByTimeAsync(GAP);
    // A long poll is held; the tab is hidden: it is let go, and no other starts however long it stays hidden.
    const held = api.reads[1]!;
    expect(held.after).toBe(5n);
    visible = false;
    follower!.visibilityChanged();
    expect(held.signal.aborted).toBe(true);
    held.fail(new Error("aborted"));
    await vi.advanceTimersByTimeAsync(60_000);
    expect(api.reads).toHaveLength(2);
    expect(errors).toEqual([]);

    visible = true;
    follower!.visibilityChanged();
    await settle();
    expect(api.calls.slice(-1)).toEqual(["describe"]);
    api.describes.at(-1)!.answer();
    await settle();
    expect(api.reads.at(-1)!.after).toBe(5n);
    expect(api.reads).toHaveLength(3);
  });

  it("a page opened in a hidden tab reads once, then waits to be shown", async () => {
    visible = false;
    start();
    api.describes[0]!.answer();
    await settle();
    api.reads[0]!.answer(page(1, 3, 3));
    await settle();
    api.describes[1]!.answer();
    await vi.advanceTimersByTimeAsync(60_000);
    expect(api.calls).toEqual(["describe", "read after 0", "describe"]);
  });

  it("stops once an ended run's history is read; retries a failed read after a pause; stops on a final error", async () => {
    start();
    api.describes[0]!.answer();
    await settle();
    api.reads[0]!.fail(new Error("unavailable"));
    await vi.advanceTimersByTimeAsync(RETRY - 1);
    expect(api.reads).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(api.reads[1]!.after).toBe(0n);
    api.reads[1]!.answer(page(1, 4, 4, false));
    await settle();
    api.describes.at(-1)!.answer();
    await vi.advanceTimersByTimeAsync(60_000);
    expect(api.calls).toEqual(["describe", "read after 0", "read after 0", "describe"]);

    follower!.stop();
    api = controlledApi();
    start(() => "stop");
    api.describes[0]!.answer();
    await settle();
    api.reads[0]!.fail(new Error("not found"));
    await vi.advanceTimersByTimeAsync(60_000);
    expect(api.calls).toEqual(["describe", "read after 0"]);
    expect(errors).toEqual(["Error: unavailable", "Error: not found"]);
  });
});
