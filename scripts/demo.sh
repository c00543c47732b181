#!/usr/bin/env bash
# The end of README command 1: a cluster on this machine and a workspace in
# it. The lab (two hosts, each a network namespace with its own lxr-agent,
# and an lxr-controller they join; nothing touches the machine's own
# network), a busybox image built here from Debian's busybox-static (no
# registry needed) and imported onto both hosts, a workspace `demo`, and a
# command run in it. Safe to run again: what exists is reused.
# Environment: LXR_DEMO_NAME (lab name, default demo), LXR_DEMO_DIR (its
# directory, default /var/lib/lxr-lab/NAME), LXR_CONFIG (lxrctl's config).
set -euo pipefail
cd "$(dirname "$0")/.."
name=${LXR_DEMO_NAME:-demo}
dir=${LXR_DEMO_DIR:-/var/lib/lxr-lab/$name}
lxrctl() { "$PWD/bin/lxrctl" "$@"; }
ctx=lab-$name

status=0
lxrctl lab status --name "$name" --dir "$dir" -o json >"${TMPDIR:-/tmp}/lxr-demo-status.$$" 2>/dev/null || status=$?
server=$(node -e 'try { const s = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")); process.stdout.write(s.controller ? s.controller.grpc : ""); } catch {}' "${TMPDIR:-/tmp}/lxr-demo-status.$$")
rm -f "${TMPDIR:-/tmp}/lxr-demo-status.$$"
if [ "$status" = 0 ] && [ -n "$server" ]; then
  echo "lab $name is already up; using it"
  lxrctl config set-context "$ctx" --server "$server" --use >/dev/null
else
  if [ "$status" != 4 ]; then
    # There, but not usable (after a reboot, or made without a controller): made again.
    echo "lab $name is not all up; making it again"
    lxrctl lab down --name "$name" --dir "$dir"
  fi
  lxrctl lab up --controller --hosts 2 --name "$name" --dir "$dir"
fi

image=$(mktemp /tmp/lxr-demo-image.XXXXXX)
trap 'rm -f "$image"' EXIT
bash scripts/busybox-image.sh "$image" busybox:latest >/dev/null
lxrctl --context "$ctx" images import "$image"
lxrctl --context "$ctx" create demo --image busybox
lxrctl --context "$ctx" ps
echo '$ lxrctl exec demo -- sh -c ...'
lxrctl --context "$ctx" exec demo -- sh -c '
  echo "hello from workspace $(hostname): pid $$, $(id)"
  echo "  address: $(ip -4 -o addr show eth0 2>/dev/null | awk "{print \$4}")"
  echo "  $(grep -E "^(CapEff|NoNewPrivs|Seccomp):" /proc/self/status | tr "\n\t" "  ")"'
cat <<EOT

LXR is up: lab "$name" (2 hosts and a controller; lxrctl context $ctx).
Next, try:
  lxrctl exec -it demo -- sh          a shell in the workspace (ctrl-p ctrl-q detaches; lxrctl attach resumes)
  lxrctl create ws2 --image busybox   another workspace (the scheduler spreads them over the hosts)
  lxrctl ps -o wide; lxrctl hosts ls  what runs where
  lxrctl logs demo; lxrctl exec ls demo
  lxrctl --help                       every command
  npm test                            the whole test suite (README command 2)
  lxrctl lab down --name $name     remove the lab and everything in it
EOT
