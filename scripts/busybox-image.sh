#!/usr/bin/env bash
# Builds a small image offline from Debian's busybox-static: one layer with
# busybox and its applets, /etc/passwd and /etc/group, written as a
# docker-save archive that `lxrctl images import` takes. Its command is
# `sleep infinity`: a workspace keeps running until it is stopped.
# usage: scripts/busybox-image.sh OUT.tar [NAME:TAG]   (default busybox:latest)
set -euo pipefail
. "$(dirname "$0")/lib/image-archive.sh"
out=${1:?usage: busybox-image.sh OUT.tar [NAME:TAG]}
tag=${2:-busybox:latest}
bb=/bin/busybox
[ -x "$bb" ] || { echo "busybox-image.sh: $bb is missing (apt-get install busybox-static)" >&2; exit 1; }
work=$(mktemp -d /tmp/lxr-image.XXXXXX)
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
mkdir -p "$root/bin" "$root/etc" "$root/root" "$root/tmp" "$root/home"
chmod 1777 "$root/tmp"
cp "$bb" "$root/bin/busybox"
for a in $("$bb" --list); do [ "$a" = busybox ] || ln -s busybox "$root/bin/$a"; done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
# Reproducible: sorted, owned by root, no timestamps.
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$root" -cf "$work/layer.tar" .
image_archive "$work" "$out" "$tag" '{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["sleep","infinity"],"WorkingDir":"/"}' 'lxr scripts/busybox-image.sh'
