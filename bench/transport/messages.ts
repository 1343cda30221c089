/**
 * The canned dex.v1 messages the transport benchmark sends. They are shaped
 * like real worker traffic so that the measurement includes the protobuf-es
 * encode/decode cost that each transport adds around them.
 */
import { create, toBinary } from "@bufbuild/protobuf";
import type { DescMessage, MessageInitShape, MessageShape } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromMs } from "@bufbuild/protobuf/wkt";
import {
  CompleteActivityTaskRequestSchema,
  CompleteActivityTaskResponseSchema,
  HistoryEventSchema,
  PayloadSchema,
  PollWorkflowTasksRequestSchema,
  PollWorkflowTasksResponseSchema,
  WorkflowTaskSchema,
} from "@dex/proto";
import type { HistoryEvent, Payload, WorkflowTask } from "@dex/proto";

const encoder = new TextEncoder();
const T0 = Date.UTC(2025, 0, 1);

function json(value: unknown): Payload {
  return create(PayloadSchema, { data: encoder.encode(JSON.stringify(value)), encoding: "json/plain" });
}

function token(i: number): Uint8Array {
  return Uint8Array.from({ length: 32 }, (_, j) => (i * 31 + j * 7) & 0xff);
}

/** (a) An activity result of about 200 bytes of JSON; the response is empty. */
export const completeActivityTaskRequest = create(CompleteActivityTaskRequestSchema, {
  taskToken: token(1),
  result: json({
    orderId: "ord_01JH3Q8ZK4W7M2N5P6R9S0T1UV",
    status: "charged",
    amount: { currency: "EUR", cents: 129900 },
    card: { brand: "visa", last4: "4242" },
    chargedAt: "2025-01-01T12:00:00.000Z",
    receiptUrl: "https://pay.example.com/r/abc123",
  }),
});
export const completeActivityTaskResponse = create(CompleteActivityTaskResponseSchema, {});

export const pollWorkflowTasksRequest = create(PollWorkflowTasksRequestSchema, {
  taskQueue: "orders",
  maxTasks: 10,
  workerId: "bench-host:12345:7f3a9c",
  maxWait: durationFromMs(20_000),
});

/** About 20 events: run started, then blocks of (activity completed, marker, next activity scheduled). */
function history(run: number): HistoryEvent[] {
  const events: HistoryEvent[] = [];
  const push = (attributes: MessageInitShape<typeof HistoryEventSchema>["attributes"]) =>
    events.push(
      create(HistoryEventSchema, {
        sequence: BigInt(events.length + 1),
        time: timestampFromMs(T0 + run * 60_000 + events.length * 150),
        attributes,
      }),
    );
  push({
    case: "runStarted",
    value: {
      workflowName: "processOrder",
      instanceId: `order-${run}`,
      taskQueue: "orders",
      input: json({ orderId: `ord_${run}`, customerId: "cus_9f8e7d", items: 3 }),
      priority: 50,
    },
  });
  for (let seq = 1; seq <= 6; seq++) {
    push({ case: "workflowTaskCompleted", value: { workerId: "bench-host:12345:7f3a9c", attempt: 1 } });
    push({
      case: "activityScheduled",
      value: {
        seq,
        activityName: `step${seq}`,
        taskQueue: "orders-activities",
        input: json({ orderId: `ord_${run}`, step: seq, note: "reserve inventory" }),
        retryPolicy: { initialInterval: durationFromMs(1000), backoffCoefficient: 2, maximumAttempts: 5 },
        startToCloseTimeout: durationFromMs(30_000),
        priority: 50,
      },
    });
    push({ case: "activityCompleted", value: { seq, attempt: 1, result: json({ ok: true, ref: `ref_${run}_${seq}` }) } });
  }
  // The last completion is the new input of the task, not yet in history.
  return events;
}

function workflowTask(run: number): WorkflowTask {
  const events = history(run);
  const newEvents = events.splice(-1);
  return create(WorkflowTaskSchema, {
    taskToken: token(run),
    runId: `0194a3b2-7c1d-7e8f-9a0b-${String(run).padStart(12, "0")}`,
    instanceId: `order-${run}`,
    workflowName: "processOrder",
    taskQueue: "orders",
    attempt: 1,
    taskTime: timestampFromMs(T0 + run * 60_000 + 5_000),
    historyLength: BigInt(events.length),
    history: events,
    newEvents,
  });
}

/** (b) 10 workflow tasks, each with 19 history events and 1 new event. */
export const pollWorkflowTasksResponse = create(PollWorkflowTasksResponseSchema, {
  tasks: Array.from({ length: 10 }, (_, i) => workflowTask(i + 1)),
});

export function encodedSize<D extends DescMessage>(schema: D, message: MessageShape<D>): number {
  return toBinary(schema, message).byteLength;
}
