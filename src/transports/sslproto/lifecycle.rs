//! The state machine of asyncio's `SSLProtocol` (3.11+): a connection's handshake, its shutdown
//! and its end, as asyncio's methods of the same names do them, in their order, with their
//! checks and their errors. The states are asyncio's `SSLProtocolState` and `AppProtocolState`
//! members, compared by identity (as `==` compares enum members); the methods call each other
//! directly. What is left to asyncio's Python methods: `_abort`, `_fatal_error`, the timeout
//! checks, and `eof_received` (a peer's half-close).

use crate::exc_info::{call_handling, report};
use pyo3::exceptions::{PyException, PyKeyboardInterrupt, PyRuntimeError, PySystemExit};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use super::{Inst, Names, SSLProtocolBase, A};

/// How a handshake or shutdown step of the SSL object ended (`SSLProtocolBase::ssl_step`).
enum Step<'py> {
    /// More to exchange with the peer.
    Again,
    Done,
    /// An `ssl.SSLError`, for the completion callback.
    Failed(Bound<'py, PyAny>),
}

impl SSLProtocolBase {
    /// asyncio's `_set_state`: only the transitions asyncio allows.
    pub(super) fn set_state(
        me: &Inst<'_, '_>,
        names: &Names,
        new: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let py = me.py();
        let allowed = new.is(names.unwrapped.bind(py)) || {
            let state = me.get(A::State)?;
            let from_to =
                |from: &Py<PyAny>, to: &Py<PyAny>| state.is(from.bind(py)) && new.is(to.bind(py));
            from_to(&names.unwrapped, &names.do_handshake)
                || from_to(&names.do_handshake, &names.wrapped)
                || from_to(&names.wrapped, &names.flushing)
                || from_to(&names.flushing, &names.shutdown)
        };
        if !allowed {
            let state = me.get(A::State)?;
            return Err(PyRuntimeError::new_err(format!(
                "cannot switch state from {} to {}",
                state.str()?,
                new.str()?
            )));
        }
        me.store(A::State, new)
    }

    /// asyncio's `_wakeup_waiter`: the waiter, unless cancelled, gets `exc` or `None`.
    pub(super) fn wakeup_waiter(me: &Inst<'_, '_>, exc: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let py = me.py();
        let name = intern!(py, "_waiter");
        let waiter = me.attr(name)?;
        if waiter.is_none() {
            return Ok(());
        }
        if !waiter.call_method0(intern!(py, "cancelled"))?.is_truthy()? {
            match exc {
                Some(exc) if !exc.is_none() => {
                    waiter.call_method1(intern!(py, "set_exception"), (exc,))?
                }
                _ => waiter.call_method1(intern!(py, "set_result"), (py.None(),))?,
            };
        }
        me.set_attr(name, py.None())
    }

    /// asyncio's `_get_app_transport`: the application transport, made once.
    pub(super) fn get_app_transport<'py>(
        me: &Inst<'_, 'py>,
        names: &Names,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = me.py();
        let name = intern!(py, "_app_transport");
        let transport = me.attr(name)?;
        if !transport.is_none() {
            return Ok(transport);
        }
        let created = intern!(py, "_app_transport_created");
        if me.attr(created)?.is_truthy()? {
            return Err(PyRuntimeError::new_err(
                "Creating _SSLProtocolTransport twice",
            ));
        }
        // `_SSLProtocolTransport(self._loop, self)`: what asyncio's `__init__` sets, set here.
        let transport = names
            .object_new
            .bind(py)
            .call1((names.app_transport_class.bind(py),))?;
        transport.setattr(intern!(py, "_loop"), me.attr(intern!(py, "_loop"))?)?;
        transport.setattr(intern!(py, "_ssl_protocol"), me.obj)?;
        transport.setattr(intern!(py, "_closed"), false)?;
        me.set_attr(name, &transport)?;
        me.set_attr(created, true)?;
        Ok(transport)
    }

    /// asyncio's `connection_made`: the transport below, then the handshake.
    pub(super) fn connection_made_impl(
        &self,
        me: &Inst<'_, '_>,
        names: &Names,
        transport: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        me.store(A::Transport, transport)?;
        self.start_handshake(me, names)
    }

    /// asyncio's `_start_handshake`: the handshake's timeout, then its first step.
    pub(super) fn start_handshake(&self, me: &Inst<'_, '_>, names: &Names) -> PyResult<()> {
        let py = me.py();
        let event_loop = me.attr(intern!(py, "_loop"))?;
        let start_time = intern!(py, "_handshake_start_time");
        if event_loop
            .call_method0(intern!(py, "get_debug"))?
            .is_truthy()?
        {
            names
                .logger
                .bind(py)
                .call_method1(intern!(py, "debug"), ("%r starts SSL handshake", me.obj))?;
            me.set_attr(start_time, event_loop.call_method0(intern!(py, "time"))?)?;
        } else {
            me.set_attr(start_time, py.None())?;
        }
        Self::set_state(me, names, names.do_handshake.bind(py))?;
        let timeout = me.attr(intern!(py, "_ssl_handshake_timeout"))?;
        let check = me.attr(intern!(py, "_check_handshake_timeout"))?;
        let handle = event_loop.call_method1(intern!(py, "call_later"), (timeout, check))?;
        me.set_attr(intern!(py, "_handshake_timeout_handle"), handle)?;
        self.do_handshake(me, names)
    }

    /// One step of the SSL object, as asyncio's `_do_handshake`/`_do_shutdown` handle it:
    /// `method` of the SSL object, or `c_method` of its C object when it is a plain
    /// `ssl.SSLObject` (whose method only calls that). More to exchange: what came out is sent.
    /// Any exception other than `ssl.SSLError` propagates.
    fn ssl_step<'py>(
        &self,
        me: &Inst<'_, 'py>,
        names: &Names,
        method: &Bound<'py, PyString>,
        c_method: &Bound<'py, PyString>,
    ) -> PyResult<Step<'py>> {
        let py = me.obj.py();
        let sslobj = me.get(A::Sslobj)?;
        let called = match self.c_sslobj(py, &sslobj) {
            Some(c) => c.call_method0(c_method),
            None => sslobj.call_method0(method),
        };
        match called {
            Ok(_) => Ok(Step::Done),
            Err(e) if super::is_again(py, &e, names) => {
                Self::process_outgoing(me)?;
                Ok(Step::Again)
            }
            Err(e) if e.matches(py, names.ssl_error.bind(py))? => {
                Ok(Step::Failed(e.into_value(py).into_bound(py).into_any()))
            }
            Err(e) => Err(e),
        }
    }

    /// asyncio's `_do_handshake`.
    pub(super) fn do_handshake(&self, me: &Inst<'_, '_>, names: &Names) -> PyResult<()> {
        let py = me.obj.py();
        let step = intern!(py, "do_handshake");
        let outcome = match self.ssl_step(me, names, step, step)? {
            Step::Again => return Ok(()),
            Step::Done => py.None().into_bound(py),
            Step::Failed(exc) => exc,
        };
        self.on_handshake_complete(me, names, &outcome)
    }

    /// What asyncio's `SSLObject` method `name` returns: its C object's, when it is a plain
    /// `ssl.SSLObject` (whose method only calls that).
    fn sslobj_call<'py>(
        &self,
        me: &Inst<'_, 'py>,
        sslobj: &Bound<'py, PyAny>,
        name: &Bound<'py, PyString>,
    ) -> PyResult<Bound<'py, PyAny>> {
        match self.c_sslobj(me.py(), sslobj) {
            Some(c) => c.call_method0(name),
            None => sslobj.call_method0(name),
        }
    }

    /// asyncio's `_on_handshake_complete`: the handshake's outcome (`None`, or the exception or
    /// exception class it ended with) reaches the waiter and the application protocol.
    pub(super) fn on_handshake_complete(
        &self,
        me: &Inst<'_, '_>,
        names: &Names,
        handshake_exc: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let py = me.py();
        Self::cancel_timeout(me, intern!(py, "_handshake_timeout_handle"), false)?;
        let sslobj = me.get(A::Sslobj)?;
        let peercert = if handshake_exc.is_none() {
            Self::set_state(me, names, names.wrapped.bind(py))
                .and_then(|()| self.sslobj_call(me, &sslobj, intern!(py, "getpeercert")))
        } else {
            // `raise handshake_exc`: an instance, or a class to instantiate.
            Err(PyErr::from_value(handshake_exc.clone()))
        };
        let peercert = match peercert {
            Ok(peercert) => peercert,
            Err(e) if e.is_instance_of::<PyException>(py) => {
                Self::set_state(me, names, names.unwrapped.bind(py))?;
                let exc = e.into_value(py).into_bound(py).into_any();
                let message = if exc.is_instance(names.certificate_error.bind(py))? {
                    "SSL handshake failed on verifying the certificate"
                } else {
                    "SSL handshake failed"
                };
                call_handling(me.obj, intern!(py, "_fatal_error"), &exc, Some(message))?;
                return Self::wakeup_waiter(me, Some(&exc));
            }
            Err(e) => return Err(e),
        };
        let event_loop = me.attr(intern!(py, "_loop"))?;
        if event_loop
            .call_method0(intern!(py, "get_debug"))?
            .is_truthy()?
        {
            let now = event_loop.call_method0(intern!(py, "time"))?;
            let took = now.sub(me.attr(intern!(py, "_handshake_start_time"))?)?;
            let message = "%r: SSL handshake took %.1f ms";
            names
                .logger
                .bind(py)
                .call_method1(intern!(py, "debug"), (message, me.obj, took.mul(1e3)?))?;
        }
        // The extra info the handshake makes available.
        let info = PyDict::new(py);
        info.set_item(intern!(py, "peercert"), peercert)?;
        info.set_item(
            intern!(py, "cipher"),
            self.sslobj_call(me, &sslobj, intern!(py, "cipher"))?,
        )?;
        let compression = self.sslobj_call(me, &sslobj, intern!(py, "compression"))?;
        info.set_item(intern!(py, "compression"), compression)?;
        info.set_item(intern!(py, "ssl_object"), &sslobj)?;
        me.attr(intern!(py, "_extra"))?
            .call_method(intern!(py, "update"), (), Some(&info))?;
        let app_state = intern!(py, "_app_state");
        if me.attr(app_state)?.is(names.app_init.bind(py)) {
            me.set_attr(app_state, names.app_con_made.bind(py))?;
            let transport = Self::get_app_transport(me, names)?;
            me.get(A::AppProtocol)?
                .call_method1(intern!(py, "connection_made"), (transport,))?;
        }
        Self::wakeup_waiter(me, None)?;
        self.read_if_open(me, names)
    }

    /// asyncio's `_start_shutdown`: unless closing already, close_notify after what is
    /// buffered (or an abort if the handshake is under way).
    pub(super) fn start_shutdown(&self, me: &Inst<'_, '_>, names: &Names) -> PyResult<()> {
        let py = me.py();
        let state = me.get(A::State)?;
        let closing = [&names.flushing, &names.shutdown, &names.unwrapped];
        if closing.iter().any(|s| state.is(s.bind(py))) {
            return Ok(());
        }
        let app_transport = me.attr(intern!(py, "_app_transport"))?;
        if !app_transport.is_none() {
            app_transport.setattr(intern!(py, "_closed"), true)?;
        }
        if state.is(names.do_handshake.bind(py)) {
            let abort = intern!(py, "_abort");
            if names.abort_takes_exc {
                me.obj.call_method1(abort, (py.None(),))?;
            } else {
                me.obj.call_method0(abort)?;
            }
            return Ok(());
        }
        Self::set_state(me, names, names.flushing.bind(py))?;
        let timeout = me.attr(intern!(py, "_ssl_shutdown_timeout"))?;
        let check = me.attr(intern!(py, "_check_shutdown_timeout"))?;
        let handle = me
            .attr(intern!(py, "_loop"))?
            .call_method1(intern!(py, "call_later"), (timeout, check))?;
        me.set_attr(intern!(py, "_shutdown_timeout_handle"), handle)?;
        self.do_flush(me, names)
    }

    /// asyncio's `_do_flush`: what is left to read, then the shutdown.
    pub(super) fn do_flush(&self, me: &Inst<'_, '_>, names: &Names) -> PyResult<()> {
        self.read_if_open(me, names)?;
        Self::set_state(me, names, names.shutdown.bind(me.py()))?;
        self.do_shutdown(me, names)
    }

    /// asyncio's `_do_shutdown`.
    pub(super) fn do_shutdown(&self, me: &Inst<'_, '_>, names: &Names) -> PyResult<()> {
        let py = me.obj.py();
        let step = if me.attr(intern!(py, "_eof_received"))?.is_truthy()? {
            Step::Done
        } else {
            self.ssl_step(me, names, intern!(py, "unwrap"), intern!(py, "shutdown"))?
        };
        match step {
            Step::Again => Ok(()),
            Step::Failed(exc) => Self::on_shutdown_complete(me, &exc),
            Step::Done => {
                Self::process_outgoing(me)?;
                Self::call_eof_received(me, names)?;
                Self::on_shutdown_complete(me, py.None().bind(py))
            }
        }
    }

    /// asyncio's `_on_shutdown_complete`: the transport below closed, or the error reported.
    pub(super) fn on_shutdown_complete(
        me: &Inst<'_, '_>,
        shutdown_exc: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let py = me.py();
        Self::cancel_timeout(me, intern!(py, "_shutdown_timeout_handle"), false)?;
        if shutdown_exc.is_truthy()? {
            call_handling(me.obj, intern!(py, "_fatal_error"), shutdown_exc, None)?;
        } else {
            let close = me.get(A::Transport)?.getattr(intern!(py, "close"))?;
            me.attr(intern!(py, "_loop"))?
                .call_method1(intern!(py, "call_soon"), (close,))?;
        }
        Ok(())
    }

    /// asyncio's `_call_eof_received`: the application protocol's `eof_received`, once.
    pub(super) fn call_eof_received(me: &Inst<'_, '_>, names: &Names) -> PyResult<()> {
        let py = me.py();
        let called = (|| -> PyResult<()> {
            let app_state = intern!(py, "_app_state");
            if me.attr(app_state)?.is(names.app_con_made.bind(py)) {
                me.set_attr(app_state, names.app_eof.bind(py))?;
                let keep_open = me
                    .get(A::AppProtocol)?
                    .call_method0(intern!(py, "eof_received"))?;
                if keep_open.is_truthy()? {
                    let message = "returning true from eof_received() has no effect when using ssl";
                    names
                        .logger
                        .bind(py)
                        .call_method1(intern!(py, "warning"), (message,))?;
                }
            }
            Ok(())
        })();
        match called {
            Err(e)
                if !e.is_instance_of::<PyKeyboardInterrupt>(py)
                    && !e.is_instance_of::<PySystemExit>(py) =>
            {
                let message = "Error calling eof_received()";
                report(me.obj, intern!(py, "_fatal_error"), e, Some(message))
            }
            other => other,
        }
    }

    /// asyncio's `connection_lost`: the application protocol's `connection_lost` scheduled if
    /// it was told of the connection, the waiter woken, the timeouts cancelled.
    pub(super) fn connection_lost_impl(
        &self,
        me: &Inst<'_, '_>,
        names: &Names,
        exc: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let py = me.py();
        me.get(A::WriteBacklog)?
            .call_method0(intern!(py, "clear"))?;
        me.get(A::Outgoing)?.call_method0(intern!(py, "read"))?;
        let conn_lost = intern!(py, "_conn_lost");
        let count = me.attr(conn_lost)?.add(1)?;
        me.set_attr(conn_lost, count)?;
        let app_transport = intern!(py, "_app_transport");
        let transport = me.attr(app_transport)?;
        if !transport.is_none() {
            transport.setattr(intern!(py, "_closed"), true)?;
        }
        if !me.get(A::State)?.is(names.do_handshake.bind(py)) {
            let app_state = intern!(py, "_app_state");
            let state = me.attr(app_state)?;
            if state.is(names.app_con_made.bind(py)) || state.is(names.app_eof.bind(py)) {
                me.set_attr(app_state, names.app_con_lost.bind(py))?;
                let callback = me
                    .get(A::AppProtocol)?
                    .getattr(intern!(py, "connection_lost"))?;
                me.attr(intern!(py, "_loop"))?
                    .call_method1(intern!(py, "call_soon"), (callback, exc))?;
            }
        }
        Self::set_state(me, names, names.unwrapped.bind(py))?;
        let none = py.None().into_bound(py);
        me.store(A::Transport, &none)?;
        me.set_attr(app_transport, &none)?;
        me.store(A::AppProtocol, &none)?;
        Self::wakeup_waiter(me, Some(exc))?;
        Self::cancel_timeout(me, intern!(py, "_shutdown_timeout_handle"), true)?;
        Self::cancel_timeout(me, intern!(py, "_handshake_timeout_handle"), true)
    }

    /// A timeout's handle (attribute `name`), if set, cancelled and forgotten; "set" meaning
    /// true when `if_true` (asyncio's `connection_lost` asks `if handle:`), else not None.
    fn cancel_timeout(
        me: &Inst<'_, '_>,
        name: &Bound<'_, PyString>,
        if_true: bool,
    ) -> PyResult<()> {
        let handle = me.attr(name)?;
        let set = if if_true {
            handle.is_truthy()?
        } else {
            !handle.is_none()
        };
        if set {
            handle.call_method0(intern!(me.py(), "cancel"))?;
            me.set_attr(name, me.py().None())?;
        }
        Ok(())
    }
}
