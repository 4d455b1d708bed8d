"""TLS and sendfile benchmarks, several loops side by side (issue: TLS and sendfile).

    python3 bench/tls.py [--loops stock,uvloop,rloop,veloxloop,oxloop] [--repeat 3]

Rows (median of the repetitions, ratio to uvloop; sendfile also to stock, as uvloop has none):
- TLS echo round trips/s at 1 KiB and 100 KiB: a Protocol echo server and a Protocol client on
  the same loop over 127.0.0.1, TLS 1.3 with a certificate made here (needs `cryptography`);
- TLS handshakes/s: open a TLS connection, close it, one at a time;
- sendfile of a 100 MiB file over plain TCP to a server that discards it (MB/s).
Benchmarks, not tests: nothing here asserts a timing.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import sidebyside
from tls_certs import make_certs

SENDFILE_BYTES = 100 * 1024 * 1024


def contexts(certs):
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(certs.server_cert, certs.server_key)
    client = ssl.create_default_context(cafile=str(certs.ca))
    return server, client


def check_tls(transport: asyncio.BaseTransport) -> None:
    """Fail the cell if the connection is plain TCP: a loop that ignores ssl= would look fast."""
    if transport.get_extra_info("ssl_object") is None:
        raise RuntimeError("the connection is not TLS (no ssl_object): the loop ignored ssl=")


class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


async def tls_echo(loop, certs, size, count):
    server_ctx, client_ctx = contexts(certs)
    server = await loop.create_server(Echo, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    done = loop.create_future()
    message = b"x" * size

    class Client(asyncio.Protocol):
        received = 0
        trips = 0

        def connection_made(self, transport):
            self.transport = transport

        def data_received(self, data):
            self.received += len(data)
            if self.received >= size:
                self.received -= size
                self.trips += 1
                if self.trips == count:
                    done.set_result(None)
                else:
                    self.transport.write(message)

    transport, _ = await loop.create_connection(
        Client, "127.0.0.1", port, ssl=client_ctx, server_hostname="localhost"
    )
    check_tls(transport)
    t0 = time.perf_counter()
    transport.write(message)
    await done
    elapsed = time.perf_counter() - t0
    transport.close()
    server.close()
    return count / elapsed


async def handshakes(loop, certs, count=300):
    server_ctx, client_ctx = contexts(certs)
    server = await loop.create_server(Echo, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    t0 = time.perf_counter()
    for _ in range(count):
        transport, _ = await loop.create_connection(
            asyncio.Protocol, "127.0.0.1", port, ssl=client_ctx, server_hostname="localhost"
        )
        check_tls(transport)
        transport.close()
    elapsed = time.perf_counter() - t0
    server.close()
    return count / elapsed


async def sendfile(loop, path):
    done = loop.create_future()

    class Sink(asyncio.Protocol):
        received = 0

        def data_received(self, data):
            self.received += len(data)
            if self.received == SENDFILE_BYTES:
                done.set_result(None)

    server = await loop.create_server(Sink, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
    with open(path, "rb") as f:  # noqa: ASYNC230 (what loop.sendfile takes)
        t0 = time.perf_counter()
        try:
            await loop.sendfile(transport, f)
        except NotImplementedError:  # uvloop has no loop.sendfile: its cell shows "nan"
            transport.close()
            server.close()
            return float("nan")
        await done
        elapsed = time.perf_counter() - t0
    transport.close()
    server.close()
    return SENDFILE_BYTES / elapsed / 1e6


def main() -> None:
    args = sidebyside.parse_args(__doc__.split("\n")[0])
    factories = sidebyside.load_factories(args.loops)
    with tempfile.TemporaryDirectory() as tmp:
        certs = make_certs(Path(tmp))
        data = Path(tmp) / "data.bin"
        data.write_bytes(os.urandom(1 << 20) * (SENDFILE_BYTES >> 20))
        rows = (
            ("TLS echo 1 KiB (round trips/s)", lambda loop: tls_echo(loop, certs, 1024, 20_000)),
            ("TLS echo 100 KiB (round trips/s)", lambda loop: tls_echo(loop, certs, 102_400, 2_000)),
            ("TLS handshakes/s", lambda loop: handshakes(loop, certs)),
            ("sendfile 100 MiB (MB/s)", lambda loop: sendfile(loop, data)),
        )
        medians = sidebyside.run(factories, rows, args.repeat)
    sidebyside.report(factories, rows, medians, bases=("uvloop", "stock"))


if __name__ == "__main__":
    main()
