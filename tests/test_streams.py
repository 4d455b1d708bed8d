"""The Streams API over the loop's transports: what a StreamReader and its protocol see, and what
replaces their methods (a subclass, a patch on the class, an attribute on the instance), as on
asyncio's loop. (oxloop does asyncio's own StreamReaderProtocol.data_received natively.)"""

from __future__ import annotations

import asyncio
import gc

import pytest


async def reader_server(loop, make_reader, make_protocol=asyncio.StreamReaderProtocol):
    """A server whose connections feed a StreamReader made by `make_reader()`; returns
    (server, port, accepted): `await accepted` gives (reader, protocol) once connected."""
    accepted = loop.create_future()

    def factory():
        reader = make_reader()
        protocol = make_protocol(reader)
        accepted.set_result((reader, protocol))
        return protocol

    server = await loop.create_server(factory, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], accepted


async def until(condition):
    """Wait for `condition()` (bounded by `run`'s timeout)."""
    while not condition():
        await asyncio.sleep(0.001)


def run(loop, scenario):
    return loop.run_until_complete(asyncio.wait_for(scenario(), 10))


def send_a_line(loop, make_reader, line):
    """A client sends `line` to a server whose readers `make_reader()` makes: what the
    server's `readline()` gives."""

    async def scenario():
        server, port, accepted = await reader_server(loop, make_reader)
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        reader, _ = await accepted
        writer.write(line)
        got = await reader.readline()
        writer.close()
        server.close()
        return got

    return run(loop, scenario)


def test_data_reaches_the_reader_in_order(loop):
    async def scenario():
        server, port, accepted = await reader_server(loop, asyncio.StreamReader)
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        reader, _ = await accepted
        sent = b"".join(bytes([i]) * 1000 for i in range(50))
        for i in range(0, len(sent), 1000):
            writer.write(sent[i : i + 1000])
        writer.write_eof()
        got = await reader.read()
        writer.close()
        server.close()
        return got == sent, reader.at_eof()

    assert run(loop, scenario) == (True, True)


def test_a_subclass_feed_data_is_called(loop):
    fed = []

    class Reader(asyncio.StreamReader):
        def feed_data(self, data):
            fed.append(bytes(data))
            super().feed_data(data.upper())

    assert send_a_line(loop, Reader, b"abc\n") == b"ABC\n"
    assert fed == [b"abc\n"]


def test_methods_set_on_the_instances_are_called(loop):
    calls = []

    async def scenario():
        server, port, accepted = await reader_server(loop, asyncio.StreamReader)
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        reader, protocol = await accepted
        feed_data, wakeup, received = reader.feed_data, reader._wakeup_waiter, protocol.data_received

        def on_feed(data):
            calls.append(("feed_data", data))
            feed_data(data)

        def on_wakeup():
            calls.append(("wakeup",))
            wakeup()

        def on_received(data):
            calls.append(("data_received", data))
            received(data)

        reader.feed_data, reader._wakeup_waiter = on_feed, on_wakeup
        writer.write(b"one\n")
        first = await reader.readline()
        protocol.data_received = on_received
        writer.write(b"two\n")
        second = await reader.readline()
        seen = list(calls)
        writer.close()
        server.close()
        return first, second, seen

    first, second, seen = run(loop, scenario)
    assert (first, second) == (b"one\n", b"two\n")
    assert seen == [
        ("feed_data", b"one\n"),
        ("wakeup",),
        ("data_received", b"two\n"),
        ("feed_data", b"two\n"),
        ("wakeup",),
    ]


@pytest.mark.parametrize(
    "cls, name",
    [
        (asyncio.StreamReaderProtocol, "data_received"),
        (asyncio.StreamReader, "feed_data"),
        (asyncio.StreamReader, "_wakeup_waiter"),
    ],
)
def test_methods_patched_on_asyncios_classes_are_called(loop, monkeypatch, cls, name):
    calls = []
    original = getattr(cls, name)

    def patched(self, *args):
        calls.append(args)
        return original(self, *args)

    monkeypatch.setattr(cls, name, patched)

    assert send_a_line(loop, asyncio.StreamReader, b"x\n") == b"x\n"
    assert calls and all(args in ((b"x\n",), ()) for args in calls)


def test_a_protocol_without_a_reader_drops_the_data(loop):
    async def scenario():
        server, port, accepted = await reader_server(loop, lambda: None)
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        _, protocol = await accepted
        writer.write(b"dropped")
        await asyncio.sleep(0.05)
        transport = protocol._transport
        writer.close()
        server.close()
        return transport.is_closing()

    assert run(loop, scenario) is False


def test_reading_pauses_past_twice_the_limit_and_resumes_when_read(loop):
    limit = 1000

    async def scenario():
        server, port, accepted = await reader_server(
            loop, lambda: asyncio.StreamReader(limit=limit)
        )
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        reader, protocol = await accepted
        writer.write(b"a" * (3 * limit))
        await until(lambda: len(reader._buffer) >= 3 * limit)
        paused = reader._paused, protocol._transport.is_reading()
        data = await reader.read(3 * limit)
        resumed = reader._paused, protocol._transport.is_reading()
        writer.close()
        server.close()
        return paused, resumed, len(data)

    assert run(loop, scenario) == ((True, False), (False, True), 3 * limit)


def test_a_transport_that_cannot_pause_is_forgotten(loop):
    class CannotPause:
        def pause_reading(self):
            raise NotImplementedError

    async def scenario():
        server, port, accepted = await reader_server(loop, lambda: asyncio.StreamReader(limit=10))
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        reader, _ = await accepted
        reader._transport = CannotPause()
        writer.write(b"b" * 100)
        await until(lambda: len(reader._buffer) >= 100)
        forgotten = reader._transport, reader._paused
        writer.close()
        server.close()
        return forgotten

    assert run(loop, scenario) == (None, False)


def test_a_cancelled_read_leaves_the_data_for_the_next(loop):
    async def scenario():
        server, port, accepted = await reader_server(loop, asyncio.StreamReader)
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        reader, _ = await accepted
        pending = asyncio.ensure_future(reader.read(100))
        await asyncio.sleep(0)
        waiter = reader._waiter
        pending.cancel()
        writer.write(b"kept")
        await until(lambda: reader._buffer)
        got = await reader.read(100)
        writer.close()
        server.close()
        return waiter.cancelled(), pending.cancelled(), got

    assert run(loop, scenario) == (True, True, b"kept")


def failures(loop, provoke):
    """A client connects to a StreamReader server and `await provoke(reader, writer)` (the
    server's reader, the client's writer) breaks it; once the server has closed the connection:
    what the exception handler was given, as (message, exception type) pairs."""
    errors = []

    async def scenario():
        loop.set_exception_handler(lambda _, context: errors.append(context))
        server, port, accepted = await reader_server(loop, asyncio.StreamReader)
        client_reader, writer = await asyncio.open_connection("127.0.0.1", port)
        reader, _ = await accepted
        await provoke(reader, writer)
        end = await client_reader.read()
        writer.close()
        server.close()
        return end

    assert run(loop, scenario) == b""
    gc.collect()
    return [(c["message"], type(c["exception"])) for c in errors]


@pytest.mark.skipif(not __debug__, reason="asyncio's feed_data asserts only without -O")
def test_data_after_feed_eof_fails_the_connection_as_on_asyncio(loop):
    async def provoke(reader, writer):
        reader.feed_eof()
        writer.write(b"late")

    assert failures(loop, provoke) == [
        ("Fatal error: protocol.data_received() call failed.", AssertionError)
    ]


# Reads of more than a few KiB go straight to the end of asyncio's StreamReader's buffer on oxloop
# (no bytes object between); what the reader and its protocol see is the same.

LARGE = 20 * 1024


def test_large_data_reaches_the_reader_whole_and_in_order_then_eof(loop):
    async def scenario():
        server, port, accepted = await reader_server(loop, asyncio.StreamReader)
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        reader, _ = await accepted
        sent = b"".join(bytes([i]) * LARGE for i in range(40))
        got = bytearray()
        for i in range(0, len(sent), LARGE):
            writer.write(sent[i : i + LARGE])
            await writer.drain()
            got += await reader.readexactly(LARGE)
        writer.write(sent[: 3 * LARGE])  # several reads' worth at once, then the end
        writer.write_eof()
        rest = await reader.read()
        writer.close()
        server.close()
        return bytes(got) == sent, rest == sent[: 3 * LARGE], reader.at_eof()

    assert run(loop, scenario) == (True, True, True)


def test_large_reads_pause_past_twice_the_limit_and_resume(loop):
    limit = 16 * 1024

    async def scenario():
        server, port, accepted = await reader_server(
            loop, lambda: asyncio.StreamReader(limit=limit)
        )
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        reader, protocol = await accepted
        writer.write(b"c" * LARGE)  # the first large read teaches the transport the size
        await until(lambda: len(reader._buffer) >= LARGE)
        writer.write(b"d" * (3 * limit))
        await until(lambda: reader._paused)
        paused = protocol._transport.is_reading()
        total = 0
        while total < LARGE + 3 * limit:
            total += len(await reader.read(1 << 20))
        resumed = reader._paused, protocol._transport.is_reading()
        writer.close()
        server.close()
        return paused, resumed, total

    assert run(loop, scenario) == (False, (False, True), LARGE + 3 * limit)


def test_a_large_read_into_an_exported_buffer_fails_as_on_asyncio(loop):
    views = []

    async def provoke(reader, writer):
        writer.write(b"e" * LARGE)
        await reader.readexactly(LARGE)
        writer.write(b"f" * LARGE)  # read straight into the buffer (on oxloop)
        await until(lambda: len(reader._buffer) == LARGE)
        views.append(memoryview(reader._buffer))  # an exported bytearray cannot be resized
        writer.write(b"g" * LARGE)

    seen = failures(loop, provoke)
    views[0].release()
    assert seen == [("Fatal error: protocol.data_received() call failed.", BufferError)]


def test_a_subclass_feed_data_gets_large_reads_too(loop):
    sizes = []

    class Reader(asyncio.StreamReader):
        def feed_data(self, data):
            sizes.append(len(data))
            super().feed_data(data)

    async def scenario():
        server, port, accepted = await reader_server(loop, Reader)
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        reader, _ = await accepted
        for _ in range(3):
            writer.write(b"h" * LARGE)
            await reader.readexactly(LARGE)
        writer.close()
        server.close()

    run(loop, scenario)
    assert sum(sizes) == 3 * LARGE
