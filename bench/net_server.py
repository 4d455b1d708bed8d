"""The server side of bench/net.py: one server on one event loop, in its own process.

    python3 bench/net_server.py LOOP MODE [--lifetime SECONDS]

LOOP is stock, uvloop, rloop, veloxloop or oxloop (the loop is made by the same
factory as in micro.py); MODE is one of SERVERS below. The server listens on 127.0.0.1
on a free port, prints ``PORT <n>`` on stdout once it accepts connections, and serves
until it is killed (net.py sends SIGTERM) or --lifetime runs out (SIGALRM: bounded even
if the loop under test hangs). Anything the server writes to stderr (a traceback, a
message from the loop's exception handler) fails the benchmark cell that ran it.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import resource
import signal
import socket
import sys

HOST = "127.0.0.1"
BACKLOG = 1024  # > the load generator's concurrency, so no SYN waits for a retry

# --- echo servers ---------------------------------------------------------------


class EchoProtocol(asyncio.Protocol):
    """asyncio.Protocol: data_received writes the data back."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


async def serve_protocol(loop: asyncio.AbstractEventLoop) -> int:
    server = await loop.create_server(EchoProtocol, HOST, 0, backlog=BACKLOG)
    return server.sockets[0].getsockname()[1]


async def echo_stream(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


async def serve_streams(loop: asyncio.AbstractEventLoop) -> int:
    server = await asyncio.start_server(echo_stream, HOST, 0, backlog=BACKLOG)
    return server.sockets[0].getsockname()[1]


async def serve_sockets(loop: asyncio.AbstractEventLoop) -> int:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((HOST, 0))
    listener.listen(BACKLOG)
    listener.setblocking(False)
    tasks: set[asyncio.Task] = set()  # a task nobody references may be collected

    async def echo_socket(conn: socket.socket) -> None:
        with conn:
            while data := await loop.sock_recv(conn, 65536):
                await loop.sock_sendall(conn, data)

    async def accept_forever() -> None:
        while True:
            conn, _ = await loop.sock_accept(listener)
            # Transports set TCP_NODELAY themselves; a bare socket does not.
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.setblocking(False)
            task = loop.create_task(echo_socket(conn))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    tasks.add(loop.create_task(accept_forever()))
    return listener.getsockname()[1]


# --- HTTP/1.1 keep-alive ------------------------------------------------------------

BODY = b"Hello, World!"
HEADER = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: text/plain\r\n"
    b"Content-Length: " + str(len(BODY)).encode() + b"\r\n"
    b"\r\n"
)
RESPONSE = HEADER + BODY


class HttpProtocol(asyncio.Protocol):
    """A minimal keep-alive HTTP/1.1 server: every request (anything up to a blank
    line; bodies are not supported) gets the same fixed response, in one write()."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.pending = b""

    def data_received(self, data: bytes) -> None:
        *requests, self.pending = (self.pending + data).split(b"\r\n\r\n")
        for _ in requests:
            self.respond()

    def respond(self) -> None:
        self.transport.write(RESPONSE)


class HttpSplitProtocol(HttpProtocol):
    """The same, writing the header and the body with two write() calls."""

    def respond(self) -> None:
        self.transport.write(HEADER)
        self.transport.write(BODY)


async def serve_http(loop: asyncio.AbstractEventLoop) -> int:
    server = await loop.create_server(HttpProtocol, HOST, 0, backlog=BACKLOG)
    return server.sockets[0].getsockname()[1]


async def serve_http_split(loop: asyncio.AbstractEventLoop) -> int:
    server = await loop.create_server(HttpSplitProtocol, HOST, 0, backlog=BACKLOG)
    return server.sockets[0].getsockname()[1]


SERVERS = {
    "protocol": serve_protocol,
    "streams": serve_streams,
    "sockets": serve_sockets,
    "http": serve_http,
    "http-split": serve_http_split,
}


# --- main -----------------------------------------------------------------------------


def new_loop(name: str) -> asyncio.AbstractEventLoop:
    if name == "stock":
        # The default policy's loop, whatever policy is installed process-wide.
        return asyncio.DefaultEventLoopPolicy().new_event_loop()
    return importlib.import_module(name).new_event_loop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "loop", choices=["stock", "uvloop", "rloop", "veloxloop", "oxloop"]
    )
    parser.add_argument("mode", choices=list(SERVERS))
    parser.add_argument(
        "--lifetime", type=int, default=600, help="seconds (default 600)"
    )
    args = parser.parse_args()

    signal.alarm(args.lifetime)
    # The idle-connection row holds 10,000 sockets.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    loop = new_loop(args.loop)
    asyncio.set_event_loop(loop)
    port = loop.run_until_complete(SERVERS[args.mode](loop))
    print(f"PORT {port}", flush=True)
    loop.run_forever()  # until SIGTERM
    return 0


if __name__ == "__main__":
    sys.exit(main())
