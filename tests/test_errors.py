"""Errors in callbacks, exception handlers, and errors raised for bad arguments."""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
import sys
import traceback

import pytest


def run_briefly(loop):
    loop.call_soon(loop.stop)
    loop.run_forever()


def fail(exc=None):
    raise exc or ZeroDivisionError("in callback")


# -- exceptions in callbacks -----------------------------------------------------------


def test_exception_in_callback_goes_to_the_handler(loop):
    contexts = []
    ran = []
    loop.set_exception_handler(lambda lp, context: contexts.append((lp, context)))
    handle = loop.call_soon(fail)
    loop.call_soon(ran.append, "loop continues")
    run_briefly(loop)
    assert ran == ["loop continues"]
    assert len(contexts) == 1
    handler_loop, context = contexts[0]
    assert handler_loop is loop
    assert context["message"].startswith("Exception in callback")
    assert isinstance(context["exception"], ZeroDivisionError)
    assert context["handle"] is handle


def test_exception_in_timer_callback_goes_to_the_handler(loop):
    contexts = []
    loop.set_exception_handler(lambda lp, context: contexts.append(context))
    timer = loop.call_later(0.001, fail)
    loop.call_later(0.02, loop.stop)
    loop.run_forever()
    assert len(contexts) == 1
    assert contexts[0]["handle"] is timer
    assert isinstance(contexts[0]["exception"], ZeroDivisionError)


def _frames(exc):
    """The names of the functions in exc's traceback."""
    return [f.name for f in traceback.extract_tb(exc.__traceback__)]


def _fail_deeper():
    fail()


def test_an_exception_reaches_the_handler_with_its_traceback(loop):
    """The exception in the handler's context has its traceback (every frame of the
    callback's own code), from a callback, a timer and a protocol's data_received, on every
    Python (before 3.12 an error's traceback is kept beside it, so a native loop must put it
    back); the default handler logs it."""

    class Failing(asyncio.Protocol):
        def data_received(self, data):
            _fail_deeper()

    async def main():
        a, b = socket.socketpair()
        transport, _ = await loop.create_connection(Failing, sock=a)
        with b:
            b.send(b"x")
            loop.call_soon(_fail_deeper)
            loop.call_later(0.001, _fail_deeper)
            await asyncio.sleep(0.05)
        transport.close()

    contexts = []
    loop.set_exception_handler(lambda lp, context: contexts.append(context))
    loop.run_until_complete(main())
    assert len(contexts) == 3
    for context in contexts:
        assert _frames(context["exception"])[-2:] == ["_fail_deeper", "fail"], context
    assert any("data_received" in _frames(c["exception"]) for c in contexts)


def test_the_default_handler_logs_the_callbacks_traceback(loop, caplog):
    loop.call_soon(_fail_deeper)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        run_briefly(loop)
    text = caplog.text
    assert "Traceback (most recent call last)" in text
    assert "in _fail_deeper" in text and "ZeroDivisionError: in callback" in text


def test_the_handler_runs_while_the_exception_is_being_handled(loop, stock_loop):
    """asyncio calls the exception handler inside the `except` clause that caught the error:
    sys.exc_info() (what logging.exception reports) is that exception, for a callback's and a
    protocol's, and nothing once the handler returns; error_received likewise."""

    def scenario(loop):
        seen = []
        loop.set_exception_handler(
            lambda lp, context: seen.append((context["message"][:20], repr(sys.exc_info()[1])))
        )

        class Failing(asyncio.Protocol):
            def data_received(self, data):
                raise KeyError("in data_received")

        class Datagrams(asyncio.DatagramProtocol):
            def error_received(self, exc):
                seen.append(("error_received", type(sys.exc_info()[1]).__name__))

        async def main():
            a, b = socket.socketpair()
            transport, _ = await loop.create_connection(Failing, sock=a)
            with b:
                b.send(b"x")
                await asyncio.sleep(0.02)
            loop.call_soon(fail)
            loop.call_soon(lambda: seen.append(("after", repr(sys.exc_info()[1]))))
            await asyncio.sleep(0.02)
            transport.close()
            # A datagram to a port nobody listens on: the refusal comes to error_received.
            probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            probe.bind(("127.0.0.1", 0))
            closed_port = probe.getsockname()[1]
            probe.close()
            udp, _ = await loop.create_datagram_endpoint(
                Datagrams, remote_addr=("127.0.0.1", closed_port)
            )
            udp.sendto(b"ping")
            await asyncio.sleep(0.05)
            udp.sendto(b"ping")  # the refusal is reported by the next call
            await asyncio.sleep(0.05)
            udp.close()

        loop.run_until_complete(main())
        return seen

    got = scenario(loop)
    assert got == scenario(stock_loop)
    assert got[:3] == [
        ("Fatal error: protoco", "KeyError('in data_received')"),
        ("Exception in callbac", "ZeroDivisionError('in callback')"),
        ("after", "None"),
    ]
    assert ("error_received", "ConnectionRefusedError") in got


def test_get_and_set_exception_handler(loop, assert_raises_like_asyncio):
    assert loop.get_exception_handler() is None

    def handler(loop, context):
        pass

    loop.set_exception_handler(handler)
    assert loop.get_exception_handler() is handler
    loop.set_exception_handler(None)
    assert loop.get_exception_handler() is None
    stock = assert_raises_like_asyncio(lambda lp: lp.set_exception_handler(42))
    assert isinstance(stock, TypeError)


def test_call_exception_handler_passes_the_context(loop):
    contexts = []
    loop.set_exception_handler(lambda lp, context: contexts.append(context))
    context = {"message": "custom", "extra": 1}
    loop.call_exception_handler(context)
    assert contexts == [context]


def test_default_exception_handler_logs_to_asyncio_logger(loop, caplog):
    loop.call_soon(fail)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        run_briefly(loop)
    records = [r for r in caplog.records if r.name == "asyncio"]
    assert len(records) == 1
    record = records[0]
    assert record.levelno == logging.ERROR
    assert record.getMessage().startswith("Exception in callback")
    assert "fail" in record.getMessage()
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], ZeroDivisionError)


def test_default_exception_handler_called_directly(loop, caplog):
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.default_exception_handler({"message": "direct call", "what": "ever"})
        loop.call_exception_handler({"message": "without a handler"})
    messages = [r.getMessage() for r in caplog.records if r.name == "asyncio"]
    assert len(messages) == 2
    assert messages[0].startswith("direct call")
    assert "what: 'ever'" in messages[0]
    assert messages[1].startswith("without a handler")


def test_error_in_exception_handler_is_logged(loop, caplog):
    def bad_handler(loop, context):
        raise RuntimeError("handler broke")

    loop.set_exception_handler(bad_handler)
    ran = []
    loop.call_soon(fail)
    loop.call_soon(ran.append, "loop continues")
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        run_briefly(loop)
    assert ran == ["loop continues"]
    records = [r for r in caplog.records if r.name == "asyncio"]
    assert len(records) == 1
    assert "Unhandled error in exception handler" in records[0].getMessage()
    assert isinstance(records[0].exc_info[1], RuntimeError)


def test_unretrieved_task_exception_is_reported(loop):
    contexts = []
    loop.set_exception_handler(lambda lp, context: contexts.append(context))

    async def boom():
        raise ValueError("never retrieved")

    task = loop.create_task(boom())
    run_briefly(loop)
    assert task.done()
    del task
    gc.collect()
    assert len(contexts) == 1
    assert contexts[0]["message"] == "Task exception was never retrieved"
    assert isinstance(contexts[0]["exception"], ValueError)


# -- SystemExit and KeyboardInterrupt ------------------------------------------------------


@pytest.mark.parametrize("exc_type", [SystemExit, KeyboardInterrupt])
def test_base_exceptions_from_callbacks_propagate_from_run_forever(loop, exc_type):
    handled = []
    loop.set_exception_handler(lambda lp, context: handled.append(context))
    loop.call_soon(fail, exc_type())
    with pytest.raises(exc_type):
        loop.run_forever()
    assert handled == []
    assert not loop.is_running()


@pytest.mark.parametrize("exc_type", [SystemExit, KeyboardInterrupt])
def test_base_exceptions_from_timers_propagate_from_run_until_complete(loop, exc_type):
    fut = loop.create_future()
    loop.call_later(0.001, fail, exc_type())
    with pytest.raises(exc_type):
        loop.run_until_complete(fut)
    assert not loop.is_running()


@pytest.mark.parametrize("exc_type", [SystemExit, KeyboardInterrupt])
def test_base_exceptions_from_tasks_propagate_from_run_until_complete(loop, exc_type):
    async def main():
        await asyncio.sleep(0)
        raise exc_type()

    with pytest.raises(exc_type):
        loop.run_until_complete(main())
    assert not loop.is_running()


def test_callbacks_after_an_interrupted_one_run_on_the_next_run(loop):
    ran = []
    loop.call_soon(ran.append, "before")
    loop.call_soon(fail, KeyboardInterrupt())
    loop.call_soon(ran.append, "after")
    with pytest.raises(KeyboardInterrupt):
        loop.run_forever()
    assert ran == ["before"]
    run_briefly(loop)
    assert ran == ["before", "after"]


# -- bad arguments ---------------------------------------------------------------------


def callback():
    pass


BAD_CALLS = {
    "call_soon()": lambda loop: loop.call_soon(),
    "call_soon(cb, bogus=1)": lambda loop: loop.call_soon(callback, bogus=1),
    "call_later(1)": lambda loop: loop.call_later(1),
    "call_later(None, cb)": lambda loop: loop.call_later(None, callback),
    "call_later('1', cb)": lambda loop: loop.call_later("1", callback),
    "call_later(1, cb, bogus=1)": lambda loop: loop.call_later(1, callback, bogus=1),
    "call_at()": lambda loop: loop.call_at(),
    "call_soon_threadsafe()": lambda loop: loop.call_soon_threadsafe(),
    "time(1)": lambda loop: loop.time(1),
    "stop(1)": lambda loop: loop.stop(1),
    "run_forever(1)": lambda loop: loop.run_forever(1),
    "run_until_complete()": lambda loop: loop.run_until_complete(),
    "run_until_complete(None)": lambda loop: loop.run_until_complete(None),
    "create_future(1)": lambda loop: loop.create_future(1),
    "create_task(None)": lambda loop: loop.create_task(None),
    "create_task(callback)": lambda loop: loop.create_task(callback),
    "set_debug()": lambda loop: loop.set_debug(),
    "set_exception_handler(1)": lambda loop: loop.set_exception_handler(1),
    "set_task_factory(1)": lambda loop: loop.set_task_factory(1),
    "call_exception_handler()": lambda loop: loop.call_exception_handler(),
    "add_reader()": lambda loop: loop.add_reader(),
    "add_reader(-1, cb)": lambda loop: loop.add_reader(-1, callback),
    "add_reader('x', cb)": lambda loop: loop.add_reader("x", callback),
    "add_writer(None, cb)": lambda loop: loop.add_writer(None, callback),
    "remove_reader('x')": lambda loop: loop.remove_reader("x"),
    "add_signal_handler('x', cb)": lambda loop: loop.add_signal_handler("x", callback),
    "add_signal_handler(0, cb)": lambda loop: loop.add_signal_handler(0, callback),
    "remove_signal_handler(None)": lambda loop: loop.remove_signal_handler(None),
}
if sys.version_info >= (3, 11):  # 3.10 fails an assert inside TimerHandle
    BAD_CALLS["call_at(None, cb)"] = lambda loop: loop.call_at(None, callback)


@pytest.mark.parametrize("call", list(BAD_CALLS.values()), ids=list(BAD_CALLS))
def test_bad_arguments_raise_as_asyncio_does(assert_raises_like_asyncio, call):
    assert assert_raises_like_asyncio(call)
