# notify: the handover datagram as systemd itself receives it (docs/systemd.md, "The
# protocol"). For two reloads under light load, PID 1 logs at debug level, where it names
# every notification it takes in and every barrier it answers. Asserted, from PID 1's log:
# - the old main's datagram MAINPID=<new main> + READY=1, with MAINPIDFDID= equal to the
#   new main's pidfd id (what this guest computes for it) where the kernel has unique
#   pidfd ids, else MAINPIDFD=1;
# - after it, a barrier from the old main ("Received barrier notification message"),
#   which systemd answers only for BARRIER=1 alone in its datagram with exactly one fd;
# - no warning about either: extra auxiliary fds (what an older systemd says about a
#   pidfd it did not expect), BARRIER=1 misuse, reception refused;
# and from the service: no complaint that the barrier went unconfirmed. The reload itself
# must complete: rc 0, new MainPID, same invocation.
# shellcheck source=/dev/null
source /run/exuvia-vm/faults.sh
load_start echo "$MODE" 4
sleep 0.3
pidfd_id() { python3 -c 'import os, sys; print(os.fstat(os.pidfd_open(int(sys.argv[1]))).st_ino)' "$1" 2>/dev/null; }
for i in 1 2; do
  old=$(prop MainPID)
  systemd-analyze log-level debug
  cursor=$(journalctl -n 0 --show-cursor | sed -n 's/^-- cursor: //p')
  reload_plain
  systemd-analyze log-level info
  check "reload_$i" "$(reload_ok && echo 1 || echo 0)" "$(reload_fields)"
  new=$R_NEW
  id=$(pidfd_id "$new")
  pid1=$(journalctl --no-pager -o cat _PID=1 --after-cursor "$cursor")
  # 254 writes the fields in parentheses, 257 and later after a colon.
  got=$(grep -m1 -E "Got notification message from PID ${old}[ :(]+MAINPID=$new," <<<"$pid1")
  field=none
  if [[ -n $id && $got == *", MAINPIDFDID=$id, READY=1"* ]]; then
    field=MAINPIDFDID
  elif [[ $got == *", MAINPIDFD=1, READY=1"* ]]; then
    field=MAINPIDFD
  fi
  check "handover_datagram_$i" "$([[ $field != none ]] && echo 1 || echo 0)" \
    "field=$field new_main=$new pidfd_id=${id:-none} pid1='${got:-no such notification}'"
  barrier=$(sed -n "/Got notification message from PID ${old}[ :(]*MAINPID=$new,/,\$p" <<<"$pid1" |
    grep -m1 "Received barrier notification message from PID $old\.")
  check "barrier_$i" "$([[ -n $barrier ]] && echo 1 || echo 0)" "pid1='${barrier:-no barrier from $old after the handover datagram}'"
  warn=$(grep -iE 'auxiliary fd|with BARRIER=1|reception only permitted|reception is disabled' <<<"$pid1" | sort -u | tr '\n' ';')
  check "no_warning_$i" "$([[ -z $warn ]] && echo 1 || echo 0)" "pid1_warnings='${warn:-none}'"
  svc=$(journalctl --no-pager -o cat -u "$SVC" --after-cursor "$cursor" |
    grep -iE 'did not confirm the handover|BARRIER=1 failed|sd_notify failed' | head -2 | tr '\n' ';')
  check "barrier_confirmed_$i" "$([[ -z $svc ]] && echo 1 || echo 0)" "service='${svc:-no complaint}'"
  metric "notify_$i" "field=$field systemd=$(systemctl --version | head -1 | cut -d' ' -f2)"
  sleep 0.3
done
load_stop echo
check_load echo 20
