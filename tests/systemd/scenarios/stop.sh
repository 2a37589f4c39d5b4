# stop: after several handovers, with an old generation still draining a
# long-lived connection, `systemctl stop` must let every process drain and
# exit by itself (no SIGKILL, Result=success), well within TimeoutStopSec.
load_start echo echo 8
load_start long long 4 "${LOAD_LONG_ARGS[@]}"
sleep 0.5
for i in 1 2 3; do
  reload_once
  check "reload_$i" "$(reload_ok && echo 1 || echo 0)" "$(reload_fields)"
  sleep 0.3
done
load_stop echo
check_load echo 100
procs=$(cgroup_procs)
check old_generation_draining "$([[ $procs -ge 2 ]] && echo 1 || echo 0)" "procs_in_cgroup=$procs"
main=$(prop MainPID)
cg=$(prop ControlGroup)
mapfile -t pids <"/sys/fs/cgroup$cg/cgroup.procs"
# PID 1 logs every child's death at debug level: how each process ended.
systemd-analyze log-level debug
cursor=$(journalctl -n 0 --show-cursor | sed -n 's/^-- cursor: //p')
t0=$(now_ms)
rc=0
timeout 60 systemctl stop "$SOCK" "$SVC" || rc=$?
stop_ms=$(($(now_ms) - t0))
load_stop long
systemd-analyze log-level info
metric stop "ms=$stop_ms rc=$rc procs_before=$procs pids=${pids[*]}"
res=$(prop Result)
check stop_result "$([[ $rc == 0 && $res == success && $(prop ActiveState) == inactive ]] && echo 1 || echo 0)" "rc=$rc result=$res state=$(prop ActiveState)"
journal=$(journalctl --no-pager -o cat _PID=1 --after-cursor "$cursor")
# Every generation (the main and the ones still draining) must have exited
# 0 by itself after SIGTERM, none killed.
for pid in "${pids[@]}"; do
  how=$(sed -n "s/^Child $pid (.*) died (\(code=[a-z]*, status=[^)]*\)).*/\1/p" <<<"$journal" | head -1)
  role=old; [[ $pid == "$main" ]] && role=main
  check "exited_itself_$role" "$([[ $how == "code=exited, status=0/SUCCESS" ]] && echo 1 || echo 0)" "pid=$pid how='${how:-not seen}'"
done
kills=$(grep -cE 'with signal SIGKILL|timed out|code=killed' <<<"$journal")
check no_sigkill "$([[ $kills == 0 ]] && echo 1 || echo 0)" "matching_journal_lines=$kills"
check stop_within_timeout "$([[ $stop_ms -lt 15000 ]] && echo 1 || echo 0)" "ms=$stop_ms"
svc_journal=$(journalctl --no-pager -o cat -u "$SVC" --after-cursor "$cursor")
info "service journal lines mentioning drain since stop: $(grep -ciE 'drain' <<<"$svc_journal")"
grep -iE 'drain|SIGTERM|Deactivated|Stopped' <<<"$svc_journal" | head -12 | sed 's/^/INFO journal: /'
