-- dex schema v9: repeatable named external events (issue 14; docs/decisions/0022-named-events.md).
--
-- An external event has a name (what the workflow waits for, inside the event
-- bytes) and an id (its dedup key). Ids were unique per run: a client that
-- retried a send by instance id across a continue-as-new could deliver an
-- event twice. They are now unique per continue-as-new chain.

-- The chain a run belongs to, written when continue-as-new starts the run: the
-- first run of the chain. A run without a row is the first of its chain (its
-- own id), so runs that never continue cost nothing here.
create table dex.run_chains (
  run_id uuid primary key,
  chain_id uuid not null
);

-- The event ids each chain accepted. SendEvent inserts the row in the same
-- statement that puts the event in the inbox, holding the open run's lock; a
-- chain has one open run at a time and continue-as-new holds the old run's
-- lock while it starts the new one, so two deliveries of one id are always
-- serialized and the second finds the row (ON CONFLICT DO NOTHING: duplicate).
-- Events sent without an id get a generated one and no row: nothing to dedup.
create table dex.event_ids (
  chain_id uuid not null,
  event_id text not null,
  -- The run that accepted the event (for people reading SQL).
  run_id uuid not null,
  created_at timestamptz not null default now(),
  primary key (chain_id, event_id)
);
-- Retention deletes a run's event ids with the run (server/src/store/retention.ts).
create index event_ids_by_run on dex.event_ids (run_id);

-- Open runs keep the ids they already received (history and inbox), so a
-- retry after this migration is still a duplicate. Ended runs need none.
insert into dex.event_ids (chain_id, event_id, run_id)
select r.id, substr(e.dedup_key, length('event:') + 1), r.id
from dex.runs r
join lateral (
  select dedup_key from dex.history_events h where h.run_id = r.id and h.dedup_key like 'event:%'
  union
  select dedup_key from dex.inbox i where i.run_id = r.id and i.dedup_key like 'event:%'
) e on true
where r.status in ('CREATED', 'RUNNING')
on conflict do nothing;

-- dex.timers.event_id of an 'event_wait' row now holds the awaited event name.
-- Delivering an event no longer deletes the time-out (one name, many events:
-- the server cannot tell which wait an event satisfied); the SDK drops it with
-- cancel_timer once an event satisfied the wait.
comment on column dex.timers.event_id is 'kind event_wait: the awaited event name';
