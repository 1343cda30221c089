/** A run's actions: send an event, cancel, terminate. A role that may not is refused by the server; its error is shown. */
import { create } from "@bufbuild/protobuf";
import { useState } from "preact/hooks";
import { PayloadSchema } from "../../../proto/src/gen/dex/v1/common_pb.js";
import { client, errorText } from "./api.js";

export function RunActions({ runId, onDone }: { runId: string; onDone: () => void }) {
  const [name, setName] = useState("");
  const [eventId, setEventId] = useState("");
  const [payload, setPayload] = useState("");
  const [message, setMessage] = useState<{ ok: boolean; text: string }>();
  const run = { target: { case: "runId" as const, value: runId } };
  const act = async (what: string, call: () => Promise<unknown>) => {
    try {
      await call();
      setMessage({ ok: true, text: `${what}: done` });
      onDone();
    } catch (err) {
      setMessage({ ok: false, text: `${what} refused: ${errorText(err)}` });
    }
  };
  const sendEvent = (e: Event) => {
    e.preventDefault();
    let data: Uint8Array;
    try {
      data = new TextEncoder().encode(JSON.stringify(payload.trim() === "" ? null : JSON.parse(payload)));
    } catch {
      setMessage({ ok: false, text: "the payload must be JSON (or empty for null)" });
      return;
    }
    void act("send event", () =>
      client.sendEvent({ run, eventName: name.trim(), eventId: eventId.trim() || crypto.randomUUID(), payload: create(PayloadSchema, { data, encoding: "json/plain" }) }),
    );
  };
  return (
    <div class="actions">
      <form class="send-event" onSubmit={sendEvent}>
        <input name="event-name" placeholder="event name" value={name} onInput={(e) => setName(e.currentTarget.value)} required />
        <input name="event-id" placeholder="event id (default: random)" value={eventId} onInput={(e) => setEventId(e.currentTarget.value)} />
        <input name="event-payload" placeholder='payload JSON, e.g. {"ok":true}' value={payload} onInput={(e) => setPayload(e.currentTarget.value)} />
        <button type="submit">Send event</button>
      </form>
      <button onClick={() => confirm("Cancel this run?") && void act("cancel", () => client.cancelRun({ run, reason: "cancelled from the web UI" }))}>Cancel</button>
      <button class="danger" onClick={() => confirm("Terminate this run? Its workflow code gets no say.") && void act("terminate", () => client.terminateRun({ run, reason: "terminated from the web UI" }))}>
        Terminate
      </button>
      {message && <p class={message.ok ? "ok" : "error"} role="status" data-testid="action-result">{message.text}</p>}
    </div>
  );
}
