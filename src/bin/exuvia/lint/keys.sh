#!/usr/bin/env bash
# Regenerates keys-VERSION.txt (the keys systemd VERSION accepts per section) from the gperf
# table compiled into libsystemd-core-VERSION.so, e.g. from a rootfs that
# tests/systemd/rootfs.sh built:
#   bash src/bin/exuvia/lint/keys.sh /var/cache/exuvia/rootfs-trixie-*/usr/lib/x86_64-linux-gnu/systemd/libsystemd-core-257.so
# Keys may contain digits (Socket.BindIPv6Only): the pattern must allow them.
set -euo pipefail
so=${1:?usage: keys.sh PATH/libsystemd-core-VERSION.so}
version=$(basename "$so" | sed -n 's/^libsystemd-core-\([0-9]*\)\.so$/\1/p')
[[ -n $version ]] || { echo "keys.sh: $so is not named libsystemd-core-VERSION.so" >&2; exit 2; }
pattern='^(Unit|Service|Socket|Install)\.[A-Za-z0-9]+$'
out=$(dirname "$0")/keys-$version.txt
{
  echo "# Keys systemd $version accepts per section, extracted from the gperf table in libsystemd-core-$version.so"
  echo "# (Debian package) by keys.sh: \`strings libsystemd-core-$version.so | grep -E '$pattern'\`."
  strings "$so" | grep -E "$pattern" | LC_ALL=C sort -u
} >"$out"
echo "keys.sh: wrote $out ($(grep -vc '^#' "$out") keys)"
