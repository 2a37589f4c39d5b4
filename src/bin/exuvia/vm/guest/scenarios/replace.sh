# replace: the binary on disk is replaced (atomic rename, as a package
# manager does) by the successor (NEW_BIN, or a copy of the binary); two
# reloads under load must hand over to the new program: the main process
# then runs the new file (same inode), not the deleted one, and with PROBE
# set, fresh connections answer PROBE like the new version (PROBE_NEW).
needs_binary replace
((LONG > 0)) && load_start long "$(long_mode)" "$LONG" --interval 200ms
sleep 0.3
replace_binary "${NEW_BIN:-$BIN}"
new_inode=$(inode "$BIN")
run_check replace --connections "$CONNECTIONS" --reloads 2 --interval 300ms
check_ok check_unit 2 2
main=$(prop MainPID)
check runs_new_binary "$([[ $(inode "/proc/$main/exe") == "$new_inode" ]] && echo 1 || echo 0)" \
  "mainpid=$main exe='$(readlink "/proc/$main/exe")' inode=$(inode "/proc/$main/exe") want=$new_inode"
if [[ -n ${PROBE:-} && -n $TARGET_PORT ]]; then
  # The old process may still win one accept right after READY=1.
  seen=0 v=''
  for ((i = 0; i < 25; i++)); do
    v=$(query "$PROBE")
    [[ $v =~ $PROBE_NEW ]] && { seen=1; break; }
    sleep 0.2
  done
  check probe_new_version "$seen" "answer='$v' want='$PROBE_NEW'"
  sleep 0.5
  stale=0
  for ((i = 0; i < 10; i++)); do
    v=$(query "$PROBE")
    [[ $v =~ $PROBE_NEW ]] || stale=$((stale + 1))
  done
  check only_new_version "$([[ $stale == 0 ]] && echo 1 || echo 0)" "stale_answers=$stale of 10"
fi
unit_state
check end_state "$([[ $S_INV == "$INV0" && $S_NR == "$NR0" && $S_STATE == active/* ]] && echo 1 || echo 0)" \
  "state=$S_STATE nrestarts=$NR0->$S_NR"
if ((LONG > 0)); then
  load_stop long
  check_load long 4
fi
