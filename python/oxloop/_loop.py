"""oxloop.Loop: the native LoopCore plus the once-per-loop glue of asyncio.

What runs per callback (call_soon, timers, readiness, the lap) is native, in ``LoopCore``.
What runs once per loop or per call from user code (``run_until_complete``, executors, exception
handling, async generator hooks, signal handler registration, name resolution) is here. Where
asyncio's own ``BaseEventLoop`` method only touches the state we keep, it is reused as is, so each
Python version gets exactly its own asyncio's behaviour.
"""

from __future__ import annotations

import asyncio
import atexit
import errno
import functools
import ipaddress
import os
import selectors
import signal
import socket
import sys
import threading
import weakref
from asyncio import (
    base_events,
    coroutines,
    events,
    format_helpers,
    selector_events,
    sslproto,
    unix_events,
)
from asyncio.log import logger
from selectors import _fileobj_to_fd  # type: ignore[attr-defined]

from ._connect import create_connection, create_unix_connection, start_connect
from ._oxloop import (
    Acceptor,
    Handle,
    LoopCore,
    NewSocket,
    StreamCore,
    TimerHandle,
    native_socket,
)
from ._transports import (
    _ACCEPT_CALLS,
    _TRANSPORT_CALLS,
    _DatagramTransport,
    _ReadPipeTransport,
    _SocketTransport,
)

# Loops running in daemon threads. At exit (atexit runs before the interpreter finalizes) each
# is asked to give the GIL up for good at its next lap: on Python 3.10-3.13 a daemon thread that
# takes the GIL back during finalization is ended with pthread_exit, which aborts the process
# when it unwinds through native frames (the loop's own, or any Rust extension's).
_daemon_loops = weakref.WeakSet()
PARK_WAIT = 1.0  # seconds to wait for each loop's thread to park


def _park_daemon_loops():
    for loop in list(_daemon_loops):
        parked = threading.Event()
        loop._park_at_next_lap(parked.set)
        parked.wait(PARK_WAIT)


atexit.register(_park_daemon_loops)


def _close_unless_handshaken(transport, waiter):
    if waiter.cancelled() or waiter.exception() is not None:
        transport.close()


if sys.version_info >= (3, 11):
    from ._sslproto import SSLProtocol as _SSLProtocol
else:  # 3.10's sslproto is the older design: used as it is
    _SSLProtocol = sslproto.SSLProtocol

__all__ = ("Handle", "Loop", "TimerHandle")

_Base = base_events.BaseEventLoop


def _extract_stack():
    """The creation traceback of a handle made in debug mode (called from the native side)."""
    return format_helpers.extract_stack(sys._getframe(1))


_Unix = unix_events._UnixSelectorEventLoop
_Selector = selector_events.BaseSelectorEventLoop


def _borrow(*names):
    """asyncio's own implementations of the given methods, where this Python has them.

    Each name is taken from the most derived of asyncio's Unix loop classes that defines it, as
    method resolution on ``asyncio.SelectorEventLoop`` would find it.
    """
    found = {}
    for name in names:
        for cls in (_Unix, _Selector, _Base):
            if name in cls.__dict__:
                func = cls.__dict__[name]
                # Zero-argument super() binds to asyncio's class, which Loop does not derive from.
                if "__class__" in getattr(func, "__code__", compile("", "", "exec")).co_freevars:
                    raise TypeError(f"{cls.__name__}.{name} uses super(); Loop must define it")
                found[name] = func
                break
    return found


class _SelectorView:
    """A read-only ``selectors.BaseSelector`` look at the loop's descriptors.

    asyncio's transports show it in their ``repr`` ("read=polling"); nothing registers through it.
    """

    def __init__(self, loop):
        self._loop = weakref.ref(loop)

    def get_key(self, fileobj):
        loop = self._loop()
        fd = loop._fd_of(fileobj) if loop is not None else _fileobj_to_fd(fileobj)
        reader, writer = loop._fd_handles(fd) if loop is not None else (None, None)
        if reader is None and writer is None:
            raise KeyError(f"{fileobj!r} is not registered")
        events = (selectors.EVENT_READ if reader else 0) | (selectors.EVENT_WRITE if writer else 0)
        fileobj = loop._fileobjs.get(fd, fileobj)
        return selectors.SelectorKey(fileobj, fd, events, (reader, writer))


class Loop(LoopCore, asyncio.AbstractEventLoop):
    """An asyncio event loop whose core is written in Rust."""

    def __init__(self):
        self._default_executor = None
        self._internal_fds = 0
        self._clock_resolution = 1e-09
        self._exception_handler = None
        self.slow_callback_duration = 0.1
        self._current_handle = None
        self._task_factory = None
        self._coroutine_origin_tracking_enabled = False
        self._coroutine_origin_tracking_saved_depth = None
        self._asyncgens = weakref.WeakSet()
        self._asyncgens_shutdown_called = False
        self._executor_shutdown_called = False
        self._old_agen_hooks = None
        self._signal_handlers = {}
        self._old_wakeup_fd = None
        self._unix_server_sockets = {}  # 3.13's create_unix_server(cleanup_socket=True)
        self._fileobjs = {}  # descriptor -> the file object watched under it (see _fd_of)
        self._selector = _SelectorView(self)
        self.set_debug(coroutines._is_debug_mode())

    def __repr__(self):
        return (
            f"<{self.__class__.__name__} running={self.is_running()} "
            f"closed={self.is_closed()} debug={self.get_debug()}>"
        )

    # -- Methods asyncio implements over state we keep: reused unchanged. --
    locals().update(
        _borrow(
            "_check_closed",
            "_check_running",
            "_check_callback",
            "_check_thread",
            "_check_default_executor",
            "_asyncgen_finalizer_hook",
            "_asyncgen_firstiter_hook",
            "shutdown_asyncgens",
            "shutdown_default_executor",
            "_do_shutdown",
            "run_until_complete",
            "set_task_factory",
            "get_task_factory",
            "run_in_executor",
            "set_default_executor",
            "get_exception_handler",
            "set_exception_handler",
            "default_exception_handler",
            "call_exception_handler",
            "_set_coroutine_origin_tracking",
            "set_debug",
            "__del__",
        )
    )

    # -- Networking, pipes, subprocesses: asyncio's own code over our readiness API. --
    # Connection set-up runs once per connection, where asyncio's code gives exact parity.
    locals().update(
        _borrow(
            # base_events: connections, servers, datagrams, pipes, subprocesses, sendfile, TLS
            "_connect_sock",
            "_create_connection_transport",
            "create_server",
            "_create_server_getaddrinfo",
            "_ensure_resolved",
            "connect_accepted_socket",
            "create_datagram_endpoint",
            "connect_read_pipe",
            "connect_write_pipe",
            "subprocess_shell",
            "subprocess_exec",
            "_log_subprocess",
            "sendfile",
            "_sendfile_native",
            "_sendfile_fallback",
            "sock_sendfile",
            "_sock_sendfile_native",
            "_sock_sendfile_native_impl",
            "_sock_sendfile_update_filepos",
            "_sock_add_cancellation_callback",
            "_sock_sendfile_fallback",
            "_check_sendfile_params",
            *(("start_tls",) if sys.version_info < (3, 11) else ()),
            # selector_events: transports, serving, socket operations
            "_accept_connection",
            "_accept_connection2",
            "_ensure_fd_no_transport",
            "add_reader",
            "remove_reader",
            "add_writer",
            "remove_writer",
            "_sock_recv",
            "_sock_read_done",
            "sock_recv_into",
            "_sock_recv_into",
            "sock_recvfrom",
            "_sock_recvfrom",
            "sock_recvfrom_into",
            "_sock_recvfrom_into",
            "_sock_sendall",
            "sock_sendto",
            "_sock_sendto",
            "sock_connect",
            "_sock_connect",
            "_sock_connect_cb",
            "_sock_write_done",
            "sock_accept",
            "_sock_accept",
            # unix_events: Unix sockets, pipes, subprocesses
            "create_unix_server",
            "_make_write_pipe_transport",
            "_child_watcher_callback",
        )
    )

    # Connections to an address literal or a Unix path: one frame (see _connect); the rest is
    # asyncio's own code.
    create_connection = create_connection
    create_unix_connection = create_unix_connection

    # The native create_task covers Python 3.11+ (3.10's has no context=); it falls back to
    # asyncio's own for task factories and debug mode.
    _create_task_py = _Base.create_task
    if sys.version_info < (3, 11):
        create_task = _Base.create_task

    # -- Lifecycle --

    def _run_forever_setup(self):
        self._check_closed()
        self._check_running()
        self._set_coroutine_origin_tracking(self._debug)
        self._old_agen_hooks = sys.get_asyncgen_hooks()
        self._thread_id = threading.get_ident()
        if threading.current_thread().daemon:
            _daemon_loops.add(self)
        sys.set_asyncgen_hooks(
            firstiter=self._asyncgen_firstiter_hook,
            finalizer=self._asyncgen_finalizer_hook,
        )
        events._set_running_loop(self)
        if threading.current_thread() is threading.main_thread():
            # A signal delivered to another thread must still wake the poller.
            self._old_wakeup_fd = signal.set_wakeup_fd(
                self._signal_wakeup_fd(), warn_on_full_buffer=False
            )

    def _run_forever_cleanup(self):
        _daemon_loops.discard(self)
        self._stopping = False
        self._thread_id = None
        events._set_running_loop(None)
        self._set_coroutine_origin_tracking(False)
        if self._old_wakeup_fd is not None:
            if not self._signal_handlers:
                signal.set_wakeup_fd(self._old_wakeup_fd)
            self._old_wakeup_fd = None
        if self._old_agen_hooks is not None:
            sys.set_asyncgen_hooks(*self._old_agen_hooks)
            self._old_agen_hooks = None

    def run_forever(self):
        """Run until stop() is called."""
        try:
            self._run_forever_setup()
            self._run_forever_native()
        finally:
            self._run_forever_cleanup()

    def close(self):
        """Close the loop: drop pending callbacks, shut the default executor down.

        Refuses while the loop runs; closing twice does nothing.
        """
        if self.is_running():
            raise RuntimeError("Cannot close a running event loop")
        if self.is_closed():
            return
        if self._debug:
            logger.debug("Close %r", self)
        for sig in list(self._signal_handlers):
            self.remove_signal_handler(sig)
        self._close_native()
        self._fileobjs.clear()
        self._selector = None
        self._executor_shutdown_called = True
        executor = self._default_executor
        if executor is not None:
            self._default_executor = None
            executor.shutdown(wait=False)

    def _log_slow_callback(self, handle, dt):
        logger.warning("Executing %s took %.3f seconds", base_events._format_handle(handle), dt)

    def _stop_serving(self, sock):
        """Stop accepting on sock and close it; a Unix socket made by create_unix_server with
        cleanup_socket=True (3.13) also loses its path, as on asyncio."""
        path = sock.getsockname() if sock in self._unix_server_sockets else None
        _Selector._stop_serving(self, sock)
        if path is not None:
            prev_ino = self._unix_server_sockets.pop(sock)
            try:
                if os.stat(path).st_ino == prev_ino:
                    os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as err:
                logger.error("Unable to clean up listening UNIX socket %r: %r", path, err)

    _start_serving_py = _borrow("_start_serving")["_start_serving"]

    def _start_serving(self, protocol_factory, sock, sslcontext=None, server=None, backlog=100,
                       *timeouts):
        """Accept natively (an ``Acceptor`` as the listening socket's reader); debug mode, and a
        socket with an ``accept`` of its own, take asyncio's ``_accept_connection``."""
        if self._debug or not native_socket(sock, _ACCEPT_CALLS):
            return self._start_serving_py(
                protocol_factory, sock, sslcontext, server, backlog, *timeouts
            )
        fallback = functools.partial(
            self._accept_connection, protocol_factory, sock, sslcontext, server, backlog,
            *timeouts,
        )
        serve_tls = None
        if sslcontext is not None:
            names = ("ssl_handshake_timeout", "ssl_shutdown_timeout")
            serve_tls = functools.partial(
                self._serve_tls, sslcontext, server, dict(zip(names, timeouts))
            )
        acceptor = Acceptor(
            self, sock, protocol_factory, server, backlog, _SocketTransport, fallback, serve_tls
        )
        self._add_reader(sock.fileno(), acceptor)

    def _serve_tls(self, sslcontext, server, timeouts, conn, protocol, extra):
        """What asyncio's ``_accept_connection2`` does for a TLS connection, without its task:
        the TLS transport, closed if the handshake fails (its waiter's exception is not
        reported, as asyncio reports it only in debug mode)."""
        waiter = self.create_future()
        transport = self._make_ssl_transport(
            conn, protocol, sslcontext, waiter=waiter, server_side=True, extra=extra,
            server=server, **timeouts,
        )
        waiter.add_done_callback(functools.partial(_close_unless_handshaken, transport))

    def _make_socket_transport(self, sock, protocol, waiter=None, *, extra=None, server=None):
        """The native transport; for a socket with I/O methods of its own (a subclass that
        overrides ``recv`` or ``send``, say), asyncio's, which calls them."""
        if native_socket(sock, _TRANSPORT_CALLS):
            return StreamCore._create(_SocketTransport, self, sock, protocol, waiter, extra, server)
        return selector_events._SelectorSocketTransport(self, sock, protocol, waiter, extra, server)

    async def sock_recv(self, sock, n):
        """Receive up to n bytes from the non-blocking socket sock (asyncio's checks, the wait
        and the read are native)."""
        data = self._sock_recv_now(sock, n)  # None: nothing yet (no exception made)
        if data is not None:
            return data
        fut = self.create_future()
        self._sock_recv_wait(sock, sock.fileno(), fut, n)  # refuses a descriptor a transport owns
        return await fut

    async def sock_connect(self, sock, address):
        """Connect the non-blocking socket sock to address (asyncio's code; the connection is
        started with connect_ex, so no exception is made when it is under way, and its outcome
        is read natively)."""
        base_events._check_ssl_socket(sock)
        if self._debug and sock.gettimeout() != 0:
            raise ValueError("the socket must be non-blocking")
        if sock.family == socket.AF_INET or (
            base_events._HAS_IPv6 and sock.family == socket.AF_INET6
        ):
            resolved = await self._ensure_resolved(
                address, family=sock.family, type=sock.type, proto=sock.proto, loop=self
            )
            _, _, _, _, address = resolved[0]
        fut = start_connect(self, sock, address)
        if fut is None:
            return
        try:
            return await fut
        finally:
            fut = None  # breaks the cycle through the exception's traceback, as asyncio does

    async def sock_recv_into(self, sock, buf):
        """Receive into buf from the non-blocking socket sock (asyncio's checks, the wait and,
        for a contiguous byte buffer, the read are native)."""
        n = self._sock_recv_into_now(sock, buf)  # None: nothing yet (no exception made)
        if n is not None:
            return n
        fut = self.create_future()
        self._sock_recv_into_wait(sock, sock.fileno(), fut, buf)
        return await fut

    async def sock_accept(self, sock):
        """Accept a connection on the listening non-blocking socket sock (asyncio's code; the
        wait is native)."""
        base_events._check_ssl_socket(sock)
        if self._debug and sock.gettimeout() != 0:
            raise ValueError("the socket must be non-blocking")
        try:
            conn, address = sock.accept()
            conn.setblocking(False)
        except (BlockingIOError, InterruptedError):
            fut = self.create_future()
            self._sock_accept_wait(sock, sock.fileno(), fut)
            return await fut
        return conn, address

    async def sock_sendall(self, sock, data):
        """Send all of data to the connected non-blocking socket sock (asyncio's code; its
        checks, the first send, and for a contiguous byte buffer the wait for the rest, are
        native)."""
        n = self._sock_send_now(sock, data)
        if n is not None:
            if n == len(data):
                return
            fut = self.create_future()
            self._sock_sendall_wait(sock, sock.fileno(), fut, data, n)
            return await fut
        # Not a contiguous byte buffer, or a socket with a send of its own: its send, and
        # asyncio's wait.
        try:
            n = sock.send(data)
        except (BlockingIOError, InterruptedError):
            n = 0
        if n == len(data):
            return
        fut = self.create_future()
        fd = sock.fileno()
        self._ensure_fd_no_transport(fd)
        handle = self._add_writer(fd, self._sock_sendall, fut, sock, memoryview(data), [n])
        fut.add_done_callback(functools.partial(self._sock_write_done, fd, handle=handle))
        return await fut

    def _make_datagram_transport(self, sock, protocol, address=None, waiter=None, extra=None):
        if sys.version_info >= (3, 12):
            self._ensure_fd_no_transport(sock)
        return _DatagramTransport(self, sock, protocol, address, waiter, extra)

    def _make_read_pipe_transport(self, pipe, protocol, waiter=None, extra=None):
        return _ReadPipeTransport(self, pipe, protocol, waiter, extra)

    if sys.version_info >= (3, 11):

        async def start_tls(self, transport, protocol, sslcontext, *, server_side=False,
                            server_hostname=None, ssl_handshake_timeout=None,
                            ssl_shutdown_timeout=None):
            """Upgrade transport to TLS in place: asyncio's ``start_tls`` (3.11-3.13), with
            oxloop's TLS protocol (its state machine and per-record path native)."""
            ssl = base_events.ssl  # None where Python has no ssl module, as asyncio checks
            if ssl is None:
                raise RuntimeError("Python ssl module is not available")
            if not isinstance(sslcontext, ssl.SSLContext):
                raise TypeError(
                    f"sslcontext is expected to be an instance of ssl.SSLContext, "
                    f"got {sslcontext!r}"
                )
            if not getattr(transport, "_start_tls_compatible", False):
                raise TypeError(f"transport {transport!r} is not supported by start_tls()")
            waiter = self.create_future()
            ssl_protocol = _SSLProtocol(
                self, protocol, sslcontext, waiter, server_side, server_hostname,
                ssl_handshake_timeout=ssl_handshake_timeout,
                ssl_shutdown_timeout=ssl_shutdown_timeout,
                call_connection_made=False,
            )
            # Paused first, so that the protocol gets no data before connection_made.
            transport.pause_reading()
            transport.set_protocol(ssl_protocol)
            conmade_cb = self.call_soon(ssl_protocol.connection_made, transport)
            resume_cb = self.call_soon(transport.resume_reading)
            try:
                await waiter
            except BaseException:
                transport.close()
                conmade_cb.cancel()
                resume_cb.cancel()
                raise
            return ssl_protocol._app_transport

    def _make_ssl_transport(self, rawsock, protocol, sslcontext, waiter=None, *,
                            server_side=False, server_hostname=None, extra=None, server=None,
                            **timeouts):
        """asyncio's TLS (sslproto.SSLProtocol, any SSLContext; its state machine and per-record
        path native on 3.11+) over the native socket transport; rawsock is a socket, or a ``NewSocket``
        (``create_connection``'s native path, a TLS server's accepted connection), which knows
        its addresses and server (extra and server are then None)."""
        native = isinstance(rawsock, NewSocket)  # a new descriptor, no socket object yet
        if sys.version_info >= (3, 12) and not native:
            self._ensure_fd_no_transport(rawsock)
        ssl_protocol = _SSLProtocol(
            self, protocol, sslcontext, waiter, server_side, server_hostname, **timeouts
        )
        if native:
            rawsock.transport(_SocketTransport, ssl_protocol, False)
        else:
            self._make_socket_transport(rawsock, ssl_protocol, extra=extra, server=server)
        return ssl_protocol._app_transport

    async def _make_subprocess_transport(self, protocol, args, shell, stdin, stdout, stderr,
                                         bufsize, extra=None, **kwargs):
        """Spawn with subprocess.Popen (every argument works) and learn the exit from a pidfd."""
        # A child watcher set on the policy (the 3.10-3.13 API) is used, as on asyncio.
        if not hasattr(os, "pidfd_open") or _policy_child_watcher() is not None:
            return await _Unix._make_subprocess_transport(
                self, protocol, args, shell, stdin, stdout, stderr, bufsize, extra, **kwargs
            )
        waiter = self.create_future()
        transp = unix_events._UnixSubprocessTransport(
            self, protocol, args, shell, stdin, stdout, stderr, bufsize,
            waiter=waiter, extra=extra, **kwargs,
        )
        self._watch_child(transp.get_pid(), transp)
        try:
            await waiter
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException:
            transp.close()
            await transp._wait()
            raise
        return transp

    def _watch_child(self, pid, transp):
        """Report the exit of child pid to transp, from a pidfd watched by the poller: no thread
        per child and no SIGCHLD handler."""
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            # Already reaped by someone else: asyncio's watchers report 255 then.
            logger.warning("Unknown child process pid %d, will report returncode 255", pid)
            self.call_soon(transp._process_exited, 255)
            return

        def exited():
            self._remove_reader(pidfd)
            os.close(pidfd)
            try:
                _, status = os.waitpid(pid, 0)  # the pidfd is readable: the child has exited
            except ChildProcessError:
                logger.warning("Unknown child process pid %d, will report returncode 255", pid)
                returncode = 255
            else:
                returncode = os.waitstatus_to_exitcode(status)
            if self._debug:
                logger.debug("process %s exited with returncode %s", pid, returncode)
            transp._process_exited(returncode)

        self._add_reader(pidfd, exited)

    # -- Readiness: asyncio's private API, which its transports and socket operations use --

    def _add_reader(self, fd, callback, *args):
        self._check_closed()
        return self._add_watcher(fd, Handle(callback, args, self, None), self._watch_read)

    def _remove_reader(self, fd):
        if self.is_closed():
            return False
        return self._remove_watcher(fd, self._unwatch_read)

    def _add_writer(self, fd, callback, *args):
        self._check_closed()
        return self._add_watcher(fd, Handle(callback, args, self, None), self._watch_write)

    def _remove_writer(self, fd):
        if self.is_closed():
            return False
        return self._remove_watcher(fd, self._unwatch_write)

    # A file object is remembered with its descriptor while something watches it, as a
    # selector's key keeps the object it was first registered with: one closed meanwhile
    # (fileno() now -1) is still found by identity, so that it can be removed (anyio closes a
    # socket and then removes its reader). Descriptors given as ints are not remembered.

    def _fd_of(self, fileobj):
        """The descriptor of ``fileobj``, or the one a closed file object is watched under."""
        try:
            return _fileobj_to_fd(fileobj)
        except ValueError:
            for fd, registered in self._fileobjs.items():
                if registered is fileobj:
                    return fd
            raise

    def _add_watcher(self, fileobj, handle, watch):
        fd = self._fd_of(fileobj)
        try:
            watch(fd, handle)
        except OSError:
            self._forget_if_closed(fd, fileobj)
            raise
        if fileobj.__class__ is not int:
            self._fileobjs.setdefault(fd, fileobj)
        return handle

    def _remove_watcher(self, fileobj, unwatch):
        fd = self._fd_of(fileobj)
        try:
            removed = unwatch(fd)
        except OSError:
            self._forget_if_closed(fd, fileobj)
            raise
        if fd in self._fileobjs and self._fd_handles(fd) == (None, None):
            del self._fileobjs[fd]
        return removed

    def _forget_if_closed(self, fd, fileobj):
        """epoll refused a change for ``fileobj``; if it was closed meanwhile, drop both
        watchers as a selector's failed ``modify`` drops the whole key."""
        if self._fileobjs.get(fd) is fileobj and fileobj.fileno() < 0:
            del self._fileobjs[fd]
            self._unwatch_fd(fd)

    # -- Signals (asyncio.unix_events semantics) --

    def _check_signal(self, sig):
        if not isinstance(sig, int):
            raise TypeError(f"sig must be an int, not {sig!r}")
        if sig not in signal.valid_signals():
            raise ValueError(f"invalid signal number {sig}")

    def add_signal_handler(self, sig, callback, *args):
        """Run callback(*args) in the loop when signal sig arrives (main thread only)."""
        if coroutines.iscoroutine(callback) or coroutines.iscoroutinefunction(callback):
            raise TypeError("coroutines cannot be used with add_signal_handler()")
        self._check_signal(sig)
        self._check_closed()
        try:
            # set_wakeup_fd() raises ValueError if this is not the main thread.
            signal.set_wakeup_fd(self._signal_wakeup_fd(), warn_on_full_buffer=False)
        except (ValueError, OSError) as exc:
            raise RuntimeError(str(exc))
        handle = Handle(callback, args, self, None)
        self._signal_handlers[sig] = handle
        self._set_signal_handle(sig, handle)
        try:
            signal.signal(sig, _sighandler_noop)
            signal.siginterrupt(sig, False)
        except OSError as exc:
            del self._signal_handlers[sig]
            self._set_signal_handle(sig, None)
            if not self._signal_handlers:
                try:
                    signal.set_wakeup_fd(-1)
                except (ValueError, OSError) as nexc:
                    logger.info("set_wakeup_fd(-1) failed: %s", nexc)
            if exc.errno == errno.EINVAL:
                raise RuntimeError(f"sig {sig:d} cannot be caught")
            raise

    def remove_signal_handler(self, sig):
        """Remove the handler of signal sig; True if there was one."""
        self._check_signal(sig)
        try:
            del self._signal_handlers[sig]
        except KeyError:
            return False
        self._set_signal_handle(sig, None)
        handler = signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
        try:
            signal.signal(sig, handler)
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                raise RuntimeError(f"sig {sig:d} cannot be caught")
            raise
        if not self._signal_handlers:
            try:
                signal.set_wakeup_fd(-1)
            except (ValueError, OSError) as exc:
                logger.info("set_wakeup_fd(-1) failed: %s", exc)
        return True

    # -- Name resolution --

    async def getaddrinfo(self, host, port, *, family=0, type=0, proto=0, flags=0):
        """socket.getaddrinfo; address literals are answered at once, names in the executor."""
        if _is_literal(host, port):
            return socket.getaddrinfo(host, port, family, type, proto, flags)
        if self._debug:
            getaddr_func = self._getaddrinfo_debug
        else:
            getaddr_func = socket.getaddrinfo
        return await self.run_in_executor(
            None, getaddr_func, host, port, family, type, proto, flags
        )

    _getaddrinfo_debug = _Base._getaddrinfo_debug

    async def getnameinfo(self, sockaddr, flags=0):
        """socket.getnameinfo, in the default executor."""
        return await self.run_in_executor(None, socket.getnameinfo, sockaddr, flags)


def _policy_child_watcher():
    """The child watcher set on the event loop policy (3.10-3.13), if it is one oxloop must use.

    asyncio's default, a ThreadedChildWatcher (made on first use, by any loop of the process),
    reports exits exactly as the pidfd does, with a thread per child: oxloop uses the pidfd then.
    """
    watcher = getattr(events.get_event_loop_policy(), "_watcher", None)
    if isinstance(watcher, getattr(unix_events, "ThreadedChildWatcher", ())):
        return None
    return watcher


def _sighandler_noop(signum, frame):
    """Dummy signal handler: the wakeup fd does the work."""


def _is_literal(host, port):
    """True when getaddrinfo(host, port) needs no name lookup (no DNS, no services database)."""
    if port is not None and not isinstance(port, int):
        if not isinstance(port, (str, bytes)):
            return False
        try:
            int(port)
        except ValueError:
            return False
    if host is None:
        return True
    if isinstance(host, bytes):
        try:
            host = host.decode("idna")
        except UnicodeError:
            return False
    if not isinstance(host, str) or "%" in host:
        return False
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
