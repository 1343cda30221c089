/**
 * continue_as_new's `carried_events`: the external events the old run's code
 * received and did not consume, handed to the next run of the chain ahead of
 * the events that arrived while the last task ran (store/lifecycle.ts
 * handOverInbox). They keep id, name and payload; their ids are already
 * claimed by the chain, so a client retry of one of them is still a duplicate.
 * The server does not check that the old run received them: a worker is
 * trusted with the run's history, and a carried event is what it says it is.
 */
import type { CarriedEvent } from "@dex/proto";
import { externalEventBytes, type CarriedInboxEvent } from "./events.js";
import type { Limits } from "./limits.js";
import { invalid, payloadField, requireString } from "./validation.js";

/** Most carried events one continue_as_new may hold: the default history limit's order of magnitude. */
export const MAX_CARRIED_EVENTS = 10_000;

export function planCarriedEvents(field: string, carried: readonly CarriedEvent[], limits: Limits): CarriedInboxEvent[] {
  if (carried.length > MAX_CARRIED_EVENTS) {
    throw invalid(`${field} has ${carried.length} events, more than ${MAX_CARRIED_EVENTS}; continue as new before that many pile up unconsumed`);
  }
  const ids = new Set<string>();
  return carried.map((c, i) => {
    const eventId = requireString(`${field}[${i}].event_id`, c.eventId);
    const eventName = requireString(`${field}[${i}].event_name`, c.eventName);
    const payload = payloadField(`${field}[${i}].payload`, c.payload, limits);
    if (ids.has(eventId)) throw invalid(`${field}[${i}].event_id "${eventId}" appears twice; each received event is carried once`);
    ids.add(eventId);
    return { eventId, event: externalEventBytes({ eventId, eventName, dedup: true }, payload) };
  });
}
