#!/usr/bin/env bash
# README command 1: installs what LXR needs on a Debian 12 machine (as root),
# builds it, puts its commands on PATH, then brings up a cluster on this
# machine with a workspace in it (scripts/demo.sh). Safe to run again.
# Environment: LXR_BIN_DIR (where the commands are linked, default
# /usr/local/bin), LXR_SKIP_DEMO=1 (build only), and demo.sh's.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

if [ "$(id -u)" != 0 ]; then
  echo "install.sh: run as root (LXR creates namespaces, mounts and cgroups)" >&2
  exit 1
fi

# Debian packages: the C toolchain and libseccomp for native/, busybox for
# the demo and tests, runc and crun as the peers tests and benchmarks
# compare against, python3 for the console-socket test peer, zstd to build
# zstd-compressed test layers.
# docker-registry (a real registry on loopback), apache2-utils (htpasswd)
# and openssl (token-auth certificates) for the image tests; skopeo and
# umoci as the peers of the image benchmark; podman as the peer of the
# agent benchmark (exec latency, create-and-start); iptables and procps
# (sysctl) for container networking (egress NAT, published ports);
# containernetworking-plugins as the peer of the network benchmark; prometheus
# (and its promtool) for the metrics test of the shipped config and dashboard;
# python3-yaml reads back lxrctl's YAML in its tests, zsh checks its zsh
# completion; git for the test of this script in a fresh clone; chromium (and
# curl) for the web terminal's tests in a real browser; libkrb5-dev,
# libxkbfile-dev and libsecret-1-dev (with pkg-config and build-essential)
# for the native modules of code-server, which the agent installs for IDE
# workspaces; debootstrap makes the Debian image of the IDE tests.
debs=(build-essential pkg-config libseccomp-dev busybox-static runc crun iproute2 python3 util-linux zstd
  docker-registry apache2-utils openssl skopeo umoci podman iptables procps containernetworking-plugins prometheus chromium curl
  python3-yaml zsh git debootstrap libkrb5-dev libxkbfile-dev libsecret-1-dev)
missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt 20 ]; then
  echo "install.sh: LXR needs Node.js 20 or newer (found: $(node --version 2>/dev/null || echo none))" >&2
  exit 1
fi

npm ci --no-audit --no-fund --loglevel=error
# node-pty (exec with a tty) is a native module: when npm skipped its install
# script and no prebuilt binary fits, build it here (build-essential, python3).
if ! node -e "require('node-pty')" 2>/dev/null; then
  echo "building node-pty"
  npm rebuild node-pty --foreground-scripts --loglevel=error
  node -e "require('node-pty')"
fi
make -s -C native
npx tsc -b
node scripts/bundle-cli.mjs

bin_dir=${LXR_BIN_DIR:-/usr/local/bin}
mkdir -p "$bin_dir"
for cmd in lxr-runtime lxr-agent lxr-controller lxrctl; do
  ln -sf "$repo/bin/$cmd" "$bin_dir/$cmd"
done
echo "installed: lxr-runtime lxr-agent lxr-controller lxrctl -> $bin_dir"

# The IDE tools (Node 24 and code-server, from npm): installed now into the
# directory the agents of this machine use, so the first IDE workspace does
# not wait minutes for them (agents in the lab cannot reach npm at all).
# LXR_SKIP_TOOLS=1 leaves it to the first IDE create.
if [ "${LXR_SKIP_TOOLS:-}" != 1 ]; then
  "$bin_dir/lxr-agent" tools install --tools-dir /var/lib/lxr/tools
fi

[ "${LXR_SKIP_DEMO:-}" = 1 ] || bash scripts/demo.sh
