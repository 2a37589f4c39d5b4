# kill-old: the old main is SIGKILLed while its successor is still starting (a stand-in that
# sleeps SLOW_S before the real binary runs, the manifest and listeners already waiting for
# it on the handover channel), in the middle of a reload, under load.
# Exactly one generation must end up serving: either the unit is active with the successor
# as its main, or systemd gives up on the reload and Restart= brings a new instance (with
# NotifyAccess=main nobody may announce a new main once the main is dead, so under
# systemd it is the restart; docs/systemd.md). Meanwhile the socket unit keeps the
# listener: clients wait in its backlog. The fault costs the requests in flight on the
# killed process (at most one per load connection), nothing else. Afterwards: one
# process in the unit, no job left, and a reload works again.
# shellcheck source=/dev/null
source /run/exuvia-vm/faults.sh
needs_binary kill-old
slow_stand_in
load_start echo "$MODE" "$CONNECTIONS"
sleep 0.5
unit_state
old=$S_PID nr=$S_NR inv=$S_INV
replace_binary "$WORK/slow"
systemctl reload --no-block "$SVC"
if successor_waiting "$old" 10; then
  kill -KILL "$old"
  t0=$(now_ms)
  info "kill-old: successor $SUCC started, old main $old SIGKILLed before it was ready"
  # Bounded by what systemd allows itself: the reload's timeout, then RestartSec=.
  bound_s=$((($(prop_ms TimeoutStartUSec) + $(prop_ms RestartUSec)) / 1000 + 20))
  settled() {
    unit_state
    [[ $S_STATE == active/running && $S_PID != 0 && $S_PID != "$old" ]] &&
      (($(cgroup_procs) == 1)) && no_jobs
  }
  wait_for "$bound_s" settled
  recover_ms=$(($(now_ms) - t0))
  unit_state
  outcome=none
  if [[ $S_NR == $((nr + 1)) && $S_INV != "$inv" ]]; then
    outcome=restarted
  elif [[ $S_PID == "$SUCC" && $S_NR == "$nr" && $S_INV == "$inv" ]]; then
    outcome=successor
  fi
  journalctl --no-pager -o short-monotonic -u "$SVC" | grep ' systemd\[1\]: ' |
    grep -iE 'reload|Main process|Failed with|restart|Killing' | tail -8 | sed 's/^/INFO kill-old: /'
  check one_generation_serves "$([[ $outcome != none ]] && settled && echo 1 || echo 0)" \
    "outcome=$outcome mainpid=$old->$S_PID successor=$SUCC state=$S_STATE nrestarts=$nr->$S_NR inv_same=$([[ $S_INV == "$inv" ]] && echo 1 || echo 0) procs=$(cgroup_procs) jobs=$(unit_jobs | wc -l) recover_ms=$recover_ms bound_s=$bound_s"
  check old_main_gone "$(dead "$old" && echo 1 || echo 0)" "pid=$old state=$(proc_state "$old")"
  metric kill_old "outcome=$outcome recover_ms=$recover_ms status='$(prop StatusText)' reload_result=$(prop ReloadResult)"
else
  check successor_started 0 "no stand-in successor holding the handover within 10 s"
fi
# Healthy afterwards: the real binary back, one more reload hands over.
replace_binary "$WORK/good-binary"
unit_state
# shellcheck disable=SC2034 # the baseline reload_ok compares with
INV0=$S_INV NR0=$S_NR
reload_plain
check reload_after "$(reload_ok && echo 1 || echo 0)" "$(reload_fields)"
sleep 0.5
load_stop echo
check_load_cost echo 100 "$CONNECTIONS" "requests in flight on the SIGKILLed main (at most one per load connection)"
