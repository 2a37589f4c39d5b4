#!/usr/bin/env bash
# The real-systemd matrix CI runs on every commit: the example service with
# the units `exuvia unit` generates, under systemd 254 (bookworm-backports),
# 257 (trixie) and the newest (sid) in nspawn, the systemd-252 fallback units
# on bookworm, the developer harness (test units, negative controls) on
# trixie, and one scenario in a qemu VM. Writes the table to
# target/systemd-tests/summary.md and prints every stage's time.
#
# Usage: matrix.sh [--profile debug|release] [--no-build] [--no-vm]
#                  [--suites "bookworm-backports trixie sid"] [--vm-reloads 20]
# Env: EXUVIA_CACHE (rootfs/images, kept between runs), RELOADS (default 50).
# Exit 0 iff every run passed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
profile=debug build=1 vm=1 suites="bookworm-backports trixie sid" vm_reloads=20
while (($#)); do
  case $1 in
    --profile) profile=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    --no-vm) vm=0; shift ;;
    --suites) suites=$2; shift 2 ;;
    --vm-reloads) vm_reloads=$2; shift 2 ;;
    *) echo "matrix.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ $(id -u) == 0 ]] || { echo "matrix.sh: needs root (nspawn, qemu, apt)" >&2; exit 2; }
target=${CARGO_TARGET_DIR:-$repo/target}
out=$target/systemd-tests
mkdir -p "$out"
results=$out/results.tsv
: >"$results"
t_all=$(date +%s.%N)
secs() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
declare -a stages=()
failed=0
# stage NAME COMMAND...: run, time, remember; a failure fails the matrix at the end.
stage() {
  local name=$1 t rc=0
  shift
  t=$(date +%s.%N)
  echo "=== matrix stage: $name (load $(loadavg))"
  "$@" || rc=$?
  stages+=("$(printf '| %s | %s | %s | %s |' "$name" "$(secs "$t")" "$(loadavg)" "$([[ $rc == 0 ]] && echo ok || echo "FAIL ($rc)")")")
  echo "=== matrix stage: $name done in $(secs "$t") s, rc $rc (load $(loadavg))"
  ((rc == 0)) || failed=$((failed + 1))
}

for s in $suites bookworm; do
  stage "rootfs $s" "$here/rootfs.sh" "$s"
done
((vm)) && stage "rootfs trixie + kernel" "$here/rootfs.sh" trixie --kernel
if ((build)); then
  flag=--release
  [[ $profile == debug ]] && flag=
  stage "cargo build ($profile)" bash -c "cd '$repo' && cargo build $flag --examples --bin exuvia"
fi

for s in $suites; do
  sets=shipped
  # The developer harness (test units, variants, negative controls) once.
  [[ $s == trixie ]] && sets=core,shipped
  stage "nspawn $s ($sets)" "$here/run-all.sh" --impl real --profile "$profile" --no-build --suite "$s" --set "$sets"
done
stage "nspawn bookworm (shipped252)" "$here/run-all.sh" --impl real --profile "$profile" --no-build \
  --suite bookworm --set shipped252

vm_run() {
  local payload=$out/payload-real log=$out/vm-trixie-reload.log t rc=0
  t=$(date +%s.%N)
  "$here/payload.sh" --impl real --target-dir "$target" --profile "$profile" "$payload" >/dev/null
  # Generous: TCG runs guest code ~10x slower (vm-feasibility.md §3).
  "$here/run.sh" --runner vm --suite trixie --payload "$payload" --scenario reload50 --variant shipped \
    --setenv "RELOADS=$vm_reloads" --timeout 900 --log "$log" 2>&1 | tee "$out/vm-trixie-reload.out" || rc=$?
  local ver
  ver=$(sed -n 's/^INFO systemd=systemd \([^ ]* [^ ]*\).*/\1/p' "$log" | tr -d '\r' | head -1)
  "$here/summary.sh" row "vm:trixie (qemu $(qemu-system-x86_64 --version | awk 'NR==1{print $4}'))" "${ver:-?}" \
    "shipped-reload$vm_reloads" "$rc" "$(secs "$t")" "$out/vm-trixie-reload.out" >>"$results"
  return "$rc"
}
((vm)) && stage "qemu vm trixie (reload$vm_reloads)" vm_run

{
  "$here/summary.sh" render "$results" "real-systemd matrix ($(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?'), profile $profile)"
  echo
  echo "| stage | seconds | load avg after (1/5/15 min) | result |"
  echo "|---|--:|---|---|"
  printf '%s\n' "${stages[@]}"
  echo "| **total** | $(secs "$t_all") | $(loadavg) | $([[ $failed == 0 ]] && echo ok || echo "$failed stage(s) failed") |"
  echo
  echo "Machine: $(nproc) cores. Logs: target/systemd-tests/SUITE-NAME.log (full console of each boot)."
} >"$out/summary.md"
cat "$out/summary.md"
((failed == 0))
