/**
 * Runs: filters (kept in the URL hash, run-filters.ts), keyset paging through ListRuns' page token,
 * re-listed while the tab is visible (use-poll.ts).
 */
import { useState } from "preact/hooks";
import { client } from "./api.js";
import { statusName, time } from "./format.js";
import { filtersFromQuery, filtersHash, LABELS_HELP, listRunsFilter, STATUSES, type RunFilters } from "./run-filters.js";
import { usePoll } from "./use-poll.js";

const PAGE_SIZE = 50;

/** `help`: the input's title, where the placeholder cannot say it all. */
const TEXT_FILTERS: Array<{ name: Exclude<keyof RunFilters, "status">; placeholder: string; help?: string; wide?: boolean }> = [
  { name: "instance", placeholder: "instance id" },
  { name: "workflow", placeholder: "workflow" },
  { name: "queue", placeholder: "task queue" },
  { name: "labels", placeholder: 'labels: key=value, key2=value2 (or JSON {"k": "a, b"})', help: LABELS_HELP, wide: true },
  { name: "after", placeholder: "created after (UTC)" },
  { name: "before", placeholder: "created before (UTC)" },
];

/** `query`: the part of the hash after "#/runs?", read once; the page then keeps the hash in step. */
export function RunsPage({ query }: { query: string }) {
  const [filters, setFilters] = useState<RunFilters>(() => filtersFromQuery(query));
  // Tokens of the pages before this one; "" is the first page.
  const [tokens, setTokens] = useState<string[]>([""]);
  const token = tokens[tokens.length - 1]!;
  const parsed = listRunsFilter(filters);
  const { data, error } = usePoll(
    (signal) => ("filter" in parsed ? client.listRuns({ ...parsed.filter, pageSize: PAGE_SIZE, pageToken: token }, { signal }) : Promise.resolve(undefined)),
    [JSON.stringify(filters), token],
  );
  const change = (name: keyof RunFilters, value: string) => {
    const next = { ...filters, [name]: value };
    setFilters(next);
    setTokens([""]);
    // replaceState: a shareable URL without a history entry per keystroke (and no hashchange).
    history.replaceState(null, "", filtersHash(next));
  };
  return (
    <section>
      <h1>Runs</h1>
      <div class="filters">
        {TEXT_FILTERS.map(({ name, placeholder, help, wide }) => (
          <input name={name} placeholder={placeholder} title={help ?? placeholder} class={wide ? "wide" : ""} value={filters[name]} onInput={(e) => change(name, e.currentTarget.value)} />
        ))}
        <select name="status" value={filters.status} onChange={(e) => change("status", e.currentTarget.value)}>
          <option value="">any status</option>
          {STATUSES.map((s) => (
            <option value={statusName(s)}>{statusName(s)}</option>
          ))}
        </select>
        <a href="#/runs">clear</a>
      </div>
      {"problem" in parsed && <p class="error" role="alert" data-testid="filter-problem">{parsed.problem}</p>}
      {error && <p class="error" role="alert">{error}</p>}
      <table class="runs">
        <thead>
          <tr><th>instance id</th><th>workflow</th><th>queue</th><th>status</th><th>custom status</th><th>labels</th><th>created</th><th>ended</th></tr>
        </thead>
        <tbody>
          {data?.runs.map((run) => (
            <tr key={run.runId} data-run-id={run.runId}>
              <td><a href={`#/runs/${encodeURIComponent(run.runId)}`}>{run.instanceId}</a></td>
              <td>{run.workflowName}</td>
              <td>{run.taskQueue}</td>
              <td class={`status s-${statusName(run.status)}`}>{statusName(run.status)}</td>
              <td>{run.customStatus}</td>
              <td>{Object.entries(run.labels).map(([k, v]) => `${k}=${v}`).join(", ")}</td>
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
