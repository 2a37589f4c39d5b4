#!/usr/bin/env python3
"""Upgrades of an exuvia service as its own log tells them, for `exuvia vm`'s storm scenario.

Usage: upgrades.py UNIT CURSOR  (journal entries of UNIT after CURSOR)
Prints one line: started=N handed_over=N failed=N max_in_flight=N unresolved=N

An upgrade is in flight from the line "successor started … successor_pid=S" (logged by
the main that started it) until either side says it is over: S took over ("handover
complete: this generation is the only one accepting", "… gone; taking over alone"), or
its starter handed over ("handover complete … successor_pid=S") or gave up ("upgrade
failed"). Each end is logged by a process before it can start the next upgrade, and one
process's lines reach the journal in order, so the journal's order is enough to count
how many were in flight at once.
"""
import json
import re
import subprocess
import sys

STARTED = re.compile(r"successor started\b.*\bsuccessor_pid=(\d+)")
HANDED = re.compile(r"handover complete\b.*\bsuccessor_pid=(\d+)")
TOOK_OVER = ("this generation is the only one accepting", "taking over alone")
FAILED = "upgrade failed; this generation keeps serving"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def message(entry):
    m = entry.get("MESSAGE", "")
    if isinstance(m, list):  # journald stores non-UTF-8 or control bytes as an array
        m = bytes(m).decode("utf-8", "replace")
    return ANSI.sub("", m or "")


def main():
    unit, cursor = sys.argv[1:3]
    out = subprocess.run(
        ["journalctl", "--no-pager", "-o", "json", "-u", unit, "--after-cursor", cursor],
        capture_output=True, text=True, check=False).stdout
    in_flight = {}  # successor pid -> starter pid
    started = handed = failed = peak = 0
    for line in out.splitlines():
        try:
            e = json.loads(line)
        except ValueError:
            continue
        pid = int(e.get("_PID", 0) or 0)
        msg = message(e)
        m = STARTED.search(msg)
        if m:
            started += 1
            in_flight[int(m.group(1))] = pid
            peak = max(peak, len(in_flight))
        elif (h := HANDED.search(msg)) and int(h.group(1)) in in_flight:
            del in_flight[int(h.group(1))]
            handed += 1
        elif any(t in msg for t in TOOK_OVER) and pid in in_flight:
            del in_flight[pid]
            handed += 1
        elif FAILED in msg:
            for s, starter in list(in_flight.items()):
                if starter == pid:
                    del in_flight[s]
                    failed += 1
    print(f"started={started} handed_over={handed} failed={failed} "
          f"max_in_flight={peak} unresolved={len(in_flight)}")


if __name__ == "__main__":
    main()
