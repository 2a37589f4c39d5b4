#!/usr/bin/python3
"""A line-echo server that knows nothing of exuvia: it takes its listener from a .socket unit
and reloads in place the plain Type=notify-reload way (RELOADING=1 with MONOTONIC_USEC, then
READY=1; the process stays). `exuvia vm --in-place` must find zero dropped requests."""
import os, signal, socket, threading, time

def notify(msg):
    addr = os.environ["NOTIFY_SOCKET"]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(msg.encode(), "\0" + addr[1:] if addr[0] == "@" else addr)

def reload(signum, frame):
    notify(f"RELOADING=1\nMONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")
    # A real server re-reads its configuration here.
    notify("READY=1")

def serve(conn):
    with conn, conn.makefile("rwb", buffering=0) as f:
        for line in f:
            f.write(line)

listener = socket.socket(fileno=3)  # LISTEN_FDS=1: the socket unit's ListenStream=
signal.signal(signal.SIGHUP, reload)
notify("READY=1")
while True:
    conn, _ = listener.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
