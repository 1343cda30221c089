/**
 * The start-up clock check: run ids carry the server's clock, created_at the database's, and
 * ListRuns' time filters bound their scan by the ids (store/run-id-time.ts), so a server whose clock
 * is far from the database's says so once, in a line that names the fix.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CLOCK_SKEW_WARNING_MS, warnOnClockSkew } from "../src/database-pools.js";
import { createJsonLogger } from "../src/logger.js";
import { databaseClockOffsetMs } from "../src/store/ping.js";
import { startHarness, type Harness } from "./helpers.js";

function captured(offsetMs: number): Array<{ level: string; msg: string; clockOffsetMs?: number }> {
  const lines: string[] = [];
  warnOnClockSkew(offsetMs, createJsonLogger("debug", (line) => lines.push(line)));
  return lines.map((line) => JSON.parse(line));
}

describe("the server's clock against the database's", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(async () => {
    await h?.close();
  });

  it("reads the database's offset: near zero when both run on this machine", async () => {
    const offset = await databaseClockOffsetMs(h.sql);
    expect(Math.abs(offset)).toBeLessThan(CLOCK_SKEW_WARNING_MS);
  });

  it("warns, naming the direction and the fix, only beyond the limit", () => {
    expect(captured(1_500)).toEqual([]);
    expect(captured(-CLOCK_SKEW_WARNING_MS)).toEqual([]);
    const [behind] = captured(5 * 60_000);
    expect(behind).toMatchObject({ level: "warn", clockOffsetMs: 300_000 });
    expect(behind!.msg).toMatch(/300 s behind the database's.*synchronise the clocks/);
    const [ahead] = captured(-20 * 60_000);
    expect(ahead!.msg).toMatch(/1200 s ahead of the database's/);
  });
});
