"""WebSocket client (the `websockets` library) that must stay connected: examples/axum hands
its WebSockets to the next generation at every upgrade, on the same TCP connection.

Holds CONNECTIONS connections until SIGTERM (or at most DURATION seconds). Each sends a
numbered message every 20 ms — now and then a large one (200 kB, many TCP segments, so a
hand-off can fall in the middle of a frame) — and checks that every echo comes back whole
and in order. Any close, reset, lost, changed or reordered message, and any reconnect is a
failure: the connection must simply go on. Prints one JSON line; exits 1 on any failure.
"""

import asyncio
import json
import signal
import sys
import time

import websockets

URL, CONNECTIONS, DURATION = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
stats = {"connections": CONNECTIONS, "echoes": 0, "large": 0, "disconnects": 0, "wrong_echo": 0, "connect_failures": 0}
examples = []


def failed(kind, detail):
    stats[kind] += 1
    if len(examples) < 5:
        examples.append(f"{kind}: {detail}")


async def one(i, stop_at, stop):
    try:
        ws = await websockets.connect(URL, open_timeout=10, close_timeout=10, ping_interval=None, max_size=None)
    except Exception as e:  # noqa: BLE001 - every way to fail counts
        failed("connect_failures", repr(e))
        return
    n = 0
    try:
        while time.monotonic() < stop_at and not stop.is_set():
            large = n % 97 == 13
            msg = f"{i}:{n}:" + ("x" * 200_000 if large else "hello")
            await ws.send(msg)
            got = await asyncio.wait_for(ws.recv(), timeout=10)
            if got != msg:
                failed("wrong_echo", f"conn {i} message {n}: got {got[:40]!r}")
                return
            stats["echoes"] += 1
            stats["large"] += large
            n += 1
            await asyncio.sleep(0.02)
        await ws.close()
    except Exception as e:  # noqa: BLE001 - a close, reset or timeout is a failure here
        failed("disconnects", f"conn {i} after {n} messages: {e!r}")


async def main():
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    stop_at = time.monotonic() + DURATION
    await asyncio.gather(*(one(i, stop_at, stop) for i in range(CONNECTIONS)))
    stats["failures"] = stats["disconnects"] + stats["wrong_echo"] + stats["connect_failures"]
    stats["examples"] = examples
    print(json.dumps(stats))
    sys.exit(1 if stats["failures"] else 0)


asyncio.run(main())
