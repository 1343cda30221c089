-- dex schema v7: schedules (ScheduleService; docs/decisions/0020-schedules.md).
--
-- One row per schedule holds its definition and its whole firing state, so a
-- firing is one locked row: a server takes a due row FOR UPDATE SKIP LOCKED,
-- starts the run (store/runs.ts insertRuns, in the same transaction) and
-- advances next_nominal_at / due_at before it commits. Another server either
-- skips the locked row or, after the commit, no longer finds it due: each
-- nominal time is handled once (server/src/store/schedules.ts).
--
-- generation: a new uuid per create, part of the request id of every run the
-- schedule starts, so a schedule deleted and created again under the same id
-- starts its runs afresh instead of being answered with the old ones.
-- spec / action: the validated definition as JSON (server/src/engine/schedules-spec.ts).
-- next_nominal_at: the next nominal time not yet handled; NULL when the spec
-- has no more (end time passed, action limit reached).
-- due_at: when a server must look at the row: next nominal time + jitter, or
-- sooner for a buffered firing waiting on an open run; NULL while paused or
-- done. The only indexed column the loop reads (schedules_due): an idle
-- fleet's probe is one index probe however many schedules sleep.
-- buffered: nominal times waiting for the open run to end (JSON array of
-- {at, kind}). recent_actions / recent_skips: the last few, for describe.
create table dex.schedules (
  id text primary key,
  generation uuid not null,
  spec jsonb not null,
  action jsonb not null,
  input bytea,
  overlap_policy text not null,
  catchup_window_ms bigint not null,
  paused boolean not null default false,
  note text not null default '',
  paused_at timestamptz,
  remaining_actions integer,
  next_nominal_at timestamptz,
  due_at timestamptz,
  buffered jsonb not null default '[]',
  last_run_id uuid,
  cancel_requested_run_id uuid,
  recent_actions jsonb not null default '[]',
  recent_skips jsonb not null default '[]',
  action_count bigint not null default 0,
  overlap_skipped bigint not null default 0,
  paused_skipped bigint not null default 0,
  catchup_window_missed bigint not null default 0,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint schedules_overlap_policy check (overlap_policy in
    ('skip', 'buffer_one', 'buffer_all', 'cancel_other', 'terminate_other', 'allow_all')),
  constraint schedules_remaining_actions check (remaining_actions is null or remaining_actions >= 0)
);

create index schedules_due on dex.schedules (due_at) where due_at is not null;
