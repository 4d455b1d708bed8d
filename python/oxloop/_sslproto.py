"""asyncio's TLS protocol with its per-record path native (Python 3.11+).

``SSLProtocol`` is asyncio's ``sslproto.SSLProtocol`` — its state machine, its attributes, its
application transport — with ``get_buffer``, ``buffer_updated``, ``_do_read``, ``_do_write``,
``_write_appdata``, ``_process_outgoing``, ``_do_handshake`` and ``_do_shutdown`` taken from
the native ``SSLProtocolBase`` (``src/transports/sslproto.rs``), which does what those methods
do without a Python frame per TLS record; its application transport is asyncio's, with a native
``write``. The attributes that path uses (``SSLProtocolBase._native_attributes``) are held
natively; a ``NativeAttribute`` descriptor per name gives asyncio's code the same attributes.
Python 3.10's ``sslproto`` is an older design; there the loop uses it as is.
"""

from __future__ import annotations

from asyncio import sslproto

from ._oxloop import NativeAttribute, SSLProtocolBase, transport_methods


class _SSLProtocolTransport(sslproto._SSLProtocolTransport):
    """asyncio's TLS application transport; ``write`` is native (asyncio's checks, then the
    protocol's ``_write_appdata``), with no Python frame per call."""

    write = transport_methods["ssl_write"]


class SSLProtocol(SSLProtocolBase, sslproto.SSLProtocol):
    """asyncio's SSLProtocol; what runs per TLS record comes from SSLProtocolBase."""

    def __init__(self, *args, **kwargs):
        # asyncio's __init__ makes a max_size (256 KiB) receive buffer per connection: a fresh
        # mapping, zeroed, for each handshake. oxloop's socket transport writes to the BIO
        # itself and never asks for it; get_buffer makes it when something else does.
        self.max_size = 0
        try:
            super().__init__(*args, **kwargs)
        finally:
            del self.max_size

    def _get_app_transport(self):
        # asyncio's (3.11-3.13), making the transport above.
        if self._app_transport is None:
            if self._app_transport_created:
                raise RuntimeError("Creating _SSLProtocolTransport twice")
            self._app_transport = _SSLProtocolTransport(self._loop, self)
            self._app_transport_created = True
        return self._app_transport


for _index, _name in enumerate(SSLProtocolBase._native_attributes):
    setattr(SSLProtocol, _name, NativeAttribute(_index))
del _index, _name
