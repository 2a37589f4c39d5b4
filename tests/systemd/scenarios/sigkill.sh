# sigkill: after a handover, kill -9 the main process. Restart=on-failure
# brings the service back (NRestarts+1) and connections made during the gap
# wait in the socket's backlog instead of failing.
if ((${#CHECK[@]})); then
  run_check handover --mode echo --connections 16 --reloads 1 --interval 500ms
  check check_unit "$([[ $CK_PASS == 1 && $CK_RC == 0 && $CK_CHANGES == 1 && $CK_FAILED == 0 && $CK_OK -ge 100 ]] && echo 1 || echo 0)" \
    "rc=$CK_RC requests=$CK_OK failed=$CK_FAILED mainpid_changes=$CK_CHANGES"
else
  load_start echo echo 16
  sleep 0.5
  reload_once
  check reload "$(reload_ok && echo 1 || echo 0)" "$(reload_fields)"
  sleep 0.5
  load_stop echo
  check_load echo 100
fi
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
