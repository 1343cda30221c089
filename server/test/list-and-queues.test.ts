import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as grpc from "@grpc/grpc-js";
import { RunStatus, TaskQueueType } from "@dex/proto";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { completeRun, pollActivityOf, pollWorkflowTaskOf, scheduleActivity, startHarness, uniqueId, type Harness } from "./helpers.js";

describe("ListRuns", () => {
  let h: Harness;
  const ids: string[] = [];
  let middle: Date;
  beforeAll(async () => {
    h = await startHarness();
    for (let i = 0; i < 7; i++) {
      const { runId } = await h.client.startWorkflow({
        workflowName: i % 2 === 0 ? "even" : "odd",
        instanceId: `list-${i}`,
        labels: { tenant: i < 4 ? "a" : "b", index: String(i) },
      });
      ids.push(runId);
      if (i === 3) {
        const [row] = await h.sql<{ created_at: Date }[]>`select created_at from dex.runs where id = ${runId}`;
        middle = row!.created_at;
      }
    }
    // Complete run 0.
    const task = await pollWorkflowTaskOf(h, ids[0]!);
    await h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [completeRun(0)] });
  });
  afterAll(async () => {
    await h.close();
  });

  it("lists newest first and pages with an opaque token", async () => {
    const seen: string[] = [];
    let pageToken = "";
    let pages = 0;
    do {
      const page = await h.client.listRuns({ pageSize: 3, pageToken });
      seen.push(...page.runs.map((r) => r.runId));
      pageToken = page.nextPageToken;
      pages++;
    } while (pageToken !== "" && pages < 10);
    expect(seen).toEqual([...ids].reverse());
    expect(pages).toBe(3);
  });

  it("filters by workflow, status, instance, labels and creation time", async () => {
    const names = async (req: Parameters<Harness["client"]["listRuns"]>[0]) =>
      (await h.client.listRuns(req)).runs.map((r) => r.instanceId);
    expect(await names({ workflowName: "odd" })).toEqual(["list-5", "list-3", "list-1"]);
    expect(await names({ statuses: [RunStatus.COMPLETED] })).toEqual(["list-0"]);
    expect(await names({ statuses: [RunStatus.CREATED, RunStatus.RUNNING], workflowName: "even" })).toEqual(["list-6", "list-4", "list-2"]);
    expect(await names({ instanceId: "list-2" })).toEqual(["list-2"]);
    expect(await names({ labels: { tenant: "b" } })).toEqual(["list-6", "list-5", "list-4"]);
    expect(await names({ labels: { tenant: "a", index: "1" } })).toEqual(["list-1"]);
    expect(await names({ createdAfter: timestampFromDate(middle) })).toEqual(["list-6", "list-5", "list-4", "list-3"]);
    expect(await names({ createdBefore: timestampFromDate(middle) })).toEqual(["list-2", "list-1", "list-0"]);
    // Labels are stored as a JSON object (not a string holding one).
    const [stored] = await h.sql<{ t: string }[]>`select jsonb_typeof(labels) as t from dex.runs where instance_id = 'list-0'`;
    expect(stored!.t).toBe("object");
    const info = (await h.client.listRuns({ instanceId: "list-0" })).runs[0]!;
    expect(info).toMatchObject({ workflowName: "even", status: RunStatus.COMPLETED, taskQueue: "default", historyLength: 3n });
    expect(info.endTime).toBeDefined();
  });

  it("rejects a page token used with other filters", async () => {
    const page = await h.client.listRuns({ pageSize: 1, workflowName: "even" });
    await expect(h.client.listRuns({ pageSize: 1, workflowName: "odd", pageToken: page.nextPageToken })).rejects.toMatchObject({
      code: "INVALID_ARGUMENT",
    });
    const next = await h.client.listRuns({ pageSize: 1, workflowName: "even", pageToken: page.nextPageToken });
    expect(next.runs[0]!.instanceId).toBe("list-4");
  });
});

describe("task queues, health and reflection", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(async () => {
    await h.close();
  });

  it("creates queues (also concurrently, exactly once) and lists depth and in-flight counts", async () => {
    const created = await h.queues.createTaskQueue({ name: "emails", type: TaskQueueType.ACTIVITY, capacity: 5 });
    expect(created.queue).toMatchObject({ name: "emails", type: TaskQueueType.ACTIVITY, capacity: 5, depth: 0n });
    const racing = await Promise.allSettled(
      Array.from({ length: 6 }, () => h.queues.createTaskQueue({ name: "raced", type: TaskQueueType.WORKFLOW })),
    );
    expect(racing.filter((r) => r.status === "fulfilled")).toHaveLength(1);
    expect(racing.filter((r) => r.status === "rejected").map((r) => (r as PromiseRejectedResult).reason.code)).toEqual(
      Array(5).fill("ALREADY_EXISTS"),
    );
    // The same name may exist once per type.
    await h.queues.createTaskQueue({ name: "raced", type: TaskQueueType.ACTIVITY });

    const a = await h.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("q") });
    await h.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("q") });
    const task = await pollWorkflowTaskOf(h, a.runId);
    await h.worker.completeWorkflowTask({
      taskToken: task.taskToken,
      commands: [scheduleActivity(1, "send", { taskQueue: "emails" }), scheduleActivity(2, "send", { taskQueue: "emails" })],
    });
    await pollActivityOf(h, a.runId, 1, "emails");
    const { queues } = await h.queues.listTaskQueues({});
    const view = Object.fromEntries(queues.map((q) => [`${q.type}:${q.name}`, q]));
    expect(queues.map((q) => `${q.type}:${q.name}`)).toEqual([
      `${TaskQueueType.ACTIVITY}:default`,
      `${TaskQueueType.ACTIVITY}:emails`,
      `${TaskQueueType.ACTIVITY}:raced`,
      `${TaskQueueType.WORKFLOW}:default`,
      `${TaskQueueType.WORKFLOW}:raced`,
    ]);
    // pollActivityOf claimed both emails tasks (batch of 10): seq 2 is stashed, so both are in flight.
    expect(view[`${TaskQueueType.ACTIVITY}:emails`]).toMatchObject({ depth: 0n, inFlight: 2n });
    // pollWorkflowTaskOf claimed both runs' tasks (batch of 10); one is completed, one still held.
    expect(view[`${TaskQueueType.WORKFLOW}:default`]).toMatchObject({ depth: 0n, inFlight: 1n });
    expect(view[`${TaskQueueType.WORKFLOW}:default`]!.createTime).toBeDefined();
    const workflowOnly = await h.queues.listTaskQueues({ type: TaskQueueType.WORKFLOW });
    expect(workflowOnly.queues.map((q) => q.name)).toEqual(["default", "raced"]);
    // Each queue has its own partition.
    const partitions = await h.sql<{ name: string }[]>`
      select c.relname as name from pg_inherits i join pg_class c on c.oid = i.inhrelid
      join pg_class p on p.oid = i.inhparent where p.relname = 'activity_tasks' order by 1`;
    expect(partitions).toHaveLength(3);
  });

  it("serves grpc.health.v1 and server reflection", async () => {
    const health = await unary(h.server.address, "/grpc.health.v1.Health/Check", Buffer.alloc(0));
    // HealthCheckResponse { status = 1 (SERVING) }: field 1, varint 1.
    expect([...health]).toEqual([0x08, 0x01]);
    const service = Buffer.from("dex.v1.WorkerService");
    const named = await unary(h.server.address, "/grpc.health.v1.Health/Check", Buffer.concat([Buffer.from([0x0a, service.length]), service]));
    expect([...named]).toEqual([0x08, 0x01]);

    // ServerReflectionRequest { list_services = "" } (field 7) over the bidi stream.
    const reply = await reflect(h.server.address, Buffer.from([0x3a, 0x00]));
    const text = reply.toString("latin1");
    for (const name of ["dex.v1.ClientService", "dex.v1.WorkerService", "dex.v1.TaskQueueService", "grpc.health.v1.Health"]) {
      expect(text).toContain(name);
    }
  });
});

function unary(address: string, path: string, request: Buffer): Promise<Buffer> {
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest(path, (b: Buffer) => b, (b: Buffer) => b, request, (err, value) => {
      client.close();
      if (err) reject(err);
      else resolve(value!);
    });
  });
}

function reflect(address: string, request: Buffer): Promise<Buffer> {
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  return new Promise((resolve, reject) => {
    const call = client.makeBidiStreamRequest(
      "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
      (b: Buffer) => b,
      (b: Buffer) => b,
    );
    call.on("data", (data: Buffer) => {
      call.end();
      client.close();
      resolve(data);
    });
    call.on("error", reject);
    call.write(request);
  });
}
