/** ListRuns' time filters bound the primary-key walk by the UUIDv7 ids' time (store/run-id-time.ts). */
import { describe, expect, it } from "vitest";
import { uuidv7obj } from "uuidv7";
import { CLOCK_SLACK_MS, idBoundsOf, smallestIdAt } from "../src/store/run-id-time.js";

describe("run id time bounds", () => {
  it("puts every UUIDv7 of a millisecond at or above that millisecond's smallest id, and below the next one's", () => {
    for (const ms of [0, 1, 1_764_000_000_123, 2 ** 48 - 2]) {
      const id = uuidv7obj();
      id.bytes.set([ms / 2 ** 40, ms / 2 ** 32, ms / 2 ** 24, ms / 2 ** 16, ms / 2 ** 8, ms].map((b) => Math.floor(b) & 0xff), 0);
      const text = id.toString();
      expect(text >= smallestIdAt(ms), `${text} >= ${smallestIdAt(ms)}`).toBe(true);
      expect(text < smallestIdAt(ms + 1), `${text} < ${smallestIdAt(ms + 1)}`).toBe(true);
    }
    expect(smallestIdAt(-5)).toBe("00000000-0000-0000-0000-000000000000");
  });

  it("widens the window by the clock slack on each side, and bounds only the sides given", () => {
    const after = new Date("2026-12-01T00:00:00Z");
    const before = new Date("2026-12-02T00:00:00Z");
    expect(idBoundsOf({ createdAfter: after, createdBefore: before })).toEqual({
      from: smallestIdAt(after.getTime() - CLOCK_SLACK_MS),
      below: smallestIdAt(before.getTime() + CLOCK_SLACK_MS),
    });
    expect(idBoundsOf({ createdAfter: after })).toEqual({ from: smallestIdAt(after.getTime() - CLOCK_SLACK_MS) });
    expect(idBoundsOf({})).toEqual({});
  });
});
