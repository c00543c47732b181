#!/usr/bin/env bash
# Builds a Debian 12 (glibc) image from Debian's own packages with
# debootstrap --variant=minbase, for IDE workspaces and their tests, written
# as a docker-save archive that `lxrctl images import` takes. Its command is
# `sleep infinity` and its working directory /root.
# debootstrap mounts /proc and /sys inside the new root while it works: it
# runs in a mount namespace of its own (private), so none of that reaches
# the machine's mounts.
# usage: scripts/debian-image.sh OUT.tar [NAME:TAG] [MIRROR]
#   (default debian:bookworm, http://deb.debian.org/debian)
set -euo pipefail
. "$(dirname "$0")/lib/image-archive.sh"
out=${1:?usage: debian-image.sh OUT.tar [NAME:TAG] [MIRROR]}
tag=${2:-debian:bookworm}
mirror=${3:-http://deb.debian.org/debian}
command -v debootstrap >/dev/null || { echo "debian-image.sh: debootstrap is missing (apt-get install debootstrap)" >&2; exit 1; }
work=$(mktemp -d /tmp/lxr-image.XXXXXX)
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
# libgssapi-krb5-2: code-server's kerberos module links it.
unshare --mount --propagation private -- \
  debootstrap --variant=minbase --include=libgssapi-krb5-2,ca-certificates bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1 || {
  tail -20 "$work/debootstrap.log" >&2
  echo "debian-image.sh: debootstrap failed (log above)" >&2
  exit 1
}
# Nothing the image should carry: package lists and caches, logs, and the
# device nodes debootstrap made (image layers hold no device nodes).
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb "$root"/var/log/*.log "$root"/dev/* "$root"/proc/* "$root"/sys/* "$root"/run/*
# Owners kept as Debian made them (some files are not root's); no timestamps.
tar --sort=name --numeric-owner --mtime=@0 -C "$root" -cf "$work/layer.tar" .
image_archive "$work" "$out" "$tag" '{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin","LANG=C.UTF-8"],"Cmd":["sleep","infinity"],"WorkingDir":"/root"}' 'lxr scripts/debian-image.sh (debootstrap --variant=minbase bookworm)'
