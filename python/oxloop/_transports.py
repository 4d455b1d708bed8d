"""oxloop's transports: the socket transport runs on a native core; datagrams and pipes are
asyncio's own, with their per-packet paths native.

``_SocketTransport`` is an ``asyncio.Transport`` whose work is done by a native ``StreamCore``
(set-up, reads, writes, EOF, close, ``connection_lost``, with asyncio's
``_SelectorSocketTransport`` semantics): the loop calls the core directly for each read and
flush, and the transport's methods hand their call to it. What is rare and differs between
Python versions is asyncio's own code: ``__repr__``, ``__del__`` (the ResourceWarning of an
unclosed transport; called only while ``_sock`` is set), ``_fatal_error`` and the flow-control callbacks. The private attributes
asyncio's code and CPython's tests use (``_sock``, ``_loop``, ``_closing``…) read and write the
core's state.
"""

from __future__ import annotations

import socket
import sys
from asyncio import base_events, selector_events, transports, unix_events
from asyncio.log import logger

from ._oxloop import DatagramCore, StreamCore, transport_methods

_Selector = selector_events._SelectorSocketTransport


def _core_attribute(name: str, doc: str, settable: bool = True) -> property:
    """A transport attribute that lives in the native core."""

    def get(self):
        return getattr(self._core, name)

    def set(self, value):
        setattr(self._core, name, value)

    return property(get, set if settable else None, doc=doc)


class _SocketTransport(transports._FlowControlMixin, transports.Transport):
    """A TCP or Unix stream transport."""

    __slots__ = ("__dict__", "__weakref__", "_core")

    _start_tls_compatible = _Selector._start_tls_compatible
    _sendfile_compatible = _Selector._sendfile_compatible
    max_size = _Selector.max_size

    __repr__ = selector_events._SelectorTransport.__repr__
    _fatal_error = selector_events._SelectorTransport._fatal_error
    _maybe_pause_protocol = transports._FlowControlMixin._maybe_pause_protocol
    _maybe_resume_protocol = transports._FlowControlMixin._maybe_resume_protocol

    def __new__(cls, *args, **kwargs):
        raise TypeError("socket transports are made by the event loop")

    if sys.version_info >= (3, 12):

        def writelines(self, list_of_data):
            self._core.writelines(list_of_data)

    else:  # asyncio's socket transports took WriteTransport's: b"".join, then write()
        writelines = transports.WriteTransport.writelines

    def _force_close(self, exc):
        self._core._force_close(exc)

    def _call_connection_lost(self, exc):
        self._core._call_connection_lost(exc)

    def can_write_eof(self):
        return True

    def get_write_buffer_limits(self):
        return self._core.get_write_buffer_limits()

    def set_write_buffer_limits(self, high=None, low=None):
        self._core.set_write_buffer_limits(high, low)

    def _make_empty_waiter(self):
        return self._core._make_empty_waiter()

    def _reset_empty_waiter(self):
        self._core._reset_empty_waiter()

    _loop = _core_attribute("_loop", "the loop; None after connection_lost", False)
    _sock = _core_attribute("_sock", "the socket; None after connection_lost")
    _sock_fd = _core_attribute("_sock_fd", "the socket's descriptor", False)
    _server = _core_attribute("_server", "the Server that accepted it, or None", False)
    _extra = _core_attribute("_extra", "get_extra_info's dict", False)
    _protocol = _core_attribute("_protocol", "the protocol")
    _protocol_connected = _core_attribute("_protocol_connected", "connection_lost is due")
    _conn_lost = _core_attribute("_conn_lost", "connection_lost() scheduled; writes since")
    _eof = _core_attribute("_eof", "write_eof() was called")
    _closing = _core_attribute("_closing", "close() was called")
    _paused = _core_attribute("_paused", "pause_reading() was called")
    _protocol_paused = _core_attribute("_protocol_paused", "pause_writing() was called")
    _high_water = _core_attribute("_high_water", "write buffer high-water mark")
    _low_water = _core_attribute("_low_water", "write buffer low-water mark")
    _empty_waiter = _core_attribute("_empty_waiter", "future set when the buffer empties")


# Native methods (no Python frame per call): the packet path, and what servers and frameworks
# call per connection; and `__del__` (asyncio's, when `_sock` is not None).
_native = transport_methods(_SocketTransport)
for _name in (
    "write",
    "is_closing",
    "get_extra_info",
    "close",
    "abort",
    "get_write_buffer_size",
    "set_protocol",
    "get_protocol",
    "is_reading",
    "pause_reading",
    "resume_reading",
    "write_eof",
    "__del__",
):
    setattr(_SocketTransport, _name, _native[_name])
del _native, _name


# What asyncio's socket transport calls on its socket, and the native core does with system
# calls instead; and what asyncio's server calls on a listening socket, which `Acceptor` does.
_TRANSPORT_CALLS = (
    "recv", "recv_into", "send", "sendmsg", "shutdown", "getsockname", "getpeername", "setsockopt"
)
_ACCEPT_CALLS = ("accept", "_accept")


# Python 3.13's Server counts its transports (close_clients/abort_clients).
StreamCore._configure(base_events.Server._attach.__code__.co_argcount == 2)


class _DatagramTransport(selector_events._SelectorDatagramTransport):
    """asyncio's datagram transport, receiving natively.

    For AF_INET/AF_INET6 sockets the readiness callback is ``DatagramCore._read_ready``:
    ``recvfrom`` into the loop's reused buffer, then ``datagram_received`` (asyncio's
    ``sock.recvfrom(256 KiB)`` allocates a 256 KiB object per datagram). Other families (Unix
    datagram sockets) keep asyncio's own ``_read_ready``.
    """

    def __init__(self, loop, sock, protocol, address=None, waiter=None, extra=None):
        self._core = None
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            self._core = DatagramCore(loop, sock.fileno(), address is not None)
            self._read_ready = self._core._read_ready  # what asyncio's __init__ registers
        super().__init__(loop, sock, protocol, address, waiter, extra)
        # A socket connected by the caller (peername set, no address given) sends with send()
        # whatever address sendto() is given: asyncio's own sendto handles that case.
        if self._core is not None and (address is not None or not self._extra["peername"]):
            self.sendto = self._core.sendto

    _sendto_py = selector_events._SelectorDatagramTransport.sendto

    def set_protocol(self, protocol):
        super().set_protocol(protocol)
        if self._core is not None:
            self._core.attach(self, protocol)

    def _call_connection_lost(self, exc):
        try:
            super()._call_connection_lost(exc)
        finally:
            if self._core is not None:
                self._core.detach()


class _ReadPipeTransport(unix_events._UnixReadPipeTransport):
    """asyncio's read-pipe transport, reading into the loop's reused buffer (see above)."""

    def _read_ready(self):
        try:
            data = self._loop._read_chunk(self._fileno)
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as exc:
            self._fatal_error(exc, "Fatal read error on pipe transport")
        else:
            if data:
                self._protocol.data_received(data)
            else:
                if self._loop.get_debug():
                    logger.info("%r was closed by peer", self)
                self._closing = True
                self._loop._remove_reader(self._fileno)
                self._loop.call_soon(self._protocol.eof_received)
                self._loop.call_soon(self._call_connection_lost, None)
