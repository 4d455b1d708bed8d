"""UDP, subprocess and pipe benchmarks, several loops side by side (issue: UDP, pipes, subprocesses).

    python3 bench/transports.py [--loops stock,uvloop,rloop,veloxloop,oxloop] [--repeat 3]

Rows, each in a fresh loop per loop and repetition (median printed, with the ratio to uvloop):
- UDP round trips of 512 B between two endpoints of the same loop on 127.0.0.1;
- subprocess spawns per second: create_subprocess_exec('/bin/true') then wait(), one at a time;
- bytes per second through a subprocess pipe: 200 MiB written to `cat` in 64 KiB writes
  (with drain) while its stdout is read.
Benchmarks, not tests: nothing here asserts a timing.
"""

from __future__ import annotations

import asyncio
import time

import sidebyside

UDP_ROUND_TRIPS = 20_000
SPAWNS = 200
PIPE_BYTES = 200 * 1024 * 1024


async def udp_round_trips(loop: asyncio.AbstractEventLoop) -> float:
    done = loop.create_future()

    class Echo(asyncio.DatagramProtocol):
        def connection_made(self, transport):
            self.transport = transport

        def datagram_received(self, data, addr):
            self.transport.sendto(data, addr)

    class Client(asyncio.DatagramProtocol):
        count = 0

        def connection_made(self, transport):
            self.transport = transport
            transport.sendto(b"x" * 512)

        def datagram_received(self, data, addr):
            self.count += 1
            if self.count == UDP_ROUND_TRIPS:
                done.set_result(None)
            else:
                self.transport.sendto(data)

    server, _ = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
    t0 = time.perf_counter()
    client, _ = await loop.create_datagram_endpoint(
        Client, remote_addr=server.get_extra_info("sockname")
    )
    await done
    elapsed = time.perf_counter() - t0
    client.close()
    server.close()
    return UDP_ROUND_TRIPS / elapsed


async def spawns(loop: asyncio.AbstractEventLoop) -> float:
    t0 = time.perf_counter()
    for _ in range(SPAWNS):
        proc = await asyncio.create_subprocess_exec("/bin/true")
        if await proc.wait() != 0:
            raise RuntimeError("/bin/true failed")
    return SPAWNS / (time.perf_counter() - t0)


async def pipe_throughput(loop: asyncio.AbstractEventLoop) -> float:
    proc = await asyncio.create_subprocess_exec(
        "cat", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    chunk = b"x" * 65536

    async def write():
        for _ in range(PIPE_BYTES // len(chunk)):
            proc.stdin.write(chunk)
            await proc.stdin.drain()
        proc.stdin.close()

    t0 = time.perf_counter()
    writer = asyncio.ensure_future(write())
    received = 0
    while data := await proc.stdout.read(262144):
        received += len(data)
    await writer
    await proc.wait()
    if received != PIPE_BYTES:
        raise RuntimeError(f"{received} bytes came back, {PIPE_BYTES} expected")
    return received / (time.perf_counter() - t0) / 1e6


ROWS = (
    ("UDP round trips/s (512 B)", udp_round_trips),
    ("subprocess spawns/s (/bin/true)", spawns),
    ("pipe MB/s through cat", pipe_throughput),
)


def main() -> None:
    args = sidebyside.parse_args(__doc__.split("\n")[0])
    factories = sidebyside.load_factories(args.loops)
    medians = sidebyside.run(factories, ROWS, args.repeat)
    sidebyside.report(factories, ROWS, medians)


if __name__ == "__main__":
    main()
