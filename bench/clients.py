"""Client benchmarks: connections a client on each loop opens per second, side by side.

    python3 bench/clients.py [--loops stock,uvloop,rloop,veloxloop,oxloop] [--repeat 3]

The peer is one echo server (bench/net_server.py, an asyncio.Protocol) in a process of its own,
on uvloop when it is installed (else the stock loop), pinned to CPU 1 while the client runs on
CPU 0; it is the same for every loop under test. Rows (median of the repetitions, ratio to uvloop):
- create_connection + close: `loop.create_connection(Protocol, "127.0.0.1", port)`, then
  `transport.close()`, one connection at a time;
- open_connection + echo + close: the Streams API, 16 bytes written and read back, then
  `close()` and `wait_closed()`, one at a time;
- the same, 8 connections at a time.
Each cell opens COUNT connections. Benchmarks, not tests: nothing here asserts a timing.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import sidebyside

HERE = Path(__file__).resolve().parent
COUNT = 2000
CONCURRENCY = 8
MESSAGE = b"x" * 16
HOST = "127.0.0.1"


async def connect_close(loop, port):
    t0 = time.perf_counter()
    for _ in range(COUNT):
        transport, _ = await loop.create_connection(asyncio.Protocol, HOST, port)
        transport.close()
    return COUNT / (time.perf_counter() - t0)


async def echo_once(port):
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(MESSAGE)
    if await reader.readexactly(len(MESSAGE)) != MESSAGE:
        raise RuntimeError("the echo differs from what was sent")
    writer.close()
    await writer.wait_closed()


async def streams_echo(loop, port):
    t0 = time.perf_counter()
    for _ in range(COUNT):
        await echo_once(port)
    return COUNT / (time.perf_counter() - t0)


async def streams_echo_concurrent(loop, port):
    async def worker():
        for _ in range(COUNT // CONCURRENCY):
            await echo_once(port)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return COUNT // CONCURRENCY * CONCURRENCY / (time.perf_counter() - t0)


def start_server():
    """The echo server's process and port."""
    peer = "uvloop" if importlib.util.find_spec("uvloop") else "stock"
    cmd = [sys.executable, str(HERE / "net_server.py"), peer, "protocol", "--lifetime", "3600"]
    if hasattr(os, "sched_setaffinity") and os.cpu_count() and os.cpu_count() > 1:
        cmd = ["taskset", "-c", "1", *cmd]
        os.sched_setaffinity(0, {0})
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    line = server.stdout.readline()
    if not line.startswith("PORT "):
        server.kill()
        raise SystemExit(f"the echo server did not start (it printed {line!r})")
    print(f"peer: echo server on {peer}, port {line.split()[1]}")
    return server, int(line.split()[1])


def main() -> None:
    args = sidebyside.parse_args(__doc__.split("\n")[0])
    factories = sidebyside.load_factories(args.loops)
    server, port = start_server()
    rows = [
        ("create_connection + close (conn/s)", lambda loop: connect_close(loop, port)),
        ("open_connection + echo + close (conn/s)", lambda loop: streams_echo(loop, port)),
        (
            f"the same, {CONCURRENCY} at a time (conn/s)",
            lambda loop: streams_echo_concurrent(loop, port),
        ),
    ]
    try:
        medians = sidebyside.run(factories, rows, args.repeat)
    finally:
        server.terminate()
        server.wait()
    sidebyside.report(factories, rows, medians)


if __name__ == "__main__":
    main()
