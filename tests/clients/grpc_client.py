"""gRPC client (Python grpcio) against examples/tonic: unary `Say` calls and `Ticks` server
streams, each worker on a channel of its own (its own HTTP/2 connection), until SIGTERM (or
at most DURATION seconds).

Retries are off (grpc.enable_retries=0: no retry policy and no transparent retry either, which
would otherwise re-send a call that never left the client because a GOAWAY crossed it), so
every call that fails is a failed call here. GRPC_RETRY=1 leaves gRPC's defaults on. Every stream must end with status OK; one that ends
because the server drains says so with a last tick. Prints one JSON line; exits 1 on any
failure.
"""

import json
import os
import signal
import sys
import threading
import time

import grpc

import echo_pb2
import echo_pb2_grpc

TARGET, UNARY, STREAMS, DURATION = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
OPTIONS = [("grpc.use_local_subchannel_pool", 1)]
if not os.environ.get("GRPC_RETRY"):
    OPTIONS.append(("grpc.enable_retries", 0))
TICKS = 200
lock = threading.Lock()
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())


def running(stop_at):
    return time.monotonic() < stop_at and not stop.is_set()

stats = {
    "unary_channels": UNARY,
    "stream_channels": STREAMS,
    "calls_ok": 0,
    "calls_failed": 0,
    "wrong_answers": 0,
    "streams_ok": 0,
    "streams_ended_by_drain": 0,
    "streams_failed": 0,
    "ticks": 0,
}
examples = []


def count(key, detail=None):
    with lock:
        stats[key] += 1
        if detail and len(examples) < 5:
            examples.append(f"{key}: {detail}")


def unary(i, stop_at):
    with grpc.insecure_channel(TARGET, options=OPTIONS) as ch:
        stub = echo_pb2_grpc.EchoStub(ch)
        n = 0
        while running(stop_at):
            msg = f"{i}:{n}"
            n += 1
            try:
                # A generous deadline: on a loaded machine the client itself can stall for
                # seconds, and a deadline it misses that way says nothing about the server.
                reply = stub.Say(echo_pb2.SayRequest(message=msg), timeout=30)
            except grpc.RpcError as e:
                count("calls_failed", f"{time.time():.3f} {e.code()} {e.details()}")
                continue
            if reply.message != msg:
                count("wrong_answers", f"{msg!r} -> {reply.message!r}")
            else:
                count("calls_ok")
            # Paced: 50 callers flat out starve the very client that must answer pings.
            time.sleep(0.02)


def streams(i, stop_at):
    with grpc.insecure_channel(TARGET, options=OPTIONS) as ch:
        stub = echo_pb2_grpc.EchoStub(ch)
        while running(stop_at):
            # 10 s: longer than the soft deadline, so every stream meets a drain and must
            # end there with a last tick and status OK.
            call = stub.Ticks(echo_pb2.TicksRequest(count=TICKS, interval_ms=50), timeout=60)
            last, ticks = False, 0
            try:
                for tick in call:
                    ticks += 1
                    last = tick.last
            except grpc.RpcError as e:
                count("streams_failed", f"{e.code()} {e.details()} after {ticks} ticks")
                continue
            with lock:
                stats["ticks"] += ticks
            if call.code() != grpc.StatusCode.OK:
                count("streams_failed", f"status {call.code()}")
            elif last:
                count("streams_ended_by_drain")
            elif ticks == TICKS:
                count("streams_ok")
            else:
                count("streams_failed", f"OK after {ticks} ticks without a last tick")


def main():
    stop_at = time.monotonic() + DURATION
    workers = [threading.Thread(target=unary, args=(i, stop_at)) for i in range(UNARY)]
    workers += [threading.Thread(target=streams, args=(i, stop_at)) for i in range(STREAMS)]
    for w in workers:
        w.start()
    for w in workers:
        while w.is_alive():
            w.join(0.2)  # lets the SIGTERM handler run
    bad = stats["calls_failed"] + stats["wrong_answers"] + stats["streams_failed"]
    print(json.dumps({**stats, "failures": bad, "examples": examples}))
    sys.exit(0 if bad == 0 and stats["calls_ok"] > 0 and stats["streams_ok"] + stats["streams_ended_by_drain"] > 0 else 1)


main()
