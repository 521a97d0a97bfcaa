#!/usr/bin/env bash
# Builds the container image of the example tasks without a registry: a
# minimal Debian (debootstrap) with python3, pytest and git, and the ledger
# repository at /testbed committed exactly as swestar commits a source tree
# (same identity and dates, so the base commit matches instances.jsonl).
# Usage: build.sh [IMAGE] (default localhost/swestar-ledger:latest).
# Needs root or a rootless podman, debootstrap and network access to a
# Debian mirror (MIRROR, default deb.debian.org).
set -euo pipefail
image=${1:-localhost/swestar-ledger:latest}
here=$(cd "$(dirname "$0")/.." && pwd)
mirror=${MIRROR:-http://deb.debian.org/debian}
if podman image exists "$image" && [ "${REBUILD:-0}" != 1 ]; then
    echo "$image exists (REBUILD=1 to build it again)"
    exit 0
fi
rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
debootstrap --variant=minbase --include=python3,python3-pytest,git bookworm "$rootfs" "$mirror" >/dev/null
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
mkdir "$rootfs/testbed"
cp -a "$here/repo/." "$rootfs/testbed/"
find "$rootfs/testbed" \( -name __pycache__ -o -name .pytest_cache \) -prune -exec rm -rf {} +
export GIT_AUTHOR_NAME=swestar GIT_AUTHOR_EMAIL=tasks@swestar.invalid
export GIT_COMMITTER_NAME=swestar GIT_COMMITTER_EMAIL=tasks@swestar.invalid
export GIT_AUTHOR_DATE=2024-01-01T00:00:00+00:00 GIT_COMMITTER_DATE=2024-01-01T00:00:00+00:00
git -C "$rootfs/testbed" init -q -b main
git -C "$rootfs/testbed" add -A
git -C "$rootfs/testbed" commit -q -m "ledger 0.1.0"
echo "base commit $(git -C "$rootfs/testbed" rev-parse HEAD)"
tar -C "$rootfs" -c . | podman import --change 'WORKDIR /testbed' --change 'CMD ["sleep", "infinity"]' - "$image" >/dev/null
echo "built $image"
