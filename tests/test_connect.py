"""Opening connections with create_connection and create_unix_connection: the socket, the
transport, the order of events, the errors and what is left open are those of asyncio's loop,
whichever path the call takes (oxloop takes a shorter one for address literals and Unix paths)."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import inspect
import os
import socket
import sys

import pytest
from conftest import raised_by


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


class Recorder(asyncio.Protocol):
    """Remembers what happened, and whether the caller's context was current in the factory."""

    def __init__(self, seen=None):
        self.events = []
        self.seen = seen

    def connection_made(self, transport):
        self.events.append("made")

    def connection_lost(self, exc):
        self.events.append("lost")


async def tcp_server(loop, host="127.0.0.1"):
    server = await loop.create_server(asyncio.Protocol, host, 0)
    return server, server.sockets[0].getsockname()[1]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def describe_connection(transport, protocol):
    sock = transport.get_extra_info("socket")
    return {
        "transport": isinstance(transport, asyncio.Transport),
        "events": list(protocol.events),
        "family": sock.family,
        "type": sock.type,
        "proto": sock.proto,
        "timeout": sock.gettimeout(),
        "nodelay": (
            sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
            if sock.family != socket.AF_UNIX
            else None
        ),
        "blocking_flag": os.get_blocking(sock.fileno()),
        "peername": transport.get_extra_info("peername") is not None,
    }


def connect_and_describe(loop, connect):
    async def main():
        transport, protocol = await connect(loop)
        described = describe_connection(transport, protocol)
        transport.close()
        await asyncio.sleep(0.01)
        described["after_close"] = list(protocol.events)
        return described

    return loop.run_until_complete(main())


def tcp_connect(host):
    async def connect(loop):
        server, port = await tcp_server(loop, host)
        try:
            return await loop.create_connection(Recorder, host, port)
        finally:
            server.close()

    return connect


def unix_connect(path):
    async def connect(loop):
        server = await loop.create_unix_server(asyncio.Protocol, path)
        try:
            return await loop.create_unix_connection(Recorder, path)
        finally:
            server.close()

    return connect


def ipv6_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_tcp_connection_is_made_as_on_asyncio(loop, stock_loop, host):
    if host == "::1" and not ipv6_available():
        pytest.skip("::1 cannot be bound here")
    ours = connect_and_describe(loop, tcp_connect(host))
    assert ours == connect_and_describe(stock_loop, tcp_connect(host))
    assert ours["events"] == ["made"] and ours["after_close"] == ["made", "lost"]
    assert ours["timeout"] == 0.0 and ours["type"] == socket.SOCK_STREAM


@pytest.mark.parametrize(
    ("host", "family", "port_form"),
    [
        ("127.0.0.1", socket.AF_INET, "int"),
        ("127.0.0.1", 0, "str"),
        ("127.0.0.1", 0, "spaced str"),
        ("::1", 0, "int"),
        ("::1", socket.AF_INET6, "str"),
        ("::ffff:127.0.0.1", socket.AF_INET6, "int"),
        ("localhost", socket.AF_INET, "int"),
    ],
)
def test_tcp_hosts_ports_and_families_as_on_asyncio(loop, stock_loop, host, family, port_form):
    if ":" in host and not ipv6_available():
        pytest.skip("::1 cannot be bound here")
    server_host = "::1" if host == "::1" else "127.0.0.1"

    def connect(loop):
        async def main():
            server, port = await tcp_server(loop, server_host)
            given = {"int": port, "str": str(port), "spaced str": f" {port} "}[port_form]
            try:
                transport, protocol = await loop.create_connection(
                    Recorder, host, given, family=family
                )
            finally:
                server.close()
            described = describe_connection(transport, protocol)
            described["peer"] = transport.get_extra_info("peername")[:2]
            described["local_family"] = len(transport.get_extra_info("sockname"))
            transport.close()
            return described

        return loop.run_until_complete(main())

    ours = connect(loop)
    stock = connect(stock_loop)
    assert ours["peer"][1] != stock["peer"][1]  # two servers, two ports
    ours["peer"] = stock["peer"] = ours["peer"][0]
    assert ours == stock


def test_unix_connection_is_made_as_on_asyncio(loop, stock_loop, tmp_path):
    ours = connect_and_describe(loop, unix_connect(str(tmp_path / "ours")))
    assert ours == connect_and_describe(stock_loop, unix_connect(str(tmp_path / "stock")))
    assert ours["family"] == socket.AF_UNIX and ours["events"] == ["made"]


def test_a_path_like_unix_path_is_accepted(loop, tmp_path):
    assert connect_and_describe(loop, unix_connect(tmp_path / "p"))["events"] == ["made"]


def run_failing(loop, connect):
    """The exception connect(loop) raises, and the descriptors left open once it is gone (asyncio
    leaves the socket of a failing protocol factory to the collector, and the exception's
    traceback holds it; oxloop closes it at once)."""

    async def main():
        gc.collect()  # what earlier tests left to the collector is not counted
        before = open_fds()
        try:
            await connect(loop)
        except BaseException as exc:  # noqa: BLE001 - compared with the stock loop's
            error = exc
        else:
            error = None
        if error is not None:
            error.__traceback__ = None
        # The server side of a connection closes once it has seen the client's end.
        for _ in range(2):
            gc.collect()
            await asyncio.sleep(0.05)
        return error, open_fds() - before

    return loop.run_until_complete(main())


def assert_fails_like_asyncio(loop, stock_loop, connect):
    ours, ours_left = run_failing(loop, connect)
    stock, stock_left = run_failing(stock_loop, connect)
    assert type(ours) is type(stock), f"{ours!r} (stock asyncio: {stock!r})"
    assert str(ours) == str(stock)
    if isinstance(stock, OSError):
        assert ours.errno == stock.errno
    assert ours_left == stock_left == 0
    return ours


def test_refused_connection_raises_as_on_asyncio(loop, stock_loop):
    port = closed_port()

    async def connect(loop):
        await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)

    exc = assert_fails_like_asyncio(loop, stock_loop, connect)
    assert isinstance(exc, ConnectionRefusedError)


@pytest.mark.parametrize("target", ["missing", "not a socket"])
def test_unix_connect_errors_as_on_asyncio(loop, stock_loop, tmp_path, target):
    path = tmp_path / "target"
    if target == "not a socket":
        path.write_text("")

    async def connect(loop):
        await loop.create_unix_connection(asyncio.Protocol, str(path))

    assert isinstance(assert_fails_like_asyncio(loop, stock_loop, connect), OSError)


def test_a_failing_protocol_factory_raises_and_leaves_nothing_open(loop, stock_loop):
    def factory():
        raise ZeroDivisionError("factory")

    async def connect(loop):
        server, port = await tcp_server(loop)
        try:
            await loop.create_connection(factory, "127.0.0.1", port)
        finally:
            server.close()  # not wait_closed: on 3.12+ it waits for the server's connections

    assert isinstance(assert_fails_like_asyncio(loop, stock_loop, connect), ZeroDivisionError)


@pytest.mark.parametrize("laps", [0, 1, 2, 3])
def test_cancelled_while_connecting_leaves_nothing_open(loop, stock_loop, laps):
    """Cancelled at any point of the set-up: CancelledError, and no descriptor left open."""

    async def connect(loop):
        server, port = await tcp_server(loop)
        task = loop.create_task(loop.create_connection(asyncio.Protocol, "127.0.0.1", port))
        for _ in range(laps):
            await asyncio.sleep(0)
        task.cancel()
        try:
            transport, _ = await task
            transport.close()  # finished before the cancellation reached it: as good as one
            raise asyncio.CancelledError
        finally:
            server.close()  # not wait_closed: on 3.12+ it waits for the server's connections

    assert isinstance(assert_fails_like_asyncio(loop, stock_loop, connect), asyncio.CancelledError)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"server_hostname": "x"},
        {"ssl_handshake_timeout": 1.0},
        {"ssl_shutdown_timeout": 1.0},
        {"all_errors": False},
        {"sock": "not a socket"},
        {"local_addr": ("300.1.1.1", 0)},
    ],
    ids=lambda kwargs: next(iter(kwargs)),
)
def test_argument_errors_as_on_asyncio(loop, stock_loop, kwargs):
    """Refused or accepted exactly as asyncio's method does, on every Python version
    (ssl_shutdown_timeout is 3.11's, all_errors 3.12's: TypeError before that)."""

    def call(loop):
        coro = loop.create_connection(asyncio.Protocol, "127.0.0.1", closed_port(), **kwargs)
        return loop.run_until_complete(coro)

    ours, stock = raised_by(call, loop), raised_by(call, stock_loop)
    assert type(ours) is type(stock), f"{ours!r} (stock asyncio: {stock!r})"
    if not isinstance(stock, OSError):
        assert str(ours) == str(stock)


@pytest.mark.parametrize(
    "kwargs",
    [{"server_hostname": "x"}, {"ssl_handshake_timeout": 1.0}, {"ssl_shutdown_timeout": 1.0}],
    ids=lambda kwargs: next(iter(kwargs)),
)
def test_unix_argument_errors_as_on_asyncio(loop, stock_loop, tmp_path, kwargs):
    def call(loop):
        coro = loop.create_unix_connection(asyncio.Protocol, str(tmp_path / "x"), **kwargs)
        return loop.run_until_complete(coro)

    ours, stock = raised_by(call, loop), raised_by(call, stock_loop)
    assert type(ours) is type(stock), f"{ours!r} (stock asyncio: {stock!r})"
    assert str(ours) == str(stock)


@pytest.mark.skipif(sys.version_info < (3, 12), reason="all_errors is new in Python 3.12")
def test_all_errors_raises_an_exception_group(loop, stock_loop):
    port = closed_port()

    async def connect(loop):
        await loop.create_connection(asyncio.Protocol, "127.0.0.1", port, all_errors=True)

    exc = assert_fails_like_asyncio(loop, stock_loop, connect)
    assert isinstance(exc, ExceptionGroup)  # noqa: F821 - a builtin from 3.11 on


@pytest.mark.parametrize(
    "call",
    [
        lambda loop: loop.create_connection(asyncio.Protocol, "localhost", 80),
        lambda loop: loop.create_connection(
            asyncio.Protocol, "127.0.0.1", 80, local_addr=("localhost", 0)
        ),
        lambda loop: loop.create_server(asyncio.Protocol, "localhost", 0),
        lambda loop: loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=("localhost", 0)
        ),
        lambda loop: loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, remote_addr=("localhost", 9)
        ),
    ],
    ids=["connection", "connection local_addr", "server", "datagram local", "datagram remote"],
)
def test_no_addresses_resolved_as_on_asyncio(loop, stock_loop, call):
    """A name that resolves to nothing (loop.getaddrinfo returns []): the OSError asyncio
    raises, same text (test_base_events checks it by patching asyncio's own socket module)."""

    async def connect(loop):
        async def no_addresses(*args, **kwargs):
            return []

        loop.getaddrinfo = no_addresses
        await call(loop)

    exc = assert_fails_like_asyncio(loop, stock_loop, connect)
    assert type(exc) is OSError and "returned empty list" in str(exc)


@pytest.mark.parametrize("port", [70000, "x"])
def test_bad_ports_as_on_asyncio(loop, stock_loop, port):
    async def connect(loop):
        await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)

    ours, _ = run_failing(loop, connect)
    stock, _ = run_failing(stock_loop, connect)
    assert type(ours) is type(stock), f"{ours!r} (stock asyncio: {stock!r})"


def test_the_protocol_factory_runs_in_the_callers_context(loop, stock_loop):
    var = contextvars.ContextVar("var")

    def run(loop):
        async def main():
            var.set("caller")
            server, port = await tcp_server(loop)
            transport, protocol = await loop.create_connection(
                lambda: Recorder(var.get(None)), "127.0.0.1", port
            )
            transport.close()
            server.close()
            return protocol.seen

        return loop.run_until_complete(main())

    assert run(loop) == run(stock_loop) == "caller"


@pytest.mark.parametrize("name", ["create_connection", "create_unix_connection"])
def test_signature_is_asyncios(loop, stock_loop, name):
    assert inspect.signature(getattr(loop, name)) == inspect.signature(getattr(stock_loop, name))
    assert inspect.iscoroutinefunction(getattr(loop, name))
