#!/usr/bin/env bash
# The main job at this stage: one container from a local busybox rootfs,
# run by lxr-runtime with LXR's secure defaults. Leaves nothing behind.
set -euo pipefail
bundle=$(mktemp -d /tmp/lxr-demo.XXXXXX)
state=$(mktemp -d /tmp/lxr-demo-state.XXXXXX)
id=lxr-demo-$$
cleanup() {
  lxr-runtime --root "$state" delete --force "$id" >/dev/null 2>&1 || true
  for h in /sys/fs/cgroup/*/lxr-demo /sys/fs/cgroup/lxr-demo; do [ -d "$h" ] && rmdir "$h" 2>/dev/null || true; done
  rm -rf "$bundle" "$state"
}
trap cleanup EXIT

mkdir -p "$bundle/rootfs/bin" "$bundle/rootfs/etc"
cp /bin/busybox "$bundle/rootfs/bin/busybox"
for applet in $(/bin/busybox --list); do [ "$applet" = busybox ] || ln -sf busybox "$bundle/rootfs/bin/$applet"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$bundle/rootfs/etc/passwd"
echo 'root:x:0:' > "$bundle/rootfs/etc/group"
lxr-runtime spec --bundle "$bundle" -- sh -c '
  echo "hello from an LXR container"
  echo "  hostname: $(hostname)   pid: $$   user: $(id)"
  echo "  $(grep -E "^(CapEff|NoNewPrivs|Seccomp):" /proc/self/status | tr "\n\t" "  ")"
  echo "  pids limit: $(cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max)"'
# Give the demo its own cgroup parent so cleanup can remove it.
python3 - "$bundle/config.json" "$id" <<'PY'
import json, sys
p, cid = sys.argv[1], sys.argv[2]
c = json.load(open(p))
c["linux"]["cgroupsPath"] = f"/lxr-demo/{cid}"
json.dump(c, open(p, "w"), indent=2)
PY
lxr-runtime --root "$state" run --bundle "$bundle" "$id"
