#!/usr/bin/env python3
"""One long-lived line-protocol connection for the `live` scenario of `exuvia vm`.

Why a separate client: the scenario must know which TCP connection it is (its local port)
to ask, after every reload, which process holds the server side of it. The load client
does not say; this does, in a few lines that run on any guest with python3.

Usage: longconn.py TARGET STATE_FILE STOP_FILE [INTERVAL_MS]
  TARGET      tcp:HOST:PORT or unix:PATH (as in vm.env)
  STATE_FILE  written once connected ({"local_port": N or null, "inode": N}) and again at
              the end (the report); the inode names the client's socket (`ss` shows it as the
              peer of the server's end of a unix connection)
  STOP_FILE   the client ends (orderly) once this file exists
Sends `N <payload>` every INTERVAL_MS (default 20) and reads its echo before the next;
any error, EOF, timeout or wrong answer ends it and is reported. It never reconnects:
a second connection would hide exactly what the scenario looks for.
"""
import json
import os
import re
import socket
import sys
import time

LIMIT_S = 900  # bounded even if the stop file never comes
TIMEOUT_S = 5.0


def connect(target):
    m = re.fullmatch(r"tcp:\[?([^\]]*)\]?:(\d+)", target)
    if m:
        host, port = m.group(1), int(m.group(2))
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.settimeout(TIMEOUT_S)
        s.connect((host, port))
        return s, s.getsockname()[1]
    if target.startswith("unix:"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(TIMEOUT_S)
        s.connect(target[5:])
        return s, None
    raise SystemExit(f"longconn: unsupported target {target}")


def write_state(path, data):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)


def main():
    target, state, stop = sys.argv[1:4]
    interval = (int(sys.argv[4]) if len(sys.argv) > 4 else 20) / 1000
    s, port = connect(target)
    local = s.getsockname()
    inode = os.fstat(s.fileno()).st_ino
    write_state(state, {"local_port": port, "inode": inode})
    report = {"local_port": port, "inode": inode, "lines": 0, "error": None, "max_rtt_ms": 0.0}
    buf = b""
    t_end = time.monotonic() + LIMIT_S
    n = 0
    while not os.path.exists(stop) and time.monotonic() < t_end:
        n += 1
        line = f"{n} live-{n:08d}-{'x' * (n % 37)}".encode()
        t0 = time.monotonic()
        try:
            s.sendall(line + b"\n")
            while b"\n" not in buf:
                chunk = s.recv(65536)
                if not chunk:
                    raise ConnectionError("EOF from the service")
                buf += chunk
        except (OSError, ConnectionError) as e:
            report["error"] = f"line {n}: {e}"
            break
        got, buf = buf.split(b"\n", 1)
        if got.rstrip(b"\r") != line:
            report["error"] = f"line {n}: sent {line[:40]!r}, got {got[:40]!r}"
            break
        report["lines"] = n
        report["max_rtt_ms"] = max(report["max_rtt_ms"], (time.monotonic() - t0) * 1000)
        time.sleep(interval)
    # Still the same socket at the end: the local address the kernel reports for it.
    try:
        report["local_port_end"] = s.getsockname()[1] if port is not None else None
        report["same_socket"] = s.getsockname() == local
    except OSError as e:
        report["same_socket"] = False
        report["error"] = report["error"] or f"getsockname: {e}"
    s.close()
    write_state(state, report)


if __name__ == "__main__":
    main()
