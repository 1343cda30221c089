/**
 * What describe shows about a run's external events: the waits still open and
 * the events received, counted by name.
 *
 * The server cannot know which event the workflow code consumed, so open
 * waits are derived from history with the rule SDKs follow
 * (docs/worker-protocol.md, "External events"): a wait is issued only when no
 * unconsumed event of its name is buffered, and each event of a name settles
 * the oldest wait of that name still open. Matching history in order with
 * that rule (a time-out closes its wait, and so does the `cancel_timer` with
 * its seq an SDK sends for a wait an event satisfied or a cancellation
 * reached, timed or not) gives the open waits exactly. One exception
 * (decision 0022, "Dropped waits"): a task's drops are read after its inputs,
 * so a handler that drops a wait for X while the same task brings an X event
 * and another wait for X is open makes the event settle the dropped wait here
 * and the other one in the SDK.
 */
import { fromBinary } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { HistoryEventSchema } from "@dex/proto";
import { externalEventRows } from "../store/external-events.js";
import type { Queryable } from "../store/db.js";

export interface PendingEventWaitInfo {
  seq: number;
  eventName: string;
  timeoutAt: Date | undefined;
}

export interface ReceivedEventCountInfo {
  eventName: string;
  inHistory: number;
  inInbox: number;
}

export interface RunEvents {
  waits: PendingEventWaitInfo[];
  received: ReceivedEventCountInfo[];
}

/** Histories from before names existed leave `event_name` empty: the name is the id. */
function nameOf(value: { eventId: string; eventName: string }): string {
  return value.eventName || value.eventId;
}

export async function describeRunEvents(sql: Queryable, runId: string, open: boolean): Promise<RunEvents> {
  const rows = await externalEventRows(sql, runId);
  const waits: PendingEventWaitInfo[] = [];
  const counts = new Map<string, ReceivedEventCountInfo>();
  const count = (name: string): ReceivedEventCountInfo => {
    let c = counts.get(name);
    if (!c) counts.set(name, (c = { eventName: name, inHistory: 0, inInbox: 0 }));
    return c;
  };
  for (const bytes of rows.history) {
    const { attributes: a } = fromBinary(HistoryEventSchema, bytes);
    if (a.case === "eventWaitStarted") {
      waits.push({ seq: a.value.seq, eventName: nameOf(a.value), timeoutAt: a.value.timeoutTime ? timestampDate(a.value.timeoutTime) : undefined });
    } else if (a.case === "externalEventReceived") {
      const name = nameOf(a.value);
      count(name).inHistory++;
      const oldest = waits.findIndex((w) => w.eventName === name);
      if (oldest >= 0) waits.splice(oldest, 1);
    } else if (a.case === "eventWaitTimedOut" || a.case === "timerCancelled") {
      // timer_cancelled of a wait's seq: the SDK dropped it (an event already closed a satisfied one).
      const at = waits.findIndex((w) => w.seq === a.value.seq);
      if (at >= 0) waits.splice(at, 1);
    }
  }
  for (const bytes of rows.inbox) {
    const { attributes: a } = fromBinary(HistoryEventSchema, bytes);
    if (a.case === "externalEventReceived") count(nameOf(a.value)).inInbox++;
  }
  return { waits: open ? waits : [], received: [...counts.values()] };
}
