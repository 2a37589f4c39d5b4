# storm: reloads faster than upgrades can run, under load. A) 20 `systemctl reload
# --no-block` at once; B) three rounds of reload, restart, reload in quick succession
# (each a blocking systemctl in the background, so every job's result is seen).
# Asserted: at most one upgrade in flight at any time (counted from the service's log,
# upgrades.py), every job completes (none left queued, no systemctl that hangs), every
# restart succeeds and a reload fails only when systemd says the restart took its place
# ("canceled"), systemd never records a failure of the unit, the unit ends active with
# one process and no automatic restart, and no request fails (the socket unit keeps the
# listener through the restarts).
# shellcheck source=/dev/null
source /run/exuvia-vm/faults.sh
load_start echo "$MODE" "$CONNECTIONS"
sleep 0.5
cursor=$(journalctl -n 0 --show-cursor | sed -n 's/^-- cursor: //p')
settled() { unit_state && [[ $S_STATE == active/running ]] && (($(cgroup_procs) == 1)) && no_jobs; }

# A) the burst.
unit_state
pid_a=$S_PID
t0=$(now_ms)
declare -a burst=()
for ((i = 0; i < 20; i++)); do
  timeout 30 systemctl reload --no-block "$SVC" &
  burst+=($!)
done
bad=0
for p in "${burst[@]}"; do wait "$p" || bad=$((bad + 1)); done
wait_for 60 no_jobs
jobs_ms=$(($(now_ms) - t0))
check burst_jobs_done "$(no_jobs && [[ $bad == 0 ]] && echo 1 || echo 0)" \
  "queued=20 enqueue_failed=$bad left='$(unit_jobs | tr '\n' ' ')' ms=$jobs_ms"
wait_for 15 settled
check burst_unit "$(settled && [[ $S_PID != "$pid_a" && $S_INV == "$INV0" && $S_NR == "$NR0" ]] && echo 1 || echo 0)" \
  "mainpid=$pid_a->$S_PID state=$S_STATE inv_same=$([[ $S_INV == "$INV0" ]] && echo 1 || echo 0) nrestarts=$NR0->$S_NR procs=$(cgroup_procs)"
SUM_RELOADS=$((SUM_RELOADS + 20))

# B) reload, restart, reload, three times. Each restart is a start, and so may be a
# socket-triggered start right after its stop: three rounds can exceed the unit's
# StartLimitBurst=, which would refuse the start for a reason that is not under test.
# Between rounds, once the unit has settled (active), its start counter is reset.
declare -a kinds=() pids=()
for ((r = 0; r < 3; r++)); do
  wait_for 30 settled && systemctl reset-failed "$SVC"
  for kind in reload restart reload; do
    n=${#pids[@]}
    timeout 120 systemctl "$kind" "$SVC" >"$WORK/mix-$n.out" 2>&1 &
    pids+=($!) kinds+=("$kind")
    # The restart lands on a reload in flight once its client is asking (see client_asking:
    # before, systemd's SIGTERM kills any ExecReload= program and records a failure).
    if ((${#kinds[@]} % 3 == 1)); then
      client_asking 5 || info "storm: round $r: no reload client seen asking within 5 s"
    fi
    sleep 0.05
  done
  sleep 0.5
done
hung=0 failed_restart=0 failed_reload=0 canceled=0
for n in "${!pids[@]}"; do
  rc=0
  wait "${pids[$n]}" || rc=$?
  why=$(tr '\n' ' ' <"$WORK/mix-$n.out")
  if ((rc == 124)); then
    hung=$((hung + 1))
  elif ((rc != 0)) && [[ ${kinds[$n]} == restart ]]; then
    failed_restart=$((failed_restart + 1))
  elif ((rc != 0)) && [[ $why == *canceled* ]]; then
    canceled=$((canceled + 1))
  elif ((rc != 0)); then
    failed_reload=$((failed_reload + 1))
  fi
  ((rc != 0)) && info "storm: systemctl ${kinds[$n]} #$n rc=$rc: $why"
done
SUM_RELOADS=$((SUM_RELOADS + ${#pids[@]}))
wait_for 30 settled
check mix_jobs_done "$([[ $hung == 0 ]] && no_jobs && echo 1 || echo 0)" \
  "commands=${#pids[@]} hung=$hung left='$(unit_jobs | tr '\n' ' ')'"
check mix_verdicts "$([[ $failed_restart == 0 && $failed_reload == 0 ]] && echo 1 || echo 0)" \
  "failed_restarts=$failed_restart failed_reloads=$failed_reload reloads_canceled_by_a_restart=$canceled"
check mix_unit "$(settled && [[ $S_NR == "$NR0" ]] && echo 1 || echo 0)" \
  "state=$S_STATE nrestarts=$NR0->$S_NR procs=$(cgroup_procs) mainpid=$S_PID"
failures=$(journalctl --no-pager -o cat -u "$SVC" --after-cursor "$cursor" |
  grep -E "Failed with result|Main process exited, code=(killed|dumped)|timed out" | sort | uniq -c | tr -s ' ' | tr '\n' ';')
check unit_never_failed "$([[ -z $failures ]] && echo 1 || echo 0)" "systemd='${failures:-none}'"

read -r counts < <(python3 /run/exuvia-vm/upgrades.py "$SVC" "$cursor")
info "storm: upgrades from the service's log: $counts"
inflight=$(sed -n 's/.*max_in_flight=\([0-9]*\).*/\1/p' <<<"$counts")
started=$(sed -n 's/.*started=\([0-9]*\).*/\1/p' <<<"$counts")
check at_most_one_upgrade_in_flight "$([[ ${inflight:-9} -le 1 && ${started:-0} -ge 1 ]] && echo 1 || echo 0)" "$counts"
metric storm "burst_jobs_ms=$jobs_ms $counts canceled=$canceled"
sleep 0.5
load_stop echo
check_load echo 100
