/**
 * The runs, queues and schedules pages' live updates: re-read every REFRESH_MS while the tab is
 * visible, one read at a time (refresher.ts says why). The run page follows its history with a long
 * poll instead (use-run-follow.ts).
 */
import { useEffect, useRef, useState } from "preact/hooks";
import { errorText } from "./api.js";
import { startRefresher, type Refresher } from "./refresher.js";

export const REFRESH_MS = 2_000;

export function usePoll<T>(
  load: (signal: AbortSignal) => Promise<T>,
  deps: unknown[],
): { data: T | undefined; error: string | undefined; reload: () => void } {
  const [data, setData] = useState<T>();
  const [error, setError] = useState<string>();
  const refresher = useRef<Refresher>();
  useEffect(() => {
    const r = startRefresher({
      load,
      onData: (value) => (setData(value), setError(undefined)),
      onError: (err) => setError(errorText(err)),
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
  return { data, error, reload: () => refresher.current?.readNow() };
}
