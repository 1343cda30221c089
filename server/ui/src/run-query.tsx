/** Query a run: a query handler's name and JSON args; shows the handler's answer (nothing is written to history). */
import { useState } from "preact/hooks";
import { client } from "./api.js";
import { ActionResult, useAction } from "./action-result.js";
import { payloadText } from "./format.js";
import { jsonPayload } from "./json-payload.js";

export function RunQuery({ runId }: { runId: string }) {
  const [name, setName] = useState("");
  const [args, setArgs] = useState("");
  const { message, act, fail } = useAction();
  const submit = (e: Event) => {
    e.preventDefault();
    const parsed = jsonPayload("the query's args", args);
    if ("problem" in parsed) return fail(parsed.problem);
    void act("query", async () => {
      const answer = await client.queryRun({ run: { target: { case: "runId", value: runId } }, queryName: name.trim(), args: parsed.payload });
      return <pre>{payloadText(answer.result)}</pre>;
    });
  };
  return (
    <form class="run-query" onSubmit={submit}>
      <strong>Query</strong>
      <input name="query-name" placeholder="query name (__dex_pending: where it waits)" value={name} onInput={(e) => setName(e.currentTarget.value)} required />
      <input name="query-args" placeholder="args JSON (optional)" value={args} onInput={(e) => setArgs(e.currentTarget.value)} />
      <button type="submit">Query</button>
      <ActionResult message={message} testId="query-result" />
    </form>
  );
}
