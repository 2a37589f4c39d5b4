# reload50: RELOADS handovers under continuous short- and long-lived load.
# Sourced by driver.sh (see lib-driver.sh for the helpers).
# With `exuvia check --unit` in the payload, it does the reloads, drives the
# short-lived load and judges every reload (rc 0, new MainPID, same
# InvocationID, active, NRestarts unchanged); the driver keeps the
# long-lived load and re-checks the unit's end state itself.
n=${RELOADS:-50}
# Negative control (BREAK_SUCCESSOR=1): every successor exits at once, so no
# handover can happen; the reload assertions (exuvia check --unit, or the
# driver's) must fail even though systemctl reload returns 0.
if [[ ${BREAK_SUCCESSOR:-0} == 1 ]]; then
  printf '#!/bin/sh\nexit 1\n' >"$WORK/broken-exit"
  replace_binary "$WORK/broken-exit"
fi
load_start long long 4 "${LOAD_LONG_ARGS[@]}"
if ((${#CHECK[@]})); then
  pid_start=$(prop MainPID)
  sleep 0.3
  run_check reload50 --mode echo --connections 16 --reloads "$n" --interval 200ms
  check check_unit "$([[ $CK_PASS == 1 && $CK_RC == 0 ]] && echo 1 || echo 0)" \
    "rc=$CK_RC requests=$CK_OK failed=$CK_FAILED mainpid_changes=$CK_CHANGES reload_p50_ms=$CK_P50 p99_ms=$CK_P99"
  check mainpid_changes "$([[ $CK_CHANGES == "$n" ]] && echo 1 || echo 0)" "changes=$CK_CHANGES reloads=$n"
  check check_requests "$([[ $CK_FAILED == 0 && $CK_OK -ge $((n * 20)) ]] && echo 1 || echo 0)" \
    "requests=$CK_OK failures=$CK_FAILED min_requests=$((n * 20))"
  # Independent of the tool under test: the end state after n handovers.
  check end_state "$([[ $(prop InvocationID) == "$INV0" && $(prop NRestarts) == "$NR0" &&
    $(prop ActiveState) == active && $(prop MainPID) != "$pid_start" ]] && echo 1 || echo 0)" \
    "inv_same=$([[ $(prop InvocationID) == "$INV0" ]] && echo 1 || echo 0) nrestarts=$NR0->$(prop NRestarts) state=$(prop ActiveState) mainpid=$pid_start->$(prop MainPID)"
  sleep 0.3
  load_stop long
  check_load long $((n * 2))
  metric reload_ms "n=$CK_CHANGES p50=$CK_P50 p99=$CK_P99 max=$CK_MAX source=exuvia-check"
  metric requests "echo_ok=$CK_OK long_ok=${LOAD_OK[long]}"
  return 0 # sourced: back to driver.sh
fi
load_start echo echo 16
sleep 0.5
changes=0
durations=()
for ((i = 1; i <= n; i++)); do
  reload_once
  ok=0
  reload_ok && ok=1 && changes=$((changes + 1))
  check reload "$ok" "i=$i $(reload_fields)"
  durations+=("$R_MS")
  ((ok)) || break
  # Let the new generation carry traffic before the next handover.
  sleep 0.2
done
sleep 0.5
load_stop echo
load_stop long
check mainpid_changes "$([[ $changes == "$n" ]] && echo 1 || echo 0)" "changes=$changes reloads=$n"
check_load echo $((n * 20))
check_load long $((n * 2))
sorted=$(printf '%s\n' "${durations[@]}" | sort -n)
metric reload_ms "n=${#durations[@]} p50=$(percentile 50 <<<"$sorted") p99=$(percentile 99 <<<"$sorted") max=$(tail -1 <<<"$sorted") source=driver"
metric requests "echo_ok=${LOAD_OK[echo]} long_ok=${LOAD_OK[long]}"
