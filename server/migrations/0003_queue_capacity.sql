-- dex schema v3: queue capacity and pause, enforced by the claim itself.
-- dex.task_queues.capacity and .status exist since 0001; this adds what the
-- claims of server/src/store/workflow-tasks.ts and activity-tasks.ts need to
-- honour them cluster-wide. Semantics: docs/worker-protocol.md, "Task queues".

-- How many tasks a claim of `p_queue` may lease now: 0 while the queue is
-- paused; p_limit when it is unlimited (capacity 0); otherwise what is left of
-- the capacity after the tasks leased now (lease not expired), at most p_limit.
-- Raises DXQ01 (dex's own SQLSTATE) when the queue does not exist: it was
-- deleted after the caller checked, and the API answers NOT_FOUND.
--
-- Called in the claim's LIMIT, so it runs once, before any task row is locked.
-- Why a function: a capped queue must serialise its claims (two claims that
-- both count 1 of 2 in flight would each take one more), so it locks the
-- queue row; but a claim that waited for that lock must then count the leases
-- the claim before it committed. A single statement cannot: its snapshot was
-- taken before the wait. (Measured: capacity 2, 8 connections each claiming
-- 5 at once, 40 rounds: a claim that locked the row in a CTE and counted in
-- the same statement leased up to 16 and exceeded the capacity in 37 rounds;
-- this function, in none.) A VOLATILE function's statements each take a fresh
-- snapshot (READ COMMITTED), so the count after the lock sees them. The rows
-- the outer statement then picks are re-checked when locked (a row another
-- claim leased meanwhile no longer has visible_at <= now(), and is skipped).
--
-- An unlimited or paused queue reads its row without locking it: no
-- serialisation, one primary-key probe more than before. FOR NO KEY UPDATE
-- (not FOR UPDATE) because nothing references the row by key; the lock lasts
-- until the claim commits, so the next claim counts this one's leases.
create function dex.claim_limit(p_type text, p_queue text, p_limit integer) returns integer
language plpgsql volatile as $$
declare
  q record;
  leased bigint;
begin
  select capacity, status into q from dex.task_queues where type = p_type and name = p_queue;
  if not found then
    raise exception '% task queue "%" does not exist', p_type, p_queue using errcode = 'DXQ01';
  end if;
  if q.status <> 'active' or p_limit <= 0 then
    return 0;
  end if;
  if q.capacity = 0 then
    return p_limit;
  end if;
  -- Capped: serialise with the other claims of this queue, then read the
  -- current capacity and status (an update may have committed meanwhile).
  select capacity, status into q from dex.task_queues where type = p_type and name = p_queue for no key update;
  if not found then
    raise exception '% task queue "%" does not exist', p_type, p_queue using errcode = 'DXQ01';
  end if;
  if q.status <> 'active' then
    return 0;
  end if;
  if q.capacity = 0 then
    return p_limit;
  end if;
  -- Leased now: a lease writes its end into visible_at and sets leased_until
  -- (both tables), so this walks the leased-rows partial index over the
  -- leases that have not expired. An expired lease is not in flight.
  if p_type = 'workflow' then
    select count(*) into leased from dex.workflow_tasks
    where queue_name = p_queue and leased_until is not null and visible_at > now();
  else
    select count(*) into leased from dex.activity_tasks
    where queue_name = p_queue and leased_until is not null and visible_at > now();
  end if;
  return greatest(0, least(p_limit::bigint, q.capacity - leased))::integer;
end
$$;

-- The leases of workflow tasks, for the count above (activity_tasks_leased,
-- from 0001, serves activity tasks). Without it a capped workflow queue with
-- a deep backlog would walk its claim index (PG 18 skip scan: 491 buffers against 73
-- at 100,000 pending and 500 in flight) or its whole partition (PG 15) on every claim.
-- Its price on every workflow claim, capped or not: one more index entry, about
-- 60 B of WAL (496 -> 558 B per claim of one task). Lease updates were not HOT
-- before it (visible_at is indexed, see decision 0003), so no HOT update is lost.
create index workflow_tasks_leased on dex.workflow_tasks (visible_at) where leased_until is not null;
