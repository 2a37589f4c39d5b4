#!/usr/bin/python3
"""Test-only stand-in for the exuvia echo example.

It exists to prove the harness (rootfs, nspawn, driver, load accounting)
before the real library lands, and to keep a known-good reference for the
protocol the library must speak under systemd >= 253 (Type=notify-reload,
NotifyAccess=main):

  SIGHUP -> RELOADING=1 + MONOTONIC_USEC (one datagram)
         -> double fork; the grandchild execs our own path with fd 3
         -> successor reports readiness over a pipe
         -> OLD process sends MAINPID=<successor> + READY=1 + STATUS=
         -> old stops accepting, drains, exits 0.
  A successor that exits or misses the readiness deadline leaves the old
  process as main: READY=1 + STATUS=upgrade failed: <reason>.
"""
import os
import select
import signal
import socket
import sys
import threading
import time

TAG = "exuvia-standin echo"  # the "new version" copy gets another tag
VERSION = "0.0.0"
READY_TIMEOUT = 5.0  # --ready-timeout SECS, as the example servers
DRAIN_SECS = 10.0  # --drain-hard SECS

active = 0
active_lock = threading.Lock()
flags = {"hup": False, "term": False}


def log(msg):
    print(f"standin[{os.getpid()}]: {msg}", file=sys.stderr, flush=True)


def notify(msg):
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    if path.startswith("@"):
        path = "\0" + path[1:]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        s.connect(path)
        s.send(msg.encode())
    finally:
        s.close()


def take_listener():
    fds = int(os.environ.get("LISTEN_FDS", "0"))
    if os.environ.get("LISTEN_PID") == str(os.getpid()) and fds >= 1:
        names = os.environ.get("LISTEN_FDNAMES", "").split(":")
        fd = 3 + (names.index("echo") if "echo" in names else 0)
        sock = socket.socket(fileno=fd)
    else:
        sock = socket.create_server(("127.0.0.1", 8080))
    for k in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(k, None)
    # Shared open file description: O_NONBLOCK also reaches the other
    # generation, which is fine because both only ever poll before accept.
    sock.setblocking(False)
    return sock


def serve(conn):
    global active
    try:
        conn.setblocking(True)
        f = conn.makefile("rwb", buffering=0)
        while True:
            line = f.readline()
            if not line:
                break
            if line.rstrip(b"\r\n") == b"VERSION":
                line = f"{TAG} {VERSION}\n".encode()
            f.write(line)
    except OSError:
        pass
    finally:
        conn.close()
        with active_lock:
            active -= 1


def spawn_successor(listener, exe):
    """Double fork so the successor is re-parented to PID 1 before MAINPID=."""
    r, w = os.pipe()
    # Fault injection for the harness's own negative control: a plain fork
    # makes the successor an "alien" main PID for systemd.
    single = os.environ.get("STANDIN_SINGLE_FORK") == "1"
    inter = os.fork()
    if inter == 0 and single:
        try:
            os.close(r)
            if listener.fileno() != 3:
                os.dup2(listener.fileno(), 3)
            os.set_inheritable(3, True)
            os.set_inheritable(w, True)
            env = dict(os.environ, LISTEN_PID=str(os.getpid()), LISTEN_FDS="1",
                       LISTEN_FDNAMES="echo", STANDIN_READY_FD=str(w))
            os.execve(exe, [exe] + sys.argv[1:], env)
        finally:
            os._exit(127)
    if single:
        os.write(w, f"pid {inter}\n".encode())
        os.close(w)
        return r
    if inter == 0:
        code = 0
        try:
            child = os.fork()
            if child == 0:
                try:
                    os.close(r)
                    if listener.fileno() != 3:
                        os.dup2(listener.fileno(), 3)
                    os.set_inheritable(3, True)
                    os.set_inheritable(w, True)
                    env = dict(os.environ, LISTEN_PID=str(os.getpid()), LISTEN_FDS="1",
                               LISTEN_FDNAMES="echo", STANDIN_READY_FD=str(w))
                    os.execve(exe, [exe] + sys.argv[1:], env)
                finally:
                    os._exit(127)
            os.write(w, f"pid {child}\n".encode())
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    os.waitpid(inter, 0)
    return r


def read_pipe(r, buf):
    try:
        data = os.read(r, 4096)
    except BlockingIOError:
        return buf, False
    return buf + data, not data


def parse_args():
    global READY_TIMEOUT, DRAIN_SECS
    args = sys.argv[1:]
    for flag, val in zip(args[::2], args[1::2]):
        if flag == "--ready-timeout":
            READY_TIMEOUT = float(val)
        elif flag == "--drain-hard":
            DRAIN_SECS = float(val)


def main():
    global active
    exe = sys.argv[0]
    parse_args()
    signal.signal(signal.SIGHUP, lambda *_: flags.__setitem__("hup", True))
    signal.signal(signal.SIGTERM, lambda *_: flags.__setitem__("term", True))
    listener = take_listener()
    ready_fd = os.environ.pop("STANDIN_READY_FD", None)
    if ready_fd is None:
        notify(f"READY=1\nSTATUS=serving ({TAG})")
    else:
        os.write(int(ready_fd), b"ready\n")
        os.close(int(ready_fd))
    log(f"serving as {TAG}")

    upgrade = None  # (pipe fd, buffer, deadline)
    while True:
        if flags["term"]:
            notify("STOPPING=1")
            reason = "SIGTERM"
            break
        if flags["hup"] and upgrade is None:
            flags["hup"] = False
            mono = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
            notify(f"RELOADING=1\nMONOTONIC_USEC={mono}")
            upgrade = (spawn_successor(listener, exe), b"", time.monotonic() + READY_TIMEOUT)
        watch = [listener] + ([upgrade[0]] if upgrade else [])
        try:
            readable, _, _ = select.select(watch, [], [], 0.2)
        except InterruptedError:
            continue
        if upgrade and upgrade[0] in readable:
            buf, eof = read_pipe(upgrade[0], upgrade[1])
            upgrade = (upgrade[0], buf, upgrade[2])
        else:
            eof = False
        if upgrade:
            r, buf, deadline = upgrade
            lines = buf.decode(errors="replace").split("\n")
            succ = next((int(x.split()[1]) for x in lines if x.startswith("pid ")), None)
            if "ready" in lines:
                os.close(r)
                notify(f"MAINPID={succ}\nREADY=1\nSTATUS=handed over to {succ}")
                reason = f"handed over to {succ}"
                break
            if eof or time.monotonic() > deadline:
                os.close(r)
                why = "successor exited before ready" if eof else "successor not ready in time"
                if succ and not eof:
                    try:
                        os.kill(succ, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                notify(f"READY=1\nSTATUS=upgrade failed: {why}")
                log(f"upgrade failed: {why}")
                upgrade = None
        if listener in readable:
            try:
                conn, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                continue
            with active_lock:
                active += 1
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    # Only close: shutdown() would act on the socket the successor shares.
    listener.close()
    with active_lock:
        n = active
    log(f"{reason}; draining {n} connections")
    deadline = time.monotonic() + DRAIN_SECS
    while time.monotonic() < deadline:
        with active_lock:
            if active == 0:
                break
        time.sleep(0.05)
    with active_lock:
        n = active
    # Like the library's hard deadline: cut what is left (our own fds only).
    log(f"drained, exiting ({n} connections cut)")
    os._exit(0)


if __name__ == "__main__":
    main()
