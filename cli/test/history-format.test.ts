/**
 * `dex workflow history` shows every field of every event type. Each case of HistoryEvent's
 * `attributes` oneof gets a sample with every field set, and the formatted line must show each one.
 * The cases and their fields are read from the generated descriptor, so a new event type or a new
 * field in history.proto fails here until the formatter shows it.
 */
import { create, type DescMessage } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { HistoryEventSchema, ParentClosePolicy, RunStatus } from "@dex/proto";
import { encodePayload } from "@dex/sdk";
import { describe, expect, it } from "vitest";
import { describeHistoryEvent, hasHistoryEventFormatter } from "../src/commands/history-format.js";

const RUN_ID = "0192f0c4-aaaa-7bbb-8ccc-000000000001";
const OTHER_RUN_ID = "0192f0c4-aaaa-7bbb-8ccc-000000000002";
const FIRE = new Date("2026-03-04T05:06:07.000Z");
const failure = { message: "card declined", type: "CardDeclined" };

interface Sample {
  kind: string;
  /** Attribute field (local name) → init value. */
  value: Record<string, unknown>;
  /** Attribute field (local name) → the text the line must contain to show it. */
  shows: Record<string, string>;
}

const samples: Record<string, Sample> = {
  runStarted: {
    kind: "run started",
    value: {
      workflowName: "orderFulfilment",
      instanceId: "order-42",
      taskQueue: "orders",
      input: encodePayload({ sku: "A1" }),
      labels: { shop: "web" },
      priority: 7,
      parentRunId: OTHER_RUN_ID,
      continuedFromRunId: "run-before",
      resetFromRunId: "run-reset",
    },
    shows: {
      workflowName: "orderFulfilment",
      instanceId: "instance=order-42",
      taskQueue: "queue=orders",
      input: 'input={"sku":"A1"}',
      labels: 'labels={"shop":"web"}',
      priority: "priority=7",
      parentRunId: `parent=${OTHER_RUN_ID}`,
      continuedFromRunId: "(continued from run run-before)",
      resetFromRunId: "(reset from run run-reset)",
    },
  },
  workflowTaskCompleted: { kind: "workflow task completed", value: { workerId: "w-1", attempt: 2 }, shows: { workerId: "worker=w-1", attempt: "attempt=2" } },
  activityScheduled: {
    kind: "activity scheduled",
    value: {
      seq: 3,
      activityName: "charge",
      taskQueue: "payments",
      input: encodePayload([1, 2]),
      retryPolicy: { initialInterval: { seconds: 1n }, backoffCoefficient: 2.5, maximumInterval: { seconds: 60n }, maximumAttempts: 5, nonRetryableErrorTypes: ["Fatal"] },
      startToCloseTimeout: { seconds: 30n },
      scheduleToCloseTimeout: { seconds: 3600n },
      heartbeatTimeout: { nanos: 500_000_000 },
      priority: 9,
    },
    shows: {
      seq: "#3",
      activityName: "charge",
      taskQueue: "on payments",
      input: "input=[1,2]",
      retryPolicy: "retry(initial=1s backoff=2.5 max=1m attempts=5 nonRetryable=Fatal)",
      startToCloseTimeout: "startToClose=30s",
      scheduleToCloseTimeout: "scheduleToClose=1h",
      heartbeatTimeout: "heartbeat=500ms",
      priority: "priority=9",
    },
  },
  activityCompleted: {
    kind: "activity completed",
    value: { seq: 3, result: encodePayload({ ok: true }), attempt: 2 },
    shows: { seq: "#3", result: 'result={"ok":true}', attempt: "attempt=2" },
  },
  activityFailed: { kind: "activity failed", value: { seq: 3, failure, attempt: 4 }, shows: { seq: "#3", failure: "card declined (CardDeclined)", attempt: "attempt=4" } },
  activityCancelRequested: { kind: "activity cancel requested", value: { seq: 5 }, shows: { seq: "#5" } },
  timerStarted: { kind: "timer started", value: { seq: 6, fireTime: timestampFromDate(FIRE) }, shows: { seq: "#6", fireTime: `fires ${FIRE.toISOString()}` } },
  timerFired: { kind: "timer fired", value: { seq: 6 }, shows: { seq: "#6" } },
  timerCancelled: { kind: "timer cancelled", value: { seq: 7 }, shows: { seq: "#7" } },
  eventWaitStarted: {
    kind: "event wait started",
    value: { seq: 8, eventId: "approval-1", timeoutTime: timestampFromDate(FIRE), eventName: "approval" },
    shows: { seq: "#8", eventId: "(id approval-1)", timeoutTime: `times out ${FIRE.toISOString()}`, eventName: "approval" },
  },
  externalEventReceived: {
    kind: "event received",
    value: { eventId: "add-7", payload: encodePayload("item-7"), eventName: "add-item" },
    shows: { eventId: "(id add-7)", payload: '"item-7"', eventName: "add-item" },
  },
  eventWaitTimedOut: { kind: "event wait timed out", value: { seq: 8 }, shows: { seq: "#8" } },
  childRunScheduled: {
    kind: "child run scheduled",
    value: {
      seq: 9,
      workflowName: "shipment",
      instanceId: "ship-42",
      taskQueue: "shipping",
      input: encodePayload({ to: "Oslo" }),
      labels: { shop: "web" },
      priority: 3,
      parentClosePolicy: ParentClosePolicy.ABANDON,
    },
    shows: {
      seq: "#9",
      workflowName: "shipment",
      instanceId: "instance=ship-42",
      taskQueue: "queue=shipping",
      input: 'input={"to":"Oslo"}',
      labels: 'labels={"shop":"web"}',
      priority: "priority=3",
      parentClosePolicy: "parentClose=abandon",
    },
  },
  childRunStarted: { kind: "child run started", value: { seq: 9, runId: RUN_ID }, shows: { seq: "#9", runId: `run=${RUN_ID}` } },
  childRunStartFailed: { kind: "child run start failed", value: { seq: 9, failure }, shows: { seq: "#9", failure: "card declined (CardDeclined)" } },
  childRunEnded: {
    kind: "child run ended",
    value: { seq: 9, status: RunStatus.FAILED, result: encodePayload("partial"), failure },
    shows: { seq: "#9", status: "FAILED", result: 'result="partial"', failure: "card declined (CardDeclined)" },
  },
  childRunCancelRequested: { kind: "child run cancel requested", value: { seq: 9 }, shows: { seq: "#9" } },
  sideEffectRecorded: { kind: "side effect recorded", value: { seq: 10, value: encodePayload(0.25) }, shows: { seq: "#10", value: "value=0.25" } },
  patchMarkerRecorded: { kind: "patch marker", value: { patchId: "fraud-check", deprecated: true }, shows: { patchId: "fraud-check", deprecated: "(deprecated)" } },
  cancelRequested: { kind: "cancel requested", value: { reason: "customer asked" }, shows: { reason: 'reason="customer asked"' } },
  customStatusSet: { kind: "custom status set", value: { customStatus: "awaiting payment" }, shows: { customStatus: '"awaiting payment"' } },
  labelsUpserted: { kind: "labels upserted", value: { labels: { stage: "paid" } }, shows: { labels: '{"stage":"paid"}' } },
  runCompleted: { kind: "run completed", value: { result: encodePayload({ total: 12 }) }, shows: { result: 'result={"total":12}' } },
  runFailed: { kind: "run failed", value: { failure }, shows: { failure: "card declined (CardDeclined)" } },
  runCancelled: { kind: "run cancelled", value: { details: encodePayload("by operator") }, shows: { details: 'details="by operator"' } },
  runTerminated: { kind: "run terminated", value: { reason: "stuck", resetToRunId: RUN_ID }, shows: { reason: "stuck", resetToRunId: `(reset to run ${RUN_ID})` } },
  runContinuedAsNew: {
    kind: "run continued as new",
    value: { newRunId: RUN_ID, input: encodePayload({ page: 2 }) },
    shows: { newRunId: `next run ${RUN_ID}`, input: 'input={"page":2}' },
  },
  runTimedOut: { kind: "run timed out", value: { runTimeout: { seconds: 90n } }, shows: { runTimeout: "run timeout 90s" } },
  updateAccepted: {
    kind: "update accepted",
    value: { updateId: "u-1", name: "setAddress", args: encodePayload(["Oslo"]) },
    shows: { updateId: "u-1", name: "setAddress", args: 'args=["Oslo"]' },
  },
  updateCompleted: {
    kind: "update completed",
    value: { updateId: "u-1", result: encodePayload("ok"), failure },
    shows: { updateId: "u-1", result: 'result="ok"', failure: "failed: card declined (CardDeclined)" },
  },
};

const oneof = HistoryEventSchema.oneofs.find((o) => o.name === "attributes")!;

function eventOf(caseName: string, value: Record<string, unknown>) {
  const field = oneof.fields.find((f) => f.localName === caseName)!;
  const message = field.message as DescMessage;
  return create(HistoryEventSchema, { sequence: 1n, attributes: { case: caseName, value: create(message, value) } as never });
}

describe("dex workflow history: the text line of each event type", () => {
  it("has a formatter and a sample for every case of the attributes oneof (a new case fails here)", () => {
    const cases = oneof.fields.map((f) => f.localName);
    expect(cases.length).toBeGreaterThanOrEqual(30);
    expect(cases.filter((c) => !hasHistoryEventFormatter(c))).toEqual([]);
    expect(cases.filter((c) => !(c in samples))).toEqual([]);
    // Nothing falls back to a generic line, even with every field left empty.
    for (const c of cases) expect(describeHistoryEvent(eventOf(c, {})).kind, c).not.toBe("unknown");
  });

  for (const field of oneof.fields) {
    it(`${field.localName}: shows each of its fields`, () => {
      const sample = samples[field.localName];
      expect(sample, `no sample for ${field.localName}`).toBeDefined();
      // Every field of the attributes message has an expectation: a new field fails here too.
      const message = field.message as DescMessage;
      expect(Object.keys(sample!.shows).sort()).toEqual(message.fields.map((f) => f.localName).sort());
      const { kind, details } = describeHistoryEvent(eventOf(field.localName, sample!.value));
      expect(kind).toBe(sample!.kind);
      for (const [name, text] of Object.entries(sample!.shows)) expect(details, name).toContain(text);
    });
  }

  it("keeps the result of an update that succeeded", () => {
    const { details } = describeHistoryEvent(eventOf("updateCompleted", { updateId: "u-2", result: encodePayload({ city: "Oslo" }) }));
    expect(details).toBe('u-2 result={"city":"Oslo"}');
  });

  it("shows a cleared custom status as an empty string, not as nothing", () => {
    expect(describeHistoryEvent(eventOf("customStatusSet", { customStatus: "" })).details).toBe('""');
  });

  it("leaves out what the event does not carry (an undeprecated patch marker ends with its id)", () => {
    expect(describeHistoryEvent(eventOf("patchMarkerRecorded", { patchId: "fraud-check" })).details).toBe("fraud-check");
    expect(describeHistoryEvent(eventOf("runStarted", { workflowName: "w", instanceId: "i", taskQueue: "q" })).details).toBe("w instance=i queue=q input=");
  });

  it("names an event this CLI does not know instead of failing", () => {
    expect(describeHistoryEvent(create(HistoryEventSchema, { sequence: 1n }))).toEqual({ kind: "unknown", details: "" });
  });
});
