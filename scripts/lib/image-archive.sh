# Sourced by the image scripts (busybox-image.sh, debian-image.sh): writes a
# one-layer image as a `docker save` archive, the form `lxrctl images
# import` takes.
# usage: image_archive WORK OUT TAG CONFIG CREATED_BY
#   WORK/layer.tar is the layer (moved into the archive); CONFIG is the
#   image's "config" object as JSON; CREATED_BY goes into its history.
#   Prints what it wrote.
image_archive() {
  local work=$1 out=$2 tag=$3 config=$4 created_by=$5
  local diff_id arch image_config config_id
  diff_id=$(sha256sum "$work/layer.tar" | cut -d' ' -f1)
  arch=$(dpkg --print-architecture 2>/dev/null || uname -m)
  case "$arch" in x86_64) arch=amd64 ;; aarch64) arch=arm64 ;; armhf) arch=arm ;; esac
  image_config='{"architecture":"'"$arch"'","os":"linux","config":'"$config"',"rootfs":{"type":"layers","diff_ids":["sha256:'"$diff_id"'"]},"history":[{"created_by":"'"$created_by"'"}]}'
  config_id=$(printf '%s' "$image_config" | sha256sum | cut -d' ' -f1)
  mkdir -p "$work/archive/$diff_id"
  printf '%s' "$image_config" >"$work/archive/$config_id.json"
  mv "$work/layer.tar" "$work/archive/$diff_id/layer.tar"
  printf '[{"Config":"%s.json","RepoTags":["%s"],"Layers":["%s/layer.tar"]}]\n' "$config_id" "$tag" "$diff_id" >"$work/archive/manifest.json"
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$work/archive" -cf "$out" .
  echo "$out: $tag ($arch, one layer, $(du -h "$out" | cut -f1))"
}
