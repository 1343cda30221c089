/**
 * Hostile values for server/test/hostile-input.test.ts, drawn from a seeded
 * PRNG so that a failure reproduces (DEX_FUZZ_SEED=<seed> repeats a run).
 * Every pick says whether the value is certainly invalid (`bad`): a request
 * carrying one must be refused; other picks may legitimately succeed.
 */
import type { Duration, Timestamp } from "@bufbuild/protobuf/wkt";

/** mulberry32: tiny, fast, and the same sequence on every platform. */
export class Rng {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0;
  }
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
  bytes(n: number): Uint8Array {
    return Uint8Array.from({ length: n }, () => this.int(256));
  }
}

/** One chosen value: what it is (for the failure report), the value, and whether it must be refused. */
export interface Pick<T> {
  label: string;
  value: T;
  bad: boolean;
}

type Pool<T> = ReadonlyArray<readonly [label: string, value: T | ((rng: Rng) => T), bad: boolean]>;

export function draw<T>(rng: Rng, pool: Pool<T>): Pick<T> {
  const [label, value, bad] = rng.pick(pool);
  return { label, value: typeof value === "function" ? (value as (rng: Rng) => T)(rng) : value, bad };
}

let unique = 0;
const fresh = (prefix: string) => () => `${prefix}-${++unique}`;

export const SQL = "'; drop table dex.runs; --";

/** Ids and names: instance ids, workflow, activity and event names, request ids, worker ids. */
export const ids: Pool<string> = [
  ["fresh id", fresh("fz"), false],
  ["fresh id", fresh("id"), false],
  ["sql metacharacters", SQL, false],
  ["sql quote and comment", `x" or 1=1 /* ${Date.now()}`, false],
  ["percent and dollar", "%s%n$1${x}\\", false],
  ["emoji", () => `😀-${++unique}`, false],
  ["right-to-left override", () => `\u202eevil-${++unique}`, false],
  ["lone surrogate (U+FFFD on the wire)", () => `\ud800-${++unique}`, false],
  ["max length", () => `${++unique}-`.padEnd(255, "m"), false],
  ["256 characters", "l".repeat(256), true],
  ["100 000 characters", "h".repeat(100_000), true],
  // Characters are code points (the proto's word): an emoji is one, though JavaScript counts it two.
  ["128 emoji (over 256 UTF-16 units)", () => `${++unique}-${"😀".repeat(128)}`, false],
  ["255 characters with emoji (510 UTF-16 units)", () => { const p = `${++unique}-`; return p + "😀".repeat(255 - p.length); }, false],
  ["256 emoji", "😀".repeat(256), true],
  ["NUL", "a\u0000b", true],
  ["newline", "line\nbreak", true],
  ["tab", "tab\there", true],
  ["escape", "\u001b[31mred", true],
  ["DEL", "del\u007f", true],
  ["C1 control", "c1\u0085", true],
];

/** Required id fields: the pool plus the empty string, which is missing. */
export const requiredIds: Pool<string> = [...ids, ["empty (missing)", "", true]];

/** Patch ids (record_patch_marker): 1 to 128 letters, digits, '-', '_', '.', ':'. */
export const patchIds: Pool<string> = [
  ["plain", "fraud-check", false],
  ["every allowed kind", "v2.gift_note:1-A", false],
  ["max length", "p".repeat(128), false],
  ["empty (missing)", "", true],
  ["129 characters", "p".repeat(129), true],
  ["space", "fraud check", true],
  ["sql", SQL, true],
  ["emoji", "patch-😀", true],
  ["look-alike (Cyrillic a)", "p\u0430tch", true],
  ["NUL", "a\u0000b", true],
  ["newline", "line\nbreak", true],
];

/** Free text (reasons, custom status): only NUL and the length are refused. */
export const texts: Pool<string> = [
  ["empty", "", false],
  ["sql", SQL, false],
  ["multi-line", "first line\nsecond\tline", false],
  ["emoji", "😀 done", false],
  ["lone surrogate", "\udfff tail", false],
  ["NUL", "stop\u0000here", true],
  ["100 000 characters", "r".repeat(100_000), true],
];

export const queueNames: Pool<string> = [
  ["default", "default", false],
  ["unknown queue", "no-such-queue", false],
  ["sql", SQL, true],
  ["space", "bad name", true],
  ["65 characters", "q".repeat(65), true],
  ["NUL", "default\u0000", true],
  ["partition-like", "dex.workflow_tasks", false],
  ["dots", "..", false],
  ["unicode", "dëfault", true],
];

export const int32s: Pool<number> = [
  ["0", 0, false],
  ["1", 1, false],
  ["50", 50, false],
  ["-1", -1, false],
  ["101", 101, false],
  ["int32 max", 2_147_483_647, false],
  ["int32 min", -2_147_483_648, false],
];

export const uint32s: Pool<number> = [
  ["0", 0, true],
  ["fresh", () => 1000 + ++unique, false],
  ["int32 max", 2_147_483_647, false],
  ["2^31", 2_147_483_648, true],
  ["uint32 max", 4_294_967_295, true],
];

export const int64s: Pool<bigint> = [
  ["0", 0n, false],
  ["1", 1n, false],
  ["-1", -1n, true],
  ["2^31", 2n ** 31n, false],
  ["int64 max", 2n ** 63n - 1n, false],
  ["int64 min", -(2n ** 63n), true],
];

/** Enum numbers: the known ones are the first few; anything else must be refused. */
export function enums(known: number[]): Pool<number> {
  return [
    ...known.map((n) => [`${n}`, n, false] as const),
    ["99", 99, true],
    ["-1", -1, true],
    ["int32 max", 2_147_483_647, true],
  ];
}

const TEN_YEARS_S = 10n * 365n * 24n * 3600n;

/** Durations. Valid ones are 0 or at least an hour, so nothing a fuzz case starts fires during the test. */
export const durations: Pool<Duration | undefined> = [
  ["unset", undefined, false],
  ["zero", { seconds: 0n, nanos: 0 } as Duration, false],
  ["one hour", { seconds: 3600n, nanos: 0 } as Duration, false],
  ["ten years", { seconds: TEN_YEARS_S, nanos: 0 } as Duration, false],
  ["-1 s", { seconds: -1n, nanos: 0 } as Duration, true],
  ["-1 ns", { seconds: 0n, nanos: -1 } as Duration, true],
  ["nanos 2e9", { seconds: 0n, nanos: 2_000_000_000 } as Duration, true],
  ["ten years and a second", { seconds: TEN_YEARS_S + 1n, nanos: 0 } as Duration, true],
  ["int64 max s", { seconds: 2n ** 63n - 1n, nanos: 0 } as Duration, true],
  ["int64 min s", { seconds: -(2n ** 63n), nanos: 0 } as Duration, true],
];

const nowS = () => BigInt(Math.floor(Date.now() / 1000));

export const timestamps: Pool<Timestamp | undefined> = [
  ["unset", undefined, false],
  ["in an hour", () => ({ seconds: nowS() + 3600n, nanos: 0 }) as Timestamp, false],
  ["a minute ago", () => ({ seconds: nowS() - 60n, nanos: 0 }) as Timestamp, false],
  ["epoch", { seconds: 0n, nanos: 0 } as Timestamp, false],
  ["year 1", { seconds: -62_135_596_800n, nanos: 0 } as Timestamp, false],
  ["year 9999", { seconds: 253_402_300_799n, nanos: 0 } as Timestamp, false],
  ["int64 max", { seconds: 2n ** 63n - 1n, nanos: 0 } as Timestamp, true],
  ["int64 min", { seconds: -(2n ** 63n), nanos: 0 } as Timestamp, true],
  ["JS Date limit", { seconds: 8_640_000_000_000n, nanos: 0 } as Timestamp, false],
  ["before the JS Date limit", { seconds: -8_640_000_000_000n, nanos: 0 } as Timestamp, false],
  ["negative nanos", { seconds: 1n, nanos: -5 } as Timestamp, true],
  ["nanos 1e9", { seconds: 1n, nanos: 1_000_000_000 } as Timestamp, true],
];

export interface PayloadInit {
  data?: Uint8Array;
  encoding?: string;
  metadata?: Record<string, string>;
}

/** Payloads around the limit the fuzz server runs with. */
export function payloads(limitBytes: number): Pool<PayloadInit | undefined> {
  return [
    ["unset", undefined, false],
    ["empty", {}, false],
    ["json", { data: new TextEncoder().encode('{"a":1}'), encoding: "json/plain" }, false],
    ["binary", (rng) => ({ data: rng.bytes(64), encoding: "binary/plain" }), false],
    ["sql encoding", { data: new Uint8Array([1]), encoding: SQL, metadata: { [SQL]: "\u0000" } }, false],
    ["NUL encoding", { encoding: "\u0000\u0000", metadata: { "\u0000": "\ud800" } }, false],
    ["exactly the limit", { data: new Uint8Array(limitBytes - 12), encoding: "binary/plain" }, false],
    ["one byte over", { data: new Uint8Array(limitBytes + 1), encoding: "binary/plain" }, true],
    ["over in metadata", { data: new Uint8Array(8), metadata: { big: "m".repeat(limitBytes) } }, true],
  ];
}

export interface FailureInit {
  message?: string;
  type?: string;
  stack?: string;
  nonRetryable?: boolean;
  details?: PayloadInit;
  cause?: FailureInit;
  kind?: number;
  timeoutType?: number;
}

export function nested(depth: number): FailureInit {
  let failure: FailureInit = { message: "root" };
  for (let i = 1; i < depth; i++) failure = { message: `level ${i}`, cause: failure };
  return failure;
}

export function failures(limitBytes: number): Pool<FailureInit | undefined> {
  return [
    ["unset (missing)", undefined, true],
    ["empty", {}, false],
    ["plain", { message: "boom", type: "Error", stack: "Error: boom\n    at x (y.ts:1:1)" }, false],
    ["sql", { message: SQL, type: SQL, nonRetryable: true }, false],
    ["surrogates", { message: "\ud800 tail", type: "T\udfff" }, false],
    ["NUL in message and type", { message: "\u0000\ud800", type: "\u0000" }, true],
    ["NUL in a cause's type", { message: "outer", cause: { message: "inner", type: "a\u0000b" } }, true],
    ["unknown kind", { message: "k", kind: 99 }, true],
    ["unknown timeout type", { message: "t", kind: 2, timeoutType: -3 }, true],
    ["cause chain 20 deep", nested(20), false],
    ["cause chain 40 deep", nested(40), true],
    ["cause chain 150 deep (past the decoder's limit)", nested(150), true],
    ["huge message", { message: "m".repeat(limitBytes + 1) }, true],
    ["huge details", { message: "d", details: { data: new Uint8Array(limitBytes + 1) } }, true],
    ["huge details in a cause", { message: "c", cause: { message: "d", details: { data: new Uint8Array(limitBytes + 1) } } }, true],
  ];
}

export function labelMaps(): Pool<Record<string, string>> {
  return [
    ["none", {}, false],
    ["one", { team: "payments" }, false],
    ["sql", { [SQL]: SQL }, false],
    ["__proto__ key", Object.fromEntries([["__proto__", "x"]]), false],
    ["64 labels", Object.fromEntries(Array.from({ length: 64 }, (_, i) => [`k${i}`, "v"])), false],
    ["65 labels", Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, "v"])), true],
    ["empty key", { "": "v" }, true],
    ["NUL key", { "k\u0000": "v" }, true],
    ["NUL value", { k: "v\u0000" }, true],
    ["control key", { "k\n": "v" }, true],
    ["65-character key", { ["k".repeat(65)]: "v" }, true],
    ["256-character value", { k: "v".repeat(256) }, true],
  ];
}
