#!/usr/bin/env bash
# Makes `FROM node:20-bookworm-slim` resolve on a machine with no container
# registry: a local stand-in built from Debian's own mirror (debootstrap
# minbase bookworm) plus this host's Node 20 (node and npm, laid out as the
# official image lays them out: /usr/local/bin, /usr/local/lib/node_modules, a
# `node` user with uid 1000) and this host's CA bundle. The bundle matters here:
# this machine reaches registry.npmjs.org through a TLS-intercepting egress
# proxy whose CA only the host's bundle holds, so the stand-in also sets
# NODE_EXTRA_CA_CERTS to it (npm and pnpm in the build stage then trust it). A
# real node:20-bookworm-slim needs neither. The Dockerfile does not change for
# the stand-in, and a real image already present (pulled from a registry) is
# used as it is.
#
# Idempotent and cached: the image is kept in podman's storage, and its tarball
# in $DEX_IMAGE_CACHE (default /var/cache/dex-image), so only the first run on a
# machine pays for debootstrap (one to two minutes). The stamp (the host's node
# version and this script's text) names the tarball: either changing rebuilds.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$here/containers.conf}"
image="node:20-bookworm-slim"
cache_dir="${DEX_IMAGE_CACHE:-/var/cache/dex-image}"
log() { printf '[base] %s\n' "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

node_bin="$(readlink -f "$(command -v node)")" || die "no node on PATH"
node_version="$("$node_bin" --version)"
case "$node_version" in v20.*) ;; *) die "host node is $node_version; the stand-in for $image needs Node 20" ;; esac
npm_dir="$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")"
[ -f "$npm_dir/package.json" ] || die "cannot find npm's package directory (got $npm_dir)"
# The tarball's name changes with the host's node and with this script, so a
# node upgrade or an edit here rebuilds it.
stamp="$(printf '%s\n' "$node_version" | cat - "$0" | sha256sum | cut -c1-12)"
tarball="$cache_dir/node-20-bookworm-slim-$stamp.tar"

if podman image exists "$image"; then
  present="$(podman image inspect --format '{{index .Labels "dex.base-stamp"}}' "$image" 2>/dev/null || true)"
  if [ "$present" = "$stamp" ]; then log "$image is present (stamp $stamp)"; exit 0; fi
  # No stamp: the real image, pulled from a registry. Use it, never replace it.
  if [ -z "$present" ] || [ "$present" = "<no value>" ]; then log "$image is present (from a registry)"; exit 0; fi
  log "$image is an older stand-in (stamp $present); replacing it"
fi
if [ -f "$tarball" ]; then
  log "loading $image from $tarball"
  podman load -q -i "$tarball" >/dev/null
  exit 0
fi

# The node binary must need nothing a minbase Debian lacks (glibc, libstdc++).
for lib in $(ldd "$node_bin" | awk '/=>/ {print $1}'); do
  case "$lib" in libc.so*|libm.so*|libdl.so*|libpthread.so*|libstdc++.so*|libgcc_s.so*|librt.so*) ;;
    *) die "$node_bin links $lib, which a minbase bookworm does not have; use a static Node 20 build" ;;
  esac
done
command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install debootstrap)"

work="$(mktemp -d /var/tmp/dex-base.XXXXXX)"
trap 'rm -rf "$work"' EXIT
rootfs="$work/rootfs"
log "debootstrap --variant=minbase bookworm (about 2 minutes)"
debootstrap --variant=minbase bookworm "$rootfs" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" >"$work/debootstrap.log" 2>&1 \
  || { tail -20 "$work/debootstrap.log" >&2; die "debootstrap failed"; }

log "adding node $node_version, npm and CA certificates"
install -m 0755 "$node_bin" "$rootfs/usr/local/bin/node"
mkdir -p "$rootfs/usr/local/lib/node_modules"
cp -a "$npm_dir" "$rootfs/usr/local/lib/node_modules/npm"
ln -s ../lib/node_modules/npm/bin/npm-cli.js "$rootfs/usr/local/bin/npm"
ln -s ../lib/node_modules/npm/bin/npx-cli.js "$rootfs/usr/local/bin/npx"
mkdir -p "$rootfs/etc/ssl/certs"
cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
chroot "$rootfs" groupadd --gid 1000 node
chroot "$rootfs" useradd --uid 1000 --gid node --shell /bin/bash --create-home node
# What the slim image leaves out: apt lists and caches, docs, man pages.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
  "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/var/log/*.log
# debootstrap leaves the host's resolv.conf; podman mounts its own at run time.
: >"$rootfs/etc/resolv.conf"
"$rootfs/usr/local/bin/node" --version >/dev/null

log "importing $image"
tar -C "$rootfs" -c . | podman import -q \
  --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
  --change "ENV NODE_VERSION=${node_version#v}" \
  --change "ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt" \
  --change "LABEL dex.base-stamp=$stamp" \
  --change 'CMD ["node"]' - "$image" >/dev/null

mkdir -p "$cache_dir"
rm -f "$cache_dir"/node-20-bookworm-slim-*.tar
podman save -q -o "$tarball.partial" "$image" && mv "$tarball.partial" "$tarball"
log "built $image; cached at $tarball"
