//! The `oxloop._oxloop` extension module: registers the native classes, nothing else.
//! (`fastcall` adds the two hand-parsed methods to `LoopCore`, and `transport_methods` makes the transports'.)

mod bytes_buf;
mod event_loop;
mod exc_info;
mod fastcall;
mod freelist;
mod futures;
mod handles;
mod lock;
mod new_socket;
mod server;
mod sock_ops;
mod spare_bytes;
mod streams;
mod transports;

use pyo3::prelude::*;

#[pymodule(gil_used = true)]
fn _oxloop(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<handles::Handle>()?;
    m.add_class::<handles::TimerHandle>()?;
    freelist::install::<handles::Handle>(m.py());
    freelist::install::<handles::TimerHandle>(m.py());
    m.add_class::<event_loop::LoopCore>()?;
    fastcall::install(&m.py().get_type::<event_loop::LoopCore>())?;
    m.add_class::<transports::stream::StreamCore>()?;
    m.add_function(wrap_pyfunction!(fastcall::transport_methods, m)?)?;
    m.add_function(wrap_pyfunction!(sock_ops::native_socket, m)?)?;
    m.add_class::<transports::datagram::DatagramCore>()?;
    m.add_class::<transports::sslproto::SSLProtocolBase>()?;
    m.add_class::<transports::sslproto::NativeAttribute>()?;
    m.add_class::<sock_ops::SockWait>()?;
    m.add_class::<server::Acceptor>()?;
    m.add_class::<new_socket::NewSocket>()?;
    Ok(())
}
