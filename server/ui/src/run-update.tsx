/**
 * Update a run: an update handler's name, JSON args and an update id (its dedup key: empty picks a
 * new one). Shows the handler's result, its failure, or the worker's rejection. An update still
 * running when the server's wait ends keeps its id in the form: pressing again keeps waiting for it.
 */
import { useState } from "preact/hooks";
import { client } from "./api.js";
import { ActionResult, useAction } from "./action-result.js";
import { payloadText } from "./format.js";
import { jsonPayload } from "./json-payload.js";
import { randomUuid } from "./uuid.js";

export function RunUpdate({ runId, onDone }: { runId: string; onDone: () => void }) {
  const [name, setName] = useState("");
  const [args, setArgs] = useState("");
  const [updateId, setUpdateId] = useState("");
  const { message, act, fail } = useAction(onDone);
  const submit = (e: Event) => {
    e.preventDefault();
    const parsed = jsonPayload("the update's args", args);
    if ("problem" in parsed) return fail(parsed.problem);
    const id = updateId.trim() || randomUuid();
    void act("update", async () => {
      const answer = await client.updateRun({ run: { target: { case: "runId", value: runId } }, name: name.trim(), args: parsed.payload, updateId: id });
      const o = answer.outcome;
      if (answer.stillRunning || o.case === undefined) {
        setUpdateId(id);
        return `update ${id} still running: press Update again to keep waiting for it`;
      }
      setUpdateId("");
      if (o.case === "result") return <>update {id} returned<pre>{payloadText(o.value)}</pre></>;
      // A failure was accepted and is in history; a rejection was not (the validator or an unknown name).
      return { ok: false, text: `update ${id} ${o.case === "failure" ? "failed" : "rejected"}: ${o.value.message}` };
    });
  };
  return (
    <form class="run-update" onSubmit={submit}>
      <strong>Update</strong>
      <input name="update-name" placeholder="update name" value={name} onInput={(e) => setName(e.currentTarget.value)} required />
      <input name="update-args" placeholder="args JSON (optional)" value={args} onInput={(e) => setArgs(e.currentTarget.value)} />
      <input name="update-id" placeholder="update id (default: new)" value={updateId} onInput={(e) => setUpdateId(e.currentTarget.value)} />
      <button type="submit">Update</button>
      <ActionResult message={message} testId="update-result" />
    </form>
  );
}
