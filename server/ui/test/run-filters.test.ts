/** The runs page's filters (src/run-filters.ts): the URL hash round trip and what a ListRuns request gets. */
import { describe, expect, it } from "vitest";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { RunStatus } from "../../../proto/src/gen/dex/v1/common_pb.js";
import { filtersFromQuery, filtersHash, listRunsFilter, parseLabels, parseTime } from "../src/run-filters.js";

describe("the runs page's filters", () => {
  it("round-trip through the hash, keeping only those set", () => {
    const filters = { ...filtersFromQuery(""), queue: "orders", labels: "team=pay, tier=gold", after: "2026-12-07 10:00" };
    expect(filtersHash(filters)).toBe("#/runs?queue=orders&labels=team%3Dpay%2C+tier%3Dgold&after=2026-12-07+10%3A00");
    expect(filtersFromQuery(filtersHash(filters).split("?")[1]!)).toEqual(filters);
    expect(filtersHash(filtersFromQuery(""))).toBe("#/runs");
  });

  it("become ListRuns fields", () => {
    const parsed = listRunsFilter({ ...filtersFromQuery(""), instance: " i-1 ", status: "RUNNING", queue: "orders", labels: "team=pay", before: "2026-12-07T10:00:00+01:00" });
    expect(parsed).toMatchObject({ filter: { instanceId: "i-1", statuses: [RunStatus.RUNNING], taskQueue: "orders", labels: { team: "pay" } } });
    if (!("filter" in parsed)) throw new Error(parsed.problem);
    expect(timestampMs(parsed.filter.createdBefore!)).toBe(Date.parse("2026-12-07T09:00:00Z"));
  });

  it("take only the statuses the menu lists: a pasted link's UNSPECIFIED or constructor is a problem shown, not sent", () => {
    for (const status of ["SLEEPING", "UNSPECIFIED", "constructor", "toString", "0", "running"]) {
      expect(listRunsFilter({ ...filtersFromQuery(""), status })).toEqual({ problem: expect.stringMatching(new RegExp(`^status: "${status}" is not a run status; choose one of CREATED, RUNNING, .*CONTINUED_AS_NEW$`)) });
    }
    expect(listRunsFilter({ ...filtersFromQuery(""), status: "CONTINUED_AS_NEW" })).toMatchObject({ filter: { statuses: [RunStatus.CONTINUED_AS_NEW] } });
  });

  it("read labels as key=value pairs; a value may hold '='", () => {
    expect(parseLabels(" a=1 ,b=x=y,, ")).toEqual({ a: "1", b: "x=y" });
    expect(parseLabels("a=1, team")).toMatch(/^labels: write key=value pairs .*"team"/);
    expect(parseLabels("=1")).toMatch(/^labels: /);
  });

  it("read labels as a JSON object too, for values with commas or edge spaces", () => {
    expect(parseLabels(' {"team": "pay, ops", "note": " padded "} ')).toEqual({ team: "pay, ops", note: " padded " });
    expect(parseLabels('{"team": 1}')).toMatch(/^labels: a JSON object of string values.*"team" is not a string/);
    expect(parseLabels('{"team": "pay"')).toMatch(/^labels: a JSON object of string values, e\.g\. .*: /);
    expect(parseLabels('{"": "x"}')).toMatch(/empty key/);
    expect(listRunsFilter({ ...filtersFromQuery(""), labels: '{"a,b": "c=d, e"}' })).toMatchObject({ filter: { labels: { "a,b": "c=d, e" } } });
  });

  it("read times as the tables print them (UTC), with a zone, or a day", () => {
    const ms = (text: string) => timestampMs(parseTime("t", text) as never);
    expect(ms("2026-12-07 10:00:00.123")).toBe(Date.parse("2026-12-07T10:00:00.123Z"));
    expect(ms("2026-12-07")).toBe(Date.parse("2026-12-07T00:00:00Z"));
    expect(ms("2026-12-07T10:00-05:00")).toBe(Date.parse("2026-12-07T15:00:00Z"));
    expect(parseTime("t", "  ")).toBeUndefined();
    expect(parseTime("created after", "yesterday")).toMatch(/^created after: "yesterday" is not a time; write e\.g\. /);
  });
});
