/**
 * When a page re-reads its data (the runs and queues pages): `intervalMs` after the previous read
 * ended, so two reads of one page are never in flight at once however slow the server is; and only
 * while the tab is visible, so a forgotten background tab costs the server nothing. A tab that
 * becomes visible again reads at once (what it shows is stale). Plain TypeScript, no DOM: the
 * caller says what "visible" is, and server/ui/test/refresher.test.ts drives it with fake timers.
 */
export interface RefresherOptions<T> {
  /** One read; `signal` aborts it when it is superseded or the page goes away. */
  load(signal: AbortSignal): Promise<T>;
  onData(value: T): void;
  onError(err: unknown): void;
  intervalMs: number;
  /** Whether the page is visible now (in the browser: document.visibilityState === "visible"). */
  visible(): boolean;
}

export interface Refresher {
  /** Reads now (after a user's action): a read in flight is aborted and its answer dropped. */
  readNow(): void;
  /** To call on the document's visibilitychange: stops refreshing when hidden, reads when shown. */
  visibilityChanged(): void;
  stop(): void;
}

export function startRefresher<T>(options: RefresherOptions<T>): Refresher {
  let stopped = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let inFlight: AbortController | undefined;

  const cancelTimer = () => {
    clearTimeout(timer);
    timer = undefined;
  };
  const read = async () => {
    cancelTimer();
    const abort = new AbortController();
    inFlight = abort;
    try {
      const value = await options.load(abort.signal);
      if (inFlight === abort) options.onData(value);
    } catch (err) {
      if (inFlight === abort) options.onError(err);
    }
    // Superseded by readNow, or stopped: the newer read (if any) schedules the next one.
    if (inFlight !== abort) return;
    inFlight = undefined;
    if (!stopped && options.visible()) timer = setTimeout(() => void read(), options.intervalMs);
  };

  // The first read happens even in a hidden tab: a page opened in the background has something to show.
  void read();
  return {
    readNow() {
      if (stopped) return;
      inFlight?.abort();
      void read();
    },
    visibilityChanged() {
      if (stopped) return;
      if (!options.visible()) cancelTimer();
      else if (timer === undefined && inFlight === undefined) void read();
    },
    stop() {
      stopped = true;
      cancelTimer();
      inFlight?.abort();
      inFlight = undefined;
    },
  };
}
