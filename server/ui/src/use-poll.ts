/**
 * The runs, queues and schedules pages' live updates: re-read every REFRESH_MS while the tab is
 * visible, one read at a time (refresher.ts says why). The run page follows its history with a long
 * poll instead (use-run-follow.ts).
 */
import { useEffect, useRef, useState } from "preact/hooks";
import { errorText } from "./api.js";
import { startRefresher, type Refresher } from "./refresher.js";

export const REFRESH_MS = 2_000;

/** What a read answered, with the deps it was read for. */
interface Answer<T> {
  deps: unknown[];
  data?: T;
  error?: string;
}

const sameDeps = (a: unknown[], b: unknown[]) => a.length === b.length && a.every((value, i) => Object.is(value, b[i]));

/**
 * `data` and `error` are only ever those of a read for the current `deps`: until the first read for
 * new deps answers, both are undefined. Review 2 found why: the runs page kept showing the old
 * filter's page, and its "Older" button sent that page's token with the new filter, which the
 * server refused (INVALID_ARGUMENT: a page token belongs to its filter). Compared while rendering,
 * not cleared in the effect, so not even one render pairs new deps with an old answer.
 */
export function usePoll<T>(
  load: (signal: AbortSignal) => Promise<T>,
  deps: unknown[],
): { data: T | undefined; error: string | undefined; reload: () => void } {
  const [answer, setAnswer] = useState<Answer<T>>();
  const refresher = useRef<Refresher>();
  useEffect(() => {
    const r = startRefresher({
      load,
      onData: (data) => setAnswer({ deps, data }),
      // A failed re-read keeps the data it had, as before.
      onError: (err) => setAnswer((previous) => ({ deps, data: previous && sameDeps(previous.deps, deps) ? previous.data : undefined, error: errorText(err) })),
      intervalMs: REFRESH_MS,
      visible: () => document.visibilityState === "visible",
    });
    refresher.current = r;
    const onVisibility = () => r.visibilityChanged();
    document.addEventListener("visibilitychange", onVisibility);
    return () => {
      document.removeEventListener("visibilitychange", onVisibility);
      r.stop();
    };
  }, deps);
  const current = answer && sameDeps(answer.deps, deps) ? answer : undefined;
  return { data: current?.data, error: current?.error, reload: () => refresher.current?.readNow() };
}
