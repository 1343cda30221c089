import { describe, expect, it } from "vitest";
import { FailureKind } from "@dex/proto";
import { parseDuration } from "../src/common/duration.js";
import { ActivityFailure, ApplicationFailure, CancelledFailure, TimeoutFailure } from "../src/common/errors.js";
import { errorToFailure, failureToError, failureToInfo } from "../src/common/failure.js";
import { decodePayload, encodePayload, Encoding, PayloadError } from "../src/common/payload.js";

describe("payload converter", () => {
  it.each([null, 0, 42.5, "text", true, [1, "two", null], { nested: { a: [1, 2] }, unicode: "žluť 🐢" }])(
    "round-trips %j as json/plain",
    (value) => {
      const payload = encodePayload(value);
      expect(payload.encoding).toBe(Encoding.JSON);
      expect(decodePayload(payload)).toEqual(value);
    },
  );

  it("keeps undefined distinct from null", () => {
    const payload = encodePayload(undefined);
    expect(payload.encoding).toBe("binary/null");
    expect(payload.data).toHaveLength(0);
    expect(decodePayload(payload)).toBeUndefined();
    expect(decodePayload(undefined)).toBeUndefined();
  });

  it("sends bytes as binary/plain", () => {
    const payload = encodePayload(new Uint8Array([1, 2, 3]));
    expect(payload.encoding).toBe("binary/plain");
    expect(decodePayload(payload)).toEqual(new Uint8Array([1, 2, 3]));
  });

  it("fails clearly on values and payloads it cannot handle", () => {
    expect(() => encodePayload(10n)).toThrow(PayloadError);
    expect(() => encodePayload(() => 1)).toThrow(/cannot encode a value of type function/);
    const bad = encodePayload("x");
    bad.data = new TextEncoder().encode("{not json");
    expect(() => decodePayload(bad)).toThrow(/cannot decode json\/plain payload/);
    bad.encoding = "avro";
    expect(() => decodePayload(bad)).toThrow(/unsupported payload encoding "avro"/);
  });
});

describe("failure conversion", () => {
  it("keeps message, type (error name), stack and the cause chain", () => {
    class InsufficientFunds extends Error {
      override name = "InsufficientFunds";
    }
    const root = new InsufficientFunds("balance 3 < 10");
    const err = new Error("charge failed", { cause: root });
    const failure = errorToFailure(err);
    expect(failure).toMatchObject({ message: "charge failed", type: "Error", nonRetryable: false, kind: FailureKind.APPLICATION });
    expect(failure.stack).toContain("charge failed");
    expect(failure.cause).toMatchObject({ message: "balance 3 < 10", type: "InsufficientFunds" });

    const rebuilt = failureToError(failure) as ApplicationFailure;
    expect(rebuilt).toBeInstanceOf(ApplicationFailure);
    expect(rebuilt.type).toBe("Error");
    expect(rebuilt.stack).toBe(err.stack);
    const cause = rebuilt.cause as ApplicationFailure;
    expect(cause.type).toBe("InsufficientFunds");
    expect(cause.message).toBe("balance 3 < 10");
  });

  it("round-trips ApplicationFailure with nonRetryable, type and details", () => {
    const err = ApplicationFailure.nonRetryable("declined", "CardDeclined", { code: 51 });
    const back = failureToError(errorToFailure(err)) as ApplicationFailure;
    expect(back).toMatchObject({ message: "declined", type: "CardDeclined", nonRetryable: true, details: { code: 51 } });
    expect(errorToFailure(ApplicationFailure.create({ message: "m", type: "T" })).nonRetryable).toBe(false);
    expect(ApplicationFailure.create("timed out", "ProviderTimeout")).toMatchObject({ type: "ProviderTimeout", nonRetryable: false });
  });

  it("round-trips ActivityFailure, CancelledFailure and TimeoutFailure", () => {
    const activity = new ActivityFailure("charge", 2, 3, ApplicationFailure.retryable("boom", "Boom"));
    const back = failureToError(errorToFailure(activity)) as ActivityFailure;
    expect(back).toBeInstanceOf(ActivityFailure);
    expect(back).toMatchObject({ activityName: "charge", seq: 2, attempt: 3 });
    expect((back.cause as ApplicationFailure).type).toBe("Boom");
    expect(failureToError(errorToFailure(new CancelledFailure("stop")))).toBeInstanceOf(CancelledFailure);
    const timeout = failureToError(errorToFailure(new TimeoutFailure("slow", "START_TO_CLOSE"))) as TimeoutFailure;
    expect(timeout.timeoutType).toBe("START_TO_CLOSE");
  });

  it("converts non-Error throws and cyclic causes", () => {
    expect(errorToFailure("plain string")).toMatchObject({ message: "plain string", type: "Error" });
    expect(errorToFailure({ code: 1 }).message).toBe('{"code":1}');
    const a = new Error("a");
    const b = new Error("b", { cause: a });
    (a as { cause?: unknown }).cause = b;
    expect(() => errorToFailure(a)).not.toThrow();
  });

  it("renders a plain FailureInfo for describe output", () => {
    const info = failureToInfo(errorToFailure(new Error("outer", { cause: ApplicationFailure.nonRetryable("inner", "X") })));
    expect(info).toMatchObject({ message: "outer", type: "Error", kind: "APPLICATION", cause: { message: "inner", type: "X", nonRetryable: true } });
  });
});

describe("durations", () => {
  it.each([
    [250, 250],
    ["250ms", 250],
    ["10s", 10_000],
    ["1.5s", 1_500],
    ["5m", 300_000],
    ["2h", 7_200_000],
    ["1d", 86_400_000],
    ["100", 100],
  ] as const)("parses %j", (input, ms) => expect(parseDuration(input)).toBe(ms));

  it("rejects nonsense with the accepted forms", () => {
    expect(() => parseDuration("ten seconds")).toThrow(/like "500ms", "10s"/);
    expect(() => parseDuration(-1)).toThrow(TypeError);
  });
});
