#!/usr/bin/env bash
# The real-systemd matrix CI runs on every commit, entirely through `exuvia vm` — the command
# users run (docs/ci.md), with the example's binaries and units as its inputs:
#   - the units `exuvia unit` generates, the six base scenarios, under systemd 252 (bookworm,
#     the systemd-252 units), 254 (bookworm-backports), 257 (trixie) and the newest (sid),
#     with no exuvia CLI in the containers (the service binary is its own reload client);
#   - the same units through faults (issue #11: either generation killed mid-upgrade, stop
#     during an upgrade, reload storms), a live connection through 30 reloads (#13) and the
#     handover datagram as PID 1 sees it (#14), under 257 and the newest; notify and
#     kill-old under 254 too;
#   - wrk (a client nobody here wrote: HTTP/1.1 keep-alive, no retries) GETs and POSTs
#     against examples/axum, installed from the units `exuvia unit` generates from
#     axum/exuvia-axum.toml, through systemctl reloads, under 257 and the newest (issue #12);
#   - the bare test units (plain Type=notify-reload, no ExecReload=) on trixie;
#   - negative controls that must make `exuvia vm` fail: a service that restarts instead of
#     reloading, one that never hands over, one killed on reload, an alien single-fork main;
#   - a service that does not use exuvia (python, reloads in place) and Debian's nginx
#     (informational: its numbers are reported, see tests/systemd/README.md);
#   - one scenario in a qemu VM.
# Writes the table to target/systemd-tests/summary.md and prints every stage's time.
#
# Usage: matrix.sh [--profile debug|release] [--no-build] [--no-vm] [--reloads 50]
#                  [--wrk-reloads 50] [--systemd 252,254,257,262]
# Env: EXUVIA_CACHE (rootfs cache, kept between runs). Exit 0 iff every run went as required.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
profile=debug build=1 vm=1 reloads=50 wrk_reloads=50 versions=252,254,257,262
while (($#)); do
  case $1 in
    --profile) profile=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    --no-vm) vm=0; shift ;;
    --reloads) reloads=$2; shift 2 ;;
    --wrk-reloads) wrk_reloads=$2; shift 2 ;;
    --systemd) versions=$2; shift 2 ;;
    *) echo "matrix.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ $(id -u) == 0 ]] || { echo "matrix.sh: needs root (exuvia vm: nspawn, qemu, apt)" >&2; exit 2; }
target=${CARGO_TARGET_DIR:-$repo/target}
out=$target/systemd-tests
rm -rf "$out/logs" "$out/reports"
mkdir -p "$out/logs" "$out/reports"
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

command -v jq >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends jq </dev/null
if ((build)); then
  flag=--release
  [[ $profile == debug ]] && flag=
  stage "cargo build ($profile)" bash -c "cd '$repo' && cargo build $flag --examples --bin exuvia"
fi
bin=$target/$profile
E=$bin/exuvia

# The units, generated exactly as a user would (docs/ci.md); tests/units/ keeps units/
# byte-identical to this output. examples/axum's for the wrk run, from its own spec.
gen_units() {
  rm -rf "$out/units"
  "$E" unit --config "$repo/units/exuvia-echo.toml" --out "$out/units" --force
  "$E" unit --config "$repo/units/exuvia-echo.toml" --systemd 252 --out "$out/units/252" --force
  "$E" unit --config "$here/axum/exuvia-axum.toml" --out "$out/units/axum" --force
}
stage "exuvia unit (generate)" gen_units
# The newest two systemd versions: faults, live connections, wrk.
fault_versions=$(tr , '\n' <<<"$versions" | { grep -xE '257|262|trixie|sid' || true; } | paste -sd, -)
# Every rootfs the runs below boot, built (once; cached) side by side: a cold build mostly
# waits for the mirror. Each build holds its own lock; the logs say which one failed.
rootfs_all() {
  local -a pids=() names=()
  local v rc=0 i
  IFS=, read -r -a vs <<<"$versions"
  vs+=("trixie --package nginx")
  # The wrk run's (exuvia vm adds the package for scenario wrk: the same cache entry).
  IFS=, read -r -a fv <<<"$fault_versions"
  for v in "${fv[@]}"; do vs+=("$v --package wrk"); done
  ((vm)) && vs+=("trixie --kernel")
  for v in "${vs[@]}"; do
    # shellcheck disable=SC2086 # v carries the suite and its options
    "$E" vm rootfs $v >"$out/logs/rootfs-${v// /_}.log" 2>&1 &
    pids+=($!) names+=("$v")
  done
  for i in "${!pids[@]}"; do
    if wait "${pids[$i]}"; then
      echo "rootfs ${names[$i]}: $(tail -1 "$out/logs/rootfs-${names[$i]// /_}.log")"
    else
      rc=1
      echo "rootfs ${names[$i]} FAILED:" >&2
      tail -5 "$out/logs/rootfs-${names[$i]// /_}.log" >&2
    fi
  done
  return "$rc"
}
stage "rootfs ($versions, trixie+nginx${fault_versions:+, $fault_versions+wrk}$( ((vm)) && echo ", trixie+kernel"); in parallel)" rootfs_all

# vm_run NAME EXPECT [exuvia vm args...]: one `exuvia vm` run; EXPECT pass (exit 0), fail
# CHECKS (exit 1 and a check matching the regex CHECKS failed: a negative control), known
# CHECKS (a known defect, README.md: exit 1, at least one check matching CHECKS failed and
# no other check did; a run that passes fails here, so the mark is dropped once the defect
# is fixed), or info (exit 0 or 1: the numbers are the result).
vm_run() {
  local name=$1 expect=$2 want='' rc=0
  shift 2
  [[ $expect == fail || $expect == known ]] && { want=$1; shift; }
  local json=$out/reports/$name.json
  "$E" vm --json "$json" --log-dir "$out/logs/$name" "$@" 2>&1 | tee "$out/reports/$name.out" >&2 || rc=${PIPESTATUS[0]}
  "$here/summary.sh" rows "$name" "$expect" "$rc" "$json" >>"$results"
  case $expect in
    pass) return "$rc" ;;
    info) [[ $rc == 0 || $rc == 1 ]] && [[ -s $json ]] ;;
    fail)
      [[ $rc == 1 ]] || { echo "matrix: negative control $name: exit $rc, want 1" >&2; return 1; }
      jq -e --arg re "$want" '[.versions[].scenarios[].failed_checks[] | select(test($re))] | length > 0' "$json" >/dev/null ||
        { echo "matrix: negative control $name did not fail a check matching '$want'" >&2; return 1; }
      ;;
    known)
      ((rc != 0)) || { echo "matrix: $name passed: the known defect is fixed, drop its 'known' mark in matrix.sh" >&2; return 1; }
      [[ $rc == 1 ]] || return "$rc"
      local other
      other=$(jq -r --arg re "$want" '[.versions[] | .suite as $s | .scenarios[] | .name as $n | .failed_checks[] | select(test($re) | not) | "\($s)/\($n)/\(.)"] | join(", ")' "$json")
      [[ -z $other ]] || { echo "matrix: $name failed beyond the known defect: $other" >&2; return 1; }
      jq -e --arg re "$want" '[.versions[].scenarios[].failed_checks[] | select(test($re))] | length > 0' "$json" >/dev/null
      ;;
  esac
}

echo_args=(--binary "$bin/examples/echo" --new-binary "$bin/examples/echo_sync"
  --probe VERSION --probe-new '^exuvia-example echo_sync ')
shipped_units=(--unit "$out/units/exuvia-echo.service" --unit "$out/units/exuvia-echo.socket")
stage "exuvia vm $versions (generated units, base scenarios)" vm_run shipped pass "${echo_args[@]}" --absent /usr/local/bin/exuvia \
  "${shipped_units[@]}" --unit "252=$out/units/252/exuvia-echo.service" --unit "252=$out/units/252/exuvia-echo.socket" \
  --systemd "$versions" --scenarios reload,replace,broken,stop,sigkill,restart --reloads "$reloads"

# Faults, live connections and the handover datagram (issues #11, #13, #14) on the newest two
# systemd versions; 254 (which ignores MAINPIDFDID=) for notify and kill-old.
faults() {
  local rc=0
  vm_run faults pass --binary "$bin/examples/echo" --absent /usr/local/bin/exuvia "${shipped_units[@]}" \
    --systemd "$fault_versions" --scenarios live,notify,kill-old,kill-new,stop-upgrade,storm --reloads 30 || rc=1
  if grep -qxE '254|bookworm-backports' < <(tr , '\n' <<<"$versions"); then
    vm_run faults-254 pass --binary "$bin/examples/echo" --absent /usr/local/bin/exuvia "${shipped_units[@]}" \
      --systemd 254 --scenarios notify,kill-old || rc=1
  fi
  return "$rc"
}
[[ -n $fault_versions ]] && stage "exuvia vm $fault_versions (faults, live connections, notify)" faults

# wrk GETs and POSTs (tests/clients/check.lua: status 200 and the right body, every answer)
# against examples/axum as a systemd service with the generated units, 50 connections each,
# through systemctl reloads (issue #12): any socket error, bad answer or reload without a new
# MainPID fails it. Its numbers per run and version go under the table (wrk_notes).
declare -a wrk_notes=()
wrk_run() {
  local rc=0
  vm_run wrk pass --binary "$bin/examples/axum" --absent /usr/local/bin/exuvia \
    --unit "$out/units/axum/exuvia-axum.service" --unit "$out/units/axum/exuvia-axum.socket" \
    --systemd "$fault_versions" --scenarios wrk --mode http --connections 50 --reloads "$wrk_reloads" \
    --wrk-script "$repo/tests/clients/check.lua" --wrk-script "$repo/tests/clients/check.lua post" || rc=$?
  [[ -s $out/reports/wrk.json ]] && mapfile -t wrk_notes < <(jq -r '.versions[] | .systemd as $v | .scenarios[] | .checks[]
    | select(.name | test("^wrk_|^reloads_hand_over$")) | "| \($v) | \(.name) | \(if .ok then "ok" else "FAIL" end) | \(.detail) |"' "$out/reports/wrk.json")
  return "$rc"
}
[[ -n $fault_versions ]] && stage "exuvia vm $fault_versions (wrk GET+POST, examples/axum, generated units)" wrk_run

u=$here/units
stage "exuvia vm trixie (bare test units)" vm_run plain pass "${echo_args[@]}" --absent /usr/local/bin/exuvia \
  --unit "$u/exuvia-echo.service" --unit "$u/exuvia-echo.socket" --scenarios reload,broken --reloads 20

# Negative controls: each must make `exuvia vm` fail, on the named check.
negatives() {
  local rc=0
  vm_run negative-restart fail 'check_unit' --binary "$bin/examples/echo" \
    --unit "$u/restart-on-reload/exuvia-echo.service" --unit "$u/exuvia-echo.socket" --reloads 3 || rc=1
  vm_run negative-no-handover fail 'check_unit' --binary "$here/foreign/inplace-echo.py" \
    --unit "$here/foreign/inplace-echo.service" --unit "$here/foreign/inplace-echo.socket" --reloads 3 || rc=1
  vm_run negative-kill9 fail 'check_unit' --binary "$bin/examples/echo" \
    --unit "$u/kill-on-reload/exuvia-echo.service" --unit "$u/exuvia-echo.socket" --reloads 5 || rc=1
  # The load client must have seen the killed requests, not only systemd's bookkeeping.
  jq -e '.versions[0].scenarios[0].failed > 0' "$out/reports/negative-kill9.json" >/dev/null ||
    { echo "matrix: negative-kill9 saw no failed request" >&2; rc=1; }
  # wrk must see what a lost request looks like: a hard drain deadline of 20 ms cuts the old
  # generation's connections, requests in flight and all, at each handover.
  vm_run negative-wrk-cut fail '^wrk_.*_clean$' --binary "$bin/examples/axum" \
    --unit "$out/units/axum/exuvia-axum.service" --unit "$out/units/axum/exuvia-axum.socket" \
    --env EXUVIA_DRAIN_HARD=20ms --scenarios wrk --mode http --connections 50 --reloads 5 \
    --wrk-script "$repo/tests/clients/check.lua" --wrk-script "$repo/tests/clients/check.lua post" || rc=1
  # A successor spawned by a plain fork is an "alien" main: systemd SIGKILLs it on stop.
  vm_run negative-alien-stop fail 'b_exited_itself_main|b_no_sigkill' --binary "$here/standin/echo-standin.py" \
    --unit "$u/exuvia-echo.service" --unit "$u/exuvia-echo.socket" --env STANDIN_SINGLE_FORK=1 --scenarios stop || rc=1
  return "$rc"
}
stage "negative controls (trixie)" negatives

stage "foreign: python, in place (trixie)" vm_run python-in-place pass --binary "$here/foreign/inplace-echo.py" \
  --unit "$here/foreign/inplace-echo.service" --unit "$here/foreign/inplace-echo.socket" --in-place \
  --scenarios reload,sigkill --reloads 20
# nginx reloads in place (new workers, same master); its unit, its package. Informational:
# what it shows is a property of nginx, reported in the table (README.md).
stage "foreign: Debian nginx (trixie, informational)" vm_run nginx info --package nginx \
  --service nginx.service --target tcp:127.0.0.1:80 --mode http --in-place --reloads 20

((vm)) && stage "qemu vm trixie (reload 20)" vm_run qemu pass "${echo_args[@]}" --absent /usr/local/bin/exuvia \
  --unit "$out/units/exuvia-echo.service" --unit "$out/units/exuvia-echo.socket" --systemd 257 \
  --reloads 20 --vm

{
  "$here/summary.sh" render "$results" "real-systemd matrix via exuvia vm ($(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?'), profile $profile)"
  echo
  echo "| stage | seconds | load avg after (1/5/15 min) | result |"
  echo "|---|--:|---|---|"
  printf '%s\n' "${stages[@]}"
  echo "| **total** | $(secs "$t_all") | $(loadavg) | $([[ $failed == 0 ]] && echo ok || echo "$failed stage(s) failed") |"
  echo
  if ((${#wrk_notes[@]})); then
    echo "wrk through systemctl reloads (examples/axum, generated units; socket errors: connect/read/write/timeout):"
    echo
    echo "| systemd | check | result | detail |"
    echo "|---|---|---|---|"
    printf '%s\n' "${wrk_notes[@]}"
    echo
  fi
  echo "Machine: $(nproc) cores. Console logs: target/systemd-tests/logs/RUN/SUITE-SCENARIO.log; reports: target/systemd-tests/reports/RUN.json."
} >"$out/summary.md"
cat "$out/summary.md"
((failed == 0))
