#!/usr/bin/env bash
# Build the images' base (Debian 12 "bookworm", minbase) from Debian's own packages, for hosts
# that reach a Debian mirror but no container registry (air-gapped labs, proxied CI).
#
#   sudo ./scripts/bootstrap-base.sh            # makes tiny-imagenet/bookworm-base:12 (about 1.5 min)
#   BASE_IMAGE=tiny-imagenet/bookworm-base:12 docker compose ... build
#
# Where a registry is reachable you need none of this: the Dockerfiles default to the official
# debian:bookworm-slim. The image made here carries its own name, not that one: it is a
# debootstrap minbase of the same suite, not a copy of the official build.
# Needs root, debootstrap and a running Docker engine. Does nothing if the image already exists.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/container-env.sh

image=${1:-$LOCAL_BASE_IMAGE}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
security=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}

if docker image inspect "$image" >/dev/null 2>&1; then
  echo "bootstrap-base: $image exists"
  exit 0
fi
command -v debootstrap >/dev/null || {
  echo "bootstrap-base: debootstrap is missing (apt-get install debootstrap)" >&2
  exit 1
}

root=$(mktemp -d /tmp/bookworm-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
echo "bootstrap-base: debootstrap --variant=minbase bookworm from $mirror"
debootstrap --variant=minbase bookworm "$root" "$mirror" >"$root.log" 2>&1 || {
  tail -n 30 "$root.log" >&2
  exit 1
}
rm -f "$root.log"
cat >"$root/etc/apt/sources.list" <<EOF
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb $security bookworm-security main
EOF
# What the official slim images also drop: caches and package lists (apt-get update refills them).
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
  "$root"/var/log/*.log "$root"/tmp/*
tar --numeric-owner -C "$root" -c . | docker import \
  --change 'CMD ["bash"]' \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --message "debootstrap --variant=minbase bookworm $mirror" - "$image" >/dev/null
echo "bootstrap-base: made $image"
