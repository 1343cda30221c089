/**
 * The one retry path of the SDK's calls: a call that fails with a transient code is made again
 * after an exponential, jittered back-off, until a time limit. Only calls that are safe to repeat
 * go through it: reads, and writes the server deduplicates (a start carries a request id, an event
 * its event id, a task completion its token; see client.ts and handle.ts for each).
 */
import { DexError } from "@dex/proto";
import { backoffDelay, sleep, type BackoffOptions } from "../common/backoff.js";
import { parseDuration, type Duration } from "../common/duration.js";

/**
 * Codes that mean "try again": the server was unreachable or restarting (UNAVAILABLE, which the
 * server also answers while its database is away), or did not answer in time (DEADLINE_EXCEEDED).
 * Not RESOURCE_EXHAUSTED (a message over the server's limit stays over it) nor ABORTED (the server
 * retries its own conflicts; ABORTED reaching a caller is an answer, e.g. a stale workflow task).
 */
export function isTransient(err: unknown): boolean {
  if (!(err instanceof DexError)) return false;
  if (err.code === "UNAVAILABLE") return !tlsRefused(err.message);
  return err.code === "DEADLINE_EXCEEDED";
}

/**
 * grpc-js reports a TLS handshake the server or the client refused as UNAVAILABLE, but no retry
 * will make a certificate valid: these fail at once with OpenSSL's reason, instead of after the
 * retry time. (A plaintext client against a TLS server only hears "Failed to connect", which a
 * restarting server can also cause: that one is retried.)
 */
function tlsRefused(message: string): boolean {
  return /SSL routines|certificate|altnames|self[- ]signed|unable to verify/i.test(message);
}

/**
 * CANCELLED on a call this process did not cancel: a server that shuts down
 * past its grace period cancels the calls it still serves. Whether the call
 * took effect is unknown, exactly as for UNAVAILABLE, and the calls withRetry
 * makes are safe to repeat. A call cancelled through its own signal is not
 * retried: withRetry stops once `signal` has aborted.
 */
function cancelledByServer(err: unknown): boolean {
  return err instanceof DexError && err.code === "CANCELLED";
}

/**
 * What a client call (ClientService) retries: the transient codes, and ABORTED, which the server
 * answers when a call's transaction kept conflicting with concurrent changes and was rolled back
 * ("retry the call"): nothing took effect. Not for worker completions, where ABORTED is an answer.
 */
export function clientRetryable(err: unknown): boolean {
  return isTransient(err) || cancelledByServer(err) || (err instanceof DexError && err.code === "ABORTED");
}

/**
 * A failure after which the request surely reached no server: the connection was never made (refused,
 * unresolvable, timed out connecting), or the server rolled the call back (ABORTED). Retrying these
 * is safe even for a write the server cannot deduplicate across runs (see handle.ts).
 */
export function clientRetryableUnsent(err: unknown): boolean {
  if (!(err instanceof DexError)) return false;
  if (err.code === "ABORTED") return true;
  return err.code === "UNAVAILABLE" && !tlsRefused(err.message) && /No connection established|ECONNREFUSED|ENOTFOUND|EAI_AGAIN|Name resolution failed|connect ETIMEDOUT/i.test(err.message);
}

/** `retry` of createClient: how long and how often a call is retried while the server is away. */
export interface ClientRetryOptions {
  /**
   * How long a call keeps retrying after its first transient failure before it rejects with that
   * failure (a DexError UNAVAILABLE, say). Default "30s": longer than a server restart.
   */
  maxElapsed?: Duration;
  /** The first back-off. Default "100ms"; it doubles on each retry, jittered (a random half to all of it). */
  initialInterval?: Duration;
  /**
   * The longest back-off. Default "1s", so a call resumes within a second of a server being back
   * (sooner: a wait ends early when the connection comes up).
   */
  maxInterval?: Duration;
}

export interface RetryPolicy {
  /** Milliseconds after the first failure; 0: no retries. */
  maxElapsedMs: number;
  backoff: BackoffOptions;
}

export const DEFAULT_RETRY_POLICY: RetryPolicy = { maxElapsedMs: 30_000, backoff: { initialMs: 100, maxMs: 1_000 } };

/** The policy from the `retry` option; `false` turns retries off. */
export function retryPolicy(options: ClientRetryOptions | false | undefined): RetryPolicy {
  if (options === false) return { ...DEFAULT_RETRY_POLICY, maxElapsedMs: 0 };
  if (options === undefined) return DEFAULT_RETRY_POLICY;
  if (typeof options !== "object" || options === null) throw new TypeError("retry must be an object ({ maxElapsed?, initialInterval?, maxInterval? }) or false");
  const ms = (value: Duration | undefined, fallback: number, name: string) => {
    if (value === undefined) return fallback;
    const parsed = parseDuration(value);
    if (!(parsed >= 0)) throw new TypeError(`retry.${name} must be a duration of 0 or more, got ${JSON.stringify(value)}`);
    return parsed;
  };
  const initialMs = Math.max(ms(options.initialInterval, DEFAULT_RETRY_POLICY.backoff.initialMs, "initialInterval"), 1);
  const maxMs = Math.max(ms(options.maxInterval, DEFAULT_RETRY_POLICY.backoff.maxMs, "maxInterval"), initialMs);
  return { maxElapsedMs: ms(options.maxElapsed, DEFAULT_RETRY_POLICY.maxElapsedMs, "maxElapsed"), backoff: { initialMs, maxMs } };
}

export interface RetryCall {
  /** 1 for the first try. */
  attempt: number;
  /**
   * An earlier attempt failed without an answer, so it may have taken effect: a call that is
   * refused now may be refused because of that earlier attempt (see handle.ts).
   */
  retried: boolean;
}

export interface WithRetryOptions {
  /** Default: DEFAULT_RETRY_POLICY. */
  policy?: RetryPolicy;
  /** Stops retrying (and waiting) once aborted; the call's own cancellation is never retried. */
  signal?: AbortSignal;
  /** Keep retrying until this time (epoch ms) instead of the policy's maxElapsed. */
  until?: number;
  /** Which errors are retried. Default: the transient codes and CANCELLED by the server. */
  retryable?: (err: unknown) => boolean;
  /** How to wait between tries; Connection.pause ends the wait when the connection comes up. Default: sleep. */
  pause?: (ms: number, signal?: AbortSignal) => Promise<void>;
}

/** Calls `fn` until it succeeds, fails with a non-transient error, or the time is up. Only for calls safe to repeat. */
export async function withRetry<T>(fn: (call: RetryCall) => Promise<T>, options: WithRetryOptions = {}): Promise<T> {
  const policy = options.policy ?? DEFAULT_RETRY_POLICY;
  const pause = options.pause ?? sleep;
  const retryable = options.retryable ?? ((err: unknown) => isTransient(err) || cancelledByServer(err));
  let until = options.until;
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn({ attempt, retried: attempt > 1 });
    } catch (err) {
      if (options.signal?.aborted || !retryable(err)) throw err;
      until ??= Date.now() + policy.maxElapsedMs;
      const delay = backoffDelay(attempt, policy.backoff);
      if (Date.now() + delay > until) throw err;
      await pause(delay, options.signal);
      if (options.signal?.aborted) throw err;
    }
  }
}
