"""TLS (asyncio's SSLProtocol over the loop's transport) and sendfile, on both loops.

The certificates are made by tests/tls_certs.py in a temporary directory.
"""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import ssl
import sys

import pytest

pytest.importorskip("cryptography", reason="the test certificates are made with cryptography")
from tls_certs import make_certs


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certs(tmp_path_factory.mktemp("certs"))


def server_context(certs, *, require_client=False, alpn=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certs.server_cert, certs.server_key)
    if require_client:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(certs.ca)
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


def client_context(certs, *, with_cert=False, alpn=None):
    ctx = ssl.create_default_context(cafile=str(certs.ca))
    if with_cert:
        ctx.load_cert_chain(certs.client_cert, certs.client_key)
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


async def echo_handler(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()


def open_fds():
    gc.collect()
    return set(os.listdir("/proc/self/fd"))


def test_tls_echo_with_client_certificate_and_alpn(loop, certs):
    async def main():
        server = await asyncio.start_server(
            echo_handler, "127.0.0.1", 0,
            ssl=server_context(certs, require_client=True, alpn=["h2", "http/1.1"]),
        )
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_context(certs, with_cert=True, alpn=["http/1.1"]),
            server_hostname="localhost",
        )
        payload = os.urandom(300_000)
        writer.write(payload)
        echoed = await reader.readexactly(len(payload))
        info = (
            writer.get_extra_info("ssl_object").selected_alpn_protocol(),
            writer.get_extra_info("peercert")["subject"],
            isinstance(writer.get_extra_info("cipher"), tuple),
        )
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()
        return echoed == payload, info

    same, info = loop.run_until_complete(main())
    assert same
    assert info == ("http/1.1", ((("commonName", "localhost"),),), True)


def handshake_error(loop, certs, *, server_ctx, client_ctx, hostname):
    async def main():
        server = await asyncio.start_server(echo_handler, "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        try:
            await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx, server_hostname=hostname)
        except Exception as exc:  # noqa: BLE001 (the type is what is compared)
            return exc
        finally:
            server.close()
            await server.wait_closed()
        return None

    before = open_fds()
    exc = loop.run_until_complete(main())
    loop.run_until_complete(asyncio.sleep(0.05))
    assert open_fds() == before, "a failed handshake left a descriptor open"
    return exc


def test_hostname_mismatch(loop, certs):
    exc = handshake_error(
        loop, certs, server_ctx=server_context(certs), client_ctx=client_context(certs),
        hostname="not-localhost.example",
    )
    assert isinstance(exc, ssl.SSLCertVerificationError)
    assert "Hostname mismatch" in str(exc) or "hostname" in str(exc).lower()


def test_untrusted_certificate(loop, certs):
    rogue = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    rogue.load_cert_chain(certs.rogue_cert, certs.rogue_key)
    exc = handshake_error(
        loop, certs, server_ctx=rogue, client_ctx=client_context(certs), hostname="localhost"
    )
    assert isinstance(exc, ssl.SSLCertVerificationError)


def test_missing_client_certificate_is_refused(loop, certs):
    async def main():
        server = await asyncio.start_server(
            echo_handler, "127.0.0.1", 0, ssl=server_context(certs, require_client=True)
        )
        port = server.sockets[0].getsockname()[1]
        try:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=client_context(certs), server_hostname="localhost"
            )
            # TLS 1.3: the refusal arrives after the client's handshake completed.
            writer.write(b"hello")
            await reader.read(10)
            data = await reader.read(10)
            writer.close()
            return data
        except (ssl.SSLError, ConnectionError) as exc:
            return type(exc).__mro__[1]
        finally:
            server.close()
            await server.wait_closed()

    result = loop.run_until_complete(main())
    assert result in (b"", ssl.SSLError, OSError, ConnectionError)


def test_peer_closing_mid_handshake(loop, certs):
    async def main():
        listener = socket.create_server(("127.0.0.1", 0))
        listener.setblocking(False)
        port = listener.getsockname()[1]

        async def accept_and_close():
            conn, _ = await loop.sock_accept(listener)
            await loop.sock_recv(conn, 1024)  # the ClientHello
            conn.close()

        task = asyncio.ensure_future(accept_and_close())
        try:
            await asyncio.open_connection(
                "127.0.0.1", port, ssl=client_context(certs), server_hostname="localhost"
            )
        except Exception as exc:  # noqa: BLE001 (the type is what is compared)
            return exc
        finally:
            await task
            listener.close()

    exc = loop.run_until_complete(main())
    assert isinstance(exc, (ConnectionError, ssl.SSLError, OSError))


def test_handshake_timeout(loop, certs):
    async def main():
        listener = socket.create_server(("127.0.0.1", 0))  # accepts in the kernel, never answers
        port = listener.getsockname()[1]
        try:
            await asyncio.open_connection(
                "127.0.0.1", port, ssl=client_context(certs), server_hostname="localhost",
                ssl_handshake_timeout=0.2,
            )
        except Exception as exc:  # noqa: BLE001 (the type is what is compared)
            return exc
        finally:
            listener.close()

    exc = loop.run_until_complete(main())
    assert isinstance(exc, (ConnectionAbortedError, TimeoutError, asyncio.TimeoutError))


@pytest.mark.skipif(sys.version_info < (3, 11), reason="StreamWriter.start_tls is new in 3.11")
def test_starttls_upgrade_in_place(loop, certs):
    async def handler(reader, writer):
        assert await reader.readline() == b"STARTTLS\n"
        writer.write(b"GO\n")
        await writer.drain()
        await writer.start_tls(server_context(certs))
        line = await reader.readline()
        writer.write(line.upper())
        await writer.drain()
        writer.close()

    async def main():
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"STARTTLS\n")
        assert await reader.readline() == b"GO\n"
        await writer.start_tls(client_context(certs), server_hostname="localhost")
        writer.write(b"secret\n")
        answer = await reader.readline()
        tls = writer.get_extra_info("ssl_object") is not None
        writer.close()
        server.close()
        await server.wait_closed()
        return answer, tls

    assert loop.run_until_complete(main()) == (b"SECRET\n", True)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="3.10's sslproto is the older design")
def test_start_tls_upgrades_with_the_loop_s_tls_protocol(loop, loop_kind, certs):
    """loop.start_tls: the upgraded transport runs over the loop's own TLS protocol (oxloop's
    native one on oxloop), and bad arguments raise asyncio's errors."""

    async def handler(reader, writer):
        await reader.readexactly(1)
        writer.write(b"+")  # the client's ClientHello comes after this
        await writer.drain()
        await writer.start_tls(server_context(certs))
        writer.write((await reader.readexactly(6)).upper())
        await writer.drain()
        writer.close()

    async def main():
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        errors = []
        for args in [(writer.transport, asyncio.Protocol(), object()),
                     (object(), asyncio.Protocol(), client_context(certs))]:
            try:
                await loop.start_tls(*args)
            except TypeError as exc:
                errors.append(str(exc).split("<")[0])
        writer.write(b"!")
        assert await reader.readexactly(1) == b"+"
        await writer.start_tls(client_context(certs), server_hostname="localhost")
        writer.write(b"secret")
        answer = await reader.readexactly(6)
        kind = type(writer.transport._ssl_protocol).__module__
        writer.close()
        server.close()
        await server.wait_closed()
        return answer, kind, errors

    answer, kind, errors = loop.run_until_complete(main())
    assert answer == b"SECRET"
    assert kind == ("asyncio.sslproto" if loop_kind == "asyncio" else "oxloop._sslproto")
    assert errors == [
        "sslcontext is expected to be an instance of ssl.SSLContext, got ",
        "transport ",
    ]


def sendfile_scenario(loop, tmp_path, *, use_ssl, certs, fallback=True):
    path = tmp_path / "data.bin"
    content = os.urandom(3 * 1024 * 1024 + 17)
    path.write_bytes(content)
    received = bytearray()

    async def main():
        done = loop.create_future()

        async def handler(reader, writer):
            while data := await reader.read(1 << 16):
                received.extend(data)
                if len(received) >= len(content) - 100:
                    break
            if not done.done():
                done.set_result(None)
            writer.close()

        server = await asyncio.start_server(
            handler, "127.0.0.1", 0, ssl=server_context(certs) if use_ssl else None
        )
        port = server.sockets[0].getsockname()[1]
        transport, _ = await loop.create_connection(
            asyncio.Protocol, "127.0.0.1", port,
            ssl=client_context(certs) if use_ssl else None,
            server_hostname="localhost" if use_ssl else None,
        )
        with open(path, "rb") as f:  # noqa: ASYNC230 (a local file, as loop.sendfile takes)
            f.seek(100)
            try:
                sent = await loop.sendfile(transport, f, offset=100, fallback=fallback)
            except Exception as exc:  # noqa: BLE001 (the type is what is compared)
                sent = exc
            position = f.tell()
        if isinstance(sent, Exception):
            transport.close()  # the handler then sees EOF and finishes
        await asyncio.wait_for(done, 10)
        transport.close()
        server.close()
        await server.wait_closed()
        return sent, position

    sent, position = loop.run_until_complete(main())
    return content, bytes(received), sent, position


@pytest.mark.parametrize("use_ssl", [False, True], ids=["tcp", "tls"])
def test_sendfile(loop, tmp_path, certs, use_ssl):
    content, received, sent, position = sendfile_scenario(
        loop, tmp_path, use_ssl=use_ssl, certs=certs
    )
    assert sent == len(content) - 100
    assert position == len(content)
    assert received == content[100:]


def test_sendfile_without_fallback_on_tls(loop, tmp_path, certs):
    _, _, sent, _ = sendfile_scenario(loop, tmp_path, use_ssl=True, certs=certs, fallback=False)
    assert isinstance(sent, (asyncio.SendfileNotAvailableError, RuntimeError))


class _CountingSocket(socket.socket):
    """A socket.socket whose I/O methods are its own (they count their calls): asyncio's
    transport calls them, under TLS too."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = {}

    def _count(self, name):
        self.calls[name] = self.calls.get(name, 0) + 1

    def recv(self, n):
        self._count("recv")
        return super().recv(n)

    def recv_into(self, buf, nbytes=0, flags=0):
        self._count("recv")
        return super().recv_into(buf, nbytes, flags)

    def send(self, data, flags=0):
        self._count("send")
        return super().send(data, flags)

    def sendmsg(self, buffers, *args):
        self._count("send")
        return super().sendmsg(buffers, *args)


class _Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


def test_tls_over_a_socket_with_its_own_methods(loop, certs):
    """TLS over a socket subclass whose recv/recv_into and send/sendmsg are its own: the
    handshake and 1 MB each way go through them (asyncio's transport), on both loops."""

    async def main():
        a, b = socket.socketpair()
        sub = _CountingSocket(a.family, a.type, fileno=a.detach())
        for s in (sub, b):
            s.setblocking(False)
        (server, _), (reader, writer) = await asyncio.gather(
            loop.connect_accepted_socket(_Echo, b, ssl=server_context(certs)),
            asyncio.open_connection(
                sock=sub, ssl=client_context(certs), server_hostname="localhost"
            ),
        )
        payload = os.urandom(1_000_000)
        writer.write(payload)
        assert await asyncio.wait_for(reader.readexactly(len(payload)), 10) == payload
        writer.close()
        await writer.wait_closed()
        server.close()
        return sub.calls

    calls = loop.run_until_complete(main())
    assert calls.get("recv", 0) > 1 and calls.get("send", 0) > 1, calls
