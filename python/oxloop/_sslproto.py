"""asyncio's TLS protocol with its per-record path native (Python 3.11+).

``SSLProtocol`` is asyncio's ``sslproto.SSLProtocol`` — its state machine, its attributes, its
application transport — with ``get_buffer``, ``buffer_updated``, ``_do_read``, ``_do_write``,
``_write_appdata`` and ``_process_outgoing`` taken from the native ``SSLProtocolBase``
(``src/transports/sslproto.rs``), which does what those methods do without a Python frame
per TLS record. The attributes that path uses (``SSLProtocolBase._native_attributes``) are held
natively; a ``NativeAttribute`` descriptor per name gives asyncio's code the same attributes.
Python 3.10's ``sslproto`` is an older design; there the loop uses it as is.
"""

from __future__ import annotations

from asyncio import sslproto

from ._oxloop import NativeAttribute, SSLProtocolBase


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


for _index, _name in enumerate(SSLProtocolBase._native_attributes):
    setattr(SSLProtocol, _name, NativeAttribute(_index))
del _index, _name
