/** Runs: filters, keyset paging through ListRuns' page token, re-listed while open. */
import { useState } from "preact/hooks";
import { RunStatus } from "../../../proto/src/gen/dex/v1/common_pb.js";
import { client } from "./api.js";
import { statusName, time } from "./format.js";
import { usePoll } from "./use-poll.js";

const PAGE_SIZE = 50;
const STATUSES = [RunStatus.CREATED, RunStatus.RUNNING, RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.TERMINATED, RunStatus.TIMED_OUT, RunStatus.CONTINUED_AS_NEW];

export function RunsPage() {
  const [workflow, setWorkflow] = useState("");
  const [instance, setInstance] = useState("");
  const [status, setStatus] = useState<RunStatus | 0>(0);
  // Tokens of the pages before this one; "" is the first page.
  const [tokens, setTokens] = useState<string[]>([""]);
  const token = tokens[tokens.length - 1]!;
  const { data, error } = usePoll(
    () =>
      client.listRuns({
        workflowName: workflow.trim(),
        instanceId: instance.trim(),
        statuses: status ? [status] : [],
        pageSize: PAGE_SIZE,
        pageToken: token,
      }),
    [workflow, instance, status, token],
  );
  const restart = () => setTokens([""]);
  return (
    <section>
      <h1>Runs</h1>
      <div class="filters">
        <input name="instance-id" placeholder="instance id" value={instance} onInput={(e) => (setInstance(e.currentTarget.value), restart())} />
        <input name="workflow" placeholder="workflow" value={workflow} onInput={(e) => (setWorkflow(e.currentTarget.value), restart())} />
        <select name="status" value={String(status)} onChange={(e) => (setStatus(Number(e.currentTarget.value) as RunStatus), restart())}>
          <option value="0">any status</option>
          {STATUSES.map((s) => (
            <option value={String(s)}>{statusName(s)}</option>
          ))}
        </select>
      </div>
      {error && <p class="error" role="alert">{error}</p>}
      <table class="runs">
        <thead>
          <tr><th>instance id</th><th>workflow</th><th>queue</th><th>status</th><th>custom status</th><th>created</th><th>ended</th></tr>
        </thead>
        <tbody>
          {data?.runs.map((run) => (
            <tr data-run-id={run.runId}>
              <td><a href={`#/runs/${encodeURIComponent(run.runId)}`}>{run.instanceId}</a></td>
              <td>{run.workflowName}</td>
              <td>{run.taskQueue}</td>
              <td class={`status s-${statusName(run.status)}`}>{statusName(run.status)}</td>
              <td>{run.customStatus}</td>
              <td>{time(run.createTime)}</td>
              <td>{time(run.endTime)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {data && data.runs.length === 0 && <p>No runs match.</p>}
      <div class="paging">
        <button disabled={tokens.length === 1} onClick={() => setTokens(tokens.slice(0, -1))}>Newer</button>
        <button disabled={!data?.nextPageToken} onClick={() => data && setTokens([...tokens, data.nextPageToken])}>Older</button>
      </div>
    </section>
  );
}
