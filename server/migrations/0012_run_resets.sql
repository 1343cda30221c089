-- dex schema v12: the reset chain (ClientService.ResetRun; docs/decisions/0026-reset.md).
--
-- One row per reset: the run it created (new_run_id) and the run it rewound
-- (old_run_id). A table of its own, not columns on dex.runs: the start
-- statement (store/runs.ts insertRuns) stays the one way to create a run and
-- is not widened for a rare operation, and an ended run can be reset more
-- than once, which one column could not hold. Additive only (an expand
-- migration): a server of the previous version never reads it.
--
-- request_id: ResetRun's idempotency key, unique per old run: a retry finds
-- the row (under the old run's row lock) and returns its new run.
-- Both ids reference dex.runs with ON DELETE CASCADE, so deleting either run
-- (retention, DeleteRun) removes the link without knowing about it.
create table dex.run_resets (
  new_run_id uuid primary key references dex.runs (id) on delete cascade,
  old_run_id uuid not null references dex.runs (id) on delete cascade,
  request_id text,
  reason text not null default '',
  -- The first sequence of the old history that the new run did not keep.
  first_dropped_sequence integer not null check (first_dropped_sequence > 1),
  created_at timestamptz not null default now()
);
create index run_resets_by_old_run on dex.run_resets (old_run_id, created_at desc);
create unique index run_resets_request on dex.run_resets (old_run_id, request_id) where request_id is not null;
