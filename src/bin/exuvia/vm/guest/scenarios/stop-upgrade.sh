# stop-upgrade: `systemctl stop` of the service while an upgrade is in flight, at two steps:
#   A) the successor is still starting (a stand-in that takes SLOW_S before the real binary
#      runs);
#   B) the successor said `ready` and the old main is handing its live connections over:
#      both are stopped (SIGSTOP) at `ready`, the old main is let go into the hand-off, and
#      the stop comes while the successor has not answered yet (systemd's SIGTERM and
#      SIGCONT reach it with the offer waiting).
# The stop must win cleanly each time: the stop job succeeds, every process of the unit
# (old main, successor, reload client) is gone when it returns, systemd records a clean
# deactivation (no "Failed with result"), and `systemctl start` works after. The socket
# unit stays up, as an operator stopping only the service leaves it: clients keep
# connecting and wait in its backlog, and a connection is either handed over or drained
# by the process that keeps it, so the stop costs no request.
# shellcheck source=/dev/null
source /run/exuvia-vm/faults.sh
needs_binary stop-upgrade
slow_stand_in

# stop_now PHASE: the stop and its checks (PIDS: the unit's processes before it).
stop_now() {
  local phase=$1 cursor t0 rc=0 stop_ms p journal failed_line
  local -a left=()
  cursor=$(journalctl -n 0 --show-cursor | sed -n 's/^-- cursor: //p')
  t0=$(now_ms)
  timeout 120 systemctl stop "$SVC" 2>"$WORK/stop.err" || rc=$?
  stop_ms=$(($(now_ms) - t0))
  for p in "${PIDS[@]}"; do dead "$p" || left+=("$p"); done
  journal=$(journalctl --no-pager -o cat -u "$SVC" --after-cursor "$cursor" | sed 's/\x1b\[[0-9;]*m//g')
  grep -iE 'Failed with|Deactivated|Control process|Main process|New main|Killing|timed out|hand-off|upgrade failed' <<<"$journal" |
    head -12 | sed "s/^/INFO stop-upgrade $phase: /"
  check "${phase}_stop_rc" "$([[ $rc == 0 ]] && echo 1 || echo 0)" "rc=$rc ms=$stop_ms"
  check "${phase}_nothing_left" "$([[ ${#left[@]} == 0 ]] && echo 1 || echo 0)" \
    "procs_at_stop=${#PIDS[@]} pids='${PIDS[*]}' still_alive='${left[*]}'"
  failed_line=$(grep -m1 -E "Failed with result|Main process exited, code=(killed|dumped)|timed out" <<<"$journal")
  check "${phase}_stop_clean" "$([[ -z $failed_line ]] && grep -q 'Deactivated successfully' <<<"$journal" && echo 1 || echo 0)" \
    "systemd='${failed_line:-Deactivated successfully}'"
  metric "stop_upgrade_$phase" "ms=$stop_ms procs_at_stop=${#PIDS[@]}"
}

# start_again PHASE: the real binary back, start (the socket may have done it already),
# and one reload must hand over.
start_again() {
  local phase=$1 rc=0
  replace_binary "$WORK/good-binary"
  timeout 60 systemctl start "$SVC" 2>"$WORK/start.err" || rc=$?
  unit_state
  check "${phase}_start_after" "$([[ $rc == 0 && $S_STATE == active/running && $S_PID != 0 ]] && echo 1 || echo 0)" \
    "rc=$rc state=$S_STATE mainpid=$S_PID"
  # shellcheck disable=SC2034 # the baseline reload_ok compares with
  INV0=$S_INV NR0=$S_NR
  reload_plain
  check "${phase}_reload_after" "$(reload_ok && echo 1 || echo 0)" "$(reload_fields)"
}

for phase in a b; do
  load_start "$phase" "$MODE" "$CONNECTIONS"
  sleep 0.5
  old=$(prop MainPID)
  replace_binary "$WORK/slow"
  reload_bg
  if ! successor_waiting "$old" 10; then
    check "${phase}_successor_started" 0 "no stand-in successor holding the handover within 10 s"
  else
    # The stop replaces a reload whose client is asking (client_asking, faults.sh).
    client_asking 10 || check "${phase}_client_asking" 0 "no reload client connected within 10 s"
    mapfile -t PIDS <"/sys/fs/cgroup$(prop ControlGroup)/cgroup.procs"
    if [[ $phase == b ]]; then
      stop_proc "$old"
      seen=0
      wait_for 15 ready_sent "$old" "$SUCC" && seen=1
      check b_ready_caught "$seen" "successor=$SUCC old=$old"
      stop_proc "$SUCC"
      kill -CONT "$old"
      # Into the hand-off: the old main offers, the stopped successor cannot answer yet.
      sleep 0.3
    fi
    stop_now "$phase"
  fi
  reload_bg_rc
  info "stop-upgrade $phase: the reload in flight ended with rc=$RB_RC: $RB_ERR"
  start_again "$phase"
  sleep 0.5
  load_stop "$phase"
  check_load "$phase" 50
done
