-- dex schema v8: retention of ended runs (issue 15; docs/decisions/0021-retention.md).
--
-- retention_seconds: how long the runs of a WORKFLOW task queue are kept after
-- they end, before the retention sweep (server/src/engine/retention.ts) deletes
-- them with everything that hangs off them. NULL, the value of every queue that
-- existed before this migration and of a queue created without a retention,
-- means "the server default" (`dex server --default-retention`), read by the
-- sweeping server at sweep time; 0 keeps the queue's runs forever. Activity
-- queues hold no runs: always NULL. At most 3650 days (the API's limit, also
-- checked here). Not indexed: claims never read it.
alter table dex.task_queues add column retention_seconds integer
  check (retention_seconds between 0 and 315360000 and (retention_seconds is null or type = 'workflow'));

-- The sweep's index: ended runs of each workflow queue, oldest end first. The
-- sweep walks it per queue (a loose index scan finds the queues, one probe per
-- queue), so runs of a keep-forever queue, however many, cost it nothing, and
-- each batch reads only rows it deletes. Partial: open runs are not in it, and
-- a run enters it once, when it ends (ended_at never changes afterwards), so
-- the updates of open runs (history_length on every workflow task) stay HOT.
-- Built inside the migration's transaction, blocking writes to runs while it
-- builds (seconds per million ended runs). On a large table, create it first
-- by hand with CREATE INDEX CONCURRENTLY and this exact definition: `if not
-- exists` then skips it.
create index if not exists runs_ended_by_queue on dex.runs (task_queue, ended_at) where ended_at is not null;
