//! A new `SSLProtocol` (3.11+): asyncio's `__init__` and `_set_app_protocol`, natively, with
//! the same attributes set to the same values, and the same errors.

use pyo3::exceptions::PyValueError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyDict, PyMemoryView, PyString};

use super::{Inst, Names, SSLProtocolBase, A};

/// `SSLProtocol.__init__`'s arguments.
pub(super) struct InitArgs<'a, 'py> {
    pub event_loop: &'a Bound<'py, PyAny>,
    pub app_protocol: &'a Bound<'py, PyAny>,
    pub sslcontext: &'a Bound<'py, PyAny>,
    pub waiter: &'a Bound<'py, PyAny>,
    pub server_side: &'a Bound<'py, PyAny>,
    pub server_hostname: &'a Bound<'py, PyAny>,
    pub call_connection_made: &'a Bound<'py, PyAny>,
    pub ssl_handshake_timeout: &'a Bound<'py, PyAny>,
    pub ssl_shutdown_timeout: &'a Bound<'py, PyAny>,
}

/// A timeout argument as asyncio's `__init__` takes it: `None` for asyncio's default (the
/// `constants` attribute `default`), else a positive number.
fn timeout_or_default<'py>(
    names: &Names,
    name: &str,
    value: &Bound<'py, PyAny>,
    default: &Bound<'py, PyString>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = value.py();
    if value.is_none() {
        return names.constants.bind(py).getattr(default);
    }
    if value.le(0)? {
        return Err(PyValueError::new_err(format!(
            "{name} should be a positive number, got {}",
            value.str()?
        )));
    }
    Ok(value.clone())
}

/// `sslcontext.wrap_bio(incoming, outgoing, server_side=..., server_hostname=...)`. For an
/// `ssl.SSLContext` whose `wrap_bio`, `_encode_hostname` and `sslobject_class` are the `ssl`
/// module's, and an ASCII host name, it is done as those Python methods do it: the
/// `SSLObject` made with `__new__`, its C object made by `_wrap_bio`.
fn wrap_bio<'py>(
    names: &Names,
    sslcontext: &Bound<'py, PyAny>,
    bios: (Bound<'py, PyAny>, Bound<'py, PyAny>),
    server_side: &Bound<'py, PyAny>,
    server_hostname: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = sslcontext.py();
    let context_type = sslcontext.get_type();
    let plain = context_type
        .getattr(intern!(py, "wrap_bio"))?
        .is(names.context_wrap_bio.bind(py))
        && context_type
            .getattr(intern!(py, "_encode_hostname"))?
            .is(names.context_encode_hostname.bind(py))
        && sslcontext
            .getattr(intern!(py, "sslobject_class"))?
            .is(names.ssl_object.bind(py));
    let hostname = if !plain {
        None
    } else if server_hostname.is_none() {
        Some(server_hostname.clone())
    } else {
        server_hostname
            .cast_exact::<PyString>()
            .ok()
            .filter(|h| h.to_str().is_ok_and(is_plain_idna))
            .map(|h| h.clone().into_any())
    };
    let Some(hostname) = hostname else {
        let kwargs = PyDict::new(py);
        kwargs.set_item(intern!(py, "server_side"), server_side)?;
        kwargs.set_item(intern!(py, "server_hostname"), server_hostname)?;
        return sslcontext.call_method(intern!(py, "wrap_bio"), bios, Some(&kwargs));
    };
    let sslobj = names
        .object_new
        .bind(py)
        .call1((names.ssl_object.bind(py),))?;
    let kwargs = PyDict::new(py);
    kwargs.set_item(intern!(py, "server_side"), server_side)?;
    kwargs.set_item(intern!(py, "server_hostname"), hostname)?;
    kwargs.set_item(intern!(py, "owner"), &sslobj)?;
    kwargs.set_item(intern!(py, "session"), py.None())?;
    let c_sslobj = sslcontext.call_method(intern!(py, "_wrap_bio"), bios, Some(&kwargs))?;
    sslobj.setattr(intern!(py, "_sslobj"), c_sslobj)?;
    Ok(sslobj)
}

/// Whether `hostname.encode('idna').decode('ascii')` is `hostname`: an ASCII name whose labels
/// pass the idna codec's checks (those before the last 1 to 63 bytes long, the last under 64).
fn is_plain_idna(hostname: &str) -> bool {
    if !hostname.is_ascii() {
        return false;
    }
    let labels: Vec<&str> = hostname.split('.').collect();
    let (last, rest) = labels
        .split_last()
        .expect("split yields one label at least");
    rest.iter().all(|l| (1..64).contains(&l.len())) && last.len() < 64
}

impl SSLProtocolBase {
    /// asyncio's `__init__`, in its order; the receive buffer (`max_size`, 256 KiB, zeroed, for
    /// each connection in asyncio) is empty until `get_buffer` needs it: oxloop's socket
    /// transport writes to the BIO itself (`feed`).
    pub(super) fn init(
        &self,
        me: &Inst<'_, '_>,
        names: &Names,
        args: InitArgs<'_, '_>,
    ) -> PyResult<()> {
        let py = me.py();
        let buffer = PyByteArray::new(py, &[]);
        me.set_attr(intern!(py, "_ssl_buffer"), &buffer)?;
        me.set_attr(
            intern!(py, "_ssl_buffer_view"),
            PyMemoryView::from(buffer.as_any())?,
        )?;
        let handshake_timeout = timeout_or_default(
            names,
            "ssl_handshake_timeout",
            args.ssl_handshake_timeout,
            intern!(py, "SSL_HANDSHAKE_TIMEOUT"),
        )?;
        let shutdown_timeout = timeout_or_default(
            names,
            "ssl_shutdown_timeout",
            args.ssl_shutdown_timeout,
            intern!(py, "SSL_SHUTDOWN_TIMEOUT"),
        )?;
        let sslcontext = if args.sslcontext.is_truthy()? {
            args.sslcontext.clone()
        } else {
            names
                .create_transport_context
                .bind(py)
                .call1((args.server_side, args.server_hostname))?
        };
        me.set_attr(intern!(py, "_server_side"), args.server_side)?;
        let server_hostname =
            if args.server_hostname.is_truthy()? && !args.server_side.is_truthy()? {
                args.server_hostname.clone()
            } else {
                py.None().into_bound(py)
            };
        me.set_attr(intern!(py, "_server_hostname"), &server_hostname)?;
        me.set_attr(intern!(py, "_sslcontext"), &sslcontext)?;
        let extra = PyDict::new(py);
        extra.set_item(intern!(py, "sslcontext"), &sslcontext)?;
        me.set_attr(intern!(py, "_extra"), extra)?;
        me.store(A::WriteBacklog, &names.deque.bind(py).call0()?)?;
        me.set(A::WriteBufferSize, 0)?;
        me.set_attr(intern!(py, "_waiter"), args.waiter)?;
        me.set_attr(intern!(py, "_loop"), args.event_loop)?;
        Self::set_app_protocol(me, names, args.app_protocol)?;
        let none = py.None().into_bound(py);
        me.set_attr(intern!(py, "_app_transport"), &none)?;
        me.set_attr(intern!(py, "_app_transport_created"), false)?;
        me.store(A::Transport, &none)?;
        me.set_attr(intern!(py, "_ssl_handshake_timeout"), handshake_timeout)?;
        me.set_attr(intern!(py, "_ssl_shutdown_timeout"), shutdown_timeout)?;
        let incoming = names.memory_bio.bind(py).call0()?;
        let outgoing = names.memory_bio.bind(py).call0()?;
        me.store(A::Incoming, &incoming)?;
        me.store(A::Outgoing, &outgoing)?;
        me.store(A::State, names.unwrapped.bind(py))?;
        me.set_attr(intern!(py, "_conn_lost"), 0)?;
        let app_state = if args.call_connection_made.is_truthy()? {
            &names.app_init
        } else {
            &names.app_con_made
        };
        me.set_attr(intern!(py, "_app_state"), app_state.bind(py))?;
        let sslobj = wrap_bio(
            names,
            &sslcontext,
            (incoming, outgoing),
            args.server_side,
            &server_hostname,
        )?;
        me.store(A::Sslobj, &sslobj)?;
        let no = false.into_pyobject(py)?.to_owned().into_any();
        me.store(A::SslWritingPaused, &no)?;
        me.store(A::AppReadingPaused, &no)?;
        me.store(A::SslReadingPaused, &no)?;
        // `_set_read_buffer_limits()`, `_set_write_buffer_limits()`: asyncio's defaults.
        let constants = names.constants.bind(py);
        let read_kb: isize = constants
            .getattr(intern!(py, "FLOW_CONTROL_HIGH_WATER_SSL_READ"))?
            .extract()?;
        me.set(A::IncomingHighWater, read_kb * 1024)?;
        me.set(A::IncomingLowWater, read_kb * 1024 / 4)?;
        me.set_attr(intern!(py, "_eof_received"), false)?;
        me.store(A::AppWritingPaused, &no)?;
        let write_kb: isize = constants
            .getattr(intern!(py, "FLOW_CONTROL_HIGH_WATER_SSL_WRITE"))?
            .extract()?;
        me.set(A::OutgoingHighWater, write_kb * 1024)?;
        me.set(A::OutgoingLowWater, write_kb * 1024 / 4)?;
        Self::get_app_transport(me, names).map(drop)
    }

    /// asyncio's `_set_app_protocol`: a `BufferedProtocol` is given the records into its
    /// own buffer.
    pub(super) fn set_app_protocol(
        me: &Inst<'_, '_>,
        names: &Names,
        app_protocol: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let py = me.py();
        me.store(A::AppProtocol, app_protocol)?;
        let is_buffer = app_protocol.hasattr(intern!(py, "get_buffer"))?
            && app_protocol.is_instance(names.buffered_protocol.bind(py))?;
        if is_buffer {
            me.set_attr(
                intern!(py, "_app_protocol_get_buffer"),
                app_protocol.getattr(intern!(py, "get_buffer"))?,
            )?;
            me.set_attr(
                intern!(py, "_app_protocol_buffer_updated"),
                app_protocol.getattr(intern!(py, "buffer_updated"))?,
            )?;
        }
        me.store(
            A::AppProtocolIsBuffer,
            &is_buffer.into_pyobject(py)?.to_owned().into_any(),
        )
    }
}
