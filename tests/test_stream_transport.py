"""TCP and Unix stream transports and the servers that accept them: what a protocol, a user of
the transport and the exception handler see is what they see on asyncio's loop."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import threading

import pytest


class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


class Recorder(asyncio.Protocol):
    """Keeps its transport and what happened to it."""

    def __init__(self):
        self.transport = None
        self.events = []
        self.lost = asyncio.get_event_loop().create_future()

    def connection_made(self, transport):
        self.transport = transport
        self.events.append("made")

    def data_received(self, data):
        self.events.append(data)

    def eof_received(self):
        self.events.append("eof")

    def connection_lost(self, exc):
        self.events.append("lost")
        self.lost.set_result(exc)


async def serve_recorders(loop, unix_path=None):
    """A TCP (or Unix) server whose protocols are Recorders; returns (server, port, next_protocol)
    where `await next_protocol()` gives the next accepted connection's protocol once connected."""
    accepted = asyncio.Queue()

    def factory():
        p = Recorder()
        accepted.put_nowait(p)
        return p

    async def next_protocol():
        proto = await asyncio.wait_for(accepted.get(), 5)
        while proto.transport is None:  # connection_made comes after the factory
            await asyncio.sleep(0)
        return proto

    if unix_path:
        return await loop.create_unix_server(factory, unix_path), None, next_protocol
    server = await loop.create_server(factory, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], next_protocol


def test_transports_are_asyncio_transports(loop):
    async def main():
        server, port, next_protocol = await serve_recorders(loop)
        client, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
        proto = await next_protocol()
        for tr in (client, proto.transport):
            assert isinstance(tr, asyncio.Transport)
            assert isinstance(tr, asyncio.ReadTransport) and isinstance(tr, asyncio.WriteTransport)
            assert issubclass(type(tr), asyncio.Transport)
        client.close()
        server.close()
        await server.wait_closed()

    loop.run_until_complete(main())


def test_extra_info_is_the_sockets_and_stays_after_close(loop):
    async def main():
        server, port, next_protocol = await serve_recorders(loop)
        client, _ = await loop.create_connection(Recorder, "127.0.0.1", port)
        proto = await next_protocol()
        server_side = proto.transport
        seen = {}
        for name, tr in (("client", client), ("server", server_side)):
            sock = tr.get_extra_info("socket")
            seen[name] = {
                "sockname": tr.get_extra_info("sockname"),
                "peername": tr.get_extra_info("peername"),
                "fileno": sock.fileno(),
                "family": sock.family,
                "type": sock.type,
            }
            assert tr.get_extra_info("socket") is sock
            assert seen[name]["sockname"] == sock.getsockname()
            assert seen[name]["peername"] == sock.getpeername()
            assert tr.get_extra_info("no such thing", "dflt") == "dflt"
            assert tr.get_extra_info("no such thing") is None
        assert seen["client"]["peername"] == seen["server"]["sockname"]
        assert seen["server"]["peername"] == seen["client"]["sockname"]
        assert seen["server"]["family"] == socket.AF_INET
        assert seen["server"]["type"] == socket.SOCK_STREAM
        server_side.close()
        await asyncio.wait_for(proto.lost, 5)
        # Closed: the values are those of the open connection.
        assert server_side.get_extra_info("peername") == seen["server"]["peername"]
        assert server_side.get_extra_info("sockname") == seen["server"]["sockname"]
        assert server_side.get_extra_info("socket").fileno() == -1
        client.close()
        server.close()
        await server.wait_closed()

    loop.run_until_complete(main())


@pytest.mark.parametrize(
    ("listen", "connect"),
    [("127.0.0.1", "127.0.0.1"), ("0.0.0.0", "127.0.0.1"), ("::1", "::1"), ("::", "::1")],
)
def test_a_servers_transport_names_its_local_address(loop, listen, connect):
    # A server listening on one address gives it to every connection; one listening on a
    # wildcard gives each connection the address it was reached at.
    if ":" in listen + connect and not socket.has_ipv6:
        pytest.skip("no IPv6")

    async def main():
        accepted = asyncio.Queue()

        class P(asyncio.Protocol):
            def connection_made(self, transport):
                accepted.put_nowait(transport)

        family = socket.AF_INET6 if ":" in listen else socket.AF_INET
        try:
            server = await loop.create_server(P, listen, 0, family=family)
        except OSError as exc:
            pytest.skip(f"cannot listen on {listen}: {exc}")
        port = server.sockets[0].getsockname()[1]
        client, _ = await loop.create_connection(asyncio.Protocol, connect, port)
        tr = await asyncio.wait_for(accepted.get(), 5)
        names = tr.get_extra_info("sockname"), tr.get_extra_info("peername")
        assert names[1] == tr.get_extra_info("socket").getpeername()
        assert names[0] == tr.get_extra_info("socket").getsockname()
        assert names[0][:2] == client.get_extra_info("peername")[:2]
        client.close()
        tr.close()
        server.close()
        await server.wait_closed()
        return names[0][0]

    assert loop.run_until_complete(main()) == connect


def test_a_servers_transport_socket_first_asked_for_after_close_is_a_closed_socket(loop):
    # Nothing asks for the socket while the connection lives (oxloop makes the object only
    # when asked); asked afterwards, it is the closed socket, with its family and type.
    async def main():
        server, port, next_protocol = await serve_recorders(loop)
        client, _ = await loop.create_connection(Recorder, "127.0.0.1", port)
        proto = await next_protocol()
        tr = proto.transport
        names = tr.get_extra_info("sockname"), tr.get_extra_info("peername")
        assert names == (client.get_extra_info("peername"), client.get_extra_info("sockname"))
        tr.close()
        assert await asyncio.wait_for(proto.lost, 5) is None
        assert tr._sock is None
        sock = tr.get_extra_info("socket")
        seen = (sock.fileno(), sock.family, sock.type, sock.proto)
        assert tr.get_extra_info("socket") is sock
        assert (tr.get_extra_info("sockname"), tr.get_extra_info("peername")) == names
        assert await asyncio.wait_for(client.get_protocol().lost, 5) is None
        server.close()
        await server.wait_closed()
        return seen

    seen = loop.run_until_complete(main())
    assert seen == (-1, socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)


def test_a_servers_transport_sock_is_the_accepted_socket(loop):
    async def main():
        server, port, next_protocol = await serve_recorders(loop)
        client, _ = await loop.create_connection(Recorder, "127.0.0.1", port)
        proto = await next_protocol()
        tr = proto.transport
        sock = tr._sock
        assert isinstance(sock, socket.socket)
        assert tr._sock is sock
        assert tr.get_extra_info("socket").fileno() == sock.fileno() == tr._sock_fd
        seen = (sock.family, sock.type, sock.proto, sock.gettimeout(), sock.get_inheritable())
        seen += (sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0,)
        tr.close()
        await asyncio.wait_for(proto.lost, 5)
        assert tr._sock is None and sock.fileno() == -1
        await asyncio.wait_for(client.get_protocol().lost, 5)
        server.close()
        await server.wait_closed()
        return seen

    seen = loop.run_until_complete(main())
    assert seen == (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, 0.0, False, True)


@pytest.mark.parametrize("side", ["server", "client"])
def test_a_transport_collected_unclosed_warns_and_closes_its_socket(loop, side):
    import gc

    async def main():
        server, port, next_protocol = await serve_recorders(loop)
        if side == "server":
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            proto = await next_protocol()
        else:
            proto = (await loop.create_connection(Recorder, "127.0.0.1", port))[1]
            peer = await next_protocol()
        proto.transport.pause_reading()  # the loop no longer holds it
        proto.transport = None
        del proto
        with pytest.warns(ResourceWarning, match="unclosed transport"):
            gc.collect()
        # The descriptor was closed: the peer sees the end of the stream.
        if side == "server":
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()
        else:
            await asyncio.wait_for(peer.lost, 5)
            assert peer.events == ["made", "eof", "lost"]
        # Not wait_closed(): on 3.12 it waits for the server's transports, and asyncio's
        # __del__ tells the server of the collected one only from 3.13 on.
        server.close()

    loop.run_until_complete(main())


UNCLOSED_IN_A_BARE_FRAME = """
import asyncio, gc, socket, sys, warnings
if sys.argv[1] == "oxloop":
    import oxloop
    loop = oxloop.new_event_loop()
else:
    loop = asyncio.new_event_loop()
ours, peer = socket.socketpair()

async def make():
    transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, ours)
    transport.pause_reading()  # the loop no longer holds it
    return transport

transport = loop.run_until_complete(make())
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    del transport
    # The collector runs the finalizer in a frame whose builtins have no __import__.
    exec("collect()", {"__builtins__": {}, "collect": gc.collect})
print(sorted({str(w.message).split(" <")[0] for w in caught}), ours.fileno())
"""


def test_a_transport_collected_in_a_frame_without_import_still_warns_and_closes(loop_kind):
    # A finalizer runs in whatever frame the collector interrupts; oxloop's once imported
    # asyncio's __del__ there on first use, and failed where builtins lack __import__.
    out = subprocess.run(
        [sys.executable, "-c", UNCLOSED_IN_A_BARE_FRAME, loop_kind],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.split("\n")[0] == "['unclosed transport'] -1", out.stderr


def test_a_server_counts_its_connections_as_asyncio_does(loop):
    # asyncio's Server counts its transports (3.13: keeps them) through _attach/_detach; a mock
    # set on the server sees every call.
    def count(server):
        return len(server._clients) if hasattr(server, "_clients") else server._active_count

    async def main():
        server, port, next_protocol = await serve_recorders(loop)
        seen = [count(server)]
        clients = []
        for _ in range(3):
            clients.append(await loop.create_connection(Recorder, "127.0.0.1", port))
            await next_protocol()
        seen.append(count(server))
        clients.pop()[0].close()
        for _ in range(20):
            await asyncio.sleep(0.01)
            if count(server) == 2:
                break
        seen.append(count(server))
        calls = []
        attach, detach = server._attach, server._detach
        server._attach = lambda *a: (calls.append("attach"), attach(*a))[1]
        server._detach = lambda *a: (calls.append("detach"), detach(*a))[1]
        clients.append(await loop.create_connection(Recorder, "127.0.0.1", port))
        proto = await next_protocol()
        proto.transport.close()
        await asyncio.wait_for(proto.lost, 5)
        seen.append(count(server))
        server.close()
        for tr, _ in clients:
            tr.close()
        await asyncio.wait_for(server.wait_closed(), 5)
        for _ in range(20):
            await asyncio.sleep(0.01)
            if count(server) == 0:
                break
        seen.append(count(server))
        return seen, calls

    seen, calls = loop.run_until_complete(main())
    assert seen == [0, 3, 2, 2, 0]
    assert calls == ["attach", "detach", "detach", "detach"]


def test_transport_methods_take_their_arguments_as_on_asyncio(loop):
    async def main():
        server, port, next_protocol = await serve_recorders(loop)
        client, proto = await loop.create_connection(Recorder, "127.0.0.1", port)
        await next_protocol()
        peer = client.get_extra_info("peername")
        assert client.get_extra_info(name="peername") == peer
        assert client.get_extra_info("nothing", "d") == "d"
        assert client.get_extra_info("nothing", default="d") == "d"
        assert client.get_extra_info(name="nothing", default="d") == "d"
        errors = []
        for call in (
            lambda: client.get_extra_info(),
            lambda: client.get_extra_info("a", "b", "c"),
            lambda: client.get_extra_info("a", name="b"),
            lambda: client.get_extra_info("a", colour="b"),
            lambda: client.close(1),
            lambda: client.set_protocol(),
            lambda: client.pause_reading(True),
        ):
            with pytest.raises(TypeError) as e:
                call()
            errors.append(e.type)
        assert client.get_protocol() is proto
        other = Recorder()
        client.set_protocol(other)
        assert client.get_protocol() is other
        client.set_protocol(proto)
        assert client.is_reading()
        client.pause_reading()
        assert not client.is_reading()
        client.resume_reading()
        assert client.get_write_buffer_size() == 0
        client.write_eof()
        client.abort()
        assert client.is_closing()
        server.close()
        return errors

    assert loop.run_until_complete(main()) == [TypeError] * 7


def test_data_waiting_at_creation_comes_after_connection_made(loop):
    # Data already queued on the socket when the transport is made is received after
    # connection_made, on a server's and a client's transport alike.
    async def main():
        greeters = []

        class Greeter(Recorder):
            def connection_made(self, transport):
                super().connection_made(transport)
                greeters.append(self)
                transport.write(b"hello")

        seen = []
        server = await loop.create_server(Greeter, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        for _ in range(3):
            # A plain socket sends before the server's transport exists.
            raw = socket.create_connection(("127.0.0.1", port))
            raw.sendall(b"early")
            # The client's transport: the greeting may be queued before it is made.
            client, proto = await loop.create_connection(Recorder, "127.0.0.1", port)
            while b"hello" not in proto.events:
                await asyncio.sleep(0.001)
            seen.append(proto.events[:2])
            client.close()
            raw.setblocking(False)
            got = b""
            while len(got) < 5:
                try:
                    got += raw.recv(100)
                except BlockingIOError:
                    await asyncio.sleep(0.001)
            raw.close()
            assert got == b"hello"
        for greeter in greeters[::2]:  # the plain sockets' connections
            while len(greeter.events) < 2:
                await asyncio.sleep(0.001)
            seen.append(greeter.events[:2])
        server.close()
        await server.wait_closed()
        return seen

    assert loop.run_until_complete(main()) == [["made", b"hello"]] * 3 + [["made", b"early"]] * 3


def test_unix_server_peer_and_socket_names(loop):
    async def main():
        path = os.path.join(tempfile.mkdtemp(), "sock")
        server, _, next_protocol = await serve_recorders(loop, unix_path=path)
        client, _ = await loop.create_unix_connection(asyncio.Protocol, path)
        proto = await next_protocol()
        tr = proto.transport
        names = (tr.get_extra_info("sockname"), tr.get_extra_info("peername"))
        client_names = (client.get_extra_info("sockname"), client.get_extra_info("peername"))
        assert tr.get_extra_info("socket").family == socket.AF_UNIX
        client.close()
        server.close()
        await server.wait_closed()
        return names, client_names

    names, client_names = loop.run_until_complete(main())
    assert names[0].endswith("/sock") and names[1] == ""
    assert client_names[0] == "" and client_names[1].endswith("/sock")


@pytest.mark.parametrize("debug", [False, True])
def test_a_failing_protocol_factory_ends_the_connection_and_the_server_goes_on(loop, debug):
    # asyncio reports the error to the exception handler in debug mode only.
    loop.set_debug(debug)
    contexts = []
    loop.set_exception_handler(lambda _loop, context: contexts.append(context))

    async def main():
        calls = 0

        def factory():
            nonlocal calls
            calls += 1
            if calls == 1:
                raise ZeroDivisionError("no protocol today")
            return Echo()

        server = await loop.create_server(factory, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.close()  # refused: nothing will come back
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"still here")
        assert await asyncio.wait_for(reader.readexactly(10), 5) == b"still here"
        writer.close()
        server.close()
        await server.wait_closed()

    import gc

    loop.run_until_complete(main())
    gc.collect()  # asyncio leaves the refused socket to the collector
    if not debug:
        assert contexts == []
        return
    assert len(contexts) == 1
    assert contexts[0]["message"] == "Error on transport creation for incoming connection"
    assert isinstance(contexts[0]["exception"], ZeroDivisionError)


def test_many_connections_at_once_are_all_served(loop):
    async def main():
        server = await loop.create_server(Echo, "127.0.0.1", 0, backlog=128)
        port = server.sockets[0].getsockname()[1]

        async def one(i):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"%05d" % i)
            data = await reader.readexactly(5)
            writer.close()
            await writer.wait_closed()
            return data

        got = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(300))), 30)
        assert got == [b"%05d" % i for i in range(300)]
        server.close()
        await server.wait_closed()

    loop.run_until_complete(main())


def test_write_buffer_limits_as_on_asyncio(loop):
    async def main():
        server = await loop.create_server(Echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        tr, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
        results = [tr.get_write_buffer_limits()]
        tr.set_write_buffer_limits(high=1000)
        results.append(tr.get_write_buffer_limits())
        tr.set_write_buffer_limits(low=100)
        results.append(tr.get_write_buffer_limits())
        tr.set_write_buffer_limits(200, 50)
        results.append(tr.get_write_buffer_limits())
        with pytest.raises(ValueError) as bad:
            tr.set_write_buffer_limits(high=10, low=20)
        results.append(str(bad.value))
        tr.close()
        server.close()
        await server.wait_closed()
        return results

    assert loop.run_until_complete(main()) == [
        (16384, 65536),
        (250, 1000),
        (100, 400),
        (50, 200),
        "high (10) must be >= low (20) must be >= 0",
    ]



def _buffer_sizes_after_writes(loop, size, count, high=None):
    """What a protocol sees writing `count` times `size` bytes in connection_made (the peer
    not reading yet): get_write_buffer_size() after each write, and pause/resume_writing."""

    async def main():
        a, b = socket.socketpair()
        b.setblocking(False)
        seen = []

        class Writer(asyncio.Protocol):
            def connection_made(self, transport):
                if high is not None:
                    transport.set_write_buffer_limits(high=high)
                for _ in range(count):
                    transport.write(b"x" * size)
                    seen.append(transport.get_write_buffer_size())
                seen.append("returned")

            def pause_writing(self):
                seen.append("pause")

            def resume_writing(self):
                seen.append("resume")

        transport, _ = await loop.create_connection(Writer, sock=a)
        with b:
            got = 0
            while got < size * count:
                got += len(await asyncio.wait_for(loop.sock_recv(b, 1 << 20), 5))
            await asyncio.sleep(0.01)
        transport.close()
        return seen

    return loop.run_until_complete(main())


@pytest.mark.parametrize(
    "size, count, high", [(10, 1, None), (30_000, 4, None), (100, 3, 150), (1_000_000, 1, None)]
)
def test_write_buffer_size_right_after_a_write_as_on_asyncio(loop, stock_loop, size, count, high):
    """A write the socket took at once leaves nothing in the buffer, as asyncio's write sends
    at once (oxloop sends at the end of the callback, or when asked for the buffer's size);
    one the socket cannot take whole pauses the protocol, then resumes it."""
    got = _buffer_sizes_after_writes(loop, size, count, high)
    expected = _buffer_sizes_after_writes(stock_loop, size, count, high)
    if size < 100_000:
        assert got == expected == [0] * count + ["returned"]
    else:  # what is left depends on the socket's buffer: the same shape
        assert [type(x) for x in got] == [type(x) for x in expected]
        assert got[0] == "pause" and got[1] > 0 and got[2:] == ["returned", "resume"]


class ClosingWriter(asyncio.Protocol):
    """Writes `resume_bytes` in resume_writing, and notes the callbacks it gets in order."""

    def __init__(self, resume_bytes=0):
        self.resume_bytes = resume_bytes
        self.events = []
        self.lost = asyncio.get_event_loop().create_future()

    def connection_made(self, transport):
        self.transport = transport

    def pause_writing(self):
        self.events.append("pause")

    def resume_writing(self):
        self.events.append("resume")
        self.transport.write(b"r" * self.resume_bytes)
        self.events.append("resumed")

    def connection_lost(self, exc):
        self.events.append("lost")
        self.lost.set_result(exc)


def _read_to_eof(peer, got):
    with peer:
        while data := peer.recv(1 << 16):
            got.append(len(data))


def test_a_write_past_high_water_in_resume_writing_while_closing_as_on_asyncio(
    loop, stock_loop
):
    """A protocol paused, then closed, whose resume_writing writes more than the high-water
    mark: resume_writing returns before connection_lost comes, and every byte arrives.

    Usually the protocol is paused once. When a send leaves a few bytes (at most the low-water
    mark) in the buffer, resume_writing's write goes past the high-water mark again and the
    protocol is paused and resumed once more, on either loop (seen about once in 100 runs on
    oxloop and once in 500 on the stock loop): what is compared is the shape, not the count."""

    def run(loop):
        async def main():
            proto = ClosingWriter(resume_bytes=4000)
            transport, _, peer = await accepted_pair(loop, proto)
            transport.set_write_buffer_limits(high=2000, low=1000)
            transport.write(b"x" * (8 << 20))
            transport.close()
            got = []
            reader = threading.Thread(target=_read_to_eof, args=(peer, got))
            reader.start()
            await asyncio.wait_for(proto.lost, 10)
            await loop.run_in_executor(None, reader.join)
            return shape(proto.events, sum(got))

        return loop.run_until_complete(main())

    def shape(events, received):
        resumed = events.count("resume")
        return {
            "first": events[:2],
            "last": events[-1],
            "lost": events.count("lost"),
            "every resume_writing returned": events.count("resumed") == resumed,
            "every byte arrived": received == (8 << 20) + 4000 * resumed,
        }

    ours = run(loop)
    assert ours == run(stock_loop)
    assert ours == {
        "first": ["pause", "resume"],
        "last": "lost",
        "lost": 1,
        "every resume_writing returned": True,
        "every byte arrived": True,
    }


def test_write_buffer_size_asked_after_close_does_not_end_the_connection_then(
    loop, stock_loop
):
    """get_write_buffer_size() right after write() and close(): 0, as the write went out, and
    connection_lost comes from a later callback, as on asyncio."""

    def run(loop):
        async def main():
            proto = ClosingWriter()
            transport, _, peer = await accepted_pair(loop, proto)
            with peer:
                transport.write(b"x" * 100)
                transport.close()
                seen = [transport.get_write_buffer_size(), list(proto.events)]
                await asyncio.wait_for(proto.lost, 5)
                return seen + [proto.events, peer.recv(200)]

        return loop.run_until_complete(main())

    ours = run(loop)
    assert ours == run(stock_loop)
    assert ours == [0, [], ["lost"], b"x" * 100]


def test_pause_and_resume_reading(loop):
    async def main():
        server, port, next_protocol = await serve_recorders(loop)
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        proto = await next_protocol()
        tr = proto.transport
        tr.pause_reading()
        assert not tr.is_reading()
        tr.pause_reading()  # twice is fine
        writer.write(b"while paused")
        await asyncio.sleep(0.05)
        assert proto.events == ["made"]
        tr.resume_reading()
        assert tr.is_reading()
        for _ in range(100):
            if len(proto.events) > 1:
                break
            await asyncio.sleep(0.01)
        assert proto.events == ["made", b"while paused"]
        writer.write_eof()
        await asyncio.wait_for(proto.lost, 5)
        assert proto.events == ["made", b"while paused", "eof", "lost"]
        assert tr.is_closing() and not tr.is_reading()
        writer.close()
        server.close()
        await server.wait_closed()

    loop.run_until_complete(main())


def test_debug_mode_server_serves(loop):
    loop.set_debug(True)

    async def main():
        server = await loop.create_server(Echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"debug")
        assert await asyncio.wait_for(reader.readexactly(5), 5) == b"debug"
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()

    loop.run_until_complete(main())


@pytest.mark.parametrize("how", ["close", "abort"])
def test_connection_lost_once_and_socket_closed(loop, how):
    async def main():
        server, port, next_protocol = await serve_recorders(loop)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        proto = await next_protocol()
        tr = proto.transport
        sock = tr.get_extra_info("socket")
        tr.write(b"bye")
        getattr(tr, how)()
        getattr(tr, how)()
        assert tr.is_closing()
        assert await asyncio.wait_for(proto.lost, 5) is None
        await asyncio.sleep(0.01)
        assert proto.events.count("lost") == 1
        assert sock.fileno() == -1
        # What the socket took before abort() is sent, as asyncio's write sends at once.
        assert await asyncio.wait_for(reader.read(), 5) == b"bye"
        writer.close()
        server.close()
        await server.wait_closed()

    loop.run_until_complete(main())


def test_large_then_small_reads_then_eof_arrive_whole_and_in_order(loop):
    """Reads of every size (the transport reads large ones straight into the bytes it hands
    over, small ones through the loop's buffer), then EOF: each data_received gets exact-size
    bytes, in order, and eof_received comes after the last."""

    async def main():
        server, port, next_protocol = await serve_recorders(loop)
        client, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
        proto = await next_protocol()
        sent = b""
        for size in (300_000, 50_000, 10, 200_000, 3, 70_000):
            chunk = os.urandom(size)
            sent += chunk
            client.write(chunk)
            await asyncio.sleep(0.01)
        client.write_eof()
        await asyncio.wait_for(proto.lost, 5)
        client.close()
        server.close()
        await server.wait_closed()
        return sent, proto.events

    sent, events = loop.run_until_complete(main())
    data = [e for e in events if isinstance(e, bytes)]
    assert all(type(d) is bytes and d for d in data)
    assert b"".join(data) == sent
    assert events[0] == "made"
    assert events[-2:] == ["eof", "lost"]


def test_a_write_is_sent_before_the_next_callback_runs(loop):
    """asyncio sends at once in write(); oxloop sends what a callback wrote when it returns, so
    a callback that runs after it in the same lap already finds the data at the peer."""

    async def main():
        server, port, next_protocol = await serve_recorders(loop)
        peer = socket.create_connection(("127.0.0.1", port))
        peer.setblocking(False)
        proto = await next_protocol()
        seen = loop.create_future()

        def look():
            try:
                seen.set_result(peer.recv(100))
            except BlockingIOError:
                seen.set_result(b"")

        loop.call_soon(proto.transport.write, b"header ")
        loop.call_soon(proto.transport.write, b"body")
        loop.call_soon(look)
        got = await seen
        proto.transport.close()
        peer.close()
        server.close()
        return got

    assert loop.run_until_complete(main()) == b"header body"


def test_write_and_is_closing_as_on_asyncio(loop, stock_loop):
    """What write() accepts and refuses (with asyncio's message), and is_closing() over the
    transport's life; oxloop's are native methods of the Python transport class."""

    def run(loop):
        async def main():
            server, port, next_protocol = await serve_recorders(loop)
            transport, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
            peer = await next_protocol()
            seen = [transport.is_closing()]
            for data in (b"a", bytearray(b"b"), memoryview(b"c"), b""):
                transport.write(data)
            errors = []
            for bad in ("text", 1, None):
                try:
                    transport.write(bad)
                except TypeError as exc:
                    errors.append(str(exc))
            try:
                type(transport).write(transport)
            except TypeError as exc:
                errors.append(type(exc).__name__)
            for bad in (["text"], [b"x", 1]):
                try:
                    transport.writelines(bad)
                except TypeError as exc:
                    errors.append(type(exc).__name__)
            while b"".join(e for e in peer.events if isinstance(e, bytes)) != b"abc":
                await asyncio.sleep(0.01)
            transport.close()
            seen.append(transport.is_closing())
            await peer.lost
            seen.append(transport.is_closing())
            server.close()
            return seen, errors

        return loop.run_until_complete(main())

    ours = run(loop)
    assert ours == run(stock_loop)
    assert ours[0] == [False, True, True]


def test_write_eof_and_writes_after_it_as_on_asyncio(loop, stock_loop):
    """write_eof() half-closes (the peer sees EOF); a write after it raises asyncio's
    RuntimeError; extra info answers as asyncio's; the peer's close then ends the connection."""

    def run(loop):
        async def main():
            server, port, next_protocol = await serve_recorders(loop)
            client = Recorder()
            transport, _ = await loop.create_connection(lambda: client, "127.0.0.1", port)
            peer = await next_protocol()
            transport.write(b"last")
            transport.write_eof()
            outcome = [transport.can_write_eof(), transport.is_closing()]
            for call in (lambda: transport.write(b"x"), lambda: transport.writelines([b"x"])):
                try:
                    call()
                except RuntimeError as exc:
                    outcome.append(str(exc))
            outcome.append(transport.get_extra_info("nothing", "default"))
            outcome.append(transport.get_extra_info("peername")[1] == port)
            # The peer's eof_received returns None, so it closes; then so does the client.
            await client.lost
            await peer.lost
            server.close()
            outcome += [peer.events, client.events]
            return outcome

        return loop.run_until_complete(main())

    ours = run(loop)
    assert ours == run(stock_loop)
    assert ours[-2:] == [["made", b"last", "eof", "lost"], ["made", "eof", "lost"]]


@pytest.mark.parametrize("keep", ["stored", "hashed", "dropped", "echoed"])
def test_each_data_received_gets_its_own_bytes(loop, keep):
    # 1 KiB messages of different contents, one read each: what a protocol keeps (or hashes,
    # drops, or writes back to a peer that reads only at the end, so that writes queue up) is
    # what it was given, whatever the loop does with the objects afterwards.
    messages = [bytes([i % 251 + 1]) * 1024 for i in range(1, 41 if keep != "echoed" else 3001)]

    async def main():
        got = []
        hashes = []
        done = loop.create_future()

        class Keeper(asyncio.Protocol):
            def connection_made(self, transport):
                self.transport = transport

            def data_received(self, data):
                if keep == "stored":
                    got.append(data)
                elif keep == "hashed":
                    hashes.append((hash(data), data.hex()))
                elif keep == "echoed":
                    self.transport.write(data)
                got_bytes[0] += len(data)
                if got_bytes[0] == 1024 * len(messages) and not done.done():
                    done.set_result(None)

        got_bytes = [0]
        server = await loop.create_server(Keeper, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for i, m in enumerate(messages):
            writer.write(m)
            await writer.drain()
            if i < 40:
                await asyncio.sleep(0.002)  # one message per read, most of the time
        await asyncio.wait_for(done, 5)
        if keep == "echoed":
            got.append(await asyncio.wait_for(reader.readexactly(1024 * len(messages)), 5))
        writer.close()
        server.close()
        return got, hashes

    got, hashes = loop.run_until_complete(main())
    if keep in ("stored", "echoed"):
        assert b"".join(got) == b"".join(messages)
    if keep == "hashed":
        assert all(hash(bytes.fromhex(h)) == value for value, h in hashes)
        assert b"".join(bytes.fromhex(h) for _, h in hashes) == b"".join(messages)


@pytest.mark.parametrize("keep", ["stored", "hashed", "dropped", "echoed", "every-other"])
def test_each_large_data_received_gets_its_own_bytes(loop, keep):
    # Reads of more than 4 KiB go straight into a bytes object (the loop's spare one when
    # nothing kept the last): messages of one size, then smaller (a read that fills less
    # than half of the object), then larger (reads that fill it), different contents each.
    import os

    sizes = [10240] * 30 + [3000] * 5 + [9000] * 5 + [30000] * 5 + [10240] * 10
    messages = [os.urandom(n) for n in sizes]
    total = sum(sizes)

    async def main():
        got = []
        hashes = []
        done = loop.create_future()
        received = [0]

        class Keeper(asyncio.Protocol):
            def connection_made(self, transport):
                self.transport = transport
                self.count = 0

            def data_received(self, data):
                self.count += 1
                if keep == "stored":
                    got.append(data)
                elif keep == "every-other":
                    if self.count % 2:
                        got.append((data, bytes(data)))  # the object, and a copy made now
                elif keep == "hashed":
                    hashes.append((hash(data), data.hex()))
                elif keep == "echoed":
                    self.transport.write(data)
                else:
                    got.append(bytes(data))  # a copy: the object itself is let go
                received[0] += len(data)
                if received[0] == total and not done.done():
                    done.set_result(None)

        server = await loop.create_server(Keeper, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for m in messages:
            writer.write(m)
            await writer.drain()
            await asyncio.sleep(0.002)  # one message per read, most of the time
        await asyncio.wait_for(done, 5)
        if keep == "echoed":
            got.append(await asyncio.wait_for(reader.readexactly(total), 5))
        writer.close()
        server.close()
        return got, hashes

    got, hashes = loop.run_until_complete(main())
    if keep == "hashed":
        assert all(hash(bytes.fromhex(h)) == value for value, h in hashes)
        assert b"".join(bytes.fromhex(h) for _, h in hashes) == b"".join(messages)
    elif keep != "every-other":
        assert b"".join(got) == b"".join(messages)
    else:
        assert got and all(kept == copy for kept, copy in got)  # unchanged by later reads


# --- reading: every byte, EOF and error arrives however the kernel reports readiness ----------
# oxloop watches a stream transport's socket edge-triggered: each of these is a case where
# data or the end of the stream is still there after a read and no new event would say so.


class Collector(asyncio.Protocol):
    """Joins what it receives; `until(n)` waits for n bytes, `lost` for connection_lost."""

    def __init__(self, pause_after=None):
        loop = asyncio.get_event_loop()
        self.data = bytearray()
        self.events = []
        self.lost = loop.create_future()
        self.pause_after = pause_after
        self.waiters = []

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.data += data
        if self.pause_after is not None and len(self.data) >= self.pause_after:
            self.pause_after = None
            self.transport.pause_reading()
        for n, fut in self.waiters:
            if len(self.data) >= n and not fut.done():
                fut.set_result(None)

    def eof_received(self):
        self.events.append(("eof", len(self.data)))

    def connection_lost(self, exc):
        self.events.append(("lost", type(exc).__name__ if exc else None))
        self.lost.set_result(None)

    async def until(self, n):
        if len(self.data) < n:
            fut = asyncio.get_running_loop().create_future()
            self.waiters.append((n, fut))
            await asyncio.wait_for(fut, 10)


async def accepted_pair(loop, protocol):
    """A connected (transport, protocol, peer socket): the peer is a plain blocking socket."""
    listener = socket.create_server(("127.0.0.1", 0))
    with listener:
        client = socket.socket()
        client.setblocking(False)
        await loop.sock_connect(client, listener.getsockname())
        peer, _ = listener.accept()
    client.setblocking(True)
    transport, _ = await loop.connect_accepted_socket(lambda: protocol, client)
    await asyncio.sleep(0)
    return transport, protocol, peer


def test_data_and_eof_that_arrive_together_are_both_seen(loop, stock_loop):
    """The peer's data and FIN are queued before the loop reads: one read gives the data
    (a short read), and the EOF behind it must still be found."""

    def run(loop):
        async def main():
            listener = socket.create_server(("127.0.0.1", 0))
            with listener:
                peer = socket.create_connection(listener.getsockname())
                sock, _ = listener.accept()
            peer.sendall(b"hello")
            peer.close()
            await asyncio.sleep(0.05)  # both are in the socket before it is watched
            proto = Collector()
            sock.setblocking(False)
            await loop.connect_accepted_socket(lambda: proto, sock)
            await asyncio.wait_for(proto.lost, 10)
            return bytes(proto.data), proto.events

        return loop.run_until_complete(main())

    ours = run(loop)
    assert ours == run(stock_loop)
    assert ours == (b"hello", [("eof", 5), ("lost", None)])


def test_more_than_one_read_holds_arrives_without_new_data(loop):
    """1 MiB sent at once, then nothing: the reads that fill their buffer must be followed by
    more reads although no new data arrives to report the socket again."""

    async def main():
        _transport, proto, peer = await accepted_pair(loop, Collector())
        payload = os.urandom(1 << 20)
        await loop.run_in_executor(None, peer.sendall, payload)
        await proto.until(len(payload))
        assert bytes(proto.data) == payload
        peer.close()
        await asyncio.wait_for(proto.lost, 10)
        assert proto.events == [("eof", len(payload)), ("lost", None)]

    loop.run_until_complete(main())


class SmallBuffers(asyncio.BufferedProtocol):
    """A BufferedProtocol that offers 7 bytes at a time."""

    def __init__(self):
        self.buf = bytearray(7)
        self.data = bytearray()
        self.lost = asyncio.get_event_loop().create_future()

    def connection_made(self, transport):
        self.transport = transport

    def get_buffer(self, sizehint):
        return self.buf

    def buffer_updated(self, nbytes):
        self.data += self.buf[:nbytes]

    def eof_received(self):
        pass

    def connection_lost(self, exc):
        self.lost.set_result(None)


def test_a_small_protocol_buffer_is_refilled_until_the_socket_is_empty(
    loop, stock_loop
):
    def run(loop):
        async def main():
            _transport, proto, peer = await accepted_pair(loop, SmallBuffers())
            peer.sendall(b"0123456789" * 10)
            for _ in range(200):
                if len(proto.data) == 100:
                    break
                await asyncio.sleep(0.01)
            got = bytes(proto.data)
            peer.close()
            await asyncio.wait_for(proto.lost, 10)
            return got

        return loop.run_until_complete(main())

    ours = run(loop)
    assert ours == run(stock_loop) == b"0123456789" * 10


def test_data_that_came_while_paused_is_read_on_resume(loop):
    """pause_reading in data_received; the rest arrives while paused; resume_reading must find
    it, with nothing new arriving after the resume."""

    async def main():
        transport, proto, peer = await accepted_pair(loop, Collector(pause_after=1))
        peer.sendall(b"a")
        await proto.until(1)
        assert not transport.is_reading()
        peer.sendall(b"bcdef")
        await asyncio.sleep(0.05)
        assert bytes(proto.data) == b"a"
        transport.resume_reading()
        await proto.until(6)
        assert bytes(proto.data) == b"abcdef"
        transport.close()
        peer.close()
        await asyncio.wait_for(proto.lost, 10)

    loop.run_until_complete(main())


def test_reading_goes_on_while_writes_wait_for_the_socket(loop):
    """While the transport waits to send (its peer reads nothing), what the peer sends is still
    read; once the peer reads, everything queued goes out."""

    async def main():
        transport, proto, peer = await accepted_pair(loop, Collector())
        transport.write(b"x" * (8 << 20))  # more than the socket buffers hold
        assert transport.get_write_buffer_size() > 0
        for i in range(5):
            peer.sendall(b"%d" % i)
            await proto.until(i + 1)
        assert bytes(proto.data) == b"01234"
        total = 0
        peer.settimeout(10)
        while total < 8 << 20:
            chunk = await loop.run_in_executor(None, peer.recv, 1 << 20)
            assert chunk
            total += len(chunk)
        peer.sendall(b"5")
        await proto.until(6)
        assert transport.get_write_buffer_size() == 0
        transport.close()
        peer.close()
        await asyncio.wait_for(proto.lost, 10)

    loop.run_until_complete(main())


def test_urgent_data_does_not_stall_the_stream(loop, stock_loop):
    """TCP urgent data: a read stops short at the urgent mark with data behind it. The in-band
    bytes all arrive (the urgent byte is out of band, as on asyncio)."""

    def run(loop):
        async def main():
            transport, proto, peer = await accepted_pair(loop, Collector())
            peer.sendall(b"ab")
            peer.send(b"!", socket.MSG_OOB)
            peer.sendall(b"cd")
            await proto.until(4)
            got = bytes(proto.data)
            transport.close()
            peer.close()
            await asyncio.wait_for(proto.lost, 10)
            return got

        return loop.run_until_complete(main())

    ours = run(loop)
    assert ours == run(stock_loop) == b"abcd"


def test_a_reset_after_data_reaches_connection_lost(loop, stock_loop):
    def run(loop):
        async def main():
            _transport, proto, peer = await accepted_pair(loop, Collector())
            peer.sendall(b"data")
            await proto.until(4)
            peer.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
            peer.close()  # linger 0: RST
            await asyncio.wait_for(proto.lost, 10)
            return bytes(proto.data), proto.events

        return loop.run_until_complete(main())

    ours = run(loop)
    assert ours == run(stock_loop) == (b"data", [("lost", "ConnectionResetError")])


def test_an_empty_write_after_write_eof_raises_as_on_asyncio(loop, stock_loop):
    def run(loop):
        async def main():
            transport, proto, peer = await accepted_pair(loop, Collector())
            transport.write_eof()
            outcome = []
            for data in (b"", bytearray(), memoryview(b"")):
                try:
                    transport.write(data)
                    outcome.append("ok")
                except RuntimeError as exc:
                    outcome.append(str(exc))
            transport.close()
            peer.close()
            await asyncio.wait_for(proto.lost, 10)
            return outcome

        return loop.run_until_complete(main())

    ours = run(loop)
    assert ours == run(stock_loop)
    assert ours == ["Cannot call write() after write_eof()"] * 3


def _buffers_of_any_format(loop):
    """write() and writelines() of buffers whose format is not bytes (a memoryview of an
    array('i'), one cast to 'i'), writelines() of a str; what the peer gets."""
    import array

    async def main():
        a, b = socket.socketpair()
        b.setblocking(False)
        transport, _ = await loop.create_connection(asyncio.Protocol, sock=a)
        outcomes = []
        for call, arg in [
            (transport.write, memoryview(array.array("i", [1, 2]))),
            (transport.write, memoryview(b"\x05\x00\x00\x00").cast("i")),
            (transport.write, bytearray(b"ba")),
            (transport.writelines, [b"a", array.array("h", [3]), memoryview(b"mv")]),
            (transport.writelines, [b"a", "not a buffer"]),
        ]:
            try:
                call(arg)
                outcomes.append("ok")
            except TypeError as exc:
                outcomes.append(str(exc))
        got = b""
        with b:
            while len(got) < 19:
                got += await asyncio.wait_for(loop.sock_recv(b, 100), 5)
        transport.close()
        return outcomes, got

    return loop.run_until_complete(main())


def test_writes_of_buffers_of_any_format_as_on_asyncio(loop, stock_loop):
    got = _buffers_of_any_format(loop)
    assert got == _buffers_of_any_format(stock_loop)
    assert got[1] == b"\x01\x00\x00\x00\x02\x00\x00\x00\x05\x00\x00\x00baa\x03\x00mv"


def _receive_into(loop, make_buffer):
    """A BufferedProtocol whose get_buffer returns make_buffer(): what it was told it got, and
    the error that ended the connection, if one did."""

    async def main():
        done = loop.create_future()
        seen = []
        loop.set_exception_handler(lambda lp, context: seen.append(repr(context["exception"])))

        class Into(asyncio.BufferedProtocol):
            def get_buffer(self, sizehint):
                self.buf = make_buffer()
                return self.buf

            def buffer_updated(self, nbytes):
                seen.append(bytes(memoryview(self.buf).cast("B")[:nbytes]))

            def connection_lost(self, exc):
                done.set_result(None)

        a, b = socket.socketpair()
        transport, _ = await loop.create_connection(Into, sock=a)
        with b:
            b.send(b"\x01\x00\x00\x00")
            await asyncio.sleep(0.02)
            transport.close()
            await asyncio.wait_for(done, 5)
        return seen

    return loop.run_until_complete(main())


@pytest.mark.parametrize("kind", ["array", "cast", "readonly", "strided", "not-a-buffer"])
def test_buffered_protocol_buffers_as_on_asyncio(loop, stock_loop, kind):
    """get_buffer() may return any writable contiguous buffer (an array('i'), a memoryview
    cast to 'i'), as sock.recv_into takes; anything else ends the connection with the socket
    module's TypeError, as on asyncio."""
    import array

    make = {
        "array": lambda: array.array("i", [0, 0]),
        "cast": lambda: memoryview(bytearray(8)).cast("i"),
        "readonly": lambda: b"\x00" * 8,
        "strided": lambda: memoryview(bytearray(16))[::2],
        "not-a-buffer": lambda: [0] * 8,
    }[kind]
    got = _receive_into(loop, make)
    assert got == _receive_into(stock_loop, make)
    if kind in ("array", "cast"):
        assert got == [b"\x01\x00\x00\x00"]
    else:
        assert len(got) == 1 and "must be read-write bytes-like object" in got[0]
