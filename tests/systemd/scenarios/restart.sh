# restart: `systemctl restart` (not a reload) while the socket unit holds the
# listener. What is asserted, and why:
# - every short request succeeds: the service drains in-flight requests on
#   SIGTERM, and connections made while no process runs wait in the socket's
#   backlog until the new instance accepts them (load: one request per
#   connection, so "in flight" is short and always finishes within the drain);
# - a restart is a new service instance: rc 0, new MainPID, NEW InvocationID,
#   active, NRestarts unchanged (only automatic restarts count), and the
#   socket unit never left `active` (same InvocationID);
# - long-lived connections are not loaded here: a restart ends the process
#   that holds them once its drain deadline passes (that is what a reload
#   avoids; reload50 asserts they survive).
# Three restarts: the shipped unit allows 5 starts per 60 s (StartLimitBurst).
n=${RESTARTS:-3}
sock_inv=$(prop InvocationID "$SOCK")
load_start echo echo 16
sleep 0.5
inv_prev=$INV0
for ((i = 1; i <= n; i++)); do
  ACTION=restart reload_once
  ok=$([[ $R_RC == 0 && $R_NEW != "$R_OLD" && $R_NEW != 0 && $R_INV != "$inv_prev" && -n $R_INV &&
    $R_STATE == active/running && $R_NR == "$NR0" ]] && echo 1 || echo 0)
  check restart "$ok" "i=$i rc=$R_RC ms=$R_MS mainpid=$R_OLD->$R_NEW inv_new=$([[ $R_INV != "$inv_prev" ]] && echo 1 || echo 0) state=$R_STATE nrestarts=$R_NR"
  inv_prev=$R_INV
  sleep 0.5
done
check socket_kept "$([[ $(prop ActiveState "$SOCK") == active && $(prop InvocationID "$SOCK") == "$sock_inv" ]] && echo 1 || echo 0)" \
  "state=$(prop ActiveState "$SOCK") inv_same=$([[ $(prop InvocationID "$SOCK") == "$sock_inv" ]] && echo 1 || echo 0)"
sleep 0.5
load_stop echo
check_load echo $((n * 100))
metric restart "n=$n"
