/**
 * What the token-fencing properties share (token-fencing.property.test.ts, the eager, batch and
 * sticky ones): the calls as answers a model can check, the checks of an activity outcome, the
 * fast-check settings read from DEX_FC_*, the coverage counts printed with DEX_FC_COVERAGE=1, and
 * the loop that plays a scenario's actions one by one.
 */
import fc from "fast-check";
import { expect } from "vitest";
import { fromBinary } from "@bufbuild/protobuf";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import {
  codeName,
  DexError,
  FailureKind,
  FailureSchema,
  TimeoutType,
  type ActivityTaskReportResult,
  type HistoryEvent,
  type TaskQueueType,
} from "@dex/proto";
import { DEFAULT_WAIT_MS } from "@dex/testing";
import { FATAL_TYPE, type ActivityOutcome, type FailureChoice } from "../token-fencing.model.js";
import { fromJson, json, uniqueId, type Harness } from "../helpers.js";

export const ms = (n: number) => ({ seconds: BigInt(Math.floor(n / 1000)), nanos: (n % 1000) * 1e6 });
export const micros = (t: Timestamp) => Number(t.seconds) * 1e6 + Math.floor(t.nanos / 1000);

/** fast-check's settings: numRuns, a time limit for the whole property (shrinking included), and DEX_FC_SEED / _PATH / _NO_SHRINK. */
export function fcParameters(numRuns: number, timeLimitMs: number): fc.Parameters<unknown> {
  return {
    numRuns,
    interruptAfterTimeLimit: timeLimitMs,
    ...(process.env.DEX_FC_SEED ? { seed: Number(process.env.DEX_FC_SEED) } : {}),
    ...(process.env.DEX_FC_PATH ? { path: process.env.DEX_FC_PATH } : {}),
    ...(process.env.DEX_FC_NO_SHRINK ? { endOnFailure: true } : {}),
  };
}

/** How often each interesting path was taken, and how long each kind of action took. */
const coverage = new Map<string, number>();
const timings = new Map<string, number[]>();
export function cover(label: string): void {
  coverage.set(label, (coverage.get(label) ?? 0) + 1);
}
function timing(label: string, ms: number): void {
  if (!timings.has(label)) timings.set(label, []);
  timings.get(label)!.push(ms);
}
/** Prints the counts with DEX_FC_COVERAGE=1 (each test file runs in its own process, so they are the file's). */
export function printCoverage(): void {
  if (!process.env.DEX_FC_COVERAGE) return;
  // Only files that play through ScenarioRun have timings.
  if (timings.size > 0) console.log([...timings].map(([k, v]) => `${k}: n=${v.length} total=${v.reduce((a, b) => a + b, 0)}ms`).join("\n"));
  console.log([...coverage].sort(([a], [b]) => a.localeCompare(b)).map(([k, n]) => `${k}: ${n}`).join("\n"));
}

export type Answer<T> = { code: "OK"; value: T } | { code: string; message: string };

/** The call's answer: OK with its value, or the DexError's code (anything else is a test error). */
export async function answer<T>(promise: Promise<T>): Promise<Answer<T>> {
  try {
    return { code: "OK", value: await promise };
  } catch (err) {
    if (err instanceof DexError) return { code: err.code, message: err.message };
    throw err;
  }
}

export function ok<T>(a: Answer<T>, what: string): T {
  if (a.code !== "OK") throw new Error(`${what}: expected OK, got ${a.code} (${(a as { message: string }).message})`);
  return (a as { value: T }).value;
}

export type ReportOutcome =
  | { case: "complete"; value: { taskToken: Uint8Array; result: ReturnType<typeof json> } }
  | { case: "fail"; value: { taskToken: Uint8Array; failure: ReturnType<typeof failureOf> } };

/**
 * Activity outcomes reported through ReportActivityTasks (decision 0011): each item's answer in
 * the unary call's shape, so both paths meet the same model.
 */
export async function reportItems(h: Harness, outcomes: ReportOutcome[]): Promise<Array<Answer<{ willRetry: boolean }>>> {
  const call = await answer(h.worker.reportActivityTasks({ items: outcomes.map((outcome) => ({ outcome })) }));
  if (call.code !== "OK") return outcomes.map(() => call as Answer<{ willRetry: boolean }>);
  const { results } = (call as { value: { results: ActivityTaskReportResult[] } }).value;
  expect(results, "one result per item").toHaveLength(outcomes.length);
  return results.map((r) => (r.code === 0 ? { code: "OK", value: { willRetry: r.fail?.willRetry ?? false } } : { code: codeName(r.code), message: r.message }));
}

export function failureOf(choice: FailureChoice, message: string) {
  return { message, type: choice === "nonRetryableType" ? FATAL_TYPE : "FlakyError", nonRetryable: choice === "nonRetryable" };
}

/** The bytes of a bytea column as to_jsonb prints them ("\x0a0b..."). */
export function byteaHex(value: unknown): string | undefined {
  return typeof value === "string" ? value.replace(/^\\x/, "") : undefined;
}

/** An activity task row's last_failure (bytea, as to_jsonb prints it). */
export function lastFailure(row: Record<string, unknown> | undefined) {
  return fromBinary(FailureSchema, Buffer.from(byteaHex(row?.last_failure) ?? "", "hex"));
}

export function expectTimeoutFailure(row: Record<string, unknown> | undefined): void {
  const failure = lastFailure(row);
  expect([failure.kind, failure.timeoutType], "the attempt's failure is a heartbeat time-out").toEqual([FailureKind.TIMEOUT, TimeoutType.HEARTBEAT]);
}

/** An activity outcome event (inbox or history) is the model's outcome of the activity with that seq. */
export function expectOutcome(event: HistoryEvent, seq: number, outcome: ActivityOutcome): void {
  const a = event.attributes;
  if (outcome.kind === "completed") {
    expect(a.case).toBe("activityCompleted");
    if (a.case !== "activityCompleted") return;
    expect([a.value.seq, a.value.attempt], "the outcome's seq and attempt").toEqual([seq, outcome.attempt]);
    expect(fromJson(a.value.result), "the first valid result").toBe(outcome.result);
  } else {
    expect(a.case).toBe("activityFailed");
    if (a.case !== "activityFailed") return;
    expect([a.value.seq, a.value.attempt], "the outcome's seq and attempt").toEqual([seq, outcome.attempt]);
    if (outcome.timeout) expect([a.value.failure?.kind, a.value.failure?.timeoutType]).toEqual([FailureKind.TIMEOUT, TimeoutType.HEARTBEAT]);
    else expect(a.value.failure?.message, "the first valid failure").toBe(outcome.message);
  }
}

export function expectContiguous(events: HistoryEvent[]): void {
  expect(
    events.map((e) => Number(e.sequence)),
    "history sequence numbers run from 1 without gaps",
  ).toEqual(events.map((_, i) => i + 1));
}

/**
 * Long-polls until a task comes or DEFAULT_WAIT_MS has passed: a task the model says is available
 * must come by then (a single poll may come back empty on a busy machine). The deadline only
 * bounds how long a missing task takes to fail the property.
 */
export async function pollForTask<T>(poll: () => Promise<{ tasks: T[] }>): Promise<T[]> {
  const deadline = Date.now() + DEFAULT_WAIT_MS;
  for (;;) {
    const { tasks } = await poll();
    if (tasks.length > 0 || Date.now() > deadline) return tasks;
  }
}

export async function createQueue(h: Harness, type: TaskQueueType, prefix: string): Promise<string> {
  const name = uniqueId(prefix).replace(/[^A-Za-z0-9._-]/g, "_").slice(0, 64);
  await h.queues.createTaskQueue({ name, type });
  return name;
}

/**
 * What every scenario run shares: the actions played one by one, each timed, a failure named by
 * its step; once the run's outcome is in, at most `afterTheEnd` more (they show that nothing gets
 * through; more add nothing but time).
 */
export abstract class ScenarioRun<A> {
  protected step = 0;
  constructor(private readonly afterTheEnd: number) {}
  /** True once every activity has its outcome, or the run ended. */
  protected abstract ended(): boolean;
  protected abstract act(action: A): Promise<void>;
  protected abstract finish(): Promise<void>;
  protected abstract annotate(err: unknown, where: string): Error;
  /** What the action is, for the timings. */
  protected abstract kind(action: A): string;

  protected async play(actions: A[]): Promise<void> {
    let afterEnd = 0;
    for (const action of actions) {
      if (this.ended() && ++afterEnd > this.afterTheEnd) break;
      this.step++;
      const t0 = Date.now();
      try {
        await this.act(action);
        timing(`${this.constructor.name} ${this.kind(action)}`, Date.now() - t0);
      } catch (err) {
        throw this.annotate(err, `step ${this.step} ${JSON.stringify(action, bytesAsLength)}`);
      }
    }
    await this.finish().catch((err: unknown) => {
      throw this.annotate(err, "final history check");
    });
  }
}

function bytesAsLength(_key: string, value: unknown): unknown {
  return value instanceof Uint8Array ? `<${value.length} bytes>` : value;
}
