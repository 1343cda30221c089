-- dex schema v6: API keys (issue 5; docs/decisions/0004-api-keys.md).
--
-- A key's text is `dex_<id>_<secret>`: `id` finds the row, the 32 random bytes
-- of `secret` prove the caller holds the key. Only sha256(secret) is stored, so
-- a copy of this table (a backup, a replica, a leaked dump) authenticates
-- nobody. A fast hash is right here: the secret is 256 random bits, not a
-- password, so there is nothing to guess from a dictionary and a slow KDF would
-- only cost every server a CPU spike per cache miss.
--
-- `queues` limits a worker key to the named task queues (of either type);
-- NULL means every queue. Other roles are never limited, so they must be NULL.
-- Revoked keys keep their row (and their name, which stays unique): logs and
-- `dex auth list` can still say which key a past call used.
create table dex.api_keys (
  id text primary key check (id ~ '^[0-9a-f]{16}$'),
  name text not null unique check (name ~ '^[A-Za-z0-9._-]{1,64}$'),
  role text not null check (role in ('worker', 'client', 'admin')),
  queues text[] check (queues is null or (role = 'worker' and cardinality(queues) > 0)),
  secret_sha256 bytea not null check (octet_length(secret_sha256) = 32),
  created_at timestamptz not null default now(),
  revoked_at timestamptz
);
