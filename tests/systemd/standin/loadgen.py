#!/usr/bin/python3
"""Test-only load client with the command line of `exuvia load`.

The driver uses it when the payload has no `exuvia` binary with a working
`load` subcommand, so the harness can be proven before the real client lands.
Every failed exchange (refused, reset, early EOF, wrong answer, timeout)
counts; exit status 0 iff there were none.
"""
import argparse
import json
import os
import signal
import socket
import sys
import threading
import time

REQS_PER_CONN = 40  # short connections, so new ones keep landing on new generations


def parse_duration(s):
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    for u in ("ms", "s", "m", "h"):
        if s.endswith(u):
            return float(s[: -len(u)]) * units[u]
    return float(s)


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.ok = 0
        self.failures = 0
        self.errors = {}
        self.connections = 0
        self.connections_lost = 0

    def add_ok(self):
        with self.lock:
            self.ok += 1

    def add_fail(self, err):
        with self.lock:
            self.failures += 1
            key = type(err).__name__ + ": " + str(err)[:80]
            self.errors[key] = self.errors.get(key, 0) + 1

    def lost(self):
        with self.lock:
            self.connections_lost += 1

    def add_conn(self):
        with self.lock:
            self.connections += 1


def exchange(f, msg):
    f.write(msg)
    got = f.readline()
    if not got:
        raise ConnectionError("eof before answer")
    if got != msg:
        raise ValueError(f"wrong answer {got[:40]!r}")


def echo_worker(wid, addr, a, stop, st):
    seq = 0
    while not stop.is_set():
        try:
            with socket.create_connection(addr, timeout=a.timeout) as s:
                st.add_conn()
                f = s.makefile("rwb", buffering=0)
                for _ in range(REQS_PER_CONN):
                    if stop.is_set():
                        break
                    seq += 1
                    exchange(f, f"w{wid} {seq}\n".encode())
                    st.add_ok()
        except (OSError, ValueError) as e:
            st.add_fail(e)
            time.sleep(0.01)


def long_worker(wid, addr, a, stop, st):
    """One connection for the whole run, like `exuvia load --mode long`;
    a lost connection is a failure and is replaced."""
    seq = 0
    while not stop.is_set():
        try:
            with socket.create_connection(addr, timeout=a.timeout) as s:
                st.add_conn()
                f = s.makefile("rwb", buffering=0)
                while not stop.is_set():
                    seq += 1
                    exchange(f, f"long{wid} {seq}\n".encode())
                    st.add_ok()
                    stop.wait(a.interval)
        except (OSError, ValueError) as e:
            st.add_fail(e)
            st.lost()
            time.sleep(0.01)


def main():
    p = argparse.ArgumentParser(prog="loadgen")
    p.add_argument("--target", default="tcp:127.0.0.1:8080")
    p.add_argument("--mode", choices=["echo", "long"], default="echo")
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--duration", default="60s")
    p.add_argument("--until-file")
    p.add_argument("--json")
    p.add_argument("--mark-on-signal", action="store_true")
    p.add_argument("--timeout", type=parse_duration, default=10.0)
    p.add_argument("--interval", type=parse_duration, default=0.2, help="long mode: pause between lines")
    a = p.parse_args()
    if not a.target.startswith("tcp:"):
        sys.exit("loadgen: only tcp:HOST:PORT targets")
    host, port = a.target[4:].rsplit(":", 1)
    addr = (host, int(port))

    st = Stats()
    stop = threading.Event()
    marks = []
    if a.mark_on_signal:
        signal.signal(signal.SIGUSR1, lambda *_: marks.append({"t": time.time(), "ok": st.ok, "failures": st.failures}))
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    worker = echo_worker if a.mode == "echo" else long_worker
    threads = [threading.Thread(target=worker, args=(i, addr, a, stop, st), daemon=True)
               for i in range(a.connections)]
    start = time.monotonic()
    for t in threads:
        t.start()
    end = start + parse_duration(a.duration)
    while not stop.is_set() and time.monotonic() < end:
        if a.until_file and os.path.exists(a.until_file):
            break
        stop.wait(0.05)
    stop.set()
    for t in threads:
        t.join(a.timeout + 5)
    # Same keys as `exuvia load --json` where they overlap.
    res = {"mode": a.mode, "ok": st.ok, "failed": st.failures, "failures_by_kind": st.errors,
           "connections_opened": st.connections, "marks": marks,
           "elapsed": round(time.monotonic() - start, 3)}
    if a.mode == "long":
        res["long_lived_survived"] = st.connections == a.connections and st.failures == 0
        res["connections_lost"] = st.connections_lost
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f)
    print(json.dumps(res), file=sys.stderr)
    sys.exit(0 if st.failures == 0 else 1)


if __name__ == "__main__":
    main()
