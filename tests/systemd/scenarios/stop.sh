# stop: `systemctl stop` after handovers must let every process drain and
# exit by itself (exit 0 after SIGTERM, no SIGKILL, Result=success), within
# TimeoutStopSec. Two phases, because systemd treats them differently
# (units.md §0.1): A) an old generation is still draining a long-lived
# connection; B) only the handed-over main is left, holding a long-lived
# connection: an "alien" main (not a child of PID 1) is SIGKILLed at once.

established_to() { # PID: established connections the process owns on :8080
  ss -Htnp state established '( sport = :8080 )' 2>/dev/null | grep -c "pid=$1,"
}

# stop_phase LABEL: stop socket+service, then judge how each process ended.
stop_phase() {
  local label=$1 main cg cursor t0 rc=0 stop_ms res journal how role pid kills
  main=$(prop MainPID)
  cg=$(prop ControlGroup)
  local -a pids
  mapfile -t pids <"/sys/fs/cgroup$cg/cgroup.procs"
  metric "${label}_before_stop" "procs=${#pids[@]} pids=${pids[*]} main=$main main_connections=$(established_to "$main")"
  # PID 1 logs every child's death at debug level: how each process ended.
  systemd-analyze log-level debug
  cursor=$(journalctl -n 0 --show-cursor | sed -n 's/^-- cursor: //p')
  t0=$(now_ms)
  timeout 60 systemctl stop "$SOCK" "$SVC" || rc=$?
  stop_ms=$(($(now_ms) - t0))
  systemd-analyze log-level info
  metric "${label}_stop" "ms=$stop_ms rc=$rc"
  res=$(prop Result)
  check "${label}_stop_result" "$([[ $rc == 0 && $res == success && $(prop ActiveState) == inactive ]] && echo 1 || echo 0)" \
    "rc=$rc result=$res state=$(prop ActiveState)"
  journal=$(journalctl --no-pager -o cat _PID=1 --after-cursor "$cursor")
  for pid in "${pids[@]}"; do
    how=$(sed -n "s/^Child $pid (.*) died (\(code=[a-z]*, status=[^)]*\)).*/\1/p" <<<"$journal" | head -1)
    role=old
    [[ $pid == "$main" ]] && role=main
    check "${label}_exited_itself_$role" "$([[ $how == "code=exited, status=0/SUCCESS" ]] && echo 1 || echo 0)" \
      "pid=$pid how='${how:-not seen}'"
  done
  kills=$(grep -cE 'with signal SIGKILL|timed out|code=killed' <<<"$journal")
  check "${label}_no_sigkill" "$([[ $kills == 0 ]] && echo 1 || echo 0)" "matching_journal_lines=$kills"
  check "${label}_stop_within_timeout" "$([[ $stop_ms -lt 15000 ]] && echo 1 || echo 0)" "ms=$stop_ms"
  journalctl --no-pager -o cat -u "$SVC" --after-cursor "$cursor" |
    grep -iE 'drain|SIGTERM|SIGKILL|Deactivated|Failed' | head -8 | sed "s/^/INFO $label journal: /"
}

# Phase A: stop while the previous generation still drains long connections.
load_start long long 4 "${LOAD_LONG_ARGS[@]}"
# Quick succession: the first generation (holding the long-lived connections)
# must still be inside its 7 s drain when the stop comes.
if ((${#CHECK[@]})); then
  sleep 0.3
  run_check a_reloads --mode echo --connections 8 --reloads 3 --interval 100ms
  check a_check_unit "$([[ $CK_PASS == 1 && $CK_RC == 0 && $CK_CHANGES == 3 && $CK_FAILED == 0 && $CK_OK -ge 100 ]] && echo 1 || echo 0)" \
    "rc=$CK_RC requests=$CK_OK failed=$CK_FAILED mainpid_changes=$CK_CHANGES"
else
  load_start echo echo 8
  sleep 0.5
  for i in 1 2 3; do
    reload_once
    check "a_reload_$i" "$(reload_ok && echo 1 || echo 0)" "$(reload_fields)"
  done
  load_stop echo
  check_load echo 100
fi
procs=$(cgroup_procs)
check a_old_generation_draining "$([[ $procs -ge 2 ]] && echo 1 || echo 0)" "procs_in_cgroup=$procs"
stop_phase a
# Its connections end with the stop: counted, not judged.
load_stop long unjudged

# Phase B: only the handed-over main is left, and it holds connections.
systemctl start "$SOCK"
start_service
if ((${#CHECK[@]})); then
  run_check b_reload --mode echo --connections 8 --reloads 1 --interval 300ms
  check b_check_unit "$([[ $CK_PASS == 1 && $CK_RC == 0 && $CK_CHANGES == 1 && $CK_FAILED == 0 && $CK_OK -ge 50 ]] && echo 1 || echo 0)" \
    "rc=$CK_RC requests=$CK_OK failed=$CK_FAILED mainpid_changes=$CK_CHANGES"
else
  load_start echo echo 8
  sleep 0.3
  reload_once
  check b_reload "$(reload_ok && echo 1 || echo 0)" "$(reload_fields)"
  sleep 0.3
  load_stop echo
  check_load echo 50
fi
wait_for 20 test "$(cgroup_procs)" -eq 1
check b_only_main_left "$([[ $(cgroup_procs) == 1 ]] && echo 1 || echo 0)" "procs_in_cgroup=$(cgroup_procs)"
load_start longb long 2 "${LOAD_LONG_ARGS[@]}"
wait_for 5 test "$(established_to "$(prop MainPID)")" -ge 1
check b_main_has_connections "$([[ $(established_to "$(prop MainPID)") -ge 1 ]] && echo 1 || echo 0)" \
  "connections=$(established_to "$(prop MainPID)")"
stop_phase b
load_stop longb unjudged
