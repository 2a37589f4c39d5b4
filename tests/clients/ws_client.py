"""WebSocket client (the `websockets` library) against examples/axum's /ws echo.

Holds CONNECTIONS connections until SIGTERM (or at most DURATION seconds), each echoing a
message every 50 ms.
A disconnect passes only as an orderly close from the server: a close frame with code 1001
(going away), answered and completed (ConnectionClosedOK), after which the connection
reconnects at once and must succeed on the first try. An abrupt EOF or reset
(ConnectionClosedError), a failed or wrong echo, a failed reconnect: each is a failure.
Prints one JSON line; exits 1 on any failure.
"""

import asyncio
import json
import signal
import sys
import time

import websockets

URL, CONNECTIONS, DURATION = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
stats = {
    "connections": CONNECTIONS,
    "echoes": 0,
    "orderly_closes": 0,
    "reconnects": 0,
    "abrupt_closes": 0,
    "wrong_close": 0,
    "wrong_echo": 0,
    "connect_failures": 0,
    "other_errors": 0,
}
examples = []


def failed(kind, detail):
    stats[kind] += 1
    if len(examples) < 5:
        examples.append(f"{kind}: {detail}")


def running(stop_at, stop):
    return time.monotonic() < stop_at and not stop.is_set()


async def one(i, stop_at, stop):
    closed_by_server = False
    n = 0
    while running(stop_at, stop):
        try:
            ws = await websockets.connect(URL, open_timeout=10, close_timeout=10, ping_interval=None)
        except Exception as e:  # noqa: BLE001 - every way to fail counts
            failed("connect_failures", repr(e))
            await asyncio.sleep(0.1)
            continue
        if closed_by_server:
            stats["reconnects"] += 1
        closed_by_server = False
        try:
            async with ws:
                while running(stop_at, stop):
                    msg = f"{i}:{n}"
                    n += 1
                    await ws.send(msg)
                    reply = await asyncio.wait_for(ws.recv(), 10)
                    if reply != msg:
                        failed("wrong_echo", f"{msg!r} -> {reply!r}")
                    stats["echoes"] += 1
                    await asyncio.sleep(0.05)
        except websockets.ConnectionClosedOK as e:
            if e.rcvd is not None and e.rcvd.code == 1001 and e.rcvd_then_sent:
                stats["orderly_closes"] += 1
                closed_by_server = True
            else:
                failed("wrong_close", f"rcvd={e.rcvd} sent={e.sent}")
        except websockets.ConnectionClosedError as e:
            failed("abrupt_closes", f"rcvd={e.rcvd} sent={e.sent}")
        except Exception as e:  # noqa: BLE001
            failed("other_errors", repr(e))


async def main():
    stop_at = time.monotonic() + DURATION
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await asyncio.gather(*(one(i, stop_at, stop) for i in range(CONNECTIONS)))
    bad = sum(stats[k] for k in ("abrupt_closes", "wrong_close", "wrong_echo", "connect_failures", "other_errors"))
    print(json.dumps({**stats, "failures": bad, "examples": examples}))
    ok = bad == 0 and stats["echoes"] > 0
    sys.exit(0 if ok else 1)


asyncio.run(main())
