# Scripted fake service for the simulator's tests. Steps come from $FAKE_STEPS, one per line:
#   handle SIG | ignore SIG       install a flag-setting handler (TERM: exit 0) / SIG_IGN
#   send TEXT                     one datagram; \n \xNN escapes; $MONO $STALE $REALTIME $PID $CHILD
#   send_fd TEXT                  same, with one pipe fd attached (SCM_RIGHTS)
#   send_pidfd TEXT               same, with a pidfd of the successor ($CHILD) attached
#   wait SIG                      until the handler fired (consumes it); exits 3 after 20 s
#   spawn double|single           start a successor running $FAKE_SUCC_STEPS; $CHILD = its pid
#   ready_pipe                    (successor) report our pid to the spawner
#   check_listen                  send STATUS= describing the socket-activation environment
#   sleep SECONDS | exit CODE | pause (until a signal ends us; exits 4 after 20 s)
import os, select, signal, socket, sys, time

BOOT = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
flags = {}
child = [0]

def mono():
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000

def expand(text):
    text = (text.replace("$MONO", str(mono())).replace("$STALE", str(BOOT))
            .replace("$REALTIME", str(time.time_ns() // 1000))
            .replace("$PID", str(os.getpid())).replace("$CHILD", str(child[0])))
    return text.encode("latin-1").decode("unicode_escape").encode("latin-1")

def send(data, fds=()):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.connect(os.environ["NOTIFY_SOCKET"])
    if fds:
        socket.send_fds(s, [data], list(fds))
    else:
        s.send(data)
    s.close()

def on_signal(sig, _frame):
    if sig == signal.SIGTERM:
        os._exit(0)
    flags[sig] = True

def sig(name):
    return getattr(signal, "SIG" + name)

def spawn(kind):
    r, w = os.pipe()
    os.set_inheritable(w, True)
    env = dict(os.environ, FAKE_STEPS=os.environ.get("FAKE_SUCC_STEPS", ""), FAKE_READY_FD=str(w))
    argv = [sys.executable, "-c", 'import os; exec(os.environ["FAKE_SRC"])']
    pid = os.fork()
    if pid == 0:
        try:
            if kind == "double" and os.fork() != 0:
                os._exit(0)
            os.execve(sys.executable, argv, env)
        finally:
            os._exit(127)
    os.close(w)
    if kind == "double":
        os.waitpid(pid, 0)  # reap the intermediate: the successor is now the manager's child
    ready, _, _ = select.select([r], [], [], 20)
    if not ready:
        os._exit(5)
    child[0] = int(os.read(r, 64).decode().strip())
    os.close(r)

def check_listen():
    n = int(os.environ.get("LISTEN_FDS", "0"))
    ports, accepting = [], []
    for fd in range(3, 3 + n):
        s = socket.socket(fileno=os.dup(fd))
        ports.append(str(s.getsockname()[1]))
        accepting.append(str(s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)))
        s.close()
    try:
        os.fstat(3 + n)
        extra = "open"
    except OSError:
        extra = "closed"
    send(("STATUS=pid=%d listen_pid=%s fds=%d names=%s ports=%s accepting=%s next_fd=%s" % (
        os.getpid(), os.environ.get("LISTEN_PID"), n, os.environ.get("LISTEN_FDNAMES"),
        ",".join(ports), ",".join(accepting), extra)).encode())

for line in os.environ.get("FAKE_STEPS", "").strip().splitlines():
    verb, _, arg = line.strip().partition(" ")
    if verb == "handle":
        signal.signal(sig(arg), on_signal)
    elif verb == "ignore":
        signal.signal(sig(arg), signal.SIG_IGN)
    elif verb == "send":
        send(expand(arg))
    elif verb == "send_fd":
        r, w = os.pipe()
        send(expand(arg), [r])
    elif verb == "send_pidfd":
        send(expand(arg), [os.pidfd_open(child[0])])
    elif verb == "wait":
        end = time.monotonic() + 20
        while not flags.pop(sig(arg), False):
            if time.monotonic() > end:
                os._exit(3)
            time.sleep(0.005)
    elif verb == "spawn":
        spawn(arg)
    elif verb == "ready_pipe":
        fd = int(os.environ["FAKE_READY_FD"])
        os.write(fd, b"%d\n" % os.getpid())
        os.close(fd)
    elif verb == "check_listen":
        check_listen()
    elif verb == "sleep":
        time.sleep(float(arg))
    elif verb == "exit":
        os._exit(int(arg))
    elif verb == "pause":
        end = time.monotonic() + 20
        while time.monotonic() < end:
            time.sleep(0.05)
        os._exit(4)
    else:
        sys.stderr.write("fake service: unknown step %r\n" % line)
        os._exit(2)
