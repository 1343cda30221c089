/**
 * The run page's live view: the history read page by page once, then followed with a long poll
 * (GetRunHistory.wait_new_events, after_sequence = the last event seen) that answers as soon as the
 * run writes an event, or after the server's cap (about 20 s) with none. New events are appended;
 * the run is described again once the history is caught up after new events, and after each empty
 * long poll (pending activities' attempts and failures change without history events). An ended run
 * gets no new events: the follow stops once it has read them all.
 */
import { useEffect, useRef, useState } from "preact/hooks";
import { ConnectError, Code } from "@connectrpc/connect";
import { RunStatus } from "../../../proto/src/gen/dex/v1/common_pb.js";
import type { DescribeRunResponse } from "../../../proto/src/gen/dex/v1/client_service_pb.js";
import type { HistoryEvent } from "../../../proto/src/gen/dex/v1/history_pb.js";
import { client, errorText } from "./api.js";

const HISTORY_PAGE = 1000;
/** After a failed read (server restarting, network), wait this long before the next. */
const RETRY_MS = 2_000;

export interface RunView {
  describe: DescribeRunResponse | undefined;
  events: HistoryEvent[];
  historyLength: bigint;
  error: string | undefined;
  /** Describe again now (after an action); the history follows by itself. */
  redescribe: () => void;
}

const isOpen = (status: RunStatus) => status === RunStatus.CREATED || status === RunStatus.RUNNING;

export function useRunFollow(runId: string): RunView {
  const [describe, setDescribe] = useState<DescribeRunResponse>();
  const [events, setEvents] = useState<HistoryEvent[]>([]);
  const [historyLength, setHistoryLength] = useState(0n);
  const [error, setError] = useState<string>();
  const redescribeRef = useRef<() => void>(() => {});

  useEffect(() => {
    const abort = new AbortController();
    const { signal } = abort;
    const run = { target: { case: "runId" as const, value: runId } };
    const describeNow = async () => {
      try {
        const answer = await client.describeRun({ run }, { signal });
        if (!signal.aborted) (setDescribe(answer), setError(undefined));
      } catch (err) {
        if (!signal.aborted) setError(errorText(err));
      }
    };
    redescribeRef.current = () => void describeNow();
    const pause = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

    const follow = async () => {
      await describeNow();
      let after = 0n;
      while (!signal.aborted) {
        try {
          const page = await client.getRunHistory({ run, afterSequence: after, pageSize: HISTORY_PAGE, waitNewEvents: true }, { signal });
          if (signal.aborted) return;
          setHistoryLength(page.historyLength);
          const last = page.events.at(-1);
          if (last) {
            after = last.sequence;
            setEvents((seen) => [...seen, ...page.events]);
          }
          const caughtUp = after >= page.historyLength;
          // Between pages of a long history nothing is described: the run is described once it is read.
          if (caughtUp) await describeNow();
          if (caughtUp && !isOpen(page.status)) return;
        } catch (err) {
          if (signal.aborted) return;
          const e = ConnectError.from(err);
          setError(errorText(e));
          // A refusal or an unknown run will not change by asking again.
          if (e.code === Code.NotFound || e.code === Code.PermissionDenied || e.code === Code.Unauthenticated || e.code === Code.InvalidArgument) return;
          await pause(RETRY_MS);
        }
      }
    };
    void follow();
    return () => abort.abort();
  }, [runId]);

  return { describe, events, historyLength, error, redescribe: () => redescribeRef.current() };
}
