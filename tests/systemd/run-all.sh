#!/usr/bin/env bash
# Run every real-systemd scenario, each in a fresh container (boot ~0.5 s).
# This is the entry point for .ci/run; it needs root, apt access to the
# Debian archive (first run only) and ~200 MB in $EXUVIA_CACHE.
#
# Usage: run-all.sh [--impl auto|real|standin] [--suite trixie] [--only NAME]
#                   [--profile release|debug]
#   auto     real if the repository has the echo_sync example, else standin
#   --profile debug reuses what `cargo test` already built (no second compile).
# Env: EXUVIA_CACHE (rootfs cache), CARGO_TARGET_DIR, RELOADS (default 50).
# Closing line: "systemd-harness: N passed, M failed"; exit 0 iff M == 0.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
impl=auto suite=trixie only='' profile=${EXUVIA_SYSTEMD_PROFILE:-release}
while (($#)); do
  case $1 in
    --impl) impl=$2; shift 2 ;;
    --suite) suite=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    --profile) profile=$2; shift 2 ;;
    *) echo "run-all.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
if [[ $(id -u) != 0 ]]; then
  echo "run-all.sh: needs root (systemd-nspawn, apt)" >&2
  exit 2
fi
if [[ $impl == auto ]]; then
  impl=standin
  [[ -f $repo/examples/echo_sync.rs ]] && impl=real
fi
t_start=$(date +%s.%N)
secs() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

# Build the rootfs first, on its own, so its time is reported separately.
t=$(date +%s.%N)
"$here/rootfs.sh" "$suite" >/dev/null
echo "systemd-harness: rootfs $suite ready in $(secs "$t") s"

target=${CARGO_TARGET_DIR:-$repo/target}
if [[ $impl == real ]]; then
  t=$(date +%s.%N)
  flag=--release
  [[ $profile == debug ]] && flag=
  (cd "$repo" && cargo build $flag --examples --bin exuvia)
  echo "systemd-harness: cargo build ($profile) in $(secs "$t") s"
fi
payload=$target/systemd-tests/payload-$impl
"$here/payload.sh" --impl "$impl" --target-dir "$target" --profile "$profile" "$payload" >/dev/null
# The stand-in can inject faults the real binary cannot; its payload serves
# the negative control of the stop checks whatever $impl is.
standin_payload=$target/systemd-tests/payload-standin
[[ $impl == standin ]] || "$here/payload.sh" --impl standin "$standin_payload" >/dev/null

# The synchronous reload variant only once the CLI can drive it.
variants=(plain)
if [[ -x $payload/bin/exuvia ]] &&
  "$payload/bin/exuvia" reload --help 2>/dev/null | grep -q -- '--control'; then
  variants+=(execreload)
else
  echo "systemd-harness: SKIP broken/execreload (no 'exuvia reload --control' yet)"
fi

passed=0 failed=0 failures=()
# run_one EXPECT NAME SCENARIO [run.sh args...]; EXPECT=pass|fail (run.sh's verdict)
run_one() {
  local expect=$1 name=$2 scenario=$3
  shift 3
  [[ -n $only && $only != "$name" ]] && return 0
  local rc=0 t
  t=$(date +%s.%N)
  "$here/run.sh" --suite "$suite" --payload "${PAYLOAD:-$payload}" --scenario "$scenario" \
    --log "$target/systemd-tests/$suite-$name.log" "$@" || rc=$?
  local got=pass
  ((rc == 0)) || got=fail
  if [[ $got == "$expect" ]]; then
    passed=$((passed + 1))
    echo "systemd-harness: ok   $name (expected $expect, $(secs "$t") s)"
  else
    failed=$((failed + 1))
    failures+=("$name")
    echo "systemd-harness: FAIL $name (expected $expect, got $got, $(secs "$t") s)"
  fi
}

run_one pass reload50 reload50 --setenv "RELOADS=${RELOADS:-50}" --timeout 300
run_one pass replace replace --timeout 120
for v in "${variants[@]}"; do
  run_one pass "broken-$v" broken --variant "$v" --timeout 180
done
run_one pass stop stop --timeout 120
run_one pass sigkill sigkill --timeout 120
# Negative controls: plain restarts and crashes instead of handovers must be
# caught (new InvocationID; failed requests), or a green run means nothing.
run_one pass negative-restart reload50 --setenv ACTION=restart --setenv RELOADS=5 \
  --expect-fail-check reload --timeout 120
run_one pass negative-kill9 reload50 --setenv ACTION=kill9 --setenv RELOADS=5 \
  --expect-fail-check 'load_(echo|long)_no_failures' --timeout 120
# A successor spawned by a plain fork is an "alien" main PID: systemd
# SIGKILLs it on stop (units.md §0.1). The stop checks must see that.
PAYLOAD=$standin_payload run_one pass negative-alien-stop stop --setenv STANDIN_SINGLE_FORK=1 \
  --expect-fail-check 'b_exited_itself_main|b_no_sigkill' --timeout 120

echo "systemd-harness: impl=$impl suite=$suite total $(secs "$t_start") s"
((failed)) && echo "systemd-harness: failed: ${failures[*]}"
echo "systemd-harness: $passed passed, $failed failed"
((failed == 0))
