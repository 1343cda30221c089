/**
 * The run page's live view: the run described and its history followed (run-follower.ts says when
 * and why: paced on a busy run, paused in a hidden tab, stopped once an ended run is read).
 * New events are appended, never re-read.
 */
import { useEffect, useRef, useState } from "preact/hooks";
import { ConnectError, Code } from "@connectrpc/connect";
import { RunStatus } from "../../../proto/src/gen/dex/v1/common_pb.js";
import type { DescribeRunResponse } from "../../../proto/src/gen/dex/v1/client_service_pb.js";
import type { HistoryEvent } from "../../../proto/src/gen/dex/v1/history_pb.js";
import { client, errorText } from "./api.js";
import { startRunFollower } from "./run-follower.js";

const HISTORY_PAGE = 1000;

export interface RunView {
  describe: DescribeRunResponse | undefined;
  events: HistoryEvent[];
  historyLength: bigint;
  error: string | undefined;
  /** Describe again now (after an action); the history follows by itself. */
  redescribe: () => void;
}

const isOpen = (status: RunStatus) => status === RunStatus.CREATED || status === RunStatus.RUNNING;
/** A refusal or an unknown run will not change by asking again. */
const FINAL = new Set([Code.NotFound, Code.PermissionDenied, Code.Unauthenticated, Code.InvalidArgument]);

export function useRunFollow(runId: string): RunView {
  const [describe, setDescribe] = useState<DescribeRunResponse>();
  const [events, setEvents] = useState<HistoryEvent[]>([]);
  const [historyLength, setHistoryLength] = useState(0n);
  const [error, setError] = useState<string>();
  const redescribeRef = useRef<() => void>(() => {});

  useEffect(() => {
    const gone = new AbortController();
    const run = { target: { case: "runId" as const, value: runId } };
    const describeNow = async (signal: AbortSignal) => {
      try {
        const answer = await client.describeRun({ run }, { signal });
        if (!signal.aborted) (setDescribe(answer), setError(undefined));
      } catch (err) {
        if (!signal.aborted) setError(errorText(err));
      }
    };
    redescribeRef.current = () => void describeNow(gone.signal);
    const follower = startRunFollower({
      describe: describeNow,
      readHistory: async (after, signal) => {
        const page = await client.getRunHistory({ run, afterSequence: after, pageSize: HISTORY_PAGE, waitNewEvents: true }, { signal });
        return { events: page.events, historyLength: page.historyLength, open: isOpen(page.status) };
      },
      onPage: (page) => {
        setHistoryLength(page.historyLength);
        if (page.events.length > 0) setEvents((seen) => [...seen, ...page.events]);
      },
      onError: (err) => {
        const e = ConnectError.from(err);
        setError(errorText(e));
        return FINAL.has(e.code) ? "stop" : "retry";
      },
      visible: () => document.visibilityState === "visible",
    });
    const onVisibility = () => follower.visibilityChanged();
    document.addEventListener("visibilitychange", onVisibility);
    return () => {
      document.removeEventListener("visibilitychange", onVisibility);
      follower.stop();
      gone.abort();
    };
  }, [runId]);

  return { describe, events, historyLength, error, redescribe: () => redescribeRef.current() };
}
