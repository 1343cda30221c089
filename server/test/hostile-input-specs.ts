/**
 * For every RPC of ClientService, WorkerService and TaskQueueService: a
 * valid-looking base request and a generator of hostile values per field
 * (server/test/hostile-input.test.ts mutates one to three fields per case).
 */
import { InstanceIdConflictPolicy, InstanceIdReusePolicy, ResetPointKind, RunStatus, TaskQueueType, WorkflowTaskFailedCause } from "@dex/proto";
import {
  draw,
  durations,
  enums,
  failures,
  ids,
  int32s,
  int64s,
  labelMaps,
  payloads,
  queueNames,
  requiredIds,
  SQL,
  texts,
  timestamps,
  type FailureInit,
  type Pick,
  type Rng,
} from "./hostile-input-values.js";

/** What the generators may refer to: runs and live task tokens kept by the test. */
export interface Fixtures {
  victimRunId: string;
  victimInstanceId: string;
  workflowToken: Uint8Array;
  activityToken: Uint8Array;
  payloadLimit: number;
}

export type Service = "client" | "worker" | "queues";
type Field = (rng: Rng, fx: Fixtures) => Pick<unknown>;
export interface Spec {
  service: Service;
  method: string;
  /** A live task token the case needs (refreshed by the test before the case). */
  needs?: "workflow" | "activity";
  /** Cases relative to the others: completions carry the most fields. */
  weight?: number;
  base: (fx: Fixtures) => Record<string, unknown>;
  fields: Record<string, Field>;
}

const pick = <T>(label: string, value: T, bad = false): Pick<T> => ({ label, value, bad });
const poolField =
  <T>(pool: Parameters<typeof draw<T>>[1]): Field =>
  (rng) =>
    draw(rng, pool);
const within = (p: Pick<number>, min: number, max: number): Pick<number> => ({ ...p, bad: p.value < min || p.value > max });

function selector(rng: Rng, fx: Fixtures): Pick<unknown> {
  switch (rng.int(8)) {
    case 0:
      return pick("unset", undefined, true);
    case 1:
      return pick("no target", { target: { case: undefined } }, true);
    case 2:
      return pick("victim run id", { target: { case: "runId", value: fx.victimRunId } });
    case 3:
      return pick("victim run id, upper case", { target: { case: "runId", value: fx.victimRunId.toUpperCase() } });
    case 4:
      return pick("unknown run id", { target: { case: "runId", value: "0190a1b2-0000-7000-8000-00000000beef" } });
    case 5: {
      const bad = rng.pick(["not-a-uuid", SQL, "", `${fx.victimRunId}\u0000`, `${fx.victimRunId} `]);
      return pick(`run id ${JSON.stringify(bad.slice(0, 20))}`, { target: { case: "runId", value: bad } }, true);
    }
    case 6:
      return pick("victim instance id", { target: { case: "instanceId", value: fx.victimInstanceId } });
    default: {
      const id = draw(rng, requiredIds);
      return { ...id, label: `instance id: ${id.label}`, value: { target: { case: "instanceId", value: id.value } } };
    }
  }
}

/** Task tokens: the live one, forged ones, garbage. Every one but the live one must be refused. */
function token(kind: "workflow" | "activity"): Field {
  return (rng, fx) => {
    const live = kind === "workflow" ? fx.workflowToken : fx.activityToken;
    const other = kind === "workflow" ? fx.activityToken : fx.workflowToken;
    const mutated = (label: string, edit: (t: Uint8Array) => Uint8Array) => pick(label, edit(Uint8Array.from(live)), true);
    switch (rng.int(12)) {
      case 0:
        return pick("live token", live);
      case 1:
        return pick("empty", new Uint8Array(), true);
      case 2:
        return pick("random bytes", rng.bytes(1 + rng.int(80)), true);
      case 3:
        return pick("the other kind's token", other, true);
      case 4:
        return mutated("version 7", (t) => ((t[0] = 7), t));
      case 5:
        return mutated("truncated", (t) => t.subarray(0, t.length - 1 - rng.int(10)));
      case 6:
        return mutated("one byte longer", (t) => Uint8Array.from([...t, 0x41]));
      case 7:
        return mutated("forged lease id", (t) => (t.fill(0xab, 18, 34), t));
      case 8:
        return mutated("lock version 2^32-1", (t) => (t.fill(0xff, 34, 38), t));
      case 9:
        return kind === "activity"
          ? mutated("seq 2^32-1", (t) => (t.fill(0xff, 38, 42), t))
          : mutated("forged run id", (t) => (t.fill(0x00, 2, 18), t));
      case 10:
        return mutated("queue renamed to a valid unknown queue", (t) => (t[t.length - 1] = 0x5a, t));
      default:
        return pick("1 MiB of zeros", new Uint8Array(1024 * 1024), true);
    }
  };
}

const priority: Field = (rng) => within(draw(rng, int32s), 0, 100);
const optionalPriority: Field = (rng) => (rng.chance(0.3) ? pick("unset", undefined) : priority(rng, undefined as never));
const failure =
  (optional = false): Field =>
  (rng, fx) => {
    const f = draw(rng, failures(fx.payloadLimit));
    return optional && f.value === undefined ? { ...f, bad: false } : f;
  };

/** next_retry_delay: zero and up to ten years are valid. */
const duration: Field = (rng) => draw(rng, durations);
const maxWait: Field = (rng) => {
  const d = draw(rng, durations);
  // Polls accept at most 60 s.
  return { ...d, bad: d.bad || (d.value !== undefined && (d.value.seconds > 60n || (d.value.seconds === 60n && d.value.nanos > 0))) };
};

const sharedStart: Record<string, Field> = {
  workflowName: poolField(requiredIds),
  instanceId: poolField(requiredIds),
  taskQueue: (rng) => (rng.chance(0.2) ? pick("empty (default)", "") : draw(rng, queueNames)),
  input: (rng, fx) => draw(rng, payloads(fx.payloadLimit)),
  labels: poolField(labelMaps()),
  priority,
  requestId: poolField(ids),
  conflictPolicy: poolField(enums([0, InstanceIdConflictPolicy.FAIL, InstanceIdConflictPolicy.USE_EXISTING])),
  reusePolicy: poolField(enums([0, InstanceIdReusePolicy.ALLOW, InstanceIdReusePolicy.ALLOW_IF_FAILED, InstanceIdReusePolicy.REJECT])),
  concurrencyKey: poolField(ids),
  // Checked only with a concurrency key (ignored without one), so never certainly invalid here.
  concurrencyLimit: (rng) => ({ ...draw(rng, int32s), bad: false }),
};
const startBase = () => ({ workflowName: "wf", instanceId: `start-${Math.random().toString(36).slice(2)}`, taskQueue: "default" });

const queueKey: Record<string, Field> = {
  name: poolField(queueNames),
  type: poolField(enums([TaskQueueType.WORKFLOW, TaskQueueType.ACTIVITY])),
};
const capacity: Field = (rng) => within(draw(rng, int32s), 0, 1_000_000_000);

export function specs(commands: Field): Spec[] {
  const pollFields: Record<string, Field> = {
    taskQueue: poolField([...queueNames, ["empty (missing)", "", true]] as never),
    maxTasks: (rng) => within(draw(rng, int32s), 0, 100),
    workerId: poolField(requiredIds),
    maxWait,
  };
  return [
    { service: "client", method: "startWorkflow", base: startBase, fields: sharedStart },
    {
      service: "client",
      method: "sendEvent",
      base: (fx) => ({ run: { target: { case: "runId", value: fx.victimRunId } }, eventId: "e" }),
      fields: { run: selector, eventId: poolField(requiredIds), payload: (rng, fx) => draw(rng, payloads(fx.payloadLimit)) },
    },
    {
      service: "client",
      method: "sendEventWithStart",
      base: () => ({ start: startBase(), eventId: "e" }),
      fields: {
        start: (rng, fx) => {
          if (rng.chance(0.15)) return pick("unset", undefined, true);
          const request = startBase() as Record<string, unknown>;
          const [name, field] = rng.pick(Object.entries(sharedStart));
          const value = field(rng, fx);
          request[name] = value.value;
          return { ...value, label: `start.${name}: ${value.label}`, value: request };
        },
        eventId: poolField(requiredIds),
        payload: (rng, fx) => draw(rng, payloads(fx.payloadLimit)),
      },
    },
    {
      // A zero wait: the victim run has no worker, so a valid update would otherwise wait 20 s.
      service: "client",
      method: "updateRun",
      base: (fx) => ({ run: { target: { case: "runId", value: fx.victimRunId } }, name: "u", updateId: "u", wait: { seconds: 0n, nanos: 0 } }),
      fields: {
        run: selector,
        name: poolField(requiredIds),
        updateId: poolField(requiredIds),
        args: (rng, fx) => draw(rng, payloads(fx.payloadLimit)),
      },
    },
    { service: "client", method: "describeRun", base: (fx) => ({ run: { target: { case: "runId", value: fx.victimRunId } } }), fields: { run: selector } },
    {
      service: "client",
      method: "getRunHistory",
      base: (fx) => ({ run: { target: { case: "runId", value: fx.victimRunId } } }),
      fields: {
        run: selector,
        afterSequence: poolField(int64s),
        pageSize: (rng) => within(draw(rng, int32s), 0, 10_000),
        waitNewEvents: (rng) => pick("wait", rng.chance(0.5)),
      },
    },
    {
      service: "client",
      method: "getRunResult",
      base: (fx) => ({ run: { target: { case: "runId", value: fx.victimRunId } } }),
      fields: { run: selector, wait: (rng) => pick("wait", rng.chance(0.5)) },
    },
    {
      service: "client",
      method: "listRuns",
      base: () => ({}),
      fields: {
        workflowName: poolField(ids),
        statuses: (rng) => {
          const status = draw(rng, enums([0, RunStatus.CREATED, RunStatus.RUNNING, RunStatus.COMPLETED, RunStatus.CONTINUED_AS_NEW]));
          return { ...status, value: [status.value, RunStatus.FAILED] };
        },
        instanceId: poolField(ids),
        labels: poolField(labelMaps()),
        createdAfter: poolField(timestamps),
        createdBefore: poolField(timestamps),
        pageSize: (rng) => within(draw(rng, int32s), 0, 1000),
        pageToken: (rng) =>
          rng.pick([pick("empty", ""), pick("sql", SQL, true), pick("base64 garbage", "AAAAAAAAAAAAAAAAAAAAAAAAAAAA", true), pick("long", "A".repeat(5000), true)]),
      },
    },
    {
      service: "client",
      method: "cancelRun",
      base: (fx) => ({ run: { target: { case: "runId", value: fx.victimRunId } } }),
      fields: { run: selector, reason: poolField(texts) },
    },
    {
      service: "client",
      method: "terminateRun",
      base: () => ({ run: { target: { case: "runId", value: "0190a1b2-0000-7000-8000-00000000beef" } } }),
      fields: { run: selector, reason: poolField(texts) },
    },
    {
      service: "client",
      method: "deleteRun",
      // The victim is open: FAILED_PRECONDITION, nothing deleted.
      base: (fx) => ({ runId: fx.victimRunId }),
      fields: { runId: poolField(requiredIds) },
    },
    {
      service: "client",
      method: "resetRun",
      base: () => ({ run: { target: { case: "runId", value: "0190a1b2-0000-7000-8000-00000000beef" } }, to: ResetPointKind.FIRST_WORKFLOW_TASK }),
      fields: {
        run: selector,
        to: poolField(enums([ResetPointKind.FIRST_WORKFLOW_TASK, ResetPointKind.LAST_WORKFLOW_TASK, ResetPointKind.EVENT])),
        // Valid or not depending on `to` (0 unless EVENT): only the values no `to` accepts are marked bad.
        eventSequence: (rng) =>
          rng.pick([pick("0", 0n), pick("1", 1n), pick("2", 2n), pick("-1", -1n, true), pick("2^31", 2n ** 31n, true), pick("int64 max", 2n ** 63n - 1n, true)]),
        reason: poolField(texts),
        requestId: poolField(ids),
      },
    },
    { service: "worker", method: "pollWorkflowTasks", base: () => ({ taskQueue: "default", workerId: "fuzz" }), fields: pollFields },
    { service: "worker", method: "pollActivityTasks", base: () => ({ taskQueue: "default", workerId: "fuzz" }), fields: pollFields },
    {
      service: "worker",
      method: "completeWorkflowTask",
      needs: "workflow",
      weight: 3,
      base: (fx) => ({ taskToken: fx.workflowToken, commands: [] }),
      fields: { taskToken: token("workflow"), commands },
    },
    {
      service: "worker",
      method: "failWorkflowTask",
      needs: "workflow",
      base: (fx) => ({ taskToken: fx.workflowToken, failure: { message: "x" } }),
      fields: {
        taskToken: token("workflow"),
        failure: failure(),
        cause: poolField(enums([0, WorkflowTaskFailedCause.NON_DETERMINISM, WorkflowTaskFailedCause.WORKER_ERROR])),
      },
    },
    {
      service: "worker",
      method: "completeActivityTask",
      needs: "activity",
      base: (fx) => ({ taskToken: fx.activityToken }),
      fields: { taskToken: token("activity"), result: (rng, fx) => draw(rng, payloads(fx.payloadLimit)) },
    },
    {
      service: "worker",
      method: "failActivityTask",
      needs: "activity",
      base: (fx) => ({ taskToken: fx.activityToken, failure: { message: "x" } }),
      fields: { taskToken: token("activity"), failure: failure(), nextRetryDelay: duration },
    },
    {
      service: "worker",
      method: "heartbeatActivityTask",
      needs: "activity",
      base: (fx) => ({ taskToken: fx.activityToken }),
      fields: { taskToken: token("activity"), details: (rng, fx) => draw(rng, payloads(fx.payloadLimit)) },
    },
    {
      // Per-item problems are answered per item (server/test/activity-reports.test.ts); what the
      // call itself refuses is its shape: no items, too many, an item without an outcome.
      service: "worker",
      method: "reportActivityTasks",
      base: (fx) => ({ items: [forgedReport(fx)] }),
      fields: { items: reportItems },
    },
    // Queries (decision 0023). The fuzz server caps waits at 100 ms, so a query no worker answers ends quickly.
    {
      service: "client",
      method: "queryRun",
      base: (fx) => ({ run: { target: { case: "runId", value: fx.victimRunId } }, queryName: "state" }),
      fields: {
        run: selector,
        queryName: poolField(requiredIds),
        args: (rng, fx) => draw(rng, payloads(fx.payloadLimit)),
        timeout: maxWait,
      },
    },
    { service: "worker", method: "pollQueryTasks", base: () => ({ taskQueue: "default", workerId: "fuzz" }), fields: pollFields },
    {
      service: "worker",
      method: "respondQueryTask",
      base: () => ({ queryId: "00000000-0000-4000-8000-000000000000", result: { encoding: "json/plain", data: new TextEncoder().encode("1") } }),
      fields: { queryId: poolField(requiredIds), failure: failure() },
    },
    {
      service: "queues",
      method: "createTaskQueue",
      base: () => ({ name: `fuzz-${Math.random().toString(36).slice(2, 8)}`, type: TaskQueueType.ACTIVITY }),
      fields: { ...queueKey, capacity },
    },
    { service: "queues", method: "updateTaskQueue", base: () => ({ name: "default", type: TaskQueueType.ACTIVITY }), fields: { ...queueKey, capacity } },
    { service: "queues", method: "pauseTaskQueue", base: () => ({ name: "no-such-queue", type: TaskQueueType.ACTIVITY }), fields: queueKey },
    { service: "queues", method: "resumeTaskQueue", base: () => ({ name: "default", type: TaskQueueType.WORKFLOW }), fields: queueKey },
    { service: "queues", method: "listTaskQueues", base: () => ({}), fields: { type: poolField(enums([0, TaskQueueType.WORKFLOW, TaskQueueType.ACTIVITY])) } },
    { service: "queues", method: "deleteTaskQueue", base: () => ({ name: "no-such-queue", type: TaskQueueType.WORKFLOW }), fields: queueKey },
  ];
}

/** A complete item with a live token's forged lease: answered NOT_FOUND per item, writes nothing. */
function forgedReport(fx: Fixtures) {
  const taskToken = Uint8Array.from(fx.activityToken).fill(0xab, 18, 34);
  return { outcome: { case: "complete", value: { taskToken } } };
}

function reportItems(rng: Rng, fx: Fixtures): Pick<unknown> {
  switch (rng.int(5)) {
    case 0:
      return pick("no items", [], true);
    case 1:
      return pick("501 items", Array.from({ length: 501 }, () => forgedReport(fx)), true);
    case 2:
      return pick("an item without an outcome", [forgedReport(fx), {}], true);
    case 3:
      return pick("500 forged items", Array.from({ length: 500 }, () => forgedReport(fx)));
    default:
      return pick("one forged item", [forgedReport(fx)]);
  }
}

export { failure, optionalPriority, pick, poolField, priority, within };
export type { Field, FailureInit };
