# sigkill: after a handover, kill -9 the main process. The unit's Restart=
# must bring the service back (NRestarts+1) and, with a socket unit holding
# the listener, connections made during the gap wait in its backlog instead
# of failing.
run_check handover --connections "$CONNECTIONS" --reloads 1 --interval 500ms
check_ok check_unit 1 10
victim=$(prop MainPID)
nr=$(prop NRestarts)
t0=$(now_ms)
kill -KILL "$victim"
# Clients connecting during the gap (client timeout 5 s > RestartSec + start).
load_start gap "$MODE" "$CONNECTIONS"
restarted() {
  unit_state
  [[ $S_NR == $((nr + 1)) && $S_STATE == active/* && $S_PID != "$victim" && $S_PID != 0 ]]
}
wait_for 20 restarted
gap_ms=$(($(now_ms) - t0))
unit_state
check restarted "$(restarted && echo 1 || echo 0)" "nrestarts=$nr->$S_NR mainpid=$victim->$S_PID state=$S_STATE gap_ms=$gap_ms"
sleep 1
load_stop gap
check_load gap 10
metric sigkill "gap_ms=$gap_ms"
