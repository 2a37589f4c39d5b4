# restart: `systemctl restart` (not a reload) while the socket unit holds the
# listener. What is asserted, and why:
# - every short request succeeds: the service drains in-flight requests on
#   SIGTERM, and connections made while no process runs wait in the socket's
#   backlog until the new instance accepts them;
# - a restart is a new service instance: rc 0, new MainPID, NEW InvocationID,
#   active, NRestarts unchanged (only automatic restarts count), and the
#   socket units never left `active` (same InvocationID);
# - long-lived connections are not loaded here: a restart ends the process
#   that holds them once its drain deadline passes (that is what a reload
#   avoids; the reload scenario asserts they survive).
# Three restarts: generated units allow 5 starts per 60 s (StartLimitBurst).
n=3
declare -A sock_inv
for u in $SOCKS; do sock_inv[$u]=$(prop InvocationID "$u"); done
load_start echo "$MODE" "$CONNECTIONS"
sleep 0.5
inv_prev=$INV0
for ((i = 1; i <= n; i++)); do
  old=$(prop MainPID)
  t0=$(now_ms)
  rc=0
  timeout 120 systemctl restart "$SVC" || rc=$?
  ms=$(($(now_ms) - t0))
  unit_state
  SUM_RELOADS=$((SUM_RELOADS + 1))
  check restart "$([[ $rc == 0 && $S_PID != "$old" && $S_PID != 0 && $S_INV != "$inv_prev" && -n $S_INV &&
    $S_STATE == active/* && $S_NR == "$NR0" ]] && echo 1 || echo 0)" \
    "i=$i rc=$rc ms=$ms mainpid=$old->$S_PID inv_new=$([[ $S_INV != "$inv_prev" ]] && echo 1 || echo 0) state=$S_STATE nrestarts=$S_NR"
  inv_prev=$S_INV
  sleep 0.5
done
for u in $SOCKS; do
  check "socket_kept:$u" "$([[ $(prop ActiveState "$u") == active && $(prop InvocationID "$u") == "${sock_inv[$u]}" ]] && echo 1 || echo 0)" \
    "state=$(prop ActiveState "$u") inv_same=$([[ $(prop InvocationID "$u") == "${sock_inv[$u]}" ]] && echo 1 || echo 0)"
done
sleep 0.5
load_stop echo
check_load echo $((n * 10))
metric restart "n=$n"
