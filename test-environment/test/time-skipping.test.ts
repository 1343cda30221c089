/**
 * The test environment as a user's test suite uses it (this file is the example the SDK README
 * shows): real Postgres, real server, the SDK's own workers; activities mocked by plain functions.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EventWaitTimeoutError, type ActivityContext, type WorkflowContext } from "@dex/sdk";
import { TestEnvironment } from "@dex/test-environment";
import { waitFor } from "@dex/testing";

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

// The workflows under test. In an application they are imported from its workflow module.
type BillingActivities = { charge: (customer: string) => Promise<string> };

async function renewSubscription(ctx: WorkflowContext, input: { customer: string }) {
  const startedAt = ctx.now();
  await ctx.sleep("30d");
  const receipt = await ctx.activities<BillingActivities>().charge(input.customer);
  return { receipt, sleptMs: ctx.now().getTime() - startedAt.getTime() };
}

async function awaitApproval(ctx: WorkflowContext) {
  const startedAt = ctx.now();
  try {
    await ctx.waitForEvent("approved", { timeout: "7d" });
    return { approved: true, waitedMs: ctx.now().getTime() - startedAt.getTime() };
  } catch (err) {
    if (err instanceof EventWaitTimeoutError) return { approved: false, waitedMs: ctx.now().getTime() - startedAt.getTime() };
    throw err;
  }
}

type ReportActivities = { buildReport: () => Promise<string> };

async function reportWithDeadline(ctx: WorkflowContext) {
  const startedAt = ctx.now();
  // One workflow task schedules both: while the activity runs, the 2-hour timer must wait.
  const [report] = await Promise.all([ctx.activities<ReportActivities>().buildReport(), ctx.sleep("2h")]);
  return { report, elapsedMs: ctx.now().getTime() - startedAt.getTime() };
}

type FlakyActivities = { flaky: () => Promise<number> };

async function retryAfterAnHour(ctx: WorkflowContext) {
  const startedAt = ctx.now();
  const attempt = await ctx.activities<FlakyActivities>({ retry: { initialInterval: "1h", maximumAttempts: 2 } }).flaky();
  return { attempt, elapsedMs: ctx.now().getTime() - startedAt.getTime() };
}

async function stamp(ctx: WorkflowContext) {
  return ctx.now().toISOString();
}

async function dailyReminder(ctx: WorkflowContext) {
  const startedAt = ctx.now();
  await ctx.sleep("1d");
  return { remindedAfterMs: ctx.now().getTime() - startedAt.getTime() };
}

describe("TestEnvironment with time skipping", () => {
  let env: TestEnvironment;
  const charged: string[] = [];
  let reportStarted: () => void;
  let releaseReport: () => void;
  const reportRunning = new Promise<void>((resolve) => (reportStarted = resolve));
  const reportReleased = new Promise<void>((resolve) => (releaseReport = resolve));

  beforeAll(async () => {
    const createStart = performance.now();
    env = await TestEnvironment.create({ timeSkipping: true });
    console.log(`[time skipping] TestEnvironment.create() took ${(performance.now() - createStart).toFixed(0)} ms (Postgres initdb, migrations, server)`);
    await env.createWorker({
      workflows: { renewSubscription, awaitApproval, reportWithDeadline, retryAfterAnHour, dailyReminder, stamp },
      // Mocked activities: plain functions registered under the names the workflows call.
      activities: {
        charge: async (customer: string) => {
          charged.push(customer);
          return `receipt-${customer}`;
        },
        flaky: async (_input: unknown, ctx: ActivityContext) => {
          if (ctx.info.attempt === 1) throw new Error("first attempt fails");
          return ctx.info.attempt;
        },
        buildReport: async () => {
          reportStarted();
          await reportReleased;
          return "report";
        },
      },
    });
  });

  afterAll(async () => {
    await env?.close();
  });

  it("runs a workflow that sleeps 30 days, then calls a mocked activity", async () => {
    const wallStart = performance.now();
    const handle = await env.client.start(renewSubscription, { instanceId: "renew-ada", input: { customer: "ada" } });
    const result = await handle.result();
    const wallMs = performance.now() - wallStart;
    // A figure, not an assertion: the suite runs on a loaded machine (docs/decisions/0018-test-clock.md).
    console.log(`[time skipping] a 30-day sleep and an activity completed in ${wallMs.toFixed(0)} ms of wall time`);

    expect(result.receipt).toBe("receipt-ada");
    expect(charged).toEqual(["ada"]);
    // The workflow clock moved with the server's: 30 days later (plus the seconds that really passed).
    expect(result.sleptMs).toBeGreaterThanOrEqual(30 * DAY);
    expect(result.sleptMs).toBeLessThan(31 * DAY);
  });

  it("times out an event wait after 7 days", async () => {
    const before = await env.now();
    const handle = await env.client.start(awaitApproval, { instanceId: "approval-timeout" });
    const result = await handle.result();
    expect(result).toMatchObject({ approved: false });
    expect(result.waitedMs).toBeGreaterThanOrEqual(7 * DAY);
    expect(result.waitedMs).toBeLessThan(8 * DAY);
    expect((await env.now()).getTime() - before.getTime()).toBeGreaterThanOrEqual(7 * DAY);
  });

  it("skips nothing between a test's steps: an event sent before awaiting the result arrives in time", async () => {
    const handle = await env.client.start(awaitApproval, { instanceId: "approval-in-time" });
    await handle.sendEvent("approved", { by: "grace" });
    const result = await handle.result();
    expect(result.approved).toBe(true);
    expect(result.waitedMs).toBeLessThan(DAY);
  });

  it("does not skip time while an activity runs, and skips again once it has finished", async () => {
    const handle = await env.client.start(reportWithDeadline, { instanceId: "report" });
    const result = handle.result(); // time skipping is on while this is awaited
    await reportRunning;
    const before = await env.now();
    const { checks, skips } = env.skipStats;
    // Several idle checks while the activity runs; each must find the system busy.
    await waitFor(() => env.skipStats.checks >= checks + 5, { message: "idle checks while the activity runs" });
    expect(env.skipStats.skips).toBe(skips);
    // Had the clock jumped to the 2-hour timer, it would be 2 hours ahead.
    expect((await env.now()).getTime() - before.getTime()).toBeLessThan(HOUR);

    releaseReport();
    const { report, elapsedMs } = await result;
    expect(report).toBe("report");
    expect(elapsedMs).toBeGreaterThanOrEqual(2 * HOUR);
    expect(elapsedMs).toBeLessThan(3 * HOUR);
  });

  it("skips an activity's retry back-off like a timer", async () => {
    const handle = await env.client.start(retryAfterAnHour, { instanceId: "retry" });
    const { attempt, elapsedMs } = await handle.result();
    expect(attempt).toBe(2);
    expect(elapsedMs).toBeGreaterThanOrEqual(HOUR);
    expect(elapsedMs).toBeLessThan(2 * HOUR);
  });

  it("env.sleep moves the clock by hand, firing the timers on the way in order", async () => {
    const handle = await env.client.start(dailyReminder, { instanceId: "reminder" });
    const before = await env.now();
    await env.sleep("3d");
    expect((await env.now()).getTime() - before.getTime()).toBeGreaterThanOrEqual(3 * DAY);
    // The 1-day timer fired at day 1, not at day 3: sleep stopped there and let the run go on.
    const { remindedAfterMs } = await handle.result();
    expect(remindedAfterMs).toBeGreaterThanOrEqual(DAY);
    expect(remindedAfterMs).toBeLessThan(2 * DAY);
  });

  it("fires a schedule on the skipped clock: env.sleep past three daily firings starts three runs, each at its time", async () => {
    const schedule = await env.client.schedule.create({
      scheduleId: "daily-stamp",
      spec: { intervals: [{ everyMs: DAY }] },
      action: { workflow: stamp },
    });
    const before = await env.now();
    await env.sleep("3d");
    const description = await waitFor(async () => {
      const d = await schedule.describe();
      return d.recentActions.length >= 3 ? d : undefined;
    });
    const actions = description.recentActions.slice(0, 3);
    for (const action of actions) {
      // Each run started at its nominal time on the test clock: the days were not jumped over.
      const started = new Date((await env.client.getHandle({ runId: action.runId }).result()) as string);
      expect(started.getTime() - action.nominalTime.getTime()).toBeGreaterThanOrEqual(0);
      expect(started.getTime() - action.nominalTime.getTime()).toBeLessThan(HOUR);
      expect(action.nominalTime.getTime()).toBeGreaterThan(before.getTime());
    }
    await schedule.delete();
  });

  it("lists runs by creation time on the test clock, days ahead of the server's own", async () => {
    await env.sleep("2d");
    const now = await env.now();
    const handle = await env.client.start(stamp, { instanceId: "listed-on-the-test-clock" });
    await handle.result();
    const page = await env.client.list({ createdAfter: new Date(now.getTime() - HOUR), instanceId: "listed-on-the-test-clock" });
    expect(page.runs.map((r) => r.runId)).toEqual([handle.runId]);
    const before = await env.client.list({ createdBefore: new Date(now.getTime() - HOUR), instanceId: "listed-on-the-test-clock" });
    expect(before.runs).toEqual([]);
  });
});
