"""Nothing is leaked: descriptors, pending callbacks, reference cycles through handles."""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import weakref

import pytest
from conftest import new_loop


def open_fds():
    return set(os.listdir("/proc/self/fd"))


def test_closing_loops_releases_their_descriptors(loop_factory):
    gc.collect()  # what earlier tests left for the collector closes now, not in the middle
    before = open_fds()
    for _ in range(20):
        loop = loop_factory()
        a, b = socket.socketpair()
        loop.add_reader(a, lambda: None)
        loop.call_later(10, lambda: None)
        loop.call_soon(loop.stop)
        loop.run_forever()
        loop.close()
        a.close()
        b.close()
    gc.collect()
    assert open_fds() == before


class Payload:
    pass


def test_close_drops_pending_callbacks(loop_factory):
    loop = loop_factory()
    soon, later, threadsafe = Payload(), Payload(), Payload()
    refs = [weakref.ref(p) for p in (soon, later, threadsafe)]
    loop.call_soon(print, soon)
    loop.call_later(10, print, later)
    loop.call_soon_threadsafe(print, threadsafe)
    del soon, later, threadsafe
    loop.close()
    gc.collect()
    assert [r() for r in refs] == [None, None, None]


def test_a_cycle_through_a_kept_handle_is_collected(loop_factory):
    loop = loop_factory()

    class Owner:
        def __init__(self):
            self.handle = loop.call_soon(self.callback)
            self.timer = loop.call_later(0, self.callback)

        def callback(self):
            pass

    owner = Owner()
    ref = weakref.ref(owner)
    del owner
    loop.call_later(0.01, loop.stop)
    loop.run_forever()
    gc.collect()
    assert ref() is None
    loop.close()


def test_a_cycle_through_a_handle_made_directly_is_collected(loop):
    """A handle made by calling its class (not scheduled) is seen by the collector, also when
    its memory is that of handles freed before it (oxloop reuses them)."""
    for _ in range(100):
        loop.call_soon(print)
        loop.call_later(10, print).cancel()
    loop.call_soon(loop.stop)
    loop.run_forever()
    handle_class = type(loop.call_soon(print))
    timer_class = type(loop.call_later(10, print))

    class Owner:
        def callback(self):
            pass

    owner = Owner()
    owner.handle = handle_class(owner.callback, (), loop)
    owner.timer = timer_class(loop.time() + 10, owner.callback, (), loop)
    ref = weakref.ref(owner)
    del owner
    gc.collect()
    assert ref() is None


def test_an_unclosed_loop_with_pending_callbacks_is_collected(loop_kind, recwarn):
    loop = new_loop(loop_kind)  # not through the fixture, which keeps its loops to close them
    loop.call_soon(loop.stop)
    loop.call_later(10, loop.stop)
    ref = weakref.ref(loop)
    del loop
    gc.collect()
    assert ref() is None
    assert any("unclosed event loop" in str(w.message) for w in recwarn)


def test_a_write_made_while_the_loop_is_not_running_is_sent(loop):
    # asyncio sends at once; oxloop queues until the next lap, which must not block first.
    received = loop.create_future()

    class Server(asyncio.Protocol):
        def data_received(self, data):
            if not received.done():
                received.set_result(data)

    server = loop.run_until_complete(loop.create_server(Server, "127.0.0.1", 0))
    port = server.sockets[0].getsockname()[1]
    transport, _ = loop.run_until_complete(
        loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
    )
    transport.write(b"sent outside a lap")
    assert loop.run_until_complete(asyncio.wait_for(received, 5)) == b"sent outside a lap"
    transport.close()
    server.close()
    loop.run_until_complete(server.wait_closed())


def test_a_closed_transport_leaves_no_watcher_on_its_descriptor(loop):
    # A protocol that writes again from resume_writing: once everything is sent and the
    # transport is closed, its descriptor must be watched by nothing (the number is reused).
    done = loop.create_future()
    total = 4 * 1024 * 1024

    class Writer(asyncio.Protocol):
        resumed = 0

        def connection_made(self, transport):
            self.transport = transport
            transport.write(b"x" * total)

        def resume_writing(self):
            self.resumed += 1
            if self.resumed == 1:
                self.transport.write(b"y" * 1024)
                self.transport.close()

        def connection_lost(self, exc):
            done.set_result(exc)

    drained = loop.create_future()

    async def drain_server(reader, writer):
        while await reader.read(1 << 16):
            pass
        writer.close()
        drained.set_result(None)

    server = loop.run_until_complete(asyncio.start_server(drain_server, "127.0.0.1", 0))
    port = server.sockets[0].getsockname()[1]
    transport, _protocol = loop.run_until_complete(
        loop.create_connection(Writer, "127.0.0.1", port)
    )
    fd = transport.get_extra_info("socket").fileno()
    assert loop.run_until_complete(asyncio.wait_for(done, 10)) is None
    loop.run_until_complete(asyncio.wait_for(drained, 10))
    if hasattr(loop, "_fd_handles"):
        assert loop._fd_handles(fd) == (None, None)
    else:
        with pytest.raises(KeyError):
            loop._selector.get_key(fd)
    server.close()
    loop.run_until_complete(server.wait_closed())
