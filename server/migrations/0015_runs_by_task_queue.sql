-- dex schema v15: ListRuns by workflow task queue (ListRunsRequest.task_queue,
-- the web UI's queue filter). Expand only: one new index, no column or check
-- touched, so servers of the previous schema keep working on this one (they
-- never filter by queue; the index costs their inserts one more entry).

-- Newest first within one queue, the keyset every other ListRuns filter has
-- (runs_by_workflow, runs_by_status, runs_by_instance): `task_queue = $1 and
-- id < $token order by id desc limit n` reads n index entries, however many
-- runs the queue or the table holds. runs_ended_by_queue (0008) also leads
-- with task_queue, but holds ended runs only and orders by ended_at.
--
-- Built inside the migration's transaction like every migration (decision
-- 0028: one transaction per file, all or nothing, under the advisory lock),
-- which blocks writes to dex.runs while it builds: about 0.1 s per 100,000
-- runs measured here (docs/performance.md, "ListRuns with 100,000 runs").
-- On a large, busy database build it first, outside any transaction, with
-- this exact definition:
--   create index concurrently if not exists runs_by_task_queue on dex.runs (task_queue, id desc);
-- and `if not exists` below then skips it (docs/upgrades.md).
create index if not exists runs_by_task_queue on dex.runs (task_queue, id desc);
