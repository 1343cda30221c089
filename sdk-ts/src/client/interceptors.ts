/**
 * Client interceptors: a hook around each start (start and sendEventWithStart), so tracing (the
 * @dex/opentelemetry package) can wrap it in a span and send its W3C trace context as request
 * metadata (`traceparent`, `tracestate`), which the server stores with the run and hands to every
 * task of it (docs/worker-protocol.md, "Trace context").
 */

export interface StartCallInfo {
  readonly kind: "start" | "sendEventWithStart";
  readonly workflowName: string;
  readonly instanceId: string;
  readonly taskQueue: string;
}

/** What a start answered, as far as a hook needs it. */
export interface StartCallResult {
  readonly runId: string;
  readonly started: boolean;
}

export interface ClientInterceptor {
  /**
   * Wraps one start, retries included. Call `next` exactly once with the metadata to add to the
   * request (merged with what outer hooks added) and return what it returns.
   */
  start?(info: StartCallInfo, next: (metadata: Record<string, string>) => Promise<StartCallResult>): Promise<StartCallResult>;
}

/** Sends a start through the interceptors' start hooks (the first is the outermost). */
export async function interceptStart<R extends StartCallResult>(
  interceptors: readonly ClientInterceptor[] | undefined,
  info: StartCallInfo,
  send: (metadata: Record<string, string> | undefined) => Promise<R>,
): Promise<R> {
  const hooks = (interceptors ?? []).filter((i) => i.start);
  if (hooks.length === 0) return send(undefined);
  let result!: R;
  let next = async (metadata: Record<string, string>): Promise<StartCallResult> => (result = await send(metadata));
  for (let i = hooks.length - 1; i >= 0; i--) {
    const interceptor = hooks[i]!;
    const inner = next;
    next = (metadata) => interceptor.start!(info, (more) => inner({ ...metadata, ...more }));
  }
  await next({});
  return result;
}
