/**
 * A schedule created through one server is fired by another without polling:
 * server B's schedule loop, which found nothing at its start, sleeps up to
 * 60 s (longer than this test's deadline); only the cross-server wake-up
 * (`schedules:due:<origin>`, sent after the commit through engine/notifier.ts)
 * can make it look again in time. Server A, which created the schedule, is
 * closed before the schedule's first nominal time, once the wake-up was seen
 * on the channel.
 */
import postgres from "postgres";
import { afterAll, describe, expect, it } from "vitest";
import { createTestDatabase, waitFor, type TestDatabase } from "@dex/testing";
import { WAKEUP_CHANNEL } from "../src/store/notify.js";
import { serveDatabase, uniqueId } from "./helpers.js";
import { everyMs, scheduleClient, scheduledRuns } from "./schedules-support.js";

const databases: TestDatabase[] = [];
afterAll(async () => {
  for (const db of databases) await db.drop();
});

describe("schedule wake-ups across servers", () => {
  it("a schedule created through server A is fired by server B, woken by A's announcement", async () => {
    const db = await createTestDatabase();
    databases.push(db);
    const b = await serveDatabase(db);
    const a = await serveDatabase(db);
    const listener = postgres(db.url, { max: 1, onnotice: () => {} });
    const seen: string[] = [];
    const listening = await listener.listen(WAKEUP_CHANNEL, (payload) => void seen.push(payload));
    try {
      const id = uniqueId("woken");
      const { nowMs } = (await b.sql<{ nowMs: number }[]>`select (extract(epoch from now()) * 1000)::float8 as "nowMs"`)[0]!;
      // The first nominal time leaves A time to announce and close; a loaded machine may take longer, which only delays the firing.
      const startS = Math.ceil(nowMs / 1000) + 4;
      const schedule = everyMs(1_000);
      await scheduleClient(a).createSchedule({ scheduleId: id, schedule: { ...schedule, spec: { ...schedule.spec, startTime: { seconds: BigInt(startS) } } } });
      await waitFor(() => seen.some((p) => p.startsWith("schedules:due:")), { message: "A's schedules wake-up on the channel" });
      await a.close();
      const runs = await waitFor(async () => {
        const found = await scheduledRuns(b, id);
        return found.length > 0 && found;
      }, { message: "server B to fire the schedule" });
      expect(runs[0]!.nominalMs).toBeGreaterThanOrEqual(startS * 1000);
    } finally {
      await listening.unlisten();
      await listener.end();
      await b.close();
    }
  });
});
