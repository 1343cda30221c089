/**
 * ListRuns over gRPC, as the web UI and `dex workflow list` call it: the first
 * page and a deep page (halfway through the runs the filter matches, at most
 * 50,000 in), p50/p99 over N calls each, for each filter alone and a few
 * combinations. The deep page's token is reached by paging 1000 at a time
 * (the token's fingerprint covers the filters, not the page size).
 *
 * EXPLAIN: the store's own listRuns (server/src/store/runs.ts) runs against a
 * connection whose debug hook captures the statement and its parameters, so
 * the plan printed is the plan of the server's SQL, not of a copy.
 */
import { performance } from "node:perf_hooks";
import postgres from "postgres";
import type { Client } from "@dex/sdk";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { ListRunsRequestSchema } from "@dex/proto";
import { listRuns, type RunFilter } from "../../server/src/store/run-listing.js";
import { percentile } from "../src/stats.js";

export type ListRunsInit = MessageInitShape<typeof ListRunsRequestSchema>;

export interface FilterCase {
  name: string;
  request: ListRunsInit;
  /** The same filter as the store takes it, for EXPLAIN. */
  store: Omit<RunFilter, "limit" | "beforeId">;
}

export interface CaseResult {
  name: string;
  /** Runs the filter matches (count(*) here, for the report; the server never counts). */
  matching: number;
  first: { p50: number; p99: number };
  /** Undefined when the filter matches one page or less. */
  deep?: { p50: number; p99: number; position: number };
}

const DEEP_LIMIT = 50_000;

async function timed(calls: number, call: () => Promise<unknown>): Promise<{ p50: number; p99: number }> {
  for (let i = 0; i < 3; i++) await call(); // warm: connection, prepared statement, cache
  const ms: number[] = [];
  for (let i = 0; i < calls; i++) {
    const began = performance.now();
    await call();
    ms.push(performance.now() - began);
  }
  return { p50: round(percentile(ms, 50)), p99: round(percentile(ms, 99)) };
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}

/** The token (and the id before it) of the page starting `position` runs into the filter's matches. */
async function tokenAt(client: Client, request: ListRunsInit, position: number): Promise<{ token: string; beforeId: string }> {
  let token = "";
  let seen = 0;
  let beforeId = "";
  while (seen < position) {
    const page = await client.raw.client.listRuns({ ...request, pageSize: Math.min(1000, position - seen), pageToken: token });
    seen += page.runs.length;
    beforeId = page.runs.at(-1)?.runId ?? beforeId;
    token = page.nextPageToken;
    if (!token) break;
  }
  return { token, beforeId };
}

export async function measureCase(
  client: Client,
  sql: postgres.Sql,
  url: string,
  c: FilterCase,
  options: { calls: number; pageSize: number },
): Promise<CaseResult & { beforeId?: string }> {
  const matching = await countMatching(sql, url, c.store);
  const request = { ...c.request, pageSize: options.pageSize };
  const first = await timed(options.calls, () => client.raw.client.listRuns(request));
  const result: CaseResult & { beforeId?: string } = { name: c.name, matching, first };
  if (matching > options.pageSize) {
    const position = Math.min(DEEP_LIMIT, Math.floor(matching / 2));
    const { token, beforeId } = await tokenAt(client, c.request, position);
    if (token) {
      result.deep = { ...(await timed(options.calls, () => client.raw.client.listRuns({ ...request, pageToken: token }))), position };
      result.beforeId = beforeId;
    }
  }
  return result;
}

async function countMatching(sql: postgres.Sql, url: string, filter: FilterCase["store"]): Promise<number> {
  const statement = await capture(url, (capturing) => listRuns(capturing, { ...filter, limit: 1 }));
  const text = statement.query.replace(/select [\s\S]*? from dex\.runs/, "select count(*)::int as n from dex.runs").replace(/order by id desc limit \$\d+\s*$/, "");
  const params = statement.params.slice(0, -1); // the limit
  const [row] = await sql.unsafe<{ n: number }[]>(text, params as never[]);
  return row!.n;
}

/**
 * EXPLAIN (ANALYZE, BUFFERS) of the store's listRuns statement for this filter and page: the plan, and
 * the database's own execution time (median of 5), which the load on this shared machine disturbs far
 * less than the RPC's round trip.
 */
export async function explain(sql: postgres.Sql, url: string, filter: RunFilter): Promise<{ plan: string; executionMs: number }> {
  const statement = await capture(url, (capturing) => listRuns(capturing, filter));
  let plan = "";
  const times: number[] = [];
  for (let i = 0; i < 5; i++) {
    const rows = await sql.unsafe<{ "QUERY PLAN": string }[]>(`explain (analyze, buffers, costs off) ${statement.query}`, statement.params as never[]);
    plan = rows.map((r) => r["QUERY PLAN"]).join("\n");
    times.push(Number(/Execution Time: ([\d.]+) ms/.exec(plan)?.[1] ?? Number.NaN));
  }
  return { plan, executionMs: round(percentile(times, 50)) };
}

/** Runs `fn` on a one-connection pool whose debug hook records the last statement and its parameters. */
async function capture(url: string, fn: (sql: postgres.Sql) => Promise<unknown>): Promise<{ query: string; params: unknown[] }> {
  let last: { query: string; params: unknown[] } | undefined;
  const capturing = postgres(url, {
    max: 1,
    onnotice: () => {},
    debug: (_connection, query, params) => {
      last = { query, params };
    },
  });
  try {
    await fn(capturing);
  } finally {
    await capturing.end();
  }
  return last!;
}
