# stop: `systemctl stop` after handovers must let every process drain and
# exit by itself (exit 0 after SIGTERM, no SIGKILL, Result=success), within
# the unit's TimeoutStopSec=. Two phases, because systemd treats them
# differently (docs/systemd.md): A) an old generation is still draining a
# long-lived connection (for a service that hands its live connections over,
# docs/handover.md, no generation is left draining: the main holds them all
# and A checks that instead); B) only the handed-over main is left, holding a
# long-lived connection: an "alien" main (not a child of PID 1) is SIGKILLed
# at once. The deadlines are the unit's own: no drop-in shortens them.

established_to() { # PID: established connections the process owns on the target port
  [[ -n $TARGET_PORT ]] || { echo 0; return; }
  ss -Htnp state established "( sport = :$TARGET_PORT )" 2>/dev/null | grep -c "pid=$1,"
}

stop_us=$(systemd-analyze timespan "$(prop TimeoutStopUSec)" 2>/dev/null | sed -n 's/^ *μs: *\([0-9]*\)$/\1/p')
stop_limit_ms=$((${stop_us:-90000000} / 1000))
info "TimeoutStopSec=$(prop TimeoutStopUSec) (${stop_limit_ms} ms)"

# stop_phase LABEL: stop sockets + service, then judge how each process ended.
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
  # shellcheck disable=SC2086 # SOCKS is a list
  timeout 300 systemctl stop $SOCKS "$SVC" || rc=$?
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
  check "${label}_stop_within_timeout" "$([[ $stop_ms -lt $stop_limit_ms ]] && echo 1 || echo 0)" "ms=$stop_ms limit_ms=$stop_limit_ms"
  journalctl --no-pager -o cat -u "$SVC" --after-cursor "$cursor" |
    grep -iE 'drain|SIGTERM|SIGKILL|Deactivated|Failed' | head -8 | sed "s/^/INFO $label journal: /"
}

# Phase A: stop while the previous generation still drains long connections.
# Quick succession: the first generation (holding the long-lived
# connections) must still be inside its drain when the stop comes.
load_start long "$(long_mode)" 4 --interval 200ms
sleep 0.3
run_check a_reloads --connections 8 --reloads 3 --interval 100ms
check_ok a_check_unit 3 30
procs=$(cgroup_procs)
# Only the line protocol holds a connection open for sure; an HTTP server may
# close idle keep-alive connections at once.
if [[ $(long_mode) == long ]]; then
  main_conns=$(established_to "$(prop MainPID)")
  if ((procs >= 2)); then
    # stop_phase judges how each of them ends (a_exited_itself_old).
    info "a: $procs processes, an old generation still drains (main holds $main_conns connections)"
  else
    # Nothing older left: the long-lived connections went with the handovers.
    check a_connections_with_main "$([[ $main_conns -ge 4 ]] && echo 1 || echo 0)" \
      "procs_in_cgroup=$procs main_connections=$main_conns long_connections=4"
  fi
fi
stop_phase a
# Its connections end with the stop: counted, not judged.
load_stop long unjudged

# Phase B: only the handed-over main is left, and it holds connections.
start_units
run_check b_reload --connections 8 --reloads 1 --interval 300ms
check_ok b_check_unit 1 10
only_main() { (($(cgroup_procs) == 1)); }
wait_for 20 only_main
check b_only_main_left "$([[ $(cgroup_procs) == 1 ]] && echo 1 || echo 0)" "procs_in_cgroup=$(cgroup_procs)"
load_start longb "$(long_mode)" 2 --interval 200ms
if [[ $(long_mode) == long ]]; then
  main_connected() { (($(established_to "$(prop MainPID)") >= 1)); }
  wait_for 5 main_connected
  check b_main_has_connections "$([[ $(established_to "$(prop MainPID)") -ge 1 ]] && echo 1 || echo 0)" \
    "connections=$(established_to "$(prop MainPID)")"
fi
stop_phase b
load_stop longb unjudged
