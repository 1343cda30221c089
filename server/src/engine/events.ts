/**
 * History events as stored: a serialized dex.v1.HistoryEvent whose sequence
 * lives in the row's `sequence` column and whose time, unless the event sets
 * its own (the workflow_task_completed marker carries the task time), is the
 * row's `created_at`. Inbox rows store the same bytes, so moving an input
 * event from the inbox into history copies bytes without decoding them.
 */
import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { uuidv7 } from "uuidv7";
import { DedupKind, dedupKey } from "./model.js";
import {
  FailureSchema,
  HistoryEventSchema,
  PayloadSchema,
  type Failure,
  type HistoryEvent,
  type Payload,
} from "@dex/proto";

export type EventAttributes = HistoryEvent["attributes"];
export type EventCase = NonNullable<EventAttributes["case"]>;
/** Attributes of a new event, as plain init objects. */
export type EventInit = Extract<
  NonNullable<MessageInitShape<typeof HistoryEventSchema>["attributes"]>,
  { case: EventCase }
>;

/** A new event, ready to be written: its kind (for people reading SQL) and its bytes. */
export interface EncodedEvent {
  kind: string;
  event: Uint8Array;
  /** Set for events that must exist at most once per run ("activity-result:<seq>"). */
  dedupKey?: string | undefined;
  /** Explicit event time (the marker's task time); otherwise the row's created_at. */
  time?: Date | undefined;
}

/** "activityCompleted" -> "activity_completed". */
export function eventKind(attributesCase: EventCase): string {
  return attributesCase.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

export function encodeEvent(
  attributes: EventInit,
  options: { dedupKey?: string; time?: Date } = {},
): EncodedEvent {
  const message = create(HistoryEventSchema, {
    attributes,
    ...(options.time ? { time: timestampFromDate(options.time) } : {}),
  });
  return {
    kind: eventKind(attributes.case),
    event: toBinary(HistoryEventSchema, message),
    dedupKey: options.dedupKey,
    time: options.time,
  };
}

/** A stored row back to the wire message, with sequence and time filled in. */
export function decodeEvent(row: { sequence: number; event: Uint8Array; createdAt: Date }): HistoryEvent {
  const event = fromBinary(HistoryEventSchema, row.event);
  event.sequence = BigInt(row.sequence);
  if (!event.time) event.time = timestampFromDate(row.createdAt);
  return event;
}

/**
 * An external event's identity. `eventId` is the dedup key, unique per
 * continue-as-new chain; `eventName` is what the workflow waits for. A sender
 * that gives only an id gave the name too (the meaning ids had before names
 * existed); one that gives only a name gets a generated id and no dedup.
 */
export interface ExternalEventIdentity {
  eventId: string;
  eventName: string;
  /** False for a generated id: nothing can repeat it, so no claim is recorded. */
  dedup: boolean;
}

/** Resolves validated (possibly empty) id and name; at least one must be set. */
export function externalEventIdentity(eventId: string, eventName: string): ExternalEventIdentity {
  if (eventId === "") return { eventId: uuidv7(), eventName, dedup: false };
  return { eventId, eventName: eventName === "" ? eventId : eventName, dedup: true };
}

/** The inbox bytes of `external_event_received`. */
export function externalEventBytes(identity: ExternalEventIdentity, payload: Payload | undefined): Uint8Array {
  const { eventId, eventName } = identity;
  return encodeEvent({ case: "externalEventReceived", value: { eventId, eventName, payload } }).event;
}

/** An event the old run's code had not consumed, bound for the next run's inbox at continue-as-new. */
export interface CarriedInboxEvent {
  eventId: string;
  /** Its `external_event_received` bytes. */
  event: Uint8Array;
}

/** Every activity outcome's key: a second outcome for the same call is dropped by the dedup indexes. */
export function activityResultDedupKey(seq: number): string {
  return dedupKey(DedupKind.ACTIVITY_RESULT, seq);
}

export function encodePayload(payload: Payload | undefined): Uint8Array | null {
  return payload ? toBinary(PayloadSchema, payload) : null;
}

export function decodePayload(bytes: Uint8Array | null | undefined): Payload | undefined {
  return bytes ? fromBinary(PayloadSchema, bytes) : undefined;
}

export function encodeFailure(failure: Failure | undefined): Uint8Array | null {
  return failure ? toBinary(FailureSchema, failure) : null;
}

export function decodeFailure(bytes: Uint8Array | null | undefined): Failure | undefined {
  return bytes ? fromBinary(FailureSchema, bytes) : undefined;
}
