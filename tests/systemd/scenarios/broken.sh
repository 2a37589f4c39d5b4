# broken: a successor that cannot start must leave the old process serving
# (same MainPID, no failed request, StatusText says why). Records what the
# operator sees: systemctl reload's rc, ReloadResult, systemctl status lines.
# Then the good binary comes back and a reload must succeed again.
# Expected rc: 0 for the plain notify-reload unit (systemd only sees READY=1),
# non-zero for VARIANT=execreload (synchronous `exuvia reload --wait`).
case $VARIANT in
  execreload) want_rc=nonzero ;;
  *) want_rc=zero ;;
esac
cp "$BIN" "$WORK/good-binary"
printf '#!/bin/sh\necho "broken successor: exiting 1" >&2\nexit 1\n' >"$WORK/broken-exit"
printf '#!/bin/sh\necho "broken successor: hanging" >&2\nexec sleep 3600\n' >"$WORK/broken-hang"
load_start echo echo 16
sleep 0.5
for kind in exit hang; do
  replace_binary "$WORK/broken-$kind"
  pid0=$(prop MainPID)
  reload_once
  status=$(prop StatusText)
  rr=$(prop ReloadResult 2>/dev/null)
  info "broken-$kind: systemctl reload rc=$R_RC after ${R_MS} ms, stderr: $(tr '\n' ' ' <"$WORK/reload.err")"
  systemctl status --no-pager "$SVC" 2>&1 | head -6 | sed "s/^/INFO broken-$kind status: /"
  metric "broken_${kind}" "variant=$VARIANT rc=$R_RC ms=$R_MS reload_result=${rr:-n/a} status='$status'"
  check "broken_${kind}_old_stays_main" "$([[ $R_NEW == "$pid0" && $R_INV == "$INV0" && $R_STATE == active/running && $R_NR == "$NR0" ]] && echo 1 || echo 0)" "$(reload_fields)"
  check "broken_${kind}_status_text" "$([[ $status == *"upgrade failed"* ]] && echo 1 || echo 0)" "status='$status'"
  if [[ $want_rc == zero ]]; then rc_ok=$([[ $R_RC == 0 ]] && echo 1 || echo 0); else rc_ok=$([[ $R_RC != 0 ]] && echo 1 || echo 0); fi
  check "broken_${kind}_reload_rc" "$rc_ok" "rc=$R_RC want=$want_rc variant=$VARIANT"
  # A hung successor must not be left behind in the unit's cgroup.
  wait_for 5 test "$(cgroup_procs)" -le 1
  check "broken_${kind}_no_stray_process" "$([[ $(cgroup_procs) -le 1 ]] && echo 1 || echo 0)" "procs=$(cgroup_procs)"
done
replace_binary "$WORK/good-binary"
reload_once
check reload_after_repair "$(reload_ok && echo 1 || echo 0)" "$(reload_fields)"
# One reload, one upgrade: with ExecReload= too, systemd must not also send
# ReloadSignal= and start a second handover behind the operator's back.
sleep 1.5
check one_upgrade_per_reload "$([[ $(prop MainPID) == "$R_NEW" ]] && echo 1 || echo 0)" "mainpid_after_1.5s=$(prop MainPID) expected=$R_NEW"
sleep 0.5
load_stop echo
check_load echo 200
