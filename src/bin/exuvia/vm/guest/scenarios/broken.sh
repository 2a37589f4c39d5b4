# broken: a successor that cannot start must leave the old process serving
# (same MainPID, no failed request, StatusText says why), and a hung one must
# not stay behind in the unit. Records what the operator sees: systemctl
# reload's rc, ReloadResult, systemctl status lines. Then the good binary
# comes back and a reload must succeed again.
# The broken binary is broken only as a successor (stand_in, faults.sh).
# Expected `systemctl reload` rc: non-zero when ExecReload= waits for the
# verdict (`… --wait`), else 0 (a plain notify-reload unit: systemd only sees
# READY=1 from the old process).
# shellcheck source=/dev/null
source /run/exuvia-vm/faults.sh
needs_binary broken
want_rc=$(want_failed_reload_rc)
stand_in broken-exit 'echo "broken successor: exiting 1" >&2; exit 1'
stand_in broken-hang 'echo "broken successor: hanging" >&2; exec sleep 3600'
load_start echo "$MODE" "$CONNECTIONS"
sleep 0.5
at_most_one_proc() { (($(cgroup_procs) <= 1)); }
for kind in exit hang; do
  replace_binary "$WORK/broken-$kind"
  pid0=$(prop MainPID)
  reload_plain
  status=$(prop StatusText)
  rr=$(prop ReloadResult 2>/dev/null)
  info "broken-$kind: systemctl reload rc=$R_RC after ${R_MS} ms, stderr: $(tr '\n' ' ' <"$WORK/reload.err")"
  systemctl status --no-pager "$SVC" 2>&1 | head -6 | sed "s/^/INFO broken-$kind status: /"
  metric "broken_${kind}" "rc=$R_RC ms=$R_MS reload_result=${rr:-n/a} status='$status'"
  check "broken_${kind}_old_stays_main" "$([[ $R_NEW == "$pid0" && $R_INV == "$INV0" && $R_STATE == active/running && $R_NR == "$NR0" ]] && echo 1 || echo 0)" "$(reload_fields)"
  check "broken_${kind}_status_text" "$([[ $status == *"upgrade failed"* ]] && echo 1 || echo 0)" "status='$status'"
  check "broken_${kind}_reload_rc" "$(rc_is "$R_RC" "$want_rc" && echo 1 || echo 0)" "rc=$R_RC want=$want_rc"
  # A hung successor must not be left behind in the unit's cgroup.
  wait_for 5 at_most_one_proc || true
  check "broken_${kind}_no_stray_process" "$([[ $(cgroup_procs) -le 1 ]] && echo 1 || echo 0)" "procs=$(cgroup_procs)"
done
replace_binary "$WORK/good-binary"
reload_plain
check reload_after_repair "$(reload_ok && echo 1 || echo 0)" "$(reload_fields)"
# One reload, one upgrade: with ExecReload= too, systemd must not also send
# ReloadSignal= and start a second handover behind the operator's back.
sleep 1.5
check one_upgrade_per_reload "$([[ $(prop MainPID) == "$R_NEW" ]] && echo 1 || echo 0)" "mainpid_after_1.5s=$(prop MainPID) expected=$R_NEW"
sleep 0.5
load_stop echo
check_load echo 200
