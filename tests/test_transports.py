"""Datagram and pipe transports: what the protocol receives is what asyncio's would."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest


def udp_exchange(loop, family, host):
    received = loop.create_future()

    class Server(asyncio.DatagramProtocol):
        def datagram_received(self, data, addr):
            received.set_result((data, addr))

    server, _ = loop.run_until_complete(
        loop.create_datagram_endpoint(Server, local_addr=(host, 0), family=family)
    )
    client, _ = loop.run_until_complete(
        loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, remote_addr=server.get_extra_info("sockname")[:2],
            family=family,
        )
    )
    client.sendto(b"ping" * 300)
    data, addr = loop.run_until_complete(asyncio.wait_for(received, 5))
    expected_addr = client.get_extra_info("sockname")
    client.close()
    server.close()
    return data, addr, expected_addr


def test_udp_ipv4_datagram_and_address(loop):
    data, addr, sockname = udp_exchange(loop, socket.AF_INET, "127.0.0.1")
    assert data == b"ping" * 300
    assert addr == sockname and isinstance(addr, tuple) and len(addr) == 2


def ipv6_loopback_error():
    """Why ::1 can't be used here (no IPv6, or loopback IPv6 disabled), or None."""
    if not socket.has_ipv6:
        return "no IPv6"
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError as exc:
        return f"IPv6 loopback unusable: {exc}"
    return None


@pytest.mark.skipif(ipv6_loopback_error() is not None, reason=str(ipv6_loopback_error()))
def test_udp_ipv6_datagram_and_address(loop):
    data, addr, sockname = udp_exchange(loop, socket.AF_INET6, "::1")
    assert data == b"ping" * 300
    assert addr == sockname and len(addr) == 4


def test_udp_error_received_on_a_refused_port(loop):
    # A connected UDP socket learns of ICMP port-unreachable as error_received(ConnectionRefusedError).
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    dead = probe.getsockname()
    probe.close()
    errors = loop.create_future()

    class Client(asyncio.DatagramProtocol):
        def error_received(self, exc):
            if not errors.done():
                errors.set_result(exc)

    transport, _ = loop.run_until_complete(
        loop.create_datagram_endpoint(Client, remote_addr=dead)
    )
    transport.sendto(b"x")
    loop.call_later(0.05, transport.sendto, b"y")
    exc = loop.run_until_complete(asyncio.wait_for(errors, 5))
    assert isinstance(exc, ConnectionRefusedError)
    transport.close()


def test_read_pipe_gets_every_byte_then_eof(loop):
    rfd, wfd = os.pipe()
    chunks = []
    done = loop.create_future()

    class Reader(asyncio.Protocol):
        def data_received(self, data):
            chunks.append(data)

        def eof_received(self):
            chunks.append(None)

        def connection_lost(self, exc):
            done.set_result(exc)

    payload = os.urandom(1 << 20)
    loop.run_until_complete(loop.connect_read_pipe(Reader, os.fdopen(rfd, "rb", 0)))

    def write_all():
        os.write(wfd, payload)
        os.close(wfd)

    loop.run_until_complete(loop.run_in_executor(None, write_all))
    assert loop.run_until_complete(asyncio.wait_for(done, 5)) is None
    assert chunks[-1] is None
    assert b"".join(chunks[:-1]) == payload
    assert all(isinstance(c, bytes) for c in chunks[:-1])


def test_udp_sendto_forms_behave_as_on_asyncio(loop):
    got = []
    arrived = asyncio.Event()

    class Server(asyncio.DatagramProtocol):
        def datagram_received(self, data, addr):
            got.append(data)
            if data == b"last":
                arrived.set()

    server, _ = loop.run_until_complete(
        loop.create_datagram_endpoint(Server, local_addr=("127.0.0.1", 0))
    )
    target = server.get_extra_info("sockname")
    free, _ = loop.run_until_complete(
        loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
    )
    free.sendto(b"literal", target)
    free.sendto(bytearray(b"bytearray"), target)
    free.sendto(memoryview(b"memoryview"), ("localhost", target[1]))
    with pytest.raises(TypeError):
        free.sendto("text", target)
    connected, _ = loop.run_until_complete(
        loop.create_datagram_endpoint(asyncio.DatagramProtocol, remote_addr=target)
    )
    with pytest.raises(ValueError):
        connected.sendto(b"x", ("127.0.0.2", 9))
    connected.sendto(b"connected")
    connected.sendto(b"last", target)
    loop.run_until_complete(asyncio.wait_for(arrived.wait(), 5))
    assert got == [b"literal", b"bytearray", b"memoryview", b"connected", b"last"]
    for transport in (server, free, connected):
        transport.close()


def test_sock_recv_waits_reads_and_cleans_up(loop):
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)

    async def main():
        # Waits, then gets the data.
        task = asyncio.ensure_future(loop.sock_recv(a, 100))
        await asyncio.sleep(0.01)
        b.send(b"later")
        assert await task == b"later"
        # A cancelled wait removes its reader: a later reader still works, and nothing is left.
        task = asyncio.ensure_future(loop.sock_recv(a, 100))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert loop.remove_reader(a) is False
        b.send(b"again")
        assert await loop.sock_recv(a, 3) == b"aga"
        assert await loop.sock_recv(a, 100) == b"in"
        # An error reaches the caller.
        task = asyncio.ensure_future(loop.sock_recv(a, 100))
        await asyncio.sleep(0.01)
        b.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        b.close()
        try:
            result = await asyncio.wait_for(task, 5)
        except OSError as exc:
            result = type(exc)
        assert result in (b"", ConnectionResetError)
        assert loop.remove_reader(a) is False

    loop.run_until_complete(main())
    a.close()


def test_sock_sendall_and_sock_recv_forms(loop):
    """Every kind of buffer sock_sendall takes, a send that fills the socket, and sock_recv's
    sizes (0, small, larger than the loop's read buffer) give what asyncio's give."""

    async def main():
        a, b = socket.socketpair()
        a.setblocking(False)
        b.setblocking(False)
        try:
            await loop.sock_sendall(a, b"bytes")
            await loop.sock_sendall(a, bytearray(b"array"))
            await loop.sock_sendall(a, memoryview(b"xview")[1:])
            with pytest.raises(TypeError):
                await loop.sock_sendall(a, "text")
            assert await loop.sock_recv(b, 0) == b""
            got = b""
            while len(got) < 14:
                got += await loop.sock_recv(b, 100)
            assert got == b"bytesarrayview"
            # A large size and a short message: exactly what came.
            await loop.sock_sendall(a, b"short")
            assert await loop.sock_recv(b, 65536) == b"short"
            # Larger than the socket buffer: the rest is sent when the reader drains it.
            big = os.urandom(3 * 1024 * 1024)
            sender = loop.create_task(loop.sock_sendall(a, big))
            received = bytearray()
            while len(received) < len(big):
                received += await loop.sock_recv(b, 512 * 1024)
            await sender
            assert received == big
            with pytest.raises(ValueError):
                await loop.sock_recv(b, -1)
        finally:
            a.close()
            b.close()
        with pytest.raises(OSError):
            await loop.sock_recv(b, 10)

    loop.run_until_complete(main())


def _sock_call(method, make_sock, *args, debug=False):
    """A call for assert_raises_like_asyncio: loop.<method>(sock, *args) on make_sock()."""

    def call(lp):
        sock = make_sock()
        lp.set_debug(debug)
        try:
            lp.run_until_complete(asyncio.wait_for(getattr(lp, method)(sock, *args), 5))
        finally:
            lp.set_debug(False)
            sock.close()

    return call


_peers = []  # the other ends of the sockets made below, open until the test session ends


class _SocketSubclass(socket.socket):
    pass


def _subclassed():
    a, b = socket.socketpair()
    b.sendall(b"from a subclass")
    _peers.append(b)
    sub = _SocketSubclass(a.family, a.type, fileno=a.detach())
    sub.setblocking(False)
    return sub


def _tls_socket():
    import ssl

    return ssl.create_default_context().wrap_socket(
        socket.socket(), server_hostname="localhost", do_handshake_on_connect=False
    )


def _closed_socket():
    sock = socket.socket()
    sock.close()
    return sock


def _blocking():
    a, b = socket.socketpair()
    b.sendall(b"for a blocking socket")
    _peers.append(b)
    return a


@pytest.mark.parametrize("method, args", [("sock_recv", (100,)), ("sock_sendall", (b"x",))])
def test_sock_recv_and_sendall_check_like_asyncio(assert_raises_like_asyncio, method, args):
    """asyncio's checks before the first try (done natively by oxloop): an SSLSocket is a
    TypeError, a blocking socket in debug mode a ValueError, a closed one an OSError; a subclass
    of socket.socket is served."""
    check = assert_raises_like_asyncio
    assert isinstance(check(_sock_call(method, _tls_socket, *args), same_text=True), TypeError)
    blocked = check(_sock_call(method, _blocking, *args, debug=True), same_text=True)
    assert isinstance(blocked, ValueError)
    assert check(_sock_call(method, _blocking, *args)) is None  # not checked without debug
    assert isinstance(check(_sock_call(method, _closed_socket, *args)), OSError)
    assert check(_sock_call(method, _subclassed, *args)) is None
    assert isinstance(check(_sock_call(method, object, *args)), AttributeError)


class _CountingSocket(socket.socket):
    """A socket.socket whose recv and send are its own: asyncio calls them."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = []

    def recv(self, n):
        self.calls.append(("recv", n))
        return super().recv(n).upper()

    def send(self, data):
        self.calls.append(("send", len(data)))
        return super().send(bytes(data[:3]))


def _subclassed_pair(cls):
    """A connected non-blocking socket pair, the first of class cls (a socket.socket subclass)."""
    a, b = socket.socketpair()
    sub = cls(a.family, a.type, fileno=a.detach())
    for s in (sub, b):
        s.setblocking(False)
    return sub, b


def test_sock_recv_and_sendall_call_overridden_methods(loop):
    """A socket subclass with its own recv and send (and an instance that shadows recv) has
    them called by sock_recv and sock_sendall, at once and after waiting, as asyncio does."""

    async def main():
        sub, b = _subclassed_pair(_CountingSocket)
        try:
            b.send(b"ready")
            assert await loop.sock_recv(sub, 100) == b"READY"  # at once
            later = asyncio.ensure_future(loop.sock_recv(sub, 100))
            await asyncio.sleep(0.01)
            b.send(b"later")
            assert await asyncio.wait_for(later, 5) == b"LATER"  # after waiting
            await loop.sock_sendall(sub, b"0123456789")  # three bytes a send
            got = b""
            while len(got) < 10:
                got += await asyncio.wait_for(loop.sock_recv(b, 100), 5)
            assert got == b"0123456789"
            # recv: the data there; nothing yet (BlockingIOError), then once readable. send:
            # what is left each time.
            assert sub.calls == [("recv", 100)] * 3 + [("send", n) for n in (10, 7, 4, 1)]
            plain = socket.socket(b.family, b.type, fileno=sub.detach())
            plain.setblocking(False)
            shadowed = _SocketSubclass(plain.family, plain.type, fileno=plain.detach())
            shadowed.setblocking(False)
            shadowed.recv = lambda n: b"shadow"
            assert await loop.sock_recv(shadowed, 100) == b"shadow"
            shadowed.close()
        finally:
            sub.close()
            b.close()

    loop.run_until_complete(main())


def test_sock_recv_into_buffers(loop, assert_raises_like_asyncio):
    """sock_recv_into into a bytearray, a memoryview slice, an array of ints, and after
    waiting; a read-only buffer raises as the socket module's recv_into does; a subclass's
    own recv_into is called."""
    import array

    async def main():
        a, b = socket.socketpair()
        for s in (a, b):
            s.setblocking(False)
        try:
            buf = bytearray(8)
            a.send(b"abc")
            assert await loop.sock_recv_into(b, buf) == 3
            assert buf == b"abc\0\0\0\0\0"
            a.send(b"0123456789")
            assert await loop.sock_recv_into(b, memoryview(buf)[4:]) == 4
            assert buf == b"abc\x000123"
            ints = array.array("i", [0, 0])
            await loop.sock_recv_into(b, ints)  # the rest: "456789" into 8 bytes
            assert ints.tobytes() == b"456789\0\0"
            later = asyncio.ensure_future(loop.sock_recv_into(b, buf))
            await asyncio.sleep(0.01)
            assert not later.done()
            buf.extend(b"!")  # not exported while waiting: it may change size meanwhile
            a.send(b"later")
            assert await asyncio.wait_for(later, 5) == 5
            assert buf == b"later123!"
            a.close()
            assert await loop.sock_recv_into(b, buf) == 0  # end of the stream
        finally:
            a.close()
            b.close()

    loop.run_until_complete(main())

    def read_only(lp):
        a, b = socket.socketpair()
        b.setblocking(False)
        a.send(b"x")
        try:
            lp.run_until_complete(lp.sock_recv_into(b, b"immutable"))
        finally:
            a.close()
            b.close()

    assert isinstance(assert_raises_like_asyncio(read_only, same_text=True), TypeError)


class _RecvIntoSocket(socket.socket):
    def recv_into(self, buf, nbytes=0, flags=0):
        n = super().recv_into(buf, nbytes, flags)
        buf[:n] = bytes(buf[:n]).upper()
        return n


def test_sock_recv_into_calls_overridden_method(loop):
    async def main():
        sub, a = _subclassed_pair(_RecvIntoSocket)
        try:
            buf = bytearray(10)
            a.send(b"now")
            assert await loop.sock_recv_into(sub, buf) == 3
            later = asyncio.ensure_future(loop.sock_recv_into(sub, memoryview(buf)[3:]))
            await asyncio.sleep(0.01)
            a.send(b"then")
            assert await asyncio.wait_for(later, 5) == 4
            assert buf[:7] == b"NOWTHEN"
        finally:
            a.close()
            sub.close()

    loop.run_until_complete(main())



class _LoggingSocket(socket.socket):
    """A socket.socket whose I/O methods are its own: each call is logged, received data is
    upper-cased, and the peer's name is made up (as a proxy-aware socket might report it)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.log = []

    def recv(self, n):
        self.log.append("recv")
        return super().recv(n).upper()

    def recv_into(self, buf, nbytes=0, flags=0):
        self.log.append("recv_into")
        return super().recv_into(buf, nbytes, flags)

    def send(self, data, flags=0):
        self.log.append(("send", len(data)))
        return super().send(data, flags)

    def sendmsg(self, buffers, *args):
        self.log.append("sendmsg")
        return super().sendmsg(buffers, *args)

    def shutdown(self, how):
        self.log.append("shutdown")
        super().shutdown(how)

    def getpeername(self):
        return "the-real-client"

    def accept(self):
        self.log.append("accept")
        conn, addr = super().accept()
        sub = _LoggingSocket(conn.family, conn.type, fileno=conn.detach())
        sub.setblocking(False)
        return sub, addr


class _Gather(asyncio.Protocol):
    """Collects what it receives until EOF, answering each chunk with its length in two
    writes (writelines, then write); at EOF it ends its side too."""

    def __init__(self):
        self.data = bytearray()
        self.done = asyncio.get_running_loop().create_future()

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.data += data
        self.transport.writelines([b"got ", str(len(data)).encode()])
        self.transport.write(b";")

    def eof_received(self):
        self.transport.write_eof()
        return True

    def connection_lost(self, exc):
        self.done.set_result(exc)


class _BufferedGather(_Gather, asyncio.BufferedProtocol):
    """_Gather, receiving through get_buffer/buffer_updated."""

    buf = bytearray(64)

    def get_buffer(self, sizehint):
        return self.buf

    def buffer_updated(self, nbytes):
        self.data_received(bytes(self.buf[:nbytes]))


def _overridden_methods_scenario(loop, protocol):
    """A transport over a _LoggingSocket (create_connection(sock=...)): what the protocol got,
    the transport's peername and the socket's log."""

    async def main():
        sub, peer = _subclassed_pair(_LoggingSocket)
        transport, proto = await loop.create_connection(protocol, sock=sub)
        with peer:
            for chunk in (b"hello", b"world"):
                peer.send(chunk)
                answer = b""
                while not answer.endswith(b";"):
                    answer += await asyncio.wait_for(loop.sock_recv(peer, 100), 5)
                assert answer == b"got 5;"
            peer.shutdown(socket.SHUT_WR)
            assert await asyncio.wait_for(loop.sock_recv(peer, 100), 5) == b""  # write_eof
        transport.close()
        assert await asyncio.wait_for(proto.done, 5) is None
        return bytes(proto.data), transport.get_extra_info("peername"), sub.log

    return loop.run_until_complete(main())


@pytest.mark.parametrize("buffered", [False, True])
def test_a_transport_calls_its_sockets_overridden_methods(loop, stock_loop, buffered):
    """A stream transport over a socket whose recv, recv_into, send, sendmsg, shutdown and
    getpeername are its own calls them, as asyncio's transport does (oxloop then runs asyncio's
    transport): the same data, peer name and calls as on the stock loop."""
    protocol = _BufferedGather if buffered else _Gather
    got = _overridden_methods_scenario(loop, protocol)
    assert got == _overridden_methods_scenario(stock_loop, protocol)
    data, peername, log = got
    assert data == (b"helloworld" if buffered else b"HELLOWORLD")
    assert peername == "the-real-client"
    assert ("recv_into" if buffered else "recv") in log and "shutdown" in log


def test_a_server_calls_its_listening_sockets_accept(loop, stock_loop):
    """create_server(sock=...) with a listening socket whose accept is its own calls it, and
    serves what it returns (here a _LoggingSocket: its recv and send are called too), as on the
    stock loop."""

    def scenario(loop):
        async def main():
            listener = _LoggingSocket(socket.AF_INET, socket.SOCK_STREAM)
            listener.bind(("127.0.0.1", 0))
            accepted = []

            def factory():
                proto = _Gather()
                accepted.append(proto)
                return proto

            server = await loop.create_server(factory, sock=listener)
            async with server:
                reader, writer = await asyncio.open_connection(*listener.getsockname())
                writer.write(b"ping")
                assert await asyncio.wait_for(reader.readuntil(b";"), 5) == b"got 4;"
                writer.write_eof()
                assert await asyncio.wait_for(reader.read(), 5) == b""
                writer.close()
                await writer.wait_closed()
                conn = accepted[0].transport.get_extra_info("socket")
                client = writer.get_extra_info("sockname")
                accepted[0].transport.close()
                await asyncio.wait_for(accepted[0].done, 5)
                return (
                    listener.log,
                    bytes(accepted[0].data),
                    accepted[0].transport.get_extra_info("peername") == client,  # accept's
                    conn is not None,
                )

        return loop.run_until_complete(main())

    got = scenario(loop)
    assert got == scenario(stock_loop)
    log, *rest = got
    assert set(log) == {"accept"} and rest == [b"PING", True, True]  # PING: its recv's doing


def test_sock_recv_sizes_alternating(loop):
    """sock_recv(sock, n) with n above 4 KiB, and messages that alternate between short and
    long (oxloop switches between copying from its read buffer and reading into a bytes of size
    n): every read gets exactly what came, in order."""

    async def main():
        a, b = socket.socketpair()
        a.setblocking(False)
        b.setblocking(False)
        try:
            sizes = [10, 5000, 100_000, 7, 3, 200_000, 4096, 4097, 1, 64 * 1024]
            for n in (65536, 256 * 1024, 300 * 1024):
                for size in sizes:
                    message = os.urandom(size)
                    await loop.sock_sendall(a, message)
                    got = bytearray()
                    while len(got) < size:
                        data = await loop.sock_recv(b, n)
                        assert type(data) is bytes and 0 < len(data) <= n
                        got += data
                    assert got == message
        finally:
            a.close()
            b.close()

    loop.run_until_complete(main())


def _connect_with(address_of, family=socket.AF_INET):
    """A call for assert_raises_like_asyncio: sock_connect a fresh socket to address_of()."""

    def call(lp):
        async def main():
            with socket.socket(family, socket.SOCK_STREAM) as sock:
                sock.setblocking(False)
                await lp.sock_connect(sock, address_of())

        lp.run_until_complete(main())

    return call


def _closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()


def test_sock_connect_errors(assert_raises_like_asyncio, tmp_path):
    # Refused once under way: "Connect call failed (...)", as asyncio words it.
    refused = assert_raises_like_asyncio(_connect_with(_closed_port), same_text=False)
    assert isinstance(refused, ConnectionRefusedError)
    assert "Connect call failed" in str(refused)
    # Refused at once (a Unix path nobody listens on): the connect call's own error.
    missing = str(tmp_path / "nobody")
    assert_raises_like_asyncio(_connect_with(lambda: missing, socket.AF_UNIX), same_text=True)
    # A malformed address.
    assert_raises_like_asyncio(_connect_with(lambda: ("127.0.0.1", "x")), same_text=True)


def test_sock_connect_then_sock_recv(loop):
    async def main():
        server = await loop.create_server(_Greeter, "127.0.0.1", 0)
        with socket.socket() as sock:
            sock.setblocking(False)
            await loop.sock_connect(sock, server.sockets[0].getsockname())
            data = await asyncio.wait_for(loop.sock_recv(sock, 100), 5)
        server.close()
        await server.wait_closed()
        return data

    assert loop.run_until_complete(main()) == b"hello"


class _Greeter(asyncio.Protocol):
    def connection_made(self, transport):
        transport.write(b"hello")


def test_sock_accept_recv_into_and_sendall_wait(loop):
    """Each operation first finds nothing to do and waits: accept, recv_into, a sendall larger
    than the socket takes at once; then a cancelled accept leaves the listener usable."""

    async def main():
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        client = socket.socket()
        client.setblocking(False)
        with listener, client:
            accepting = loop.create_task(loop.sock_accept(listener))
            await asyncio.sleep(0.01)
            await loop.sock_connect(client, listener.getsockname())
            conn, address = await asyncio.wait_for(accepting, 5)
            with conn:
                assert conn.gettimeout() == 0
                assert address == client.getsockname()
                buf = bytearray(10)
                receiving = loop.create_task(loop.sock_recv_into(conn, memoryview(buf)[2:]))
                await asyncio.sleep(0.01)
                await loop.sock_sendall(client, b"abc")
                assert await asyncio.wait_for(receiving, 5) == 3
                assert bytes(buf[:5]) == b"\0\0abc"
                big = bytearray(os.urandom(4 * 1024 * 1024))
                sending = loop.create_task(loop.sock_sendall(conn, memoryview(big)))
                received = bytearray()
                while len(received) < len(big):
                    received += await loop.sock_recv(client, 1 << 20)
                await asyncio.wait_for(sending, 5)
                assert received == big
            cancelled = loop.create_task(loop.sock_accept(listener))
            await asyncio.sleep(0.01)
            cancelled.cancel()
            with pytest.raises(asyncio.CancelledError):
                await cancelled
            other = socket.socket()
            other.setblocking(False)
            with other:
                await loop.sock_connect(other, listener.getsockname())
                conn, _ = await asyncio.wait_for(loop.sock_accept(listener), 5)
                conn.close()
        return True

    assert loop.run_until_complete(main())


def _link_local_address():
    """A link-local IPv6 address of this machine and its interface index, or None."""
    try:
        with open("/proc/net/if_inet6") as f:
            rows = [line.split() for line in f]
    except OSError:
        return None
    for hexaddr, index, _, scope, *_ in rows:
        if scope == "20":  # IPV6_ADDR_LINKLOCAL
            packed = bytes.fromhex(hexaddr)
            return socket.inet_ntop(socket.AF_INET6, packed), int(index, 16)
    return None


def test_scoped_ipv6_addresses_as_the_socket_module_gives_them(loop, stock_loop):
    """A link-local IPv6 address has its interface in scope_id and none in the host string
    (no '%zone'), in datagram_received's address and a stream transport's sockname and
    peername, as on the stock loop."""
    found = _link_local_address()
    if found is None:
        pytest.skip("no link-local IPv6 address on this machine")
    host, index = found

    def bound(kind):
        s = socket.socket(socket.AF_INET6, kind)
        try:
            s.bind((host, 0, 0, index))
        except OSError as exc:
            s.close()
            pytest.skip(f"cannot bind {host}%{index}: {exc}")
        return s

    def scenario(loop):
        async def main():
            got = loop.create_future()

            class Receiver(asyncio.DatagramProtocol):
                def datagram_received(self, data, addr):
                    got.set_result(addr)

            receiver, _ = await loop.create_datagram_endpoint(
                Receiver, sock=bound(socket.SOCK_DGRAM)
            )
            sender, _ = await loop.create_datagram_endpoint(
                asyncio.DatagramProtocol, sock=bound(socket.SOCK_DGRAM)
            )
            sender.sendto(b"x", receiver.get_extra_info("sockname"))
            addr = await asyncio.wait_for(got, 5)
            listener = bound(socket.SOCK_STREAM)
            accepted = []

            class Accepted(asyncio.Protocol):
                def connection_made(self, transport):
                    accepted.append(transport)

            server = await loop.create_server(Accepted, sock=listener)
            client = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            client.connect(listener.getsockname())
            transport, _ = await loop.create_connection(asyncio.Protocol, sock=client)
            names = [transport.get_extra_info(k) for k in ("sockname", "peername")]
            while not accepted:
                await asyncio.sleep(0.001)
            for t in (transport, receiver, sender, *accepted):
                t.close()
            server.close()
            await server.wait_closed()
            await asyncio.sleep(0)  # their connection_lost
            # The ports differ from run to run: the host and scope_id are what is compared.
            return [(a[0], a[3]) for a in (addr, *names)]

        return loop.run_until_complete(main())

    got = scenario(loop)
    assert got == scenario(stock_loop) == [(host, index)] * 3
