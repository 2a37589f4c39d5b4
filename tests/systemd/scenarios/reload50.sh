# reload50: RELOADS handovers under continuous short- and long-lived load.
# Sourced by driver.sh (see lib-driver.sh for the helpers).
n=${RELOADS:-50}
load_start echo echo 16
load_start long long 4 "${LOAD_LONG_ARGS[@]}"
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
metric reload_ms "n=${#durations[@]} p50=$(percentile 50 <<<"$sorted") p99=$(percentile 99 <<<"$sorted") max=$(tail -1 <<<"$sorted")"
metric requests "echo_ok=${LOAD_OK[echo]} long_ok=${LOAD_OK[long]}"
