/**
 * Reads of a run's external events and event waits, for describe (a cold
 * path): the history rows of the kinds that matter, in history order,
 * and the events still in the inbox, in delivery order. The event name lives
 * inside the event bytes, so the caller decodes them. Bounded by the run's
 * history, which continue-as-new keeps short.
 */
import type { Queryable } from "./db.js";

export interface EventRows {
  /** event_wait_started, external_event_received, event_wait_timed_out and timer_cancelled (a dropped wait), in sequence order. */
  history: Uint8Array[];
  /** external_event_received rows not yet handed to the workflow, in inbox id order. */
  inbox: Uint8Array[];
}

export async function externalEventRows(sql: Queryable, runId: string): Promise<EventRows> {
  const [history, inbox] = await Promise.all([
    sql<{ event: Buffer }[]>`
      select event from dex.history_events
      where run_id = ${runId} and kind in ('event_wait_started', 'external_event_received', 'event_wait_timed_out', 'timer_cancelled')
      order by sequence`,
    sql<{ event: Buffer }[]>`
      select event from dex.inbox where run_id = ${runId} and kind = 'external_event_received' order by id`,
  ]);
  return { history: history.map((r) => r.event), inbox: inbox.map((r) => r.event) };
}
