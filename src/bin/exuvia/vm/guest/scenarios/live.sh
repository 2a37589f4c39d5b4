# live: a long-lived connection lives through RELOADS `systemctl reload`s on the same TCP
# connection, for a service that hands its live connections to the successor inside the
# reload (docs/handover.md, "Live connections"). One client (longconn.py) talks on one
# connection every 20 ms; after each reload the server side of that very connection (its
# local port) must belong to the new main, and the old main must be gone soon after —
# no generation left behind. Short-lived load (and LONG more long-lived connections of the
# load client) run alongside. The service's own drain deadline applies: an old main that
# kept the connection instead of handing it over would cut it at that deadline.
# Line protocol only (--mode echo).
[[ $MODE == echo ]] || fatal "scenario live speaks the line protocol: use --mode echo"
# shellcheck source=/dev/null
source /run/exuvia-vm/faults.sh
n=$RELOADS
pause=$(awk -v m="${INTERVAL%ms}" 'BEGIN { print m / 1000 }')
load_start echo "$MODE" "$CONNECTIONS"
((LONG > 0)) && load_start long long "$LONG" --interval 200ms
state=$WORK/live.json
rm -f "$WORK/stop-live" "$state"
python3 /run/exuvia-vm/longconn.py "$TARGET" "$state" "$WORK/stop-live" 20 >"$WORK/live.out" 2>&1 &
live_pid=$!
wait_for 10 test -s "$state"
read -r port ino < <(python3 -c 'import json,sys; d = json.load(open(sys.argv[1])); print(d["local_port"], d["inode"])' "$state" 2>/dev/null)
info "live: long-lived connection from local port ${port:-?} (socket inode ${ino:-?})"
# The pid that holds the server side of the live connection: by ports for TCP, for a unix
# socket the end whose peer is the client's socket.
holder() {
  if [[ -n $TARGET_PORT && $port =~ ^[0-9]+$ ]]; then
    ss -Htnp state established "( sport = :$TARGET_PORT and dport = :$port )" 2>/dev/null |
      sed -n 's/.*pid=\([0-9]*\),.*/\1/p' | head -1
  elif [[ $ino =~ ^[0-9]+$ ]]; then
    ss -xpH 2>/dev/null | awk -v ino="$ino" '$8 == ino' | sed -n 's/.*pid=\([0-9]*\),.*/\1/p' | head -1
  else
    echo n/a
  fi
}
one_proc() { (($(cgroup_procs) == 1)); }
bad_reload=0 bad_holder=0 lingered=0 exit_max=0
declare -a exits=()
sleep 0.3
for ((i = 1; i <= n; i++)); do
  reload_plain
  if ! reload_ok; then
    bad_reload=$((bad_reload + 1))
    info "live: reload $i: $(reload_fields)"
  fi
  t0=$(now_ms)
  wait_for 5 one_proc || lingered=$((lingered + 1))
  e=$(($(now_ms) - t0))
  exits+=("$e")
  ((e > exit_max)) && exit_max=$e
  h=$(holder)
  if [[ $h != n/a && $h != "$R_NEW" ]]; then
    bad_holder=$((bad_holder + 1))
    info "live: reload $i: the live connection is held by pid ${h:-none}, the main is $R_NEW"
  fi
  sleep "$pause"
done
touch "$WORK/stop-live"
wait_for 10 dead "$live_pid"
wait "$live_pid" 2>/dev/null
report=$(python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
print(d.get("lines", 0), d.get("local_port"), d.get("local_port_end"), int(bool(d.get("same_socket"))), round(d.get("max_rtt_ms", -1)), repr(d.get("error") or "none"))
' "$state" 2>/dev/null) || report="0 ? ? 0 -1 'no report'"
read -r lines p0 p1 same rtt err <<<"$report"
SUM_REQ=$((SUM_REQ + lines))
check reloads_hand_over "$([[ $bad_reload == 0 ]] && echo 1 || echo 0)" "reloads=$n not_handed_over=$bad_reload"
check old_main_exits "$([[ $lingered == 0 ]] && echo 1 || echo 0)" \
  "reloads=$n old_main_still_there_after_5s=$lingered exit_ms_max=$exit_max exit_ms_p50=$(printf '%s\n' "${exits[@]}" | sort -n | percentile 50)"
check connection_follows_main "$([[ $bad_holder == 0 && $(holder) != n/a ]] && echo 1 || echo 0)" \
  "reloads=$n held_by_another_process=$bad_holder local_port=$p0"
check live_connection_kept "$([[ $err == "'none'" && $same == 1 && $p0 == "$p1" && $lines -ge $((n * 5)) ]] && echo 1 || echo 0)" \
  "lines=$lines local_port=$p0->$p1 same_socket=$same max_rtt_ms=$rtt error=$err"
[[ $err == "'none'" ]] || SUM_FAIL=$((SUM_FAIL + 1))
metric live "reloads=$n lines=$lines local_port=$p0 exit_ms_max=$exit_max max_rtt_ms=$rtt"
sleep 0.3
load_stop echo
check_load echo $((n * 10))
if ((LONG > 0)); then
  load_stop long
  check_load long $((n * 2))
fi
