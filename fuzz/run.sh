#!/usr/bin/env bash
# Builds the fuzz targets once and runs each for a bounded time, one after the other, from the
# committed corpus and the seeds; prints executions and coverage per target and fails on the
# first crash (its reproducer is left under fuzz/artifacts/TARGET/).
#
# Usage (from anywhere): bash fuzz/run.sh [--seconds N] [--runs N] [--work DIR] [TARGET...]
#   --seconds N  time per target (default 30)
#   --runs N     stop a target after N executions instead (with --seconds as the time bound)
#   --jobs N     targets fuzzed at once (default 1; each libFuzzer run uses one core)
#   --work DIR   where new inputs go (default fuzz/target/run-corpus; the committed corpus is
#                only read)
# Needs cargo-fuzz and a nightly toolchain; without one (`rustup toolchain list` names none),
# the default toolchain builds with RUSTC_BOOTSTRAP=1, which lets stable take the nightly-only
# flags cargo-fuzz passes (-Zsanitizer=…, -Cpasses=sancov-module).
set -euo pipefail
cd "$(dirname "$0")"
seconds=30 runs=-1 work=target/run-corpus jobs=1
while [[ $# -gt 0 ]]; do
  case $1 in
    --seconds) seconds=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    *) break ;;
  esac
done
all=(manifest channel_message handoff activation control_request control_answer timespan reload_args
  notify http_response lint unit_render)
if [[ $# -gt 0 ]]; then targets=("$@"); else targets=("${all[@]}"); fi

dict_for() {
  case $1 in
    control_request | control_answer) echo dict/control.dict ;;
    *) echo "dict/$1.dict" ;;
  esac
}

if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  fuzz=(cargo +nightly fuzz)
else
  echo "fuzz: no nightly toolchain; building with $(rustc --version) and RUSTC_BOOTSTRAP=1"
  export RUSTC_BOOTSTRAP=1
  fuzz=(cargo fuzz)
fi

# Safe Rust parsers: AddressSanitizer would only slow them down; overflow checks and debug
# assertions stay on (cargo-fuzz's default), so an arithmetic overflow is a crash.
"${fuzz[@]}" build --sanitizer none
bin=target/x86_64-unknown-linux-gnu/release
# fuzz_one TARGET: one bounded run; its log is $work/TARGET.log.
fuzz_one() {
  local t=$1
  mkdir -p "$work/$t" "artifacts/$t" "corpus/$t" "seeds/$t"
  "$bin/$t" -max_total_time="$seconds" -runs="$runs" -dict="$(dict_for "$t")" \
    -artifact_prefix="artifacts/$t/" -print_final_stats=1 \
    "$work/$t" "corpus/$t" "seeds/$t" >"$work/$t.log" 2>&1
}
mkdir -p "$work"
declare -A pid_of=()
for t in "${targets[@]}"; do
  while (($(jobs -rp | wc -l) >= jobs)); do wait -n || true; done
  echo "=== fuzz $t (${seconds}s)"
  fuzz_one "$t" &
  pid_of[$t]=$!
done
crashed=()
for t in "${targets[@]}"; do
  wait "${pid_of[$t]}" || crashed+=("$t")
done
for t in "${crashed[@]}"; do
  tail -n 40 "$work/$t.log"
  echo "fuzz $t: CRASH — reproducer in fuzz/artifacts/$t/ (${fuzz[*]} run --sanitizer none $t FILE)" >&2
done
((${#crashed[@]} == 0)) || exit 1
summary=()
for t in "${targets[@]}"; do
  log=$work/$t.log
  runs_done=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log")
  cov=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | sed -E 's/.*cov: ([0-9]+) ft: ([0-9]+).*/cov \1 ft \2/')
  summary+=("$(printf '%-16s %12s runs %6ss  %s' "$t" "$runs_done" "$secs" "$cov")")
done
echo "=== fuzz summary"
printf '  %s\n' "${summary[@]}"
