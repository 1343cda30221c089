/**
 * One action of an activity scenario (activity-fencing-run.ts) on activity i: the call, then its
 * answer and the snapshot after it checked against the models (activity-fencing-state.ts).
 * Completions, failures and forged calls go through ReportActivityTasks on odd steps and the
 * unary RPCs on even ones (decision 0011), so both paths meet the same rules.
 */
import { expect } from "vitest";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import type { ActivityTask } from "@dex/proto";
import { waitFor } from "@dex/testing";
import { expectedForGarble, garbleToken, pickToken, type ActivityAction } from "../token-fencing.model.js";
import { json, type Harness } from "../helpers.js";
import type { ActivityFencingState, ActivitySnapshot } from "./activity-fencing-state.js";
import { answer, cover, expectTimeoutFailure, failureOf, micros, ms, ok, pollForTask, reportItems, type Answer, type ReportOutcome } from "./fencing-calls.js";

export interface ActionContext {
  h: Harness;
  st: ActivityFencingState;
  activityQueue: string;
  /** The first `eagerSlots` activities' first tokens came eagerly (for the coverage counts). */
  eagerSlots: number;
  /** The scenario's step number (names results, picks the RPC path). */
  step(): number;
  /** Counts a step the action plays on its own (leaseEnds' follow-up call). */
  nextStep(): number;
}

/** The worker whose polls claim the attempts not handed out eagerly. */
const POLLER = "b";

export async function actOnActivity(ctx: ActionContext, i: number, action: ActivityAction): Promise<void> {
  const { h, st } = ctx;
  const model = st.models[i]!;
  const step = ctx.step();
  const viaReport = step % 2 === 1;
  const before = await st.snap();
  st.reapedAll(before);
  const picked = "token" in action ? pickToken(st.tokens[i]!, action.token) : undefined;
  if ("token" in action && !picked) return; // nothing handed out for this activity yet
  switch (action.op) {
    case "claim":
      return claim(ctx, before);

    case "complete": {
      const result = `result of step ${step}`;
      const outcome: ReportOutcome = { case: "complete", value: { taskToken: picked!.token, result: json(result) } };
      const a = viaReport ? (await reportItems(h, [outcome]))[0]! : await answer(h.worker.completeActivityTask(outcome.value));
      const after = await st.snap();
      if (!model.isCurrent(picked!.index)) {
        cover(`complete: stale token (${model.phase})`);
        expect(a.code, "complete with a token that is not the current attempt's").toBe("NOT_FOUND");
        st.unchanged(before, after);
      } else if (a.code === "OK") {
        cover(`complete: accepted${model.leaseEndUs <= before.nowUs ? " after the lease ran out" : ""}${picked!.index === 0 && i < ctx.eagerSlots ? " (eager token)" : ""}`);
        model.completed(result);
        st.unchangedButFor(i, before, after);
      } else {
        cover("complete: lost to the reaper");
        st.lostToReaper(i, a.code, before, after, "complete");
      }
      return;
    }

    case "fail": {
      const message = `failure of step ${step}`;
      const outcome: ReportOutcome = { case: "fail", value: { taskToken: picked!.token, failure: failureOf(action.failure, message) } };
      const a = viaReport ? (await reportItems(h, [outcome]))[0]! : await answer(h.worker.failActivityTask(outcome.value));
      const after = await st.snap();
      if (!model.isCurrent(picked!.index)) {
        cover(`fail: stale token (${model.phase})`);
        expect(a.code, "fail with a token that is not the current attempt's").toBe("NOT_FOUND");
        st.unchanged(before, after);
      } else if (a.code === "OK") {
        cover(`fail: accepted, ${model.retries(action.failure) ? "retry" : "final"}${model.leaseEndUs <= before.nowUs ? ", after the lease ran out" : ""}`);
        const attempt = model.attempt;
        const retry = model.failed(action.failure, message);
        expect(ok(a, "fail").willRetry, "willRetry").toBe(retry);
        if (retry) st.expectRetryScheduled(i, before, after, attempt, message);
        st.unchangedButFor(i, before, after);
      } else {
        cover("fail: lost to the reaper");
        st.lostToReaper(i, a.code, before, after, "fail");
      }
      return;
    }

    case "heartbeat": {
      const details = `details of step ${step}`;
      const a = await answer(h.worker.heartbeatActivityTask({ taskToken: picked!.token, details: json(details) }));
      const after = await st.snap();
      if (!model.isCurrent(picked!.index)) {
        cover(`heartbeat: stale token (${model.phase})`);
        expect(a.code, "heartbeat with a token that is not the current attempt's").toBe("NOT_FOUND");
        st.unchanged(before, after);
        return;
      }
      if (model.leaseEndUs > after.nowUs) expect(a.code, "heartbeat with the current token, lease live").toBe("OK");
      if (model.leaseEndUs <= before.nowUs) expect(a.code, "heartbeat with the current token after its lease ran out").toBe("NOT_FOUND");
      if (a.code !== "OK") {
        cover("heartbeat: current token, lease ran out");
        st.unchanged(before, after);
        return;
      }
      cover("heartbeat: accepted");
      const beat = ok(a as Answer<{ cancelRequested: boolean; leaseDeadline?: Timestamp }>, "heartbeat");
      expect(beat.cancelRequested).toBe(false);
      const deadline = micros(beat.leaseDeadline!);
      st.expectLeaseDeadline(deadline, before, after);
      model.heartbeated(deadline, details);
      st.expectHeartbeatStored(i, after, deadline, details);
      st.unchangedButFor(i, before, after);
      return;
    }

    case "race": {
      const token = picked!.token;
      const results = Array.from({ length: action.completes }, (_, k) => `result ${k} of step ${step}`);
      const message = `racing failure of step ${step}`;
      // Odd steps: all racers as items of one ReportActivityTasks call (one token, several items).
      const answers = viaReport
        ? await reportItems(h, [
            ...results.map((r): ReportOutcome => ({ case: "complete", value: { taskToken: token, result: json(r) } })),
            { case: "fail", value: { taskToken: token, failure: failureOf("retryable", message) } },
          ])
        : await Promise.all([
            ...results.map((r) => answer(h.worker.completeActivityTask({ taskToken: token, result: json(r) }))),
            answer(h.worker.failActivityTask({ taskToken: token, failure: failureOf("retryable", message) })),
          ]);
      const after = await st.snap();
      const codes = answers.map((x) => x.code);
      const winners = codes.flatMap((c, k) => (c === "OK" ? [k] : []));
      expect(codes.filter((c) => c !== "OK" && c !== "NOT_FOUND"), "racing calls answer OK or NOT_FOUND").toEqual([]);
      if (!model.isCurrent(picked!.index)) {
        cover("race: stale token");
        expect(winners, "racing calls with a token that is not the current attempt's").toEqual([]);
        st.unchanged(before, after);
        return;
      }
      if (model.leaseEndUs > after.nowUs) expect(winners, "racing calls with the current token: exactly one wins").toHaveLength(1);
      expect(winners.length, "racing calls with the current token: at most one wins").toBeLessThanOrEqual(1);
      if (winners.length === 0) return st.lostToReaper(i, "NOT_FOUND", before, after, "racing calls");
      const winner = winners[0]!;
      cover(`race: won by ${winner < results.length ? "a completion" : "the failure"}`);
      if (winner < results.length) model.completed(results[winner]!);
      else {
        const attempt = model.attempt;
        const retry = model.failed("retryable", message);
        expect(ok(answers[winner]! as Answer<{ willRetry: boolean }>, "racing fail").willRetry).toBe(retry);
        if (retry) st.expectRetryScheduled(i, before, after, attempt, message);
      }
      st.unchangedButFor(i, before, after);
      return;
    }

    case "expire": {
      if (model.phase !== "leased") return;
      const leaseId = st.currentLeaseId(i);
      const after = await waitFor(
        async () => {
          const s = await st.snap();
          return (st.row(i, s)?.lease_id ?? null) !== leaseId ? s : undefined;
        },
        { intervalMs: 25, message: "the reaper to time out the expired attempt" },
      );
      expect(st.reaped(i, after), "the reaper timed the attempt out").toBe(true);
      st.reapedAll(after);
      st.expectInbox(after);
      return;
    }

    case "leaseEnds": {
      if (model.phase !== "leased") return;
      const leaseEnd = model.leaseEndUs;
      const after = await waitFor(
        async () => {
          const s = await st.snap();
          return s.nowUs >= leaseEnd ? s : undefined;
        },
        { intervalMs: 10, message: "the lease to run out" },
      );
      st.reapedAll(after);
      if (action.then === "nothing") return;
      // In the window after the lease ended: the reaper may or may not have come.
      cover(`leaseEnds then ${action.then}${model.phase === "leased" ? "" : " (already reaped)"}`);
      ctx.nextStep();
      const then: ActivityAction = action.then === "fail" ? { op: "fail", token: "newest", failure: "retryable" } : { op: action.then, token: "newest" };
      return actOnActivity(ctx, i, then);
    }

    case "forged": {
      const forged = garbleToken(picked!.token, "activity", action.garble, action.noise);
      const a =
        viaReport && action.call !== "heartbeat"
          ? (await reportItems(h, [
              action.call === "complete"
                ? { case: "complete", value: { taskToken: forged, result: json("forged") } }
                : { case: "fail", value: { taskToken: forged, failure: failureOf("nonRetryable", "forged") } },
            ]))[0]!
          : await answer<unknown>(
              action.call === "complete"
                ? h.worker.completeActivityTask({ taskToken: forged, result: json("forged") })
                : action.call === "fail"
                  ? h.worker.failActivityTask({ taskToken: forged, failure: failureOf("nonRetryable", "forged") })
                  : h.worker.heartbeatActivityTask({ taskToken: forged, details: json("forged") }),
            );
      const after = await st.snap();
      expect(a.code, `${action.call} with a token garbled by ${action.garble}`).toBe(expectedForGarble(action.garble));
      cover(`forged: ${expectedForGarble(action.garble)}`);
      st.unchanged(before, after);
      return;
    }
  }
}

/**
 * Another worker's poll: it takes the waiting attempts of any of the run's activities, and only
 * those (or one the reaper retried during the poll). Not waiting: nothing may come, and a short
 * poll shows it (a lease is not re-claimable).
 */
async function claim(ctx: ActionContext, before: ActivitySnapshot): Promise<void> {
  const { h, st } = ctx;
  const waiting = st.models.some((m) => m.phase === "waiting");
  const poll = (waitMs: number) =>
    h.worker.pollActivityTasks({ taskQueue: ctx.activityQueue, workerId: POLLER, maxTasks: st.models.length, maxWait: ms(waitMs) });
  const tasks: ActivityTask[] = waiting ? await pollForTask(() => poll(2_000)) : (await poll(50)).tasks;
  const after = await st.snap();
  if (waiting) expect(tasks.length, "a waiting attempt is handed out").toBeGreaterThan(0);
  if (tasks.length === 0) {
    cover("claim: nothing");
    st.unchanged(before, after);
    return;
  }
  const claimed = new Set<number>();
  for (const task of tasks) {
    expect(task.runId, "a task of this scenario's run").toBe(st.runId);
    const j = task.seq - 1;
    const m = st.models[j]!;
    if (m.phase === "leased") {
      // Handed out while leased: only if the lease ran out and the reaper retried it meanwhile.
      cover("claim: retried by the reaper during the poll");
      expect(m.leaseEndUs, "a task was handed out while its lease was live").toBeLessThanOrEqual(after.nowUs);
      expect(m.timedOut(), "a task was handed out again after its last attempt").toBe(true);
      expectTimeoutFailure(st.row(j, after));
    }
    expect(m.phase, "a task was handed out while it had its outcome").toBe("waiting");
    st.claimed(j, task, before, after, POLLER);
    claimed.add(j);
  }
  for (let j = 0; j < st.models.length; j++) if (!claimed.has(j)) st.reaped(j, after);
  st.expectInbox(after);
}
