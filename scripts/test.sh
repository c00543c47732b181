#!/usr/bin/env bash
# The whole test suite: build (native + TypeScript), unit tests, then the
# root-only integration tests. Usage: scripts/test.sh [unit|integration|FILE...]
set -euo pipefail
cd "$(dirname "$0")/.."
make -s -C native
npx tsc -b
node scripts/bundle-cli.mjs
what=${1:-all}
unit=(dist/test/unit/*.test.js)
integ=(dist/test/integration/*.test.js)
case "$what" in
  unit) files=("${unit[@]}") ;;
  integration) files=("${integ[@]}") ;;
  all) files=("${unit[@]}" "${integ[@]}") ;;
  *) files=("$@") ;;
esac
if [ "$(id -u)" != 0 ] && [ "$what" != unit ]; then
  echo "integration tests need root (namespaces, mounts, cgroups): run as root" >&2
  exit 1
fi
# One test file at a time: integration tests share the machine's cgroup
# hierarchies and a 2-core box gains nothing from parallel files.
exec node --test --test-concurrency=1 "${files[@]}"
