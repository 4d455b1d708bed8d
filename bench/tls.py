"""TLS and sendfile benchmarks, several loops side by side (issue: TLS and sendfile).

    python3 bench/tls.py [--loops stock,uvloop,rloop,oxloop] [--repeat 3]

Rows (median of the repetitions, ratio to uvloop; sendfile also to stock, as uvloop has none):
- TLS echo round trips/s at 1 KiB and 100 KiB: a Protocol echo server and a Protocol client on
  the same loop over 127.0.0.1, TLS 1.3 with a certificate made here (needs `cryptography`);
- TLS handshakes/s: open a TLS connection, close it, one at a time;
- sendfile of a 100 MiB file over plain TCP to a server that discards it (MB/s).
Benchmarks, not tests: nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from tls_certs import make_certs

FACTORIES = {
    "stock": ("asyncio", "new_event_loop"),
    "uvloop": ("uvloop", "new_event_loop"),
    "rloop": ("rloop", "new_event_loop"),
    "oxloop": ("oxloop", "new_event_loop"),
}
SENDFILE_BYTES = 100 * 1024 * 1024


def contexts(certs):
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(certs.server_cert, certs.server_key)
    client = ssl.create_default_context(cafile=str(certs.ca))
    return server, client


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
        except NotImplementedError:
            transport.close()
            server.close()
            return float("nan")
        await done
        elapsed = time.perf_counter() - t0
    transport.close()
    server.close()
    return SENDFILE_BYTES / elapsed / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--loops", default="stock,uvloop,rloop,oxloop")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    factories = {}
    for name in args.loops.split(","):
        module, attr = FACTORIES[name]
        try:
            factories[name] = getattr(importlib.import_module(module), attr)
        except ImportError as exc:
            print(f"{name}: missing ({exc})")
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
        results: dict[tuple[str, str], list[float]] = {}
        for rep in range(args.repeat):
            names = list(factories)
            names = names[rep % len(names):] + names[: rep % len(names)]  # rotate the order
            for row, bench in rows:
                for name in names:
                    loop = factories[name]()
                    try:
                        value = loop.run_until_complete(bench(loop))
                    except Exception as exc:  # noqa: BLE001 (a loop that fails a row is reported)
                        print(f"{row} on {name}: {type(exc).__name__}: {exc}")
                        value = float("nan")
                    finally:
                        loop.close()
                    results.setdefault((row, name), []).append(value)
    width = max(len(r) for r, _ in rows)
    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"{'median':{width}}  " + "  ".join(f"{n:>9}" for n in factories))
    for row, _ in rows:
        print(f"{row:{width}}  " + "  ".join(f"{med[(row, n)]:>9.0f}" for n in factories))
    for base in ("uvloop", "stock"):
        if base in factories:
            print(f"\n{'ratio to ' + base:{width}}  " + "  ".join(f"{n:>9}" for n in factories))
            for row, _ in rows:
                b = med[(row, base)]
                print(f"{row:{width}}  " + "  ".join(f"{med[(row, n)] / b:>9.2f}" for n in factories))


if __name__ == "__main__":
    main()
