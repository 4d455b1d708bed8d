"""asyncio's TLS protocol with its state machine and per-record path native (Python 3.11+).

``SSLProtocol`` is asyncio's ``sslproto.SSLProtocol`` — its attributes, its application
transport, its rare paths — with what runs for every connection and every TLS record taken from
the native ``SSLProtocolBase`` (``src/transports/sslproto/``): the per-record methods
(``buffer_updated``, ``_do_read``, ``_do_write``, ``_write_appdata``, ...) and the state machine
(``connection_made``, ``_on_handshake_complete``, ``_start_shutdown``, ``connection_lost``,
``_set_state``, ...), which do what asyncio's methods of those names do without Python frames.
Its application transport is asyncio's, with a native ``write`` and ``__del__``. The attributes
the native code reads most (``SSLProtocolBase._native_attributes``) are held natively; a
``NativeAttribute`` descriptor per name gives asyncio's code the same attributes.
Python 3.10's ``sslproto`` is an older design; there the loop uses it as is.
"""

from __future__ import annotations

from asyncio import sslproto

from ._oxloop import NativeAttribute, SSLProtocolBase, transport_methods


class _SSLProtocolTransport(sslproto._SSLProtocolTransport):
    """asyncio's TLS application transport; ``write`` is native (asyncio's checks, then the
    protocol's ``_write_appdata``), with no Python frame per call, and so is ``__del__`` (asyncio's
    when the transport was never closed)."""


_native = transport_methods(_SSLProtocolTransport)
_SSLProtocolTransport.write = _native["ssl_write"]
_SSLProtocolTransport.__del__ = _native["ssl_del"]
del _native


class SSLProtocol(SSLProtocolBase, sslproto.SSLProtocol):
    """asyncio's SSLProtocol; what runs per connection and per TLS record comes from
    SSLProtocolBase."""


for _index, _name in enumerate(SSLProtocolBase._native_attributes):
    setattr(SSLProtocol, _name, NativeAttribute(_index))
del _index, _name
