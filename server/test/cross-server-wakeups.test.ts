/**
 * Every kind of write that makes a task, committed through server A, wakes a
 * poll parked on server B at once: through the one after-commit mechanism
 * (store/notify.ts, engine/notifier.ts), since B's in-process wakes never hear
 * of A's commits. "At once" is checked against B's fallback tick, the only
 * other thing that could answer the poll: both servers tick every
 * FALLBACK_TICK_MS (an hour), and the poll must be answered within a deadline
 * much shorter than that (wokenBy), while it asked to wait longer (PARK).
 *
 * B's timer loop sleeps for TIMER_SLEEP_MS between passes, so it never fires
 * a timer created through A during the test: A's loop (woken at the fire time
 * by its own commit) fires it, and only A's announcement can reach B's poll.
 * Sticky routing is off (stickyFallbackMs 0): a task B's worker may take is
 * then claimable the moment it exists, whoever completed the run's last task.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TaskQueueType } from "@dex/proto";
import { DEFAULT_WAIT_MS } from "@dex/testing";
import {
  byRunId,
  completeRun,
  failure,
  json,
  kinds,
  PARK,
  parkPoll,
  pollActivityOf,
  pollWorkflowTaskOf,
  scheduleActivity,
  serveDatabase,
  startHarness,
  startWith,
  uniqueId,
  watchParking,
  wokenBy,
  type Harness,
} from "./helpers.js";

/**
 * Far beyond every deadline below, and beyond the whole file's run with every test failing (ticks
 * count from the server's start): a poll answered in time was not answered by the tick.
 */
const FALLBACK_TICK_MS = 60 * 60_000;
/** wokenBy's deadline (DEFAULT_WAIT_MS), shorter than the tick. */
const DEADLINE_MS = DEFAULT_WAIT_MS;
const TIMER_SLEEP_MS = 10 * 60_000;
const WF = TaskQueueType.WORKFLOW;
const ACT = TaskQueueType.ACTIVITY;

function startTimer(seq: number, ms: number) {
  return { command: { case: "startTimer" as const, value: { seq, duration: { seconds: 0n, nanos: ms * 1e6 } } } };
}

describe("a task made through one server wakes a poll parked on another", () => {
  let a: Harness;
  let b: Harness;
  let parking: ReturnType<typeof watchParking>;
  beforeAll(async () => {
    expect(DEADLINE_MS).toBeLessThan(FALLBACK_TICK_MS);
    parking = watchParking();
    const options = {
      fallbackTickMs: FALLBACK_TICK_MS,
      maxPollWaitMs: 60_000,
      stickyFallbackMs: 0,
      workflowTaskRetry: { initialMs: 200, maxMs: 200 },
    };
    a = await startHarness(options);
    b = await serveDatabase(a.db, { ...options, timerMaxSleepMs: TIMER_SLEEP_MS });
  });
  afterAll(async () => {
    await b?.close();
    await a?.close();
    parking.restore();
  });

  async function queue(type: TaskQueueType, prefix: string): Promise<string> {
    const name = uniqueId(prefix).slice(0, 60);
    await a.queues.createTaskQueue({ name, type });
    return name;
  }
  /**
   * B's workflow poll of `q`, parked: nothing on A can wake it in-process. The answer comes
   * wrapped: awaiting a promise that resolves to it would wait for the answer itself.
   */
  async function parkedOnB(q: string) {
    return parkPoll(parking, "workflow", q, () => b.worker.pollWorkflowTasks({ taskQueue: q, workerId: "on-b", maxTasks: 10, maxWait: PARK }));
  }
  /** A run on `q` whose first task a worker on A completed with `commands`. */
  function runOn(q: string, commands: Parameters<typeof startWith>[1]) {
    return startWith(a, commands, { taskQueue: q, workerId: "on-a" });
  }

  it("a start", async () => {
    const q = await queue(WF, "start");
    const poll = (await parkedOnB(q)).answer;
    const { runId } = await a.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("start"), taskQueue: q });
    const { tasks } = await wokenBy(poll, "the start's wake-up", DEADLINE_MS);
    expect(tasks.map((t) => t.runId)).toEqual([runId]);
  });

  it("a timer firing (server A's timer loop)", async () => {
    const q = await queue(WF, "timer");
    const { runId } = await a.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("timer"), taskQueue: q });
    const first = await pollWorkflowTaskOf(a, runId, "on-a", q);
    const poll = (await parkedOnB(q)).answer;
    await a.worker.completeWorkflowTask({ taskToken: first.taskToken, commands: [startTimer(1, 300)] });
    const { tasks } = await wokenBy(poll, "the timer loop's announcement of the fired timer's task", DEADLINE_MS);
    expect(tasks.map((t) => t.runId)).toEqual([runId]);
    expect(kinds(tasks[0]!.newEvents)).toEqual(["timerFired"]);
  });

  it("an external event", async () => {
    const q = await queue(WF, "event");
    const runId = await runOn(q, []);
    const poll = (await parkedOnB(q)).answer;
    await a.client.sendEvent({ run: byRunId(runId), eventId: "e1", payload: json(1) });
    const { tasks } = await wokenBy(poll, "the event's wake-up", DEADLINE_MS);
    expect(tasks.map((t) => t.runId)).toEqual([runId]);
    expect(kinds(tasks[0]!.newEvents)).toEqual(["externalEventReceived"]);
  });

  it("a cancellation request", async () => {
    const q = await queue(WF, "cancel");
    const runId = await runOn(q, []);
    const poll = (await parkedOnB(q)).answer;
    await a.client.cancelRun({ run: byRunId(runId), reason: "test" });
    const { tasks } = await wokenBy(poll, "the cancellation's wake-up", DEADLINE_MS);
    expect(tasks.map((t) => t.runId)).toEqual([runId]);
    expect(kinds(tasks[0]!.newEvents)).toEqual(["cancelRequested"]);
  });

  it("an activity's result", async () => {
    const q = await queue(WF, "result");
    const acts = await queue(ACT, "result");
    const runId = await runOn(q, [scheduleActivity(1, "a", { taskQueue: acts })]);
    const activity = await pollActivityOf(a, runId, 1, acts);
    const poll = (await parkedOnB(q)).answer;
    await a.worker.completeActivityTask({ taskToken: activity.taskToken, result: json("A") });
    const { tasks } = await wokenBy(poll, "the activity result's wake-up", DEADLINE_MS);
    expect(tasks.map((t) => t.runId)).toEqual([runId]);
  });

  it("an activity's final failure (delivered one by one, not through the completion batch)", async () => {
    const q = await queue(WF, "final");
    const acts = await queue(ACT, "final");
    const runId = await runOn(q, [scheduleActivity(1, "a", { taskQueue: acts })]);
    const activity = await pollActivityOf(a, runId, 1, acts);
    const poll = (await parkedOnB(q)).answer;
    const failed = await a.worker.failActivityTask({ taskToken: activity.taskToken, failure: { message: "fatal", nonRetryable: true } });
    expect(failed.willRetry).toBe(false);
    const { tasks } = await wokenBy(poll, "the final failure's wake-up", DEADLINE_MS);
    expect(tasks.map((t) => t.runId)).toEqual([runId]);
    expect(kinds(tasks[0]!.newEvents)).toEqual(["activityFailed"]);
  });

  it("an activity retry coming due (announced by the server that failed the attempt)", async () => {
    const q = await queue(WF, "retry");
    const acts = await queue(ACT, "retry");
    const runId = await runOn(q, [scheduleActivity(1, "a", { taskQueue: acts })]);
    const first = await pollActivityOf(a, runId, 1, acts);
    const poll = (await parkPoll(parking, "activity", acts, () => b.worker.pollActivityTasks({ taskQueue: acts, workerId: "on-b", maxTasks: 10, maxWait: PARK }))).answer;
    const failed = await a.worker.failActivityTask({ taskToken: first.taskToken, failure: { message: "again" }, nextRetryDelay: { nanos: 300_000_000 } });
    expect(failed.willRetry).toBe(true);
    const { tasks } = await wokenBy(poll, "the retry's announcement when it came due", DEADLINE_MS);
    expect(tasks.map((t) => [t.runId, t.seq, t.attempt])).toEqual([[runId, 1, 2]]);
  });

  it("a workflow task's back-off ending (announced by the server that failed it)", async () => {
    const q = await queue(WF, "backoff");
    const { runId } = await a.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("backoff"), taskQueue: q });
    const task = await pollWorkflowTaskOf(a, runId, "on-a", q);
    const poll = (await parkedOnB(q)).answer;
    await a.worker.failWorkflowTask({ taskToken: task.taskToken, failure: { message: "boom" } });
    const { tasks } = await wokenBy(poll, "the back-off's announcement when it ended", DEADLINE_MS);
    expect(tasks.map((t) => [t.runId, t.attempt])).toEqual([[runId, 2]]);
  });

  it("a task handed back because inputs arrived while it ran", async () => {
    const q = await queue(WF, "abort");
    const { runId } = await a.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("abort"), taskQueue: q });
    const task = await pollWorkflowTaskOf(a, runId, "on-a", q);
    const poll = (await parkedOnB(q)).answer;
    // The task is leased: the event makes no task (and no wake-up); the completion that would end
    // the run without it is refused, and the task handed back.
    await a.client.sendEvent({ run: byRunId(runId), eventId: "late" });
    expect((await failure(a.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [completeRun("r")] }))).code).toBe("ABORTED");
    const { tasks } = await wokenBy(poll, "the hand-back's wake-up", DEADLINE_MS);
    expect(tasks.map((t) => [t.runId, t.attempt])).toEqual([[runId, 1]]);
    expect(kinds(tasks[0]!.newEvents)).toEqual(["externalEventReceived"]);
  });

  it("a paused queue resumed", async () => {
    const q = await queue(WF, "resume");
    await a.queues.pauseTaskQueue({ name: q, type: WF });
    const { runId } = await a.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("resume"), taskQueue: q });
    const poll = (await parkedOnB(q)).answer;
    await a.queues.resumeTaskQueue({ name: q, type: WF });
    const { tasks } = await wokenBy(poll, "the resume's wake-up", DEADLINE_MS);
    expect(tasks.map((t) => t.runId)).toEqual([runId]);
  });

  it("a queue deleted (the parked poll answers NOT_FOUND)", async () => {
    const q = await queue(ACT, "deleted");
    const poll = (await parkPoll(parking, "activity", q, () => b.worker.pollActivityTasks({ taskQueue: q, workerId: "on-b", maxTasks: 10, maxWait: PARK }))).answer;
    await a.queues.deleteTaskQueue({ name: q, type: ACT });
    expect((await failure(wokenBy(poll, "the delete's wake-up", DEADLINE_MS))).code).toBe("NOT_FOUND");
  });
});
