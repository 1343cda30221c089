/**
 * ListRuns by workflow task queue (ListRunsRequest.task_queue, migration 0015) and
 * TaskQueue.last_poll_time (dex.task_queues.last_polled_at), for the web UI's queue filter
 * and queues page (issue 16).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TaskQueueType } from "@dex/proto";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { DEFAULT_WAIT_MS, waitFor } from "@dex/testing";
import { POLL_FLUSH_INTERVAL_MS } from "../src/metrics/poll-tracker.js";
import { rejectsWith, startHarness, type Harness } from "./helpers.js";

describe("ListRuns by task queue", () => {
  let h: Harness;
  /** Instance ids by queue, newest first (ListRuns' order). */
  const byQueue: Record<string, string[]> = { default: [], orders: [], refunds: [] };
  beforeAll(async () => {
    h = await startHarness();
    for (const name of ["orders", "refunds"]) await h.queues.createTaskQueue({ name, type: TaskQueueType.WORKFLOW });
    // Interleaved, so a queue's runs are not one contiguous stretch of ids.
    for (let i = 0; i < 9; i++) {
      const queue = ["orders", "default", "orders", "refunds"][i % 4]!;
      const instanceId = `q-${i}`;
      await h.client.startWorkflow({ workflowName: i % 3 === 0 ? "ship" : "bill", instanceId, taskQueue: queue });
      byQueue[queue]!.unshift(instanceId);
    }
  });
  afterAll(async () => {
    await h?.close();
  });

  const instances = async (req: Parameters<Harness["client"]["listRuns"]>[0]) => (await h.client.listRuns(req)).runs.map((r) => r.instanceId);

  it("lists only the runs of the queue, newest first, alone and with other filters", async () => {
    for (const queue of ["orders", "default", "refunds"]) expect(await instances({ taskQueue: queue })).toEqual(byQueue[queue]);
    expect(await instances({ taskQueue: "orders", workflowName: "ship" })).toEqual(["q-6", "q-0"]);
    expect(await instances({ taskQueue: "nobody-uses-this" })).toEqual([]);
    // Empty: every queue.
    expect(await instances({ taskQueue: "" })).toHaveLength(9);
  });

  it("pages through one queue with its token, and refuses the token for another queue", async () => {
    const seen: string[] = [];
    let pageToken = "";
    let pages = 0;
    do {
      const page = await h.client.listRuns({ taskQueue: "orders", pageSize: 2, pageToken });
      seen.push(...page.runs.map((r) => r.instanceId));
      pageToken = page.nextPageToken;
      pages++;
    } while (pageToken !== "" && pages < 10);
    expect(seen).toEqual(byQueue.orders);
    expect(pages).toBe(3);

    const first = await h.client.listRuns({ taskQueue: "orders", pageSize: 1 });
    for (const other of [{ taskQueue: "refunds" }, {}]) {
      await rejectsWith(
        h.client.listRuns({ ...other, pageSize: 1, pageToken: first.nextPageToken }),
        "INVALID_ARGUMENT",
        /page_token belongs to a listing with other filters/,
      );
    }
  });

  it("refuses a value that cannot be a queue name, saying what a name is", async () => {
    for (const bad of ["two words", "x".repeat(65), "orders;drop"]) {
      await rejectsWith(h.client.listRuns({ taskQueue: bad }), "INVALID_ARGUMENT", /task_queue .* is not a valid task queue name: use 1 to 64 letters/);
    }
  });

  it("has the keyset index of the queue filter (migration 0015)", async () => {
    const [row] = await h.sql<{ indexdef: string }[]>`
      select indexdef from pg_indexes where schemaname = 'dex' and indexname = 'runs_by_task_queue'`;
    expect(row?.indexdef).toMatch(/USING btree \(task_queue, id DESC\)$/);
  });
});

describe("TaskQueue.last_poll_time", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(async () => {
    await h?.close();
  });

  it("is unset until a worker polls the queue, then the time of a recent poll", async () => {
    await h.queues.createTaskQueue({ name: "polled", type: TaskQueueType.ACTIVITY });
    const listed = async () => (await h.queues.listTaskQueues({ type: TaskQueueType.ACTIVITY })).queues.find((q) => q.name === "polled")!;
    expect((await listed()).lastPollTime).toBeUndefined();
    const before = await databaseNow(h);
    await h.worker.pollActivityTasks({ taskQueue: "polled", workerId: "a1", maxTasks: 1, maxWait: { seconds: 0n, nanos: 1_000_000 } });
    // Polls are written in batches every POLL_FLUSH_INTERVAL_MS: wait for one round, with room for load.
    const queue = await waitFor(async () => {
      const q = await listed();
      return q.lastPollTime ? q : undefined;
    }, { timeoutMs: POLL_FLUSH_INTERVAL_MS + DEFAULT_WAIT_MS, message: "last_poll_time set after a poll" });
    const at = timestampDate(queue.lastPollTime!).getTime();
    expect(at).toBeGreaterThanOrEqual(before.getTime());
    expect(at).toBeLessThanOrEqual((await databaseNow(h)).getTime());
    // The other queues were never polled.
    const { queues } = await h.queues.listTaskQueues({});
    expect(queues.filter((q) => q.name !== "polled").map((q) => q.lastPollTime)).toEqual(queues.filter((q) => q.name !== "polled").map(() => undefined));
  });
});

async function databaseNow(h: Harness): Promise<Date> {
  const [row] = await h.sql<{ now: Date }[]>`select now() as now`;
  return row!.now;
}
