/**
 * A run's actions: send an event, cancel, terminate; query, update and reset (one file each). A role
 * that may not is refused by the server; its message is shown.
 */
import { useState } from "preact/hooks";
import type { HistoryEvent } from "../../../proto/src/gen/dex/v1/history_pb.js";
import { client } from "./api.js";
import { ActionResult, useAction } from "./action-result.js";
import { jsonPayload } from "./json-payload.js";
import { RunQuery } from "./run-query.js";
import { RunReset } from "./run-reset.js";
import { RunUpdate } from "./run-update.js";
import { randomUuid } from "./uuid.js";

export function RunActions({ runId, events, onDone }: { runId: string; events: HistoryEvent[]; onDone: () => void }) {
  const [name, setName] = useState("");
  const [eventId, setEventId] = useState("");
  const [payload, setPayload] = useState("");
  const { message, act, fail } = useAction(onDone);
  const run = { target: { case: "runId" as const, value: runId } };
  const sendEvent = (e: Event) => {
    e.preventDefault();
    const parsed = jsonPayload("the payload", payload);
    if ("problem" in parsed) return fail(parsed.problem);
    void act("send event", async () => void (await client.sendEvent({ run, eventName: name.trim(), eventId: eventId.trim() || randomUuid(), payload: parsed.payload })));
  };
  return (
    <div class="run-actions">
      <div class="actions">
        <form class="send-event" onSubmit={sendEvent}>
          <input name="event-name" placeholder="event name" value={name} onInput={(e) => setName(e.currentTarget.value)} required />
          <input name="event-id" placeholder="event id (default: random)" value={eventId} onInput={(e) => setEventId(e.currentTarget.value)} />
          <input name="event-payload" placeholder='payload JSON, e.g. {"ok":true}' value={payload} onInput={(e) => setPayload(e.currentTarget.value)} />
          <button type="submit">Send event</button>
        </form>
        <button onClick={() => confirm("Cancel this run?") && void act("cancel", async () => void (await client.cancelRun({ run, reason: "cancelled from the web UI" })))}>Cancel</button>
        <button class="danger terminate" onClick={() => confirm("Terminate this run? Its workflow code gets no say.") && void act("terminate", async () => void (await client.terminateRun({ run, reason: "terminated from the web UI" })))}>
          Terminate
        </button>
        <ActionResult message={message} testId="action-result" />
      </div>
      <RunQuery runId={runId} />
      <RunUpdate runId={runId} onDone={onDone} />
      <RunReset runId={runId} events={events} onDone={onDone} />
    </div>
  );
}
