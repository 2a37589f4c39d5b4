#!/usr/bin/env bash
# Prints the path of the cached Debian rootfs of SUITE (built once): `exuvia vm rootfs`,
# from this checkout's build (target/debug/exuvia, built if missing).
# Usage: rootfs.sh SUITE [--package NAME]... [--kernel]
# Env: EXUVIA_CACHE (default /var/cache/exuvia), EXUVIA_DEBIAN_MIRROR, CARGO_TARGET_DIR.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
exuvia=${CARGO_TARGET_DIR:-$repo/target}/debug/exuvia
[[ -x $exuvia ]] || (cd "$repo" && cargo build -q --bin exuvia)
exec "$exuvia" vm rootfs "$@"
