-- dex schema v10: query tasks (ClientService.QueryRun; docs/decisions/0023-queries.md).
--
-- A query task lives only while its caller waits (seconds): QueryRun inserts
-- it, a workflow worker's PollQueryTasks claims it, RespondQueryTask writes
-- the answer, and the caller reads and deletes it. Nothing here is history.
--
-- UNLOGGED: no WAL for the four writes of every query, and Postgres empties
-- the table after a crash. Nothing is lost that mattered: the callers' RPCs
-- end with the crash anyway and ask again. (A standby has no rows either; a
-- failover ends the pending queries the same way.)
--
-- preferred_worker_id: the run's sticky worker when the query was asked (it
-- holds the run in its cache); others may claim once created_at is older than
-- the sticky fallback (store/query-tasks.ts).
create unlogged table dex.query_tasks (
  id uuid primary key,
  run_id uuid not null,
  queue text not null,
  query_name text not null,
  args bytea,
  history_length bigint not null,
  preferred_worker_id text,
  created_at timestamptz not null default now(),
  expires_at timestamptz not null,
  claimed_by text,
  answered boolean not null default false,
  result bytea,
  failure bytea,
  worker_error boolean not null default false
);

-- The claim: unclaimed tasks of one queue, oldest first.
create index query_tasks_claim on dex.query_tasks (queue, created_at) where claimed_by is null;
-- The sweep of rows whose caller went away without deleting them (its server died).
create index query_tasks_expiry on dex.query_tasks (expires_at);
