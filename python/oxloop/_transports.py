"""oxloop's socket transport: asyncio's own, with its per-packet paths native.

``_SocketTransport`` is asyncio's ``_SelectorSocketTransport`` — so everything done once per
connection (set-up, ``close``, ``abort``, EOF, errors, ``connection_lost``, sendfile) is asyncio's
code, version for version — whose reads, writes and write buffer are a native ``StreamCore``:
reads go from ``recv`` to ``data_received`` without Python in between, and writes are queued and
sent with one ``writev`` per transport at the end of the loop's lap.
"""

from __future__ import annotations

import socket
from asyncio import protocols, selector_events, unix_events
from asyncio.log import logger

from ._oxloop import DatagramCore, StreamCore


def _core_attribute(name: str, doc: str) -> property:
    """A transport attribute that lives in the native core, so both halves share it."""

    def get(self):
        return getattr(self._core, name)

    def set(self, value):
        setattr(self._core, name, value)

    return property(get, set, doc=doc)


class _SocketTransport(selector_events._SelectorSocketTransport):
    """A TCP or Unix stream transport (an ``asyncio.Transport``)."""

    def __init__(self, loop, sock, protocol, waiter=None, extra=None, server=None):
        core = self._core = StreamCore(loop, sock.fileno())
        # Per-packet entry points, bound once: asyncio's __init__ registers _read_ready.
        self._read_ready = core._read_ready
        self.write = core.write
        self.writelines = core.writelines
        self.get_write_buffer_size = core.get_write_buffer_size
        super().__init__(loop, sock, protocol, waiter, extra, server)
        self._write_ready = core._write_ready
        core.attach(self)

    def set_protocol(self, protocol):
        super().set_protocol(protocol)
        self._core.set_protocol(protocol, isinstance(protocol, protocols.BufferedProtocol))

    def _call_connection_lost(self, exc):
        try:
            super()._call_connection_lost(exc)
        finally:
            self._core.detach()

    # asyncio's code reads and writes these; the native core acts on them per packet.
    _conn_lost = _core_attribute("conn_lost", "connection_lost() scheduled; writes since")
    _eof = _core_attribute("eof", "write_eof() was called")
    _closing = _core_attribute("closing", "close() was called")
    _protocol_paused = _core_attribute("protocol_paused", "pause_writing() was called")
    _high_water = _core_attribute("high_water", "write buffer high-water mark")
    _low_water = _core_attribute("low_water", "write buffer low-water mark")
    _empty_waiter = _core_attribute("empty_waiter", "future set when the buffer empties")

    @property
    def _protocol(self):
        return self._core.protocol

    @_protocol.setter
    def _protocol(self, protocol):
        self._core.set_protocol(protocol, isinstance(protocol, protocols.BufferedProtocol))

    @property
    def _buffer(self):
        """The write queue: its truth value, ``len`` and ``clear()`` are a deque's."""
        return self._core

    @_buffer.setter
    def _buffer(self, value):
        # asyncio's __init__ assigns a fresh deque; the queue is the core's.
        if value:
            raise ValueError("the write buffer of an oxloop transport cannot be replaced")


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
