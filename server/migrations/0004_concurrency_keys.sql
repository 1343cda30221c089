-- dex schema v4: concurrency keys enforced. dex.runs.concurrency_key and
-- concurrency_limit exist since 0001; this adds the state the engine
-- (server/src/engine/concurrency-keys.ts) keeps to enforce them cluster-wide.
-- Semantics: docs/worker-protocol.md, "Concurrency keys".

-- A run that waits in line for a slot of its key: CREATED, no workflow task.
-- Set when a run with a key is inserted, cleared when it takes a slot (it gets
-- its workflow task in the same statement) or leaves the line (it ends). It
-- only ever goes from true to false, which lets callers read it without a
-- lock and trust a `false`. The check keeps it from outliving CREATED.
alter table dex.runs add column concurrency_waiting boolean not null default false;
alter table dex.runs add constraint runs_concurrency_waiting_created
  check (not concurrency_waiting or (status = 'CREATED' and concurrency_key is not null));

-- The line of each key in hand-over order: higher priority first, then FIFO
-- (UUIDv7 ids grow with time). The hand-over reads its first two entries.
create index runs_concurrency_line on dex.runs (concurrency_key, priority desc, id)
  where concurrency_waiting;

-- The slot holders of each key (RUNNING, or CREATED and admitted), counted on
-- every hand-over. At most about the key's limit rows per key, whatever the
-- length of the line. Its columns never change while a run holds a slot, so it
-- does not take the HOT path from history_length updates.
create index runs_concurrency_holders on dex.runs (concurrency_key)
  where concurrency_key is not null and status in ('CREATED', 'RUNNING') and not concurrency_waiting;
