-- dex schema v11: rejected updates (UpdateRun; docs/decisions/0024-updates.md).
--
-- An update the worker rejected (no handler of its name, or the validator
-- threw) never reaches history: the completion that reports the rejection
-- deletes its inbox row and keeps the failure here, so UpdateRun's caller,
-- and a retry with the same update id, read it. Accepted updates need no
-- table: their outcome is the `update_completed` history event, found by its
-- dedup key. The primary key makes a rejection recorded once per update id.
create table dex.update_rejections (
  run_id uuid not null references dex.runs (id) on delete cascade,
  update_id text not null,
  -- dex.v1.Failure
  failure bytea not null,
  created_at timestamptz not null default now(),
  primary key (run_id, update_id)
);
