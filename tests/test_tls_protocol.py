"""TLS at the protocol level, on both loops: the per-record path (oxloop's is native on 3.11+)
with every kind of application protocol and buffer, flow control both ways, close_notify, and
a context whose SSLObject class is the user's own.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import sys

import pytest

pytest.importorskip("cryptography", reason="the test certificates are made with cryptography")
from test_tls import client_context, server_context
from tls_certs import make_certs


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certs(tmp_path_factory.mktemp("certs"))


class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


class Collector(asyncio.Protocol):
    """Collects what arrives; `done` resolves once `expected` bytes came (or on EOF)."""

    def __init__(self, loop, expected):
        self.expected = expected
        self.received = bytearray()
        self.events = []
        self.done = loop.create_future()

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        assert isinstance(data, bytes)
        self.received += data
        if len(self.received) >= self.expected and not self.done.done():
            self.done.set_result(None)

    def eof_received(self):
        self.events.append("eof")
        if not self.done.done():
            self.done.set_result(None)

    def connection_lost(self, exc):
        self.events.append(("lost", exc))


class BufferedCollector(asyncio.BufferedProtocol):
    def __init__(self, loop, expected):
        self.expected = expected
        self.buffer = bytearray(4096)
        self.received = bytearray()
        self.done = loop.create_future()

    def connection_made(self, transport):
        self.transport = transport

    def get_buffer(self, sizehint):
        # A memoryview: asyncio's TLS protocol fills the rest of a buffer through a slice,
        # which of a bytearray would be a copy.
        return memoryview(self.buffer)

    def buffer_updated(self, nbytes):
        self.received += self.buffer[:nbytes]
        if len(self.received) >= self.expected and not self.done.done():
            self.done.set_result(None)


async def echo_server(loop, certs):
    server = await loop.create_server(Echo, "127.0.0.1", 0, ssl=server_context(certs))
    return server, server.sockets[0].getsockname()[1]


async def connect(loop, certs, factory, port, ctx=None):
    return await loop.create_connection(
        factory, "127.0.0.1", port, ssl=ctx or client_context(certs), server_hostname="localhost"
    )


@pytest.mark.parametrize("buffered", [False, True], ids=["Protocol", "BufferedProtocol"])
def test_echo_of_every_buffer_kind_and_size(loop, certs, buffered):
    chunks = [b"x", bytearray(b"y" * 1000), memoryview(os.urandom(70_000)), os.urandom(600_000)]
    expected = b"".join(bytes(c) for c in chunks) * 2

    async def main():
        server, port = await echo_server(loop, certs)
        factory = BufferedCollector if buffered else Collector
        transport, proto = await connect(loop, certs, lambda: factory(loop, len(expected)), port)
        for chunk in chunks:
            transport.write(chunk)
        transport.writelines(chunks)
        await asyncio.wait_for(proto.done, 10)
        size_after = transport.get_write_buffer_size()
        transport.close()
        server.close()
        await server.wait_closed()
        return bytes(proto.received), size_after

    received, size_after = loop.run_until_complete(main())
    assert received == expected
    assert size_after == 0


def test_pause_reading_holds_data_until_resumed(loop, certs):
    async def main():
        server, port = await echo_server(loop, certs)
        transport, proto = await connect(loop, certs, lambda: Collector(loop, 5), port)
        transport.pause_reading()
        assert not transport.is_reading()
        transport.write(b"hello")
        await asyncio.sleep(0.1)
        held = bytes(proto.received)
        transport.resume_reading()
        await asyncio.wait_for(proto.done, 5)
        transport.close()
        server.close()
        await server.wait_closed()
        return held, bytes(proto.received)

    assert loop.run_until_complete(main()) == (b"", b"hello")


def test_write_flow_control_pauses_and_resumes_the_protocol(loop, certs):
    payload = os.urandom(8_000_000)

    async def main():
        sink = Collector(loop, len(payload))

        class SlowSink(asyncio.Protocol):
            """Reads nothing for a while, so the client's socket fills up."""

            def connection_made(self, transport):
                sink.connection_made(transport)
                transport.pause_reading()
                loop.call_later(0.2, transport.resume_reading)

            def data_received(self, data):
                sink.data_received(data)

        server = await loop.create_server(SlowSink, "127.0.0.1", 0, ssl=server_context(certs))
        port = server.sockets[0].getsockname()[1]
        calls = []

        class Writer(asyncio.Protocol):
            def pause_writing(self):
                calls.append("pause")

            def resume_writing(self):
                calls.append("resume")

        transport, _ = await connect(loop, certs, Writer, port)
        transport.set_write_buffer_limits(high=1024)
        assert transport.get_write_buffer_limits() == (256, 1024)
        # The first write goes to the socket transport, which pauses the TLS protocol once
        # the socket is full; what follows stays encrypted in the TLS protocol, over the limit.
        for i in range(0, len(payload), 1_000_000):
            transport.write(payload[i:i + 1_000_000])
        await asyncio.wait_for(sink.done, 10)
        transport.close()
        server.close()
        await server.wait_closed()
        return calls, bytes(sink.received) == payload

    calls, same = loop.run_until_complete(main())
    assert same
    assert calls[:2] == ["pause", "resume"]


OLD_SSLPROTO = pytest.mark.skipif(
    sys.version_info < (3, 11),
    reason="3.10's sslproto is the older design (no eof_received on close_notify, no _state)",
)


@OLD_SSLPROTO
def test_close_notify_reaches_eof_received_then_connection_lost(loop, certs):
    async def main():
        accepted = loop.create_future()

        class Closer(asyncio.Protocol):
            def connection_made(self, transport):
                accepted.set_result(transport)

        server = await loop.create_server(Closer, "127.0.0.1", 0, ssl=server_context(certs))
        port = server.sockets[0].getsockname()[1]
        _, proto = await connect(loop, certs, lambda: Collector(loop, 1), port)
        server_transport = await accepted
        server_transport.write(b"bye")
        server_transport.close()  # data, then close_notify
        await asyncio.wait_for(proto.done, 5)
        for _ in range(50):
            if any(isinstance(e, tuple) for e in proto.events):
                break
            await asyncio.sleep(0.01)
        server.close()
        await server.wait_closed()
        return bytes(proto.received), proto.events

    received, events = loop.run_until_complete(main())
    assert received == b"bye"
    assert events == ["eof", ("lost", None)]


def test_a_custom_sslobject_class_is_used(loop, certs):
    calls = {"read": 0, "write": 0}

    class CountingSSLObject(ssl.SSLObject):
        def read(self, len=1024, buffer=None):
            calls["read"] += 1
            return super().read(len, buffer)

        def write(self, data):
            calls["write"] += 1
            return super().write(data)

    ctx = client_context(certs)
    ctx.sslobject_class = CountingSSLObject

    async def main():
        server, port = await echo_server(loop, certs)
        transport, proto = await connect(loop, certs, lambda: Collector(loop, 3), port, ctx)
        transport.write(b"abc")
        await asyncio.wait_for(proto.done, 5)
        transport.close()
        server.close()
        await server.wait_closed()
        return bytes(proto.received)

    assert loop.run_until_complete(main()) == b"abc"
    assert calls["read"] >= 1
    assert calls["write"] >= 1


@OLD_SSLPROTO
def test_protocol_state_is_asyncio_s(loop, certs):
    """asyncio's attributes of the TLS protocol read and write as on asyncio (tests and
    debugging code look at them)."""

    async def main():
        server, port = await echo_server(loop, certs)
        transport, proto = await connect(loop, certs, lambda: Collector(loop, 1), port)
        ssl_protocol = transport._ssl_protocol
        seen = (
            ssl_protocol._state.name,
            ssl_protocol._app_protocol is proto,
            ssl_protocol._write_buffer_size,
            isinstance(ssl_protocol._sslobj, ssl.SSLObject),
            ssl_protocol._app_reading_paused,
        )
        ssl_protocol._write_buffer_size = 0
        transport.close()
        server.close()
        await server.wait_closed()
        return seen

    assert loop.run_until_complete(main()) == ("WRAPPED", True, 0, True, False)


def test_application_transport_write_checks_as_on_asyncio(loop, stock_loop, certs):
    """The TLS application transport's write: asyncio's TypeError for what is not a buffer,
    nothing for an empty one; it is an asyncio _SSLProtocolTransport."""

    def run(loop):
        async def main():
            server, port = await echo_server(loop, certs)
            transport, _ = await connect(loop, certs, asyncio.Protocol, port)
            outcome = [isinstance(transport, asyncio.sslproto._SSLProtocolTransport)]
            for data in ("x", 1, None, b"", bytearray(), memoryview(b"")):
                try:
                    transport.write(data)
                    outcome.append("ok")
                except TypeError as exc:
                    outcome.append(str(exc))
            outcome.append(transport.get_write_buffer_size())
            transport.close()
            server.close()
            await server.wait_closed()
            return outcome

        return loop.run_until_complete(main())

    ours = run(loop)
    assert ours == run(stock_loop)
    assert ours[0] is True and ours[-4:] == ["ok", "ok", "ok", 0]


def _snapshot(proto):
    """The TLS protocol's attributes, as values to compare across the two classes: plain
    values as they are, objects made per protocol by their type, methods by name and owner."""
    from oxloop._sslproto import SSLProtocolBase

    names = set(vars(proto)) | set(getattr(SSLProtocolBase, "_native_attributes", ()))
    seen = {}
    for name in sorted(names):
        value = getattr(proto, name)
        if value is None or isinstance(value, (bool, int, float, str, asyncio.sslproto.enum.Enum)):
            seen[name] = value
        elif isinstance(value, (bytearray, memoryview)):
            seen[name] = type(value).__name__  # asyncio's is max_size long; oxloop's grows on use
        elif hasattr(value, "__self__"):
            seen[name] = ("method", value.__name__, type(value.__self__).__name__)
        elif isinstance(value, dict):
            seen[name] = sorted(value)
        else:
            seen[name] = type(value).__name__
    return seen


@OLD_SSLPROTO
@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"server_side": True},
        {"server_hostname": "localhost"},
        {"server_side": True, "server_hostname": "ignored"},
        {"call_connection_made": False},
        {"ssl_handshake_timeout": 5, "ssl_shutdown_timeout": 2.5},
        {"context": None, "server_hostname": "localhost"},
        {"buffered": True},
    ],
    ids=["client", "server", "hostname", "server-hostname", "no-connection-made", "timeouts",
         "default-context", "buffered"],
)
def test_a_new_protocol_is_as_asyncio_makes_it(loop, certs, kwargs):
    """oxloop's native __init__ sets what asyncio's does, to the same values."""
    from oxloop._sslproto import SSLProtocol

    kwargs = dict(kwargs)
    server_side = kwargs.get("server_side", False)
    default = server_context(certs) if server_side else client_context(certs)
    context = kwargs.pop("context", default)
    app = BufferedCollector(loop, 1) if kwargs.pop("buffered", False) else Collector(loop, 1)
    made = []
    for cls in (asyncio.sslproto.SSLProtocol, SSLProtocol):
        waiter = loop.create_future()
        proto = cls(loop, app, context, waiter, **kwargs)
        made.append(_snapshot(proto))
        assert proto._waiter is waiter and proto._loop is loop and proto._app_protocol is app
        assert proto._get_app_transport() is proto._app_transport
        proto._app_transport._closed = True  # no "unclosed transport" warning
    assert made[1] == made[0]


@OLD_SSLPROTO
@pytest.mark.parametrize("name", ["ssl_handshake_timeout", "ssl_shutdown_timeout"])
@pytest.mark.parametrize("value", [0, -1, -0.5])
def test_a_timeout_that_is_not_positive_raises_as_on_asyncio(loop, certs, name, value):
    from oxloop._sslproto import SSLProtocol

    errors = []
    for cls in (asyncio.sslproto.SSLProtocol, SSLProtocol):
        with pytest.raises(ValueError) as info:
            cls(loop, Collector(loop, 1), client_context(certs), None, **{name: value})
        errors.append(str(info.value))
    assert errors[1] == errors[0]


@OLD_SSLPROTO
def test_state_transitions_are_asyncio_s(loop, certs):
    """_set_state allows what asyncio allows, and raises its RuntimeError otherwise."""
    from oxloop._sslproto import SSLProtocol

    S = asyncio.sslproto.SSLProtocolState
    steps = [S.WRAPPED, S.DO_HANDSHAKE, S.DO_HANDSHAKE, S.SHUTDOWN, S.WRAPPED, S.FLUSHING,
             S.FLUSHING, S.SHUTDOWN, S.UNWRAPPED, S.UNWRAPPED, S.FLUSHING, "DO_HANDSHAKE"]
    outcomes = []
    for cls in (asyncio.sslproto.SSLProtocol, SSLProtocol):
        proto = cls(loop, Collector(loop, 1), client_context(certs), None)
        proto._app_transport._closed = True
        seen = []
        for step in steps:
            try:
                proto._set_state(step)
                seen.append(proto._state)
            except RuntimeError as exc:
                seen.append(str(exc))
        outcomes.append(seen)
    assert outcomes[1] == outcomes[0]
    assert "cannot switch state from SSLProtocolState.UNWRAPPED to SSLProtocolState.WRAPPED" in outcomes[0]


def _handshake_failure(loop, certs, how):
    """What a client sees of a failed handshake: the exception (type, message) and what the
    loop's exception handler was given."""
    import socket

    reported = []
    loop.set_exception_handler(lambda _loop, context: reported.append(
        (context["message"], type(context.get("exception")).__name__)))

    async def main():
        if how in ("peer-closes", "timeout"):
            listener = socket.create_server(("127.0.0.1", 0))
            listener.setblocking(False)
            port = listener.getsockname()[1]

            async def accept_and_close():
                conn, _ = await loop.sock_accept(listener)
                await loop.sock_recv(conn, 1024)  # the ClientHello
                conn.close()

            task = asyncio.ensure_future(accept_and_close()) if how == "peer-closes" else None
            hostname, server = "localhost", None
        else:
            server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0,
                                              ssl=server_context(certs))
            port = server.sockets[0].getsockname()[1]
            hostname, task = "not-localhost.example", None
        made = []

        class App(asyncio.Protocol):
            def connection_made(self, transport):
                made.append(transport)

        try:
            await loop.create_connection(
                App, "127.0.0.1", port, ssl=client_context(certs), server_hostname=hostname,
                ssl_handshake_timeout=0.3,
            )
        except Exception as exc:  # noqa: BLE001 (what is compared)
            outcome = (type(exc).__name__, str(exc) if how != "mismatch" else exc.verify_message)
        finally:
            if task is not None:
                await task
            if server is not None:
                server.close()
                await server.wait_closed()
            else:
                listener.close()
        await asyncio.sleep(0.05)
        return outcome, made

    outcome, made = loop.run_until_complete(main())
    loop.close()
    return outcome, made, sorted(reported)


@OLD_SSLPROTO
@pytest.mark.parametrize("how", ["mismatch", "peer-closes", "timeout"])
def test_a_failed_handshake_is_reported_as_on_asyncio(loop, stock_loop, certs, how):
    ours = _handshake_failure(loop, certs, how)
    assert ours == _handshake_failure(stock_loop, certs, how)
    assert ours[1] == []  # the application protocol never heard of the connection


def _made_or_raised(make):
    try:
        return make()
    except Exception as exc:  # noqa: BLE001 (what is compared)
        return (type(exc).__name__, str(exc))


@OLD_SSLPROTO
@pytest.mark.parametrize(
    "hostname",
    ["localhost", "a.b.c", "trailing.dot.", "bücher.example", "x" * 64, "a..b", "", None,
     b"localhost"],
    ids=["plain", "labels", "trailing-dot", "idn", "label-too-long", "empty-label", "empty",
         "none", "bytes"],
)
def test_server_hostnames_are_encoded_as_on_asyncio(loop, certs, hostname):
    """The SSL object is given the host name as ssl.SSLContext.wrap_bio encodes it (oxloop
    encodes plain ASCII names itself, and leaves the rest to the ssl module)."""
    from oxloop._sslproto import SSLProtocol

    seen = []
    for cls in (asyncio.sslproto.SSLProtocol, SSLProtocol):
        def make(cls=cls):
            proto = cls(loop, Collector(loop, 1), client_context(certs), None,
                        server_hostname=hostname)
            proto._app_transport._closed = True
            return type(proto._sslobj).__name__, proto._sslobj.server_hostname

        seen.append(_made_or_raised(make))
    assert seen[1] == seen[0]


@OLD_SSLPROTO
def test_a_context_of_the_user_s_own_wraps_as_it_says(loop, certs):
    """A context subclass's own wrap_bio is called, as asyncio calls it."""
    from oxloop._sslproto import SSLProtocol

    calls = []

    class Context(ssl.SSLContext):
        def wrap_bio(self, *args, **kwargs):
            calls.append(kwargs)
            return super().wrap_bio(*args, **kwargs)

    ctx = Context(ssl.PROTOCOL_TLS_CLIENT)
    for cls in (asyncio.sslproto.SSLProtocol, SSLProtocol):
        proto = cls(loop, Collector(loop, 1), ctx, None, server_hostname="localhost")
        proto._app_transport._closed = True
    assert calls == [{"server_side": False, "server_hostname": "localhost"}] * 2


@OLD_SSLPROTO
def test_an_unclosed_application_transport_warns_as_on_asyncio(loop, certs):
    import gc
    import warnings

    from oxloop._sslproto import SSLProtocol

    seen = []
    for cls in (asyncio.sslproto.SSLProtocol, SSLProtocol):
        gc.collect()  # what earlier tests left
        proto = cls(loop, Collector(loop, 1), client_context(certs), None)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            del proto
            gc.collect()
        seen.append([(w.category, str(w.message)) for w in caught if "SSLProtocol" in str(w.message)])
    assert seen[1] == seen[0]
    assert seen[0] == [(ResourceWarning, "unclosed transport <asyncio._SSLProtocolTransport object>")]


class _RecordingTransport(asyncio.Transport):
    """A transport below a TLS protocol that records what the protocol asks of it."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def write(self, data):
        self.calls.append(("write", type(data).__name__))

    def abort(self):
        self.calls.append(("abort",))

    def _force_close(self, exc):
        self.calls.append(("_force_close", exc))

    def close(self):
        self.calls.append(("close",))

    def get_extra_info(self, name, default=None):
        return default


@OLD_SSLPROTO
def test_closing_during_the_handshake_aborts_as_on_asyncio(loop, certs):
    """The application transport closed while the handshake is under way: asyncio's _abort
    (transport.abort() on 3.11-3.12, transport._force_close(None) from 3.13), then the
    connection's end as asyncio's connection_lost does it."""
    from oxloop._sslproto import SSLProtocol

    seen = []
    for cls in (asyncio.sslproto.SSLProtocol, SSLProtocol):
        waiter = loop.create_future()
        app = Collector(loop, 1)
        proto = cls(loop, app, client_context(certs), waiter, server_hostname="localhost")
        below = _RecordingTransport()
        proto.connection_made(below)  # the ClientHello goes out
        state_before = proto._state
        proto._app_transport.close()
        proto._app_transport.close()  # a second close does nothing
        proto.connection_lost(None)
        loop.run_until_complete(asyncio.sleep(0))
        seen.append((state_before, below.calls, proto._state, waiter.done(), app.events,
                     proto._handshake_timeout_handle, proto._transport))
    assert seen[1] == seen[0]
    assert seen[0][0] is asyncio.sslproto.SSLProtocolState.DO_HANDSHAKE
    assert seen[0][1][0] == ("write", "bytes")
