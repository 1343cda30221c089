-- dex schema v13: run timeouts and per-run workflow task timeouts
-- (docs/decisions/0027-run-timeouts.md). Expand only: new nullable columns and
-- check constraints that allow more than before, so a server of the previous
-- schema keeps working on this one (it never writes the new values).
-- The widened checks are added `not valid` and never validated: every existing
-- row passed the narrower check, so it passes the wider one, and a `validate`
-- here would scan runs and timers under the exclusive lock the `drop` holds.
-- Postgres enforces a `not valid` check on every insert and update all the same.

-- A run that outlives its run timeout ends TIMED_OUT.
alter table dex.runs drop constraint runs_status_check;
alter table dex.runs add constraint runs_status_check check (status in
  ('CREATED', 'RUNNING', 'COMPLETED', 'FAILED', 'CANCELLED', 'TERMINATED', 'CONTINUED_AS_NEW', 'TIMED_OUT')) not valid;

-- run_timeout_ms / run_deadline: the start's run timeout and when it passes
-- (NULL: none). workflow_task_timeout_ms: the lease of the run's workflow
-- tasks (NULL: the server's default, 10 s). Read by describe and by the claim
-- (one lookup by primary key per claimed task, which the claim makes already).
alter table dex.runs add column run_timeout_ms bigint check (run_timeout_ms > 0);
alter table dex.runs add column run_deadline timestamptz;
alter table dex.runs add column workflow_task_timeout_ms integer check (workflow_task_timeout_ms > 0);

-- The run timeout is a timer of kind 'run_timeout' (seq 0: command timers
-- start at 1), written by the start statement with the run. Firing it ends
-- the run TIMED_OUT in the transaction that deletes it (engine/run-timeouts.ts);
-- ending the run any other way deletes it with the run's other timers.
alter table dex.timers drop constraint timers_kind_check;
alter table dex.timers add constraint timers_kind_check check (kind in ('timer', 'event_wait', 'run_timeout')) not valid;
alter table dex.timers drop constraint timers_seq_check;
alter table dex.timers add constraint timers_seq_check check (seq > 0 or (kind = 'run_timeout' and seq = 0)) not valid;
