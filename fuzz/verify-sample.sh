#!/usr/bin/env bash
# Checks a sample of what the unit_render target rendered with a real `exuvia verify` (which
# runs systemd-analyze verify of the given root's systemd): everything the target accepts must
# load cleanly. Outside the fuzz loop, because systemd-analyze takes a second per unit.
#
# Usage: bash fuzz/verify-sample.sh ROOT [N] [CORPUS_DIR...]
#   ROOT: a root file system with systemd (tests/systemd/rootfs.sh trixie prints one)
#   N: how many of the accepted inputs to verify (default 200); CORPUS_DIR: default
#      fuzz/corpus/unit_render (relative to fuzz/)
set -euo pipefail
cd "$(dirname "$0")"
root=$1 n=${2:-200}
shift $(($# < 2 ? $# : 2))
dirs=("${@:-corpus/unit_render}")
out=target/verify-sample
rm -rf "$out"
mapfile -t inputs < <(find "${dirs[@]}" -type f)
cargo +nightly run -q --release --example render_sample -- "$out" "${inputs[@]}"
# Most of a fuzz corpus is specs the CLI refuses; sample among those it rendered.
mapfile -t sample < <(find "$out" -mindepth 1 -maxdepth 1 -type d | shuf -n "$n" --random-source=<(yes))
exuvia=${EXUVIA:-../target/debug/exuvia}
failed=0 total=0
shopt -s nullglob
for d in "${sample[@]}"; do
  d=$d/
  total=$((total + 1))
  units=("$d"*.service "$d"*.socket)
  if ! "$exuvia" verify --root "$root" "${units[@]}" >"$d/verify.log" 2>&1; then
    failed=$((failed + 1))
    echo "REJECTED $(cat "$d/INPUT"):"
    sed 's/^/    /' "$d/verify.log" | head -20
  fi
done
echo "verify-sample: $total rendered, $failed rejected by systemd-analyze"
[[ $failed -eq 0 ]]
