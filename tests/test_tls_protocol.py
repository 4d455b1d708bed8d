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
