/**
 * The first workflow task of token-fencing-eager.property.test.ts's runs, generated: handed out
 * by an EAGER START (StartWorkflowRequest.eager, leased to "eager-wf" in the start's answer) or
 * by a poll, then random operations on it before its current token completes it:
 * - repeatStart: the same start again with eager (its request id, or another with use-existing):
 *   no task in the answer, the lease untouched;
 * - expire: its lease ends (set on the row, as tokens.test.ts does: the workflow task lease is a
 *   fixed 10 s) and another worker's poll takes the next attempt with a new token;
 * - stale: a complete or fail with a token an expiry replaced: NOT_FOUND;
 * - forged: a complete or fail with the current token garbled: NOT_FOUND or INVALID_ARGUMENT.
 * A rejected call and a repeated start change nothing (task row, run row, inbox, history).
 */
import fc from "fast-check";
import { expect } from "vitest";
import { DexError, InstanceIdConflictPolicy, type WorkflowTask } from "@dex/proto";
import { DEFAULT_WAIT_MS } from "@dex/testing";
import { expectedForGarble, garblesFor, garbleToken, leaseIdOf, type Garble } from "./token-fencing.model.js";
import { uniqueId, type Harness } from "./helpers.js";
import { ms } from "./support/fencing-calls.js";

export type FirstTaskStep =
  | { op: "repeatStart"; how: "requestId" | "useExisting" }
  | { op: "expire" }
  | { op: "stale"; token: number; call: "complete" | "fail" }
  | { op: "forged"; call: "complete" | "fail"; garble: Garble; noise: Uint8Array };

export interface FirstTaskPlan {
  eager: boolean;
  steps: FirstTaskStep[];
}

const call = fc.constantFrom("complete" as const, "fail" as const);
export const firstTaskPlan: fc.Arbitrary<FirstTaskPlan> = fc.record({
  eager: fc.constantFrom(true, true, false),
  steps: fc.array(
    fc.oneof(
      fc.record({ op: fc.constant("repeatStart" as const), how: fc.constantFrom("requestId" as const, "useExisting" as const) }),
      fc.constant({ op: "expire" as const }),
      fc.record({ op: fc.constant("stale" as const), token: fc.nat(4), call }),
      fc.record({
        op: fc.constant("forged" as const),
        call,
        garble: fc.constantFrom(...garblesFor("workflow")),
        noise: fc.uint8Array({ minLength: 1, maxLength: 48 }),
      }),
    ),
    { maxLength: 4 },
  ),
});

/** The task the scenario completes: its token, and the worker that holds it. */
export interface FirstTask {
  runId: string;
  token: Uint8Array;
  workerId: string;
}

async function code(promise: Promise<unknown>): Promise<string> {
  return promise.then(
    () => "OK",
    (err: unknown) => {
      if (err instanceof DexError) return err.code;
      throw err;
    },
  );
}

export async function playFirstTask(
  h: Harness,
  plan: FirstTaskPlan,
  queue: string,
  cover: (label: string) => void,
): Promise<FirstTask> {
  const instanceId = uniqueId("eager-start-fence");
  const requestId = uniqueId("req");
  const start = (eager: boolean, extra: { requestId: string; conflictPolicy?: InstanceIdConflictPolicy }) =>
    h.client.startWorkflow({ workflowName: "fencing", instanceId, taskQueue: queue, ...extra, ...(eager ? { eager: { workerId: "eager-wf" } } : {}) });
  const started = await start(plan.eager, { requestId });
  const runId = started.runId;
  const snap = async () => {
    const [row] = await h.sql<{ s: Record<string, unknown> }[]>`
      select jsonb_build_object(
        'task', (select to_jsonb(t) from dex.workflow_tasks t where t.run_id = ${runId}),
        'run', (select to_jsonb(r) from dex.runs r where r.id = ${runId}),
        'inbox', (select count(*) from dex.inbox i where i.run_id = ${runId}),
        'history', (select count(*) from dex.history_events e where e.run_id = ${runId})) as s`;
    return row!.s;
  };
  const pollFor = async (workerId: string): Promise<WorkflowTask> => {
    const deadline = Date.now() + DEFAULT_WAIT_MS;
    while (Date.now() < deadline) {
      const { tasks } = await h.worker.pollWorkflowTasks({ taskQueue: queue, workerId, maxTasks: 10, maxWait: ms(2_000) });
      const mine = tasks.find((t) => t.runId === runId);
      if (mine) return mine;
    }
    throw new Error(`no workflow task for run ${runId}`);
  };

  let task: WorkflowTask;
  let workerId: string;
  if (plan.eager) {
    expect(started.eagerTask?.runId, "the eager start's answer carries the run's first task").toBe(runId);
    [task, workerId] = [started.eagerTask!, "eager-wf"];
  } else {
    expect(started.eagerTask, "no task without eager").toBeUndefined();
    [task, workerId] = [await pollFor("wf"), "wf"];
  }
  const tokens = [task.taskToken];
  let attempt = 1;
  const expectLeased = async () => {
    const s = await snap();
    const row = s.task as { worker_id: string; attempt: number; lease_id: string };
    expect([row.worker_id, row.attempt, row.lease_id], "the task row holds the current lease").toEqual([workerId, attempt, leaseIdOf(tokens.at(-1)!)]);
    expect((s.run as { status: string }).status).toBe("RUNNING");
  };
  await expectLeased();
  cover(`first task: ${plan.eager ? "eager start" : "poll"}`);

  for (const step of plan.steps) {
    const before = await snap();
    switch (step.op) {
      case "repeatStart": {
        const again = await start(true, step.how === "requestId" ? { requestId } : { requestId: uniqueId("req"), conflictPolicy: InstanceIdConflictPolicy.USE_EXISTING });
        expect([again.runId, again.started, again.eagerTask], `a repeated start (${step.how}) with eager`).toEqual([runId, false, undefined]);
        expect(await snap(), "a repeated start changed nothing").toEqual(before);
        cover(`first task: repeated start (${step.how})`);
        break;
      }
      case "expire": {
        await h.sql`update dex.workflow_tasks set visible_at = now(), leased_until = now() where run_id = ${runId}`;
        const next = await pollFor("b");
        expect(next.attempt, "the next attempt after the lease ran out").toBe(attempt + 1);
        tokens.push(next.taskToken);
        [attempt, workerId] = [attempt + 1, "b"];
        await expectLeased();
        cover(`first task: expired after ${plan.eager && tokens.length === 2 ? "the eager lease" : "a polled lease"}`);
        break;
      }
      case "stale": {
        if (tokens.length < 2) break;
        const index = step.token % (tokens.length - 1);
        const answer = await code(
          step.call === "complete"
            ? h.worker.completeWorkflowTask({ taskToken: tokens[index]!, commands: [] })
            : h.worker.failWorkflowTask({ taskToken: tokens[index]!, failure: { message: "stale" } }),
        );
        expect(answer, `${step.call} with a replaced token`).toBe("NOT_FOUND");
        expect(await snap(), "a stale token changed nothing").toEqual(before);
        cover(`first task: stale ${step.call}${plan.eager && index === 0 ? " (the eager token)" : ""}`);
        break;
      }
      case "forged": {
        const forged = garbleToken(tokens.at(-1)!, "workflow", step.garble, step.noise);
        const answer = await code(
          step.call === "complete"
            ? h.worker.completeWorkflowTask({ taskToken: forged, commands: [] })
            : h.worker.failWorkflowTask({ taskToken: forged, failure: { message: "forged" } }),
        );
        expect(answer, `${step.call} with a token garbled by ${step.garble}`).toBe(expectedForGarble(step.garble));
        expect(await snap(), "a forged token changed nothing").toEqual(before);
        cover(`first task: forged (${expectedForGarble(step.garble)})`);
        break;
      }
    }
  }
  return { runId, token: tokens.at(-1)!, workerId };
}
