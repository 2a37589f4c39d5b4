# reload: RELOADS reloads under continuous short-lived load (MODE), judged
# one by one by `exuvia check --unit` (rc 0, new MainPID — or the same one
# with IN_PLACE=1 —, same InvocationID, active, NRestarts unchanged, no
# failed request), while LONG long-lived connections stay open across all of
# them. The unit's end state is re-checked here, independently of the judge.
# Sourced by driver.sh (see lib.sh for the helpers).
n=$RELOADS
((LONG > 0)) && load_start long "$(long_mode)" "$LONG" --interval 200ms
pid_start=$(prop MainPID)
sleep 0.3
run_check reload --connections "$CONNECTIONS" --reloads "$n" --interval "$INTERVAL"
check_ok check_unit "$n" $((n * 10))
end_state "$pid_start"
if ((LONG > 0)); then
  sleep 0.3
  load_stop long
  check_load long $((n * 2))
fi
metric reload_ms "n=$n p50=$CK_P50 p99=$CK_P99 max=$CK_MAX source=exuvia-check"
