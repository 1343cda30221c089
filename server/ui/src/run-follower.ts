/**
 * The run page's follow schedule (use-run-follow.ts wires it to the API): describe the run, read its
 * history page by page, then long-poll for new events (GetRunHistory.wait_new_events answers as soon
 * as the run writes one, or after the server's cap of about 20 s with none), describing the run again
 * each time the history is caught up (a pending activity's attempt and last failure change without
 * an event). An ended run writes no more events: the follow stops when it has read them all.
 *
 * Two limits, both from review 2 (tests/e2e/web-ui-run-follow.test.ts):
 * - A pause of `gapMs` after each caught-up read before the next one. On a busy run every long poll
 *   answers at once, and without the pause a 400-activity run cost 13 requests a second per open
 *   page; with it, at most one history read and one describe per gap (plus their time). Pages of a
 *   backlog (a full page: more to read) follow one another without a pause.
 * - Nothing held while the tab is hidden: a long poll holds one of the browser's 6 HTTP/1.1
 *   connections to the UI's origin for up to 20 s, so six run pages open in background tabs left a
 *   seventh tab unable to load anything. Hidden: the read in flight is aborted and none starts; shown
 *   again: the follow reads (and describes) at once. As in refresher.ts, the first read happens even in a
 *   hidden tab, so a page opened in the background has something to show.
 * Plain TypeScript, no DOM: server/ui/test/run-follower.test.ts drives it with fake timers.
 */

/** What the follower needs of a GetRunHistory answer. */
export interface FollowedPage {
  events: ReadonlyArray<{ sequence: bigint }>;
  historyLength: bigint;
  /** The run may still write events (CREATED or RUNNING). */
  open: boolean;
}

export interface RunFollowerOptions<P extends FollowedPage> {
  /** GetRunHistory after `after`, waiting for new events; `signal` aborts it (tab hidden, page gone). */
  readHistory(after: bigint, signal: AbortSignal): Promise<P>;
  /** DescribeRun, showing its answer or its error itself (a failed describe does not stop the follow). */
  describe(signal: AbortSignal): Promise<void>;
  /** A page of new events (possibly empty: a long poll that ended with none). */
  onPage(page: P): void;
  /** A failed history read: "retry" after `retryMs`, or "stop" (asking again will not change it). */
  onError(err: unknown): "retry" | "stop";
  /** Whether the tab is visible now (in the browser: document.visibilityState === "visible"). */
  visible(): boolean;
  /** The pause after a caught-up read (default 500 ms). */
  gapMs?: number;
  /** The pause after a failed read (default 2 s). */
  retryMs?: number;
}

export interface RunFollower {
  /** To call on the document's visibilitychange: hidden stops (and aborts) reading; shown reads at once. */
  visibilityChanged(): void;
  stop(): void;
}

export const FOLLOW_GAP_MS = 500;
export const FOLLOW_RETRY_MS = 2_000;

export function startRunFollower<P extends FollowedPage>(options: RunFollowerOptions<P>): RunFollower {
  const gapMs = options.gapMs ?? FOLLOW_GAP_MS;
  const retryMs = options.retryMs ?? FOLLOW_RETRY_MS;
  let stopped = false;
  let inFlight: AbortController | undefined;
  // Resolves the loop's current wait (a pause, or waiting to be shown) early.
  let wake: (() => void) | undefined;

  const wait = (ms: number | undefined) =>
    new Promise<void>((resolve) => {
      const timer = ms === undefined ? undefined : setTimeout(() => done(), ms);
      const done = () => {
        clearTimeout(timer);
        wake = undefined;
        resolve();
      };
      wake = done;
    });
  /** Runs one call under its own abort controller, aborted when the tab is hidden or the follow stops. */
  const guarded = async <T>(call: (signal: AbortSignal) => Promise<T>): Promise<{ value: T } | { aborted: true }> => {
    const abort = new AbortController();
    inFlight = abort;
    try {
      const value = await call(abort.signal);
      return abort.signal.aborted ? { aborted: true } : { value };
    } catch (err) {
      if (abort.signal.aborted) return { aborted: true };
      throw err;
    } finally {
      if (inFlight === abort) inFlight = undefined;
    }
  };

  const follow = async () => {
    let after = 0n;
    let first = true;
    // Described on the way in, after each caught-up read, and when shown again after a hidden spell.
    let describeNext = true;
    while (!stopped) {
      if (!first) while (!stopped && !options.visible()) await wait(undefined);
      if (stopped) return;
      first = false;
      try {
        if (describeNext) {
          if ("aborted" in (await guarded((signal) => options.describe(signal)))) continue;
          describeNext = false;
        }
        const read = await guarded((signal) => options.readHistory(after, signal));
        if ("aborted" in read) {
          describeNext = true;
          continue;
        }
        const page = read.value;
        options.onPage(page);
        after = page.events.at(-1)?.sequence ?? after;
        // A backlog: the next page at once; the run is described once its history is read.
        if (after < page.historyLength) continue;
        describeNext = true;
        if ("aborted" in (await guarded((signal) => options.describe(signal)))) continue;
        describeNext = false;
        // An ended run writes no more events, and the server answers a wait on it at once: stop.
        if (!page.open) return;
        await wait(gapMs);
      } catch (err) {
        if (options.onError(err) === "stop") return;
        await wait(retryMs);
      }
    }
  };
  void follow();

  return {
    visibilityChanged() {
      if (stopped) return;
      if (!options.visible()) inFlight?.abort();
      else wake?.();
    },
    stop() {
      stopped = true;
      inFlight?.abort();
      wake?.();
    },
  };
}
