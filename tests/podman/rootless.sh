#!/usr/bin/env bash
# Runs tests/podman.rs again as an unprivileged user with a single UID (no
# /etc/subuid or /etc/subgid range), the way podman runs on clusters without
# root: rootless, overlay storage with ignore_chown_errors so that image
# files owned by other IDs collapse onto the one UID. Needs root to create
# the user and podman with the example image already built.
set -euo pipefail
cd "$(dirname "$0")/../.."
user=swestar-rootless
image=localhost/swestar-ledger:latest

[ "$(id -u)" = 0 ] || { echo "rootless.sh: run as root (it creates $user)" >&2; exit 1; }
id "$user" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash "$user"
for f in /etc/subuid /etc/subgid; do
  [ -f "$f" ] && sed -i "/^$user:/d" "$f"
done
home=$(getent passwd "$user" | cut -d: -f6)
uid=$(id -u "$user")

bin=$(cargo test --locked --test podman --no-run --message-format=json 2>/dev/null |
  python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "podman":
        print(m["executable"])')
# The test binary reads the example tasks and runs target/*/swestar by
# their absolute paths: the user must be able to reach them.
if ! runuser -u "$user" -- test -r "$PWD/examples/tasks/instances.jsonl" -a -x "$bin"; then
  echo "rootless podman check skipped: $PWD is not readable by an unprivileged user" >&2
  exit 0
fi

runtime=/tmp/swestar-rootless-$uid
install -d -m 700 -o "$user" -g "$user" "$runtime" "$home/.config/containers"
printf '[storage]\ndriver = "overlay"\n\n[storage.options]\nignore_chown_errors = "true"\n' \
  > "$home/.config/containers/storage.conf"
chown "$user:" "$home/.config/containers/storage.conf"

as_user() {
  (cd /tmp && runuser -u "$user" -- env -i HOME="$home" USER="$user" XDG_RUNTIME_DIR="$runtime" \
    PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 CI="${CI:-}" "$@")
}
as_user podman system migrate 2>/dev/null || true
# The user's image store is separate from root's: copy the image over
# (always, so a rebuilt image replaces the old one).
archive=$(mktemp /tmp/swestar-image-XXXXXX.tar)
podman save -q -o "$archive" "$image"
chmod 644 "$archive"
as_user podman load -q -i "$archive" 2>&1 | grep -v 'subuid\|single mapping\|shared mount' || true
rm -f "$archive"
echo "podman tests as $user (uid $uid, single UID, rootless):"
as_user "$bin" --test-threads 1 2> >(grep -v 'subuid\|single mapping\|shared mount' >&2)
