"""Opening stream connections: asyncio's ``create_connection`` and ``create_unix_connection``,
with their common case in one frame.

A client that connects to an address literal (``"127.0.0.1"``, ``"::1"``) or to a Unix path,
with or without TLS, and without the rarer parameters (``sock``, ``local_addr``, happy eyeballs,
``interleave``, ``all_errors=True``), takes ``connect_stream``: one coroutine doing what
asyncio's ``_ensure_resolved``, ``_connect_sock``, ``sock_connect`` and
``_create_connection_transport`` do for one address, with the socket non-blocking from its
creation (asyncio makes it so with ``setblocking(False)``, a system call, twice) and the
connection's outcome read natively. TCP to an address literal, with or without TLS, is opened
natively from socket to transport (``LoopCore._stream_connect``, ``src/new_socket.rs``), in
``create_connection``'s own frame. Everything else, debug mode and every argument error
included, runs asyncio's own method, so its checks and messages are asyncio's.
"""

from __future__ import annotations

import errno
import functools
import os
import socket
import sys
from asyncio import base_events, unix_events

from ._oxloop import StreamCore
from ._transports import _SocketTransport

# connect_ex's answers that mean "under way": asyncio's BlockingIOError and InterruptedError.
CONNECT_UNDER_WAY = frozenset((errno.EINPROGRESS, errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR))

_create_connection_py = base_events.BaseEventLoop.create_connection
_create_unix_connection_py = unix_events._UnixSelectorEventLoop.create_unix_connection
_ipaddr_info = base_events._ipaddr_info
_STREAM_NONBLOCK = socket.SOCK_STREAM | socket.SOCK_NONBLOCK

# Parameters only some Pythons have: ssl_shutdown_timeout (3.11+), all_errors (3.12+). One not
# given is _ABSENT, so that a Python without it still refuses it, in asyncio's own method.
_ABSENT = object()
_HAS_SHUTDOWN_TIMEOUT = sys.version_info >= (3, 11)
_HAS_ALL_ERRORS = sys.version_info >= (3, 12)


def start_connect(loop, sock, address):
    """Start connecting the non-blocking sock to address: None when it connected at once, else
    the future its native wait resolves (asyncio's ``sock_connect`` without its frame). An
    immediate failure raises the connect call's own OSError."""
    err = sock.connect_ex(address)
    if not err:
        return None
    if err not in CONNECT_UNDER_WAY:
        raise OSError(err, os.strerror(err))
    fut = loop.create_future()
    loop._sock_connect_wait(sock, sock.fileno(), fut, address)
    return fut


def _given(**params):
    """The version-dependent parameters that were given, for asyncio's own method."""
    return {name: value for name, value in params.items() if value is not _ABSENT}


def _tls_timeouts(ssl_handshake_timeout, ssl_shutdown_timeout):
    """The timeouts asyncio's _create_connection_transport hands to _make_ssl_transport."""
    if ssl_shutdown_timeout is _ABSENT:
        if _HAS_SHUTDOWN_TIMEOUT:
            ssl_shutdown_timeout = None
        else:
            return {"ssl_handshake_timeout": ssl_handshake_timeout}
    return {
        "ssl_handshake_timeout": ssl_handshake_timeout,
        "ssl_shutdown_timeout": ssl_shutdown_timeout,
    }


def _tls_arguments_fit(ssl, server_hostname, ssl_handshake_timeout, ssl_shutdown_timeout):
    """False where asyncio would refuse the TLS arguments (its method then says why)."""
    if ssl_shutdown_timeout is not _ABSENT and not _HAS_SHUTDOWN_TIMEOUT:
        return False
    if ssl:
        return True
    return (
        server_hostname is None
        and ssl_handshake_timeout is None
        and (ssl_shutdown_timeout is None or ssl_shutdown_timeout is _ABSENT)
    )


async def connect_stream(loop, protocol_factory, family, proto, address, ssl, server_hostname,
                         timeouts):
    """Connect a new stream socket to address and make its transport: asyncio's
    ``_connect_sock`` (without ``local_addr``), ``sock_connect`` and
    ``_create_connection_transport``. The socket is closed if anything fails before the
    transport owns it (asyncio leaves it to the collector when the protocol factory fails)."""
    sock = socket.socket(family, _STREAM_NONBLOCK, proto)
    try:
        fut = start_connect(loop, sock, address)
        if fut is not None:
            try:
                await fut
            finally:
                fut = None  # breaks the cycle through the exception's traceback, as asyncio does
        protocol = protocol_factory()
        waiter = loop.create_future()
        if ssl:
            sslcontext = None if isinstance(ssl, bool) else ssl
            transport = loop._make_ssl_transport(
                sock, protocol, sslcontext, waiter, server_side=False,
                server_hostname=server_hostname, **timeouts,
            )
        else:
            transport = StreamCore._create(_SocketTransport, loop, sock, protocol, waiter, None,
                                           None)
    except BaseException:
        sock.close()
        raise
    try:
        await waiter
    except BaseException:
        transport.close()
        raise
    return transport, protocol


@functools.wraps(_create_connection_py)
async def create_connection(self, protocol_factory, host=None, port=None, *, ssl=None, family=0,
                            proto=0, flags=0, sock=None, local_addr=None, server_hostname=None,
                            ssl_handshake_timeout=None, ssl_shutdown_timeout=_ABSENT,
                            happy_eyeballs_delay=None, interleave=None, all_errors=_ABSENT):
    if (
        sock is None
        and local_addr is None
        and happy_eyeballs_delay is None
        and interleave is None
        and (all_errors is _ABSENT or (_HAS_ALL_ERRORS and not all_errors))
        and not self._debug
    ):
        fit = _tls_arguments_fit(ssl, server_hostname, ssl_handshake_timeout, ssl_shutdown_timeout)
        if fit:
            # TCP to an address literal: made, connected and handed to its transport natively
            # (its socket object is made only if asked for); None for any other host.
            conn = self._stream_connect(host, port, family, proto)
            if conn is not None:
                try:
                    if conn.fut is not None:
                        await conn.fut
                    protocol = protocol_factory()
                    if ssl:
                        waiter = self.create_future()
                        transport = self._make_ssl_transport(
                            conn, protocol, None if isinstance(ssl, bool) else ssl, waiter,
                            server_side=False,
                            server_hostname=host if server_hostname is None else server_hostname,
                            **_tls_timeouts(ssl_handshake_timeout, ssl_shutdown_timeout),
                        )
                    else:
                        transport, waiter = conn.transport(_SocketTransport, protocol)
                except BaseException:
                    conn.close()  # also lets go of the future (and a cycle through its error)
                    raise
                try:
                    await waiter
                except BaseException:
                    transport.close()
                    raise
                return transport, protocol
        info = _ipaddr_info(host, port, family, socket.SOCK_STREAM, proto) if fit else None
        if info is not None:  # an address literal: asyncio tries exactly this one address
            family, _, proto, _, address = info
            if ssl and server_hostname is None:
                server_hostname = host
            return await connect_stream(
                self, protocol_factory, family, proto, address, ssl, server_hostname,
                _tls_timeouts(ssl_handshake_timeout, ssl_shutdown_timeout) if ssl else None,
            )
    return await _create_connection_py(
        self, protocol_factory, host, port, ssl=ssl, family=family, proto=proto, flags=flags,
        sock=sock, local_addr=local_addr, server_hostname=server_hostname,
        ssl_handshake_timeout=ssl_handshake_timeout, happy_eyeballs_delay=happy_eyeballs_delay,
        interleave=interleave,
        **_given(ssl_shutdown_timeout=ssl_shutdown_timeout, all_errors=all_errors),
    )


@functools.wraps(_create_unix_connection_py)
async def create_unix_connection(self, protocol_factory, path=None, *, ssl=None, sock=None,
                                 server_hostname=None, ssl_handshake_timeout=None,
                                 ssl_shutdown_timeout=_ABSENT):
    if (
        path is not None
        and sock is None
        and (server_hostname is None or isinstance(server_hostname, str))
        and (not ssl or server_hostname is not None)
        and _tls_arguments_fit(ssl, server_hostname, ssl_handshake_timeout, ssl_shutdown_timeout)
    ):
        return await connect_stream(
            self, protocol_factory, socket.AF_UNIX, 0, os.fspath(path), ssl, server_hostname,
            _tls_timeouts(ssl_handshake_timeout, ssl_shutdown_timeout) if ssl else None,
        )
    return await _create_unix_connection_py(
        self, protocol_factory, path, ssl=ssl, sock=sock, server_hostname=server_hostname,
        ssl_handshake_timeout=ssl_handshake_timeout,
        **_given(ssl_shutdown_timeout=ssl_shutdown_timeout),
    )
