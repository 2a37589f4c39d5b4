#!/usr/bin/env bash
# Boot a cached Debian rootfs under systemd-nspawn (real systemd as PID 1),
# run ONE driver scenario from the payload, and judge its RESULT lines.
#
# Usage: run.sh --suite SUITE --payload DIR --scenario NAME [--runner nspawn|vm]
#               [--variant plain|execreload|shipped|shipped252] [--timeout SECS] [--log FILE]
#               [--setenv KEY=VALUE]... [--expect-fail-check REGEX]
# Exit status: 0 only if the container exited 0, the driver printed
# `VERDICT pass`, at least one check ran and no check failed.
# With --expect-fail-check (negative controls): 0 only if the driver printed
# `VERDICT fail` and a check whose name matches REGEX failed.
# --runner vm boots the same rootfs (with a kernel) in qemu instead
# (tests/vm/boot.sh); the console parsing below is the same.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)

suite=trixie payload='' scenario='' variant=plain timeout=300 log='' runner=nspawn
setenv=() vmenv=() expect_fail=''
while (($#)); do
  case $1 in
    --suite) suite=$2; shift 2 ;;
    --payload) payload=$2; shift 2 ;;
    --scenario) scenario=$2; shift 2 ;;
    --variant) variant=$2; shift 2 ;;
    --runner) runner=$2; shift 2 ;;
    --timeout) timeout=$2; shift 2 ;;
    --log) log=$2; shift 2 ;;
    --setenv) setenv+=("systemd.setenv=$2") vmenv+=(--setenv "$2"); shift 2 ;;
    --expect-fail-check) expect_fail=$2; shift 2 ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ -n $payload && -n $scenario ]] || { echo "usage: run.sh --suite S --payload DIR --scenario NAME" >&2; exit 2; }
[[ -x $payload/driver.sh ]] || { echo "run.sh: $payload/driver.sh missing" >&2; exit 2; }
payload=$(cd "$payload" && pwd)
name=$suite-$scenario-$variant
[[ $runner == vm ]] && name=vm-$name
log=${log:-$repo/target/systemd-tests/$name.log}
mkdir -p "$(dirname "$log")"

secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

t0=$(date +%s.%N)
rc=0
if [[ $runner == vm ]]; then
  t1=$t0
  "$repo/tests/vm/boot.sh" --suite "$suite" --payload "$payload" --log "$log" --timeout "$timeout" \
    --setenv "SCENARIO=$scenario" --setenv "VARIANT=$variant" \
    "${vmenv[@]}" 2>&1 | sed "s/^/[$name] /" || rc=${PIPESTATUS[0]}
else
  rootfs=$("$here/rootfs.sh" "$suite" | tail -1)
  t1=$(date +%s.%N)
  echo "[$name] stage rootfs: $(secs "$t0" "$t1") s ($rootfs)"

  # Flags (see shared/research/vm-feasibility.md §4): no host systemd/D-Bus
  # (--register=no --keep-unit), never write into the cached rootfs
  # (--volatile=overlay), own loopback (--private-network), pure cgroup v2.
  # Own cgroup per container: nspawn puts the container at <its cgroup>/payload,
  # so two containers started from the same cgroup (parallel runs, other users
  # of this harness on the machine) would share one cgroup tree and see, stop
  # and kill each other's services.
  cg_root=/sys/fs/cgroup/unified
  [[ -f /sys/fs/cgroup/cgroup.controllers ]] && cg_root=/sys/fs/cgroup
  cg=$cg_root/exuvia-test.$name.$$
  mkdir -p "$cg" || cg=''
  [[ -n $cg ]] || echo "[$name] WARNING: no private cgroup under $cg_root; parallel containers may collide"
  ( [[ -z $cg ]] || echo "$BASHPID" >"$cg/cgroup.procs"
    exec env SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 timeout -k 10 "$timeout" \
    systemd-nspawn -q -D "$rootfs" --volatile=overlay --private-network \
    --register=no --keep-unit --console=read-only \
    --bind-ro="$payload:/payload" \
    -b systemd.show_status=error \
    systemd.run=/payload/driver.sh \
    systemd.run_success_action=exit systemd.run_failure_action=exit \
    "systemd.setenv=SCENARIO=$scenario" "systemd.setenv=VARIANT=$variant" \
    "${setenv[@]}" \
    >"$log" 2>&1 </dev/null ) || rc=$?
  # Empty by now; deepest first.
  [[ -z $cg ]] || find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true
fi
t2=$(date +%s.%N)

# Console output: CRLF, colour codes and the terminal resets systemd sends
# (ESC[!p, OSC 104) from the pty or the serial console.
clean=$(sed -e 's/\r//g' -e 's/\x1b\][^\x07]*\x07//g' -e 's/\x1b\[[0-9;?!]*[a-zA-Z]//g' "$log")
driver_start=$(sed -n 's/^STAGE driver_start epoch=\([0-9.]*\).*/\1/p' <<<"$clean" | head -1)
if [[ -n $driver_start ]]; then
  echo "[$name] stage boot-to-driver: $(secs "$t1" "$driver_start") s"
fi
grep -E '^STAGE [a-z0-9_-]+ ms=' <<<"$clean" | sed "s/^/[$name] /" || true
echo "[$name] stage $runner total: $(secs "$t1" "$t2") s (exit $rc)"

grep -E '^RESULT metric=' <<<"$clean" | sed "s/^/[$name] /" || true
failed=$(grep -cE '^RESULT check=.* ok=0( |$)' <<<"$clean" || true)
passed=$(grep -cE '^RESULT check=.* ok=1( |$)' <<<"$clean" || true)
grep -E '^RESULT check=.* ok=0( |$)' <<<"$clean" | sed "s/^/[$name] FAILED /" || true
verdict=$(sed -n 's/^VERDICT \(pass\|fail\)$/\1/p' <<<"$clean" | tail -1)

if [[ -n $expect_fail ]]; then
  if [[ $verdict == fail ]] && grep -qE "^RESULT check=($expect_fail) ok=0( |\$)" <<<"$clean"; then
    echo "[$name] PASS (negative control: check '$expect_fail' failed as it must)"
    exit 0
  fi
  echo "[$name] FAIL: negative control did not fail check '$expect_fail' (verdict '${verdict:-missing}'); console log: $log"
  exit 1
fi
why=''
((rc == 124 || rc == 137)) && why="timeout after ${timeout}s"
[[ -z $why && $rc != 0 ]] && why="container exit status $rc"
[[ -z $why && $verdict != pass ]] && why="verdict '${verdict:-missing}'"
[[ -z $why && $failed != 0 ]] && why="$failed failed checks"
[[ -z $why && $passed == 0 ]] && why="no check ran"
if [[ -n $why ]]; then
  echo "[$name] FAIL: $why ($passed passed, $failed failed); console log: $log"
  # The driver's own diagnostics, or the tail of the boot if it never ran.
  if grep -q '^---- diagnostics' <<<"$clean"; then
    sed -n '/^---- diagnostics/,/^---- end diagnostics/p' <<<"$clean" | sed "s/^/[$name] /"
  else
    tail -30 <<<"$clean" | sed "s/^/[$name] /"
  fi
  exit 1
fi
echo "[$name] PASS ($passed checks)"
