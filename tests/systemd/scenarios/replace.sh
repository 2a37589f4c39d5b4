# replace: the binary on disk is replaced (atomic rename) by a different
# program; a reload must hand over to the new program, with no failed request.
# With `exuvia check --unit`: it runs both reloads (onto the new program, then
# one driven by it) under its own short-lived load and judges them.
((${#CHECK[@]})) || load_start echo echo 16
load_start long long 4 "${LOAD_LONG_ARGS[@]}"
sleep 0.5
v=$(query VERSION)
check version_before "$([[ $v =~ ${EXPECT_OLD_VERSION:-^exuvia} ]] && echo 1 || echo 0)" "answer='$v' want='${EXPECT_OLD_VERSION:-}'"
replace_binary /payload/bin/exuvia-echo-new
if ((${#CHECK[@]})); then
  run_check replace --mode echo --connections 16 --reloads 2 --interval 300ms
  check check_unit "$([[ $CK_PASS == 1 && $CK_RC == 0 && $CK_CHANGES == 2 && $CK_FAILED == 0 ]] && echo 1 || echo 0)" \
    "rc=$CK_RC requests=$CK_OK failed=$CK_FAILED mainpid_changes=$CK_CHANGES"
fi
((${#CHECK[@]})) || {
  reload_once
  check reload "$(reload_ok && echo 1 || echo 0)" "$(reload_fields)"
}
# The old process may still win one accept right after READY=1.
seen=0
for ((i = 0; i < 25; i++)); do
  v=$(query VERSION)
  [[ $v =~ $EXPECT_NEW_VERSION ]] && { seen=1; break; }
  sleep 0.2
done
check version_after "$seen" "answer='$v' want='$EXPECT_NEW_VERSION'"
sleep 0.5
stale=0
for ((i = 0; i < 10; i++)); do
  v=$(query VERSION)
  [[ $v =~ $EXPECT_NEW_VERSION ]] || stale=$((stale + 1))
done
check only_new_version "$([[ $stale == 0 ]] && echo 1 || echo 0)" "stale_answers=$stale of 10"
if ((${#CHECK[@]})); then
  check end_state "$([[ $(prop InvocationID) == "$INV0" && $(prop NRestarts) == "$NR0" && $(prop ActiveState) == active ]] && echo 1 || echo 0)" \
    "state=$(prop ActiveState) nrestarts=$NR0->$(prop NRestarts)"
  load_stop long
  check_load long 4
  return 0 # sourced: back to driver.sh
fi
# A second reload, now driven by the replaced program.
reload_once
check reload_after_replace "$(reload_ok && echo 1 || echo 0)" "$(reload_fields)"
sleep 0.5
load_stop echo
load_stop long
check_load echo 200
check_load long 4
