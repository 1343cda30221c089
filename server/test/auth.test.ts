/**
 * API keys on a server that requires them (ServerOptions.requireApiKeys):
 * every dex.v1 method refuses a call without a valid key, each role is denied
 * (PERMISSION_DENIED) exactly what it may not call and served what it may, a
 * worker key limited to a queue cannot poll other queues or use their task
 * tokens, and refused calls change nothing. The key cache is off here
 * (apiKeyCacheMs 0); auth-keys.test.ts covers it.
 */
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ClientService, RunStatus, ScheduleService, TaskQueueService, TaskQueueType, WorkerService } from "@dex/proto";
import { revokeApiKey } from "../src/index.js";
import { clientsWith, codeOf, newKey } from "./auth-support.js";
import {
  byRunId,
  completeRun,
  pollActivityOf,
  pollWorkflowTaskOf,
  rejectsWith,
  scheduleActivity,
  startHarness,
  uniqueId,
  type Harness,
} from "./helpers.js";

type Clients = ReturnType<typeof clientsWith>;
const SERVICES = [
  { service: ClientService, of: (c: Clients) => c.client },
  { service: WorkerService, of: (c: Clients) => c.worker },
  { service: TaskQueueService, of: (c: Clients) => c.queues },
  { service: ScheduleService, of: (c: Clients) => c.schedules },
];

/** What each role may call: the specification, written out here independently of api/permissions.ts. */
const MAY: Record<"worker" | "client", (service: string, method: string) => boolean> = {
  worker: (service, method) => service === "dex.v1.WorkerService" || method === "GetRunHistory",
  client: (service, method) =>
    (service === "dex.v1.ClientService" && !["TerminateRun", "DeleteRun", "ResetRun"].includes(method)) ||
    (service === "dex.v1.TaskQueueService" && method === "ListTaskQueues") ||
    service === "dex.v1.ScheduleService",
};

/** Calls a method by name with an empty request: enough to pass or fail the key check. */
function call(clients: Clients, entry: (typeof SERVICES)[number], localName: string): Promise<unknown> {
  const typed = entry.of(clients) as unknown as Record<string, (req: object, options?: object) => Promise<unknown>>;
  return typed[localName]!({}, { deadline: 10_000 });
}

describe("a server that requires API keys", () => {
  let h: Harness;
  const open: Clients[] = [];
  let anonymous: Clients;
  let admin: Clients;
  let client: Clients;
  let worker: Clients;
  /** A worker key limited to the "orders" queues. */
  let orders: Clients;
  /** The harness helpers (pollWorkflowTaskOf, ...) with a key's clients. */
  const as = (c: Clients): Harness => ({ ...h, client: c.client, worker: c.worker, queues: c.queues });
  const connect = (text: string | undefined, metadata?: Array<[string, string]>) => {
    const clients = clientsWith(h, text, metadata);
    open.push(clients);
    return clients;
  };

  beforeAll(async () => {
    h = await startHarness({ requireApiKeys: true, apiKeyCacheMs: 0 });
    anonymous = connect(undefined);
    admin = connect((await newKey(h.sql, "admin")).text);
    client = connect((await newKey(h.sql, "client")).text);
    worker = connect((await newKey(h.sql, "worker")).text);
    orders = connect((await newKey(h.sql, "worker", ["orders"])).text);
    for (const type of [TaskQueueType.WORKFLOW, TaskQueueType.ACTIVITY]) await admin.queues.createTaskQueue({ name: "orders", type });
  });
  afterAll(async () => {
    for (const clients of open) clients.close();
    await h?.close();
  });

  it("answers UNAUTHENTICATED on every dex.v1 method without a key, saying what to send and how to get one", async () => {
    for (const entry of SERVICES) {
      for (const method of entry.service.methods) {
        const err = await rejectsWith(call(anonymous, entry, method.localName), "UNAUTHENTICATED");
        expect(err.message, method.name).toMatch(/authorization: Bearer <key>.*dex auth create/);
      }
    }
  });

  it("denies each role exactly the methods it may not call, with PERMISSION_DENIED naming the role needed", async () => {
    const roles = { worker, client, admin } as const;
    for (const [role, clients] of Object.entries(roles)) {
      for (const entry of SERVICES) {
        for (const method of entry.service.methods) {
          const allowed = role === "admin" || MAY[role as "worker" | "client"](entry.service.typeName, method.name);
          const outcome = call(clients, entry, method.localName);
          if (allowed) {
            // Past the key check: the empty request may well be INVALID_ARGUMENT, but not refused for its key.
            expect(await codeOf(outcome), `${role} ${method.name}`).not.toMatch(/PERMISSION_DENIED|UNAUTHENTICATED|not a DexError/);
          } else {
            const err = await rejectsWith(outcome, "PERMISSION_DENIED");
            expect(err.message, `${role} ${method.name}`).toMatch(
              new RegExp(`has role ${role}; ${entry.service.typeName}/${method.name} needs role .*admin`),
            );
          }
        }
      }
    }
  });

  it("serves each role what it may: a client starts and reads, workers run the tasks, an admin terminates and manages queues", async () => {
    const { runId } = await client.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("auth") });
    const task = await pollWorkflowTaskOf(as(worker), runId);
    await worker.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [scheduleActivity(1, "act")] });
    const activity = await pollActivityOf(as(worker), runId, 1);
    await worker.worker.heartbeatActivityTask({ taskToken: activity.taskToken });
    await worker.worker.completeActivityTask({ taskToken: activity.taskToken });
    const next = await pollWorkflowTaskOf(as(worker), runId);
    await worker.worker.completeWorkflowTask({ taskToken: next.taskToken, commands: [completeRun("done")] });
    expect((await worker.client.getRunHistory({ run: byRunId(runId) })).events.length).toBeGreaterThan(3);
    expect((await client.client.getRunResult({ run: byRunId(runId) })).status).toBe(RunStatus.COMPLETED);
    expect((await client.client.describeRun({ run: byRunId(runId) })).info?.status).toBe(RunStatus.COMPLETED);
    expect((await client.queues.listTaskQueues({})).queues.map((q) => q.name)).toContain("orders");

    const { runId: other } = await client.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("auth-term") });
    await admin.client.terminateRun({ run: byRunId(other), reason: "admin says so" });
    expect((await client.client.describeRun({ run: byRunId(other) })).info?.status).toBe(RunStatus.TERMINATED);
    await admin.queues.pauseTaskQueue({ name: "orders", type: TaskQueueType.ACTIVITY });
    await admin.queues.resumeTaskQueue({ name: "orders", type: TaskQueueType.ACTIVITY });
  });

  it("changes nothing when it refuses a call", async () => {
    const instanceId = uniqueId("auth-nothing");
    await rejectsWith(worker.client.startWorkflow({ workflowName: "wf", instanceId }), "PERMISSION_DENIED");
    expect((await admin.client.listRuns({ instanceId })).runs).toEqual([]);

    const { runId } = await client.client.startWorkflow({ workflowName: "wf", instanceId });
    await rejectsWith(client.client.terminateRun({ run: byRunId(runId), reason: "not mine to end" }), "PERMISSION_DENIED");
    await rejectsWith(anonymous.client.cancelRun({ run: byRunId(runId), reason: "who am I" }), "UNAUTHENTICATED");
    const run = (await admin.client.describeRun({ run: byRunId(runId) })).info!;
    expect([run.status, run.historyLength, run.endTime]).toEqual([RunStatus.CREATED, 1n, undefined]);

    await rejectsWith(client.queues.createTaskQueue({ name: "sneaky", type: TaskQueueType.WORKFLOW }), "PERMISSION_DENIED");
    await rejectsWith(client.queues.deleteTaskQueue({ name: "orders", type: TaskQueueType.WORKFLOW }), "PERMISSION_DENIED");
    const names = (await admin.queues.listTaskQueues({})).queues.map((q) => `${q.type}/${q.name}`);
    expect(names).not.toContain(`${TaskQueueType.WORKFLOW}/sneaky`);
    expect(names).toContain(`${TaskQueueType.WORKFLOW}/orders`);
  });

  it("lets a worker key limited to a queue poll only that queue, and use no task token of another queue", async () => {
    const poll = { workerId: "limited", maxWait: { seconds: 1n } };
    // One call at a time: a second call made up front could reject before anything awaits it.
    const refusedPolls = [() => orders.worker.pollWorkflowTasks({ ...poll, taskQueue: "default" }), () => orders.worker.pollActivityTasks({ ...poll, taskQueue: "default" })];
    for (const refused of refusedPolls) {
      await rejectsWith(refused(), "PERMISSION_DENIED", /may use only task queue\(s\) orders; task queue is "default"/);
    }

    // A run on "default": its tokens are the unlimited worker's to use, not this key's.
    const { runId } = await client.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("auth-other") });
    const task = await pollWorkflowTaskOf(as(worker), runId);
    const tokenRefused = /may use only task queue\(s\) orders; the task token's queue is "default"/;
    await rejectsWith(orders.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [completeRun("stolen")] }), "PERMISSION_DENIED", tokenRefused);
    await rejectsWith(orders.worker.failWorkflowTask({ taskToken: task.taskToken, failure: { message: "stolen" } }), "PERMISSION_DENIED", tokenRefused);
    await rejectsWith(orders.client.getRunHistory({ run: byRunId(runId) }), "PERMISSION_DENIED", /the run's task queue is "default"/);
    // The task is untouched: its owner completes it.
    await worker.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [scheduleActivity(1, "act")] });
    const activity = await pollActivityOf(as(worker), runId, 1);
    await rejectsWith(orders.worker.heartbeatActivityTask({ taskToken: activity.taskToken }), "PERMISSION_DENIED", tokenRefused);
    await rejectsWith(orders.worker.completeActivityTask({ taskToken: activity.taskToken }), "PERMISSION_DENIED", tokenRefused);
    await rejectsWith(orders.worker.failActivityTask({ taskToken: activity.taskToken, failure: { message: "x" } }), "PERMISSION_DENIED", tokenRefused);
    await worker.worker.completeActivityTask({ taskToken: activity.taskToken });

    // Its own queue: everything works.
    const { runId: own } = await client.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("auth-own"), taskQueue: "orders" });
    const ownTask = await pollWorkflowTaskOf(as(orders), own, "limited", "orders");
    await orders.worker.completeWorkflowTask({ taskToken: ownTask.taskToken, commands: [scheduleActivity(1, "act", { taskQueue: "orders" })] });
    const ownActivity = await pollActivityOf(as(orders), own, 1, "orders", "limited");
    await orders.worker.heartbeatActivityTask({ taskToken: ownActivity.taskToken });
    await orders.worker.completeActivityTask({ taskToken: ownActivity.taskToken });
    expect((await orders.client.getRunHistory({ run: byRunId(own) })).events.length).toBeGreaterThanOrEqual(3);
  });

  it("refuses malformed, unknown, wrong-secret and revoked keys with UNAUTHENTICATED", async () => {
    const key = await newKey(h.sql, "client");
    const [, id] = key.text.split("_");
    const wrongSecret = `dex_${id}_${"0".repeat(64)}`;
    const unknown = `dex_${"a".repeat(16)}_${key.text.slice(-64)}`;
    const cases: Array<[Array<[string, string]>, RegExp]> = [
      [[["authorization", "Basic dXNlcjpwdw=="]], /exactly one "Bearer <key>"/],
      [[["authorization", "Bearer"]], /exactly one "Bearer <key>"/],
      [[["authorization", "Bearer not-a-dex-key"]], /malformed: dex keys look like dex_/],
      [[["authorization", `Bearer ${key.text.slice(0, -1)}`]], /malformed/],
      [[["authorization", `Bearer ${unknown}`]], /not valid \(unknown key or wrong secret\)/],
      [[["authorization", `Bearer ${wrongSecret}`]], /not valid \(unknown key or wrong secret\)/],
    ];
    for (const [metadata, message] of cases) {
      const err = await rejectsWith(connect(undefined, metadata).client.listRuns({}), "UNAUTHENTICATED", message);
      expect(err.message).toContain("dex auth create");
    }
    // "bearer" in any case, as HTTP allows.
    expect(await codeOf(connect(undefined, [["authorization", `bearer ${key.text}`]]).client.listRuns({}))).toBe("OK");

    const revoked = connect(key.text);
    expect(await codeOf(revoked.client.listRuns({}))).toBe("OK");
    await revokeApiKey(h.sql, key.name);
    await rejectsWith(revoked.client.listRuns({}), "UNAUTHENTICATED", new RegExp(`"${key.name}" was revoked`));
  });

  it("stores only the sha256 of the secret, never the key", async () => {
    const key = await newKey(h.sql, "worker", ["a", "b"]);
    const [, id, secret] = key.text.split("_");
    const [row] = await h.sql<{ row: string; hash: Buffer; expected: Buffer }[]>`
      select k::text as row, secret_sha256 as hash, sha256(convert_to(${secret!}, 'UTF8')) as expected
      from dex.api_keys k where id = ${id!}`;
    expect(row!.hash.equals(row!.expected)).toBe(true);
    // Not the secret, nor any 16-character piece of it.
    for (let at = 0; at + 16 <= secret!.length; at += 16) expect(row!.row).not.toContain(secret!.slice(at, at + 16));
    expect(row!.row).toContain("{a,b}");
  });

  it("leaves health checking open to callers without a key", async () => {
    const channel = new grpc.Client(h.server.address, grpc.credentials.createInsecure());
    const bytes = (b: Buffer) => b;
    try {
      const health = await new Promise<Buffer>((resolve, reject) =>
        channel.makeUnaryRequest("/grpc.health.v1.Health/Check", bytes, bytes, Buffer.alloc(0), (err, res) => (err ? reject(err) : resolve(res!))),
      );
      expect([...health]).toEqual([0x08, 0x01]); // SERVING
    } finally {
      channel.close();
    }
  });
});
