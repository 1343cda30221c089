-- dex schema v16: update ids deduplicated per continue-as-new chain
-- (docs/decisions/0031-continue-as-new-hand-over.md, 0024-updates.md).
--
-- Update ids were unique per run: a client that retried UpdateRun through an
-- instance id after a continue-as-new reached the new run, which applied the
-- update a second time. Like event ids (migration 0009), they are now claimed
-- per chain, and the row says which run of the chain holds the update (its
-- inbox row, its `update_accepted`/`update_completed` history events or its
-- rejection), so a retry through any run of the chain reads the outcome there.
create table dex.update_ids (
  chain_id uuid not null,
  update_id text not null,
  -- The run that holds the update: the run that took the request, then the
  -- run continue-as-new moved it to while it waited unseen in the inbox.
  run_id uuid not null,
  created_at timestamptz not null default now(),
  primary key (chain_id, update_id)
);
-- Retention deletes a run's update ids with the run (server/src/store/retention.ts);
-- continue-as-new re-points the ones it moves.
create index update_ids_by_run on dex.update_ids (run_id);

-- Open runs keep the update ids they already hold (inbox, history, rejections),
-- so a retry after this migration is still answered from the first call.
-- Ended runs need none: UpdateRun still checks the run it resolved.
insert into dex.update_ids (chain_id, update_id, run_id)
select coalesce(c.chain_id, r.id), u.update_id, r.id
from dex.runs r
left join dex.run_chains c on c.run_id = r.id
join lateral (
  select substr(h.dedup_key, length('update:') + 1) as update_id
  from dex.history_events h where h.run_id = r.id and h.dedup_key like 'update:%'
  union
  select substr(i.dedup_key, length('update:') + 1) from dex.inbox i where i.run_id = r.id and i.dedup_key like 'update:%'
  union
  select x.update_id from dex.update_rejections x where x.run_id = r.id
) u on true
where r.status in ('CREATED', 'RUNNING')
on conflict do nothing;
