/** What the benchmark's processes tell each other over the fork IPC channel. */

export const impls = ["grpc-js", "connect-node"] as const;
export type Impl = (typeof impls)[number];

export function isImpl(value: unknown): value is Impl {
  return impls.includes(value as Impl);
}

export const cases = ["complete-activity-task", "poll-workflow-tasks"] as const;
export type Case = (typeof cases)[number];

/** Sent by a server once it listens. */
export interface ServerReady {
  type: "ready";
  port: number;
}

export interface CaseResult {
  case: Case;
  /** Completed calls per second with `concurrency` calls in flight. */
  callsPerSecond: number;
  /** Latency of one call at a time, in milliseconds. */
  p50: number;
  p99: number;
  /** Calls measured in the sequential phase. */
  sequentialCalls: number;
  /** 1-minute load average at the start and end of the case. */
  load: [number, number];
}

export interface ClientDone {
  type: "done";
  results: CaseResult[];
}
