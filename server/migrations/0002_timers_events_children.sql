-- dex schema v2: durable timers, child runs, cancellation and activity attempt caps.
-- See docs/worker-protocol.md ("Timers" onwards) for the semantics these columns hold.

-- Durable timers: `start_timer` (kind 'timer') and the timeout of `wait_for_event`
-- (kind 'event_wait'). A row lives from the command that creates it until it fires,
-- is cancelled, its event arrives, or the run ends. The per-server timer loop
-- (server/src/store/timers.ts) reads only the head of timers_due, so its cost does
-- not depend on how many runs sleep.
create table dex.timers (
  run_id uuid not null,
  seq integer not null check (seq > 0),
  kind text not null check (kind in ('timer', 'event_wait')),
  fire_at timestamptz not null,
  -- The awaited event id (kind 'event_wait'): delivering that event deletes the row.
  event_id text,
  -- Where the run's workflow task goes when the timer fires, and at which priority.
  workflow_queue text not null,
  priority smallint not null,
  -- The inbox event the timer becomes (dex.v1.HistoryEvent: timer_fired or
  -- event_wait_timed_out), encoded when the timer is created, so firing copies bytes.
  event bytea not null,
  created_at timestamptz not null default now(),
  primary key (run_id, seq),
  check ((kind = 'event_wait') = (event_id is not null))
);
create index timers_due on dex.timers (fire_at);

-- Child runs: what happens to the child when its parent ends ('cancel' | 'abandon'),
-- and the parent's lookups of its children (parent-close policy, cancel requests,
-- describe). parent_run_id and parent_seq were created in 0001.
alter table dex.runs add column parent_close_policy text
  check (parent_close_policy in ('cancel', 'abandon'));
create index runs_by_parent on dex.runs (parent_run_id, parent_seq) where parent_run_id is not null;

-- Activity attempts: start-to-close is a hard cap on one attempt, also while the
-- attempt heartbeats (a heartbeat extends the lease up to attempt_deadline, never
-- past it). start_to_close_ms is the call's timeout; attempt_deadline is set at claim.
-- Neither is indexed: lease updates stay HOT.
alter table dex.activity_tasks add column start_to_close_ms bigint check (start_to_close_ms > 0);
alter table dex.activity_tasks add column attempt_deadline timestamptz;
