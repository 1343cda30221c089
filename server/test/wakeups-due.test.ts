/**
 * Due-time wakes (Wakeups.wakeQueueAt): several buckets coming due in one
 * firing wake that many parked polls and announce the queue to the other
 * servers once, when any of them was a retry or back-off ("everywhere");
 * sticky fallback ends ("here") announce nothing. Regression: with the first
 * bucket "everywhere", `everywhere ||= due.shift()` skipped the shift and the
 * firing never ended (a server at 100% CPU in chaos claim-race); that hang
 * fails this test by its timeout.
 */
import { describe, expect, it } from "vitest";
import { waitFor } from "@dex/testing";
import { Wakeups } from "../src/engine/wakeups.js";

describe("due-time wakes", () => {
  it("buckets due together wake that many polls and announce the queue once", { timeout: 20_000 }, async () => {
    const announced: string[] = [];
    const wakeups = new Wakeups({ announceDue: (type, queue) => announced.push(`${type}:${queue}`) });
    const polls = [0, 1, 2].map(() => wakeups.subscribeQueue("activity", "q"));
    const now = Date.now();
    // Three buckets (50 ms apart), all due when the timer first fires (times already past, as for a
    // retry whose commit was slow to return); the first an "everywhere" one.
    wakeups.wakeQueueAt("activity", "q", new Date(now - 150));
    wakeups.wakeQueueAt("activity", "q", new Date(now - 100), "here");
    wakeups.wakeQueueAt("activity", "q", new Date(now - 50));
    await waitFor(() => polls.every((p) => p.fired), { message: "the three parked polls to be woken", timeoutMs: 10_000 });
    await waitFor(() => announced.length > 0, { message: "the announcement" });
    expect(announced).toEqual(["activity:q"]);
    wakeups.close();
  });

  it("a sticky fallback end ('here') wakes a poll here and announces nothing", { timeout: 20_000 }, async () => {
    const announced: string[] = [];
    const wakeups = new Wakeups({ announceDue: (type, queue) => announced.push(`${type}:${queue}`) });
    const poll = wakeups.subscribeQueue("workflow", "q");
    wakeups.wakeQueueAt("workflow", "q", new Date(Date.now() + 10), "here");
    await waitFor(() => poll.fired, { message: "the parked poll to be woken" });
    expect(announced).toEqual([]);
    wakeups.close();
  });
});
