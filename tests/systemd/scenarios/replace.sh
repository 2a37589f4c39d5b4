# replace: the binary on disk is replaced (atomic rename) by a different
# program; a reload must hand over to the new program, with no failed request.
load_start echo echo 16
load_start long long 4 "${LOAD_LONG_ARGS[@]}"
sleep 0.5
v=$(query VERSION)
check version_before "$([[ $v =~ ${EXPECT_OLD_VERSION:-^exuvia} ]] && echo 1 || echo 0)" "answer='$v' want='${EXPECT_OLD_VERSION:-}'"
replace_binary /payload/bin/exuvia-echo-new
reload_once
check reload "$(reload_ok && echo 1 || echo 0)" "$(reload_fields)"
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
# A second reload, now driven by the replaced program.
reload_once
check reload_after_replace "$(reload_ok && echo 1 || echo 0)" "$(reload_fields)"
sleep 0.5
load_stop echo
load_stop long
check_load echo 200
check_load long 4
