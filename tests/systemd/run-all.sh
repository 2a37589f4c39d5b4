#!/usr/bin/env bash
# Run every real-systemd scenario, each in a fresh container (boot ~0.5 s).
# This is the entry point for .ci/run; it needs root, apt access to the
# Debian archive (first run only) and ~200 MB in $EXUVIA_CACHE.
#
# Usage: run-all.sh [--impl auto|real|standin] [--suite trixie] [--only NAME]
#                   [--profile release|debug] [--set core,shipped] [--no-build]
#   --set     comma list: core (test units, all variants, negative controls),
#             shipped (units/ — the generated units — every scenario),
#             shipped252 (units/systemd-252/ — for a systemd 252 suite)
#   --no-build  the binaries are built already (tests/systemd/matrix.sh)
#   auto     real if the repository has the echo_sync example, else standin
#   --profile debug reuses what `cargo test` already built (no second compile).
# Env: EXUVIA_CACHE (rootfs cache), CARGO_TARGET_DIR, RELOADS (default 50).
# Closing line: "systemd-harness: N passed, M failed"; exit 0 iff M == 0.
# Every run also appends one row to $target/systemd-tests/results.tsv
# (suite, name, verdict, seconds, requests, failed, reloads, p50, p99 in ms),
# which summary.sh turns into the matrix table.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
impl=auto suite=trixie only='' profile=${EXUVIA_SYSTEMD_PROFILE:-release} sets=core,shipped build=1
while (($#)); do
  case $1 in
    --impl) impl=$2; shift 2 ;;
    --suite) suite=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    --profile) profile=$2; shift 2 ;;
    --set) sets=$2; shift 2 ;;
    --no-build) build=0; shift ;;
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
if [[ $impl == real ]] && ((build)); then
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

summary=$target/systemd-tests/summary-$suite.txt
: >"$summary"
results=$target/systemd-tests/results.tsv
systemd_version=$(chroot "$("$here/rootfs.sh" "$suite" 2>/dev/null | tail -1)" systemctl --version | head -1 | awk '{print $2, $3}')
say() { echo "systemd-harness: $*" | tee -a "$summary"; }

# The synchronous reload variant only once the CLI can drive it.
execreload=0
if [[ -x $payload/bin/exuvia ]] &&
  "$payload/bin/exuvia" reload --help 2>/dev/null | grep -q -- '--control'; then
  execreload=1
else
  say "SKIP broken-execreload (no 'exuvia reload --control' yet)"
fi
shipped=0
[[ -d $payload/shipped-units ]] && shipped=1

passed=0 failed=0 failures=()
# run_one NAME SCENARIO [run.sh args...]: run.sh must exit 0 (negative
# controls pass --expect-fail-check, so they "pass" by failing that check).
run_one() {
  local name=$1 scenario=$2
  shift 2
  [[ -n $only && $only != "$name" ]] && return 0
  local rc=0 t out=$target/systemd-tests/$suite-$name.out
  t=$(date +%s.%N)
  "$here/run.sh" --suite "$suite" --payload "${PAYLOAD:-$payload}" --scenario "$scenario" \
    --log "$target/systemd-tests/$suite-$name.log" "$@" 2>&1 | tee "$out" || rc=$?
  grep -E 'RESULT metric=(reload_ms|requests|broken_|[ab]_stop |sigkill|restart)' "$out" >>"$summary" || true
  "$here/summary.sh" row "$suite" "$systemd_version" "$name" "$rc" "$(secs "$t")" "$out" >>"$results"
  if ((rc == 0)); then
    passed=$((passed + 1))
    say "ok   $name ($(secs "$t") s)"
  else
    failed=$((failed + 1))
    failures+=("$name")
    say "FAIL $name ($(secs "$t") s; log $target/systemd-tests/$suite-$name.log)"
  fi
}

has_set() { [[ ,$sets, == *,$1,* ]]; }
if has_set core; then
  run_one reload50 reload50 --setenv "RELOADS=${RELOADS:-50}" --timeout 300
  run_one replace replace --timeout 120
  run_one broken-plain broken --variant plain --timeout 180
  ((execreload)) && run_one broken-execreload broken --variant execreload --timeout 180
  run_one stop stop --timeout 120
  run_one sigkill sigkill --timeout 120
  run_one restart restart --timeout 120
fi
# The units `exuvia unit` generates (units/), every scenario, same binary.
if has_set shipped; then
  if ((shipped)); then
    run_one shipped-reload50 reload50 --variant shipped --setenv "RELOADS=${RELOADS:-50}" --timeout 300
    run_one shipped-replace replace --variant shipped --timeout 120
    run_one shipped-broken broken --variant shipped --timeout 180
    run_one shipped-stop stop --variant shipped --timeout 120
    run_one shipped-sigkill sigkill --variant shipped --timeout 120
    run_one shipped-restart restart --variant shipped --timeout 120
  else
    say "SKIP shipped-unit runs (no units/exuvia-echo.{service,socket})"
  fi
fi
# systemd < 253: Type=notify + ExecReload=kill -HUP (units/systemd-252/).
if has_set shipped252; then
  run_one shipped252-reload50 reload50 --variant shipped252 --setenv "RELOADS=${RELOADS:-50}" --timeout 300
  run_one shipped252-replace replace --variant shipped252 --timeout 120
  run_one shipped252-broken broken --variant shipped252 --timeout 180
  run_one shipped252-stop stop --variant shipped252 --timeout 120
  run_one shipped252-sigkill sigkill --variant shipped252 --timeout 120
  run_one shipped252-restart restart --variant shipped252 --timeout 120
fi
if has_set core; then
  # Negative controls: plain restarts and crashes instead of handovers must be
  # caught (new InvocationID; failed requests), or a green run means nothing.
  run_one negative-restart reload50 --setenv ACTION=restart --setenv RELOADS=5 --setenv DRAIN_HARD=1 \
    --expect-fail-check 'reload|check_unit' --timeout 120
  # No successor ever starts: `exuvia check --unit` (or the driver) must say so.
  run_one negative-no-handover reload50 --variant shipped --setenv BREAK_SUCCESSOR=1 --setenv RELOADS=3 \
    --setenv DRAIN_HARD=1 --expect-fail-check 'check_unit|reload' --timeout 120
  run_one negative-kill9 reload50 --setenv ACTION=kill9 --setenv RELOADS=5 --setenv DRAIN_HARD=1 \
    --expect-fail-check 'load_(echo|long)_no_failures' --timeout 120
  # A successor spawned by a plain fork is an "alien" main PID: systemd
  # SIGKILLs it on stop (units.md §0.1). The stop checks must see that.
  PAYLOAD=$standin_payload run_one negative-alien-stop stop --setenv STANDIN_SINGLE_FORK=1 \
    --expect-fail-check 'b_exited_itself_main|b_no_sigkill' --timeout 120
fi

say "impl=$impl profile=$profile suite=$suite systemd=$systemd_version sets=$sets total $(secs "$t_start") s"
((failed)) && say "failed: ${failures[*]}"
say "$passed passed, $failed failed"
# The closing summary under its historical name too (.ci/run prints it).
cp "$summary" "$target/systemd-tests/summary.txt"
((failed == 0))
