# sigkill: after a handover, kill -9 the main process. Restart=on-failure
# brings the service back (NRestarts+1) and connections made during the gap
# wait in the socket's backlog instead of failing.
load_start echo echo 16
sleep 0.5
reload_once
check reload "$(reload_ok && echo 1 || echo 0)" "$(reload_fields)"
sleep 0.5
load_stop echo
check_load echo 100
victim=$(prop MainPID)
nr=$(prop NRestarts)
t0=$(now_ms)
kill -KILL "$victim"
# Clients connecting during the gap (client timeout 10 s > RestartSec + start).
load_start gap echo 16
restarted() {
  [[ $(prop NRestarts) == $((nr + 1)) && $(prop ActiveState) == active && $(prop MainPID) != "$victim" && $(prop MainPID) != 0 ]]
}
wait_for 15 restarted
gap_ms=$(($(now_ms) - t0))
check restarted "$(restarted && echo 1 || echo 0)" "nrestarts=$nr->$(prop NRestarts) mainpid=$victim->$(prop MainPID) state=$(prop ActiveState) gap_ms=$gap_ms"
sleep 1
load_stop gap
check_load gap 100
metric sigkill "gap_ms=$gap_ms"
