# kill-new: the successor dies right after it said `ready`, before the handover, in two ways:
#   kill) SIGKILLed at once;
#   term) SIGTERMed while the old main is handing its live connections over (the offer is
#         waiting unanswered when the signal comes).
# Caught exactly: the old main is stopped (SIGSTOP) while its slow successor starts, the
# successor's `ready` is seen waiting unread on the old main's private socket, then the
# fault, then the old main goes on. It must not hand over to a dying process: it stays main
# with every connection (LONG long-lived ones included), keeps serving, says why in
# STATUS=, the reload reports the failure (rc non-zero with an ExecReload= that waits for
# the verdict), and nothing of the successor is left in the unit. Short requests: the
# old main's clients only wait while it is stopped (about SLOW_S, within their 5 s timeout);
# the fault may cost what the successor accepted between its `ready` and its death (at
# most one per load connection). Long-lived connections: none may be lost.
# shellcheck source=/dev/null
source /run/exuvia-vm/faults.sh
needs_binary kill-new
slow_stand_in
want_rc=$(want_failed_reload_rc)
long_conns=$((${LONG:-0} > 0 ? ${LONG:-0} : 4))
for how in kill term; do
  load_start "echo_$how" "$MODE" "$CONNECTIONS"
  load_start "long_$how" "$(long_mode)" "$long_conns" --interval 100ms
  sleep 0.5
  unit_state
  old=$S_PID inv=$S_INV nr=$S_NR
  replace_binary "$WORK/slow"
  reload_bg
  if successor_waiting "$old" 10 && stop_proc "$old"; then
    t0=$(now_ms)
    seen=0
    wait_for 15 ready_sent "$old" "$SUCC" && seen=1
    ready_ms=$(($(now_ms) - t0))
    check "${how}_ready_caught" "$seen" "successor=$SUCC old=$old after_ms=$ready_ms"
    if [[ $how == kill ]]; then
      kill -KILL "$SUCC"
      wait_for 5 dead "$SUCC"
      # A leader is a zombie before its other threads are gone; its pidfd reports the
      # exit only then (tests/faults.rs): let that happen before the old main looks.
      sleep 0.1
      kill -CONT "$old"
    else
      stop_proc "$SUCC"
      kill -CONT "$old"
      # The old main offers its connections; the stopped successor cannot answer yet.
      sleep 0.3
      kill -TERM "$SUCC"
      kill -CONT "$SUCC"
    fi
    frozen_ms=$(($(now_ms) - t0))
    reload_bg_rc
    wait_for 10 dead "$SUCC"
    unit_state
    status=$(prop StatusText)
    info "kill-new $how: systemctl reload rc=$RB_RC: $RB_ERR"
    journalctl --no-pager -o cat -u "$SVC" | sed 's/\x1b\[[0-9;]*m//g' |
      grep -E 'New main|Deactivated|Failed with|hand-off|handed over|upgrade failed' | tail -5 | sed "s/^/INFO kill-new $how: /"
    check "${how}_old_stays_main" "$([[ $S_PID == "$old" && $S_INV == "$inv" && $S_STATE == active/running && $S_NR == "$nr" ]] && echo 1 || echo 0)" \
      "mainpid=$old->$S_PID state=$S_STATE nrestarts=$nr->$S_NR inv_same=$([[ $S_INV == "$inv" ]] && echo 1 || echo 0)"
    check "${how}_status_text" "$([[ $status == *"upgrade failed"* ]] && echo 1 || echo 0)" "status='$status'"
    check "${how}_reload_rc" "$(rc_is "$RB_RC" "$want_rc" && echo 1 || echo 0)" "rc=$RB_RC want=$want_rc reload_result=$(prop ReloadResult)"
    at_most_one() { (($(cgroup_procs) <= 1)) && no_jobs; }
    wait_for 5 at_most_one
    check "${how}_no_stray_process" "$(at_most_one && echo 1 || echo 0)" "procs=$(cgroup_procs) jobs=$(unit_jobs | wc -l) successor_state=$(proc_state "$SUCC")"
    metric "kill_new_$how" "ready_after_ms=$ready_ms old_stopped_ms=$frozen_ms rc=$RB_RC status='$status'"
  else
    check "${how}_successor_started" 0 "no stand-in successor holding the handover within 10 s, or the old main $old did not stop"
    kill -CONT "$old" 2>/dev/null
    reload_bg_rc
  fi
  replace_binary "$WORK/good-binary"
  unit_state
  # shellcheck disable=SC2034 # the baseline reload_ok compares with
  INV0=$S_INV NR0=$S_NR
  reload_plain
  check "${how}_reload_after" "$(reload_ok && echo 1 || echo 0)" "$(reload_fields)"
  sleep 0.5
  load_stop "echo_$how"
  check_load_cost "echo_$how" 50 "$CONNECTIONS" "requests the successor accepted between its ready and its death (at most one per load connection)"
  load_stop "long_$how"
  check_load "long_$how" 5
done
