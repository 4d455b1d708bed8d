"""Signal handlers (asyncio's unix_events) and Ctrl-C in a blocked loop."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

import pytest
from conftest import default_sigint


@pytest.fixture(autouse=True)
def _restore_signals():
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGUSR1, signal.SIGUSR2)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def test_handler_runs_on_signal(loop):
    seen = []

    def handler(*args):
        seen.append(args)
        loop.stop()

    loop.add_signal_handler(signal.SIGUSR1, handler, "arg", 2)
    loop.call_soon(os.kill, os.getpid(), signal.SIGUSR1)
    guard = loop.call_later(2, loop.stop)
    loop.run_forever()
    guard.cancel()
    assert seen == [("arg", 2)]
    assert loop.remove_signal_handler(signal.SIGUSR1) is True
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


def test_signal_wakes_a_sleeping_loop(loop):
    seen = []
    loop.add_signal_handler(signal.SIGUSR1, lambda: (seen.append("signal"), loop.stop()))

    def kill_later():
        time.sleep(0.05)  # let the loop go to sleep
        os.kill(os.getpid(), signal.SIGUSR1)

    thread = threading.Thread(target=kill_later)
    guard = loop.call_later(5, loop.stop)
    start = time.monotonic()
    thread.start()
    loop.run_forever()
    thread.join()
    guard.cancel()
    assert seen == ["signal"]
    assert time.monotonic() - start < 2


def test_handler_runs_in_the_loop_not_in_the_signal_handler(loop):
    seen = []

    def handler():
        seen.append(loop.is_running())
        loop.stop()

    loop.add_signal_handler(signal.SIGUSR1, handler)
    os.kill(os.getpid(), signal.SIGUSR1)  # before the loop runs: the handler waits for it
    assert seen == []
    guard = loop.call_later(2, loop.stop)
    loop.run_forever()
    guard.cancel()
    assert seen == [True]


def test_two_signals_two_handlers(loop):
    seen = []
    loop.add_signal_handler(signal.SIGUSR1, seen.append, "usr1")
    loop.add_signal_handler(signal.SIGUSR2, seen.append, "usr2")

    def send():
        os.kill(os.getpid(), signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGUSR2)

    loop.call_soon(send)
    loop.call_later(0.05, loop.stop)
    loop.run_forever()
    assert sorted(seen) == ["usr1", "usr2"]


def test_add_replaces_the_handler(loop):
    seen = []
    loop.add_signal_handler(signal.SIGUSR1, seen.append, "old")
    loop.add_signal_handler(signal.SIGUSR1, seen.append, "new")
    loop.call_soon(os.kill, os.getpid(), signal.SIGUSR1)
    loop.call_later(0.05, loop.stop)
    loop.run_forever()
    assert seen == ["new"]


def test_remove_returns_false_when_no_handler(loop):
    assert loop.remove_signal_handler(signal.SIGUSR1) is False
    loop.add_signal_handler(signal.SIGUSR1, print)
    assert loop.remove_signal_handler(signal.SIGUSR1) is True
    assert loop.remove_signal_handler(signal.SIGUSR1) is False


def test_remove_sigint_restores_default_int_handler(loop):
    previous = signal.getsignal(signal.SIGINT)
    try:
        loop.add_signal_handler(signal.SIGINT, print)
        assert loop.remove_signal_handler(signal.SIGINT) is True
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, previous)


def test_close_removes_handlers(loop):
    loop.add_signal_handler(signal.SIGUSR1, print)
    assert signal.getsignal(signal.SIGUSR1) != signal.SIG_DFL
    loop.close()
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


# -- errors, compared with the stock loop ------------------------------------------------


async def coroutine_function():
    pass


BAD_SIGNALS = {
    "0": 0,
    "too large": 1000,
    "negative": -1,
    "str": "SIGUSR1",
    "float": 10.0,
    "None": None,
    "SIGKILL": signal.SIGKILL,
    "SIGSTOP": signal.SIGSTOP,
}


@pytest.mark.parametrize("sig", list(BAD_SIGNALS.values()), ids=list(BAD_SIGNALS))
def test_bad_signals(assert_raises_like_asyncio, sig):
    assert assert_raises_like_asyncio(lambda lp: lp.add_signal_handler(sig, print), same_text=True)


@pytest.mark.parametrize("sig", list(BAD_SIGNALS.values()), ids=list(BAD_SIGNALS))
def test_remove_bad_signals(assert_raises_like_asyncio, sig):
    assert_raises_like_asyncio(lambda lp: lp.remove_signal_handler(sig))


def test_sigkill_cannot_be_caught(loop):
    with pytest.raises(RuntimeError, match=f"sig {int(signal.SIGKILL)} cannot be caught"):
        loop.add_signal_handler(signal.SIGKILL, print)


@pytest.mark.parametrize("what", ["coroutine function", "coroutine object"])
def test_coroutine_handler_is_refused(assert_raises_like_asyncio, what):
    coro = coroutine_function()
    callback = coro if what == "coroutine object" else coroutine_function
    try:
        stock = assert_raises_like_asyncio(lambda lp: lp.add_signal_handler(signal.SIGUSR1, callback))
        assert isinstance(stock, TypeError)
    finally:
        coro.close()


def test_closed_loop_refuses_handlers(loop, stock_loop, assert_raises_like_asyncio):
    loop.close()
    stock_loop.close()
    stock = assert_raises_like_asyncio(lambda lp: lp.add_signal_handler(signal.SIGUSR1, print))
    assert isinstance(stock, RuntimeError)


def test_handler_from_another_thread_is_refused(assert_raises_like_asyncio):
    results = []

    def from_thread():
        try:
            results.append(
                assert_raises_like_asyncio(lambda lp: lp.add_signal_handler(signal.SIGUSR1, print))
            )
        except AssertionError as exc:
            results.append(exc)

    thread = threading.Thread(target=from_thread)
    thread.start()
    thread.join()
    [stock] = results
    if isinstance(stock, AssertionError):
        raise stock
    assert isinstance(stock, RuntimeError)


# -- Ctrl-C in a blocked loop, in a subprocess ------------------------------------------------

BLOCKED_PROGRAM = """\
import asyncio
import sys


async def main():
    print("ready", flush=True)
    await asyncio.sleep(30)


if sys.argv[1] == "run_until_complete":
    loop = asyncio.new_event_loop()
    loop.run_until_complete(main())
else:
    asyncio.run(main())
"""


def interrupt_blocked_program(cmd):
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,  # noqa: PLW1509 (only sets a signal disposition)
    )
    try:
        assert proc.stdout.readline() == "ready\n"
        time.sleep(0.1)  # let the loop block in its poll
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=5)
        return proc.returncode, stderr, time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@pytest.mark.parametrize("how", ["run_until_complete", "asyncio.run"])
def test_sigint_interrupts_a_blocked_loop(python_command, how):
    returncode, stderr, elapsed = interrupt_blocked_program(python_command(BLOCKED_PROGRAM, how))
    assert elapsed < 2
    assert "Traceback (most recent call last)" in stderr
    assert stderr.rstrip().endswith("KeyboardInterrupt")
    # Python reports an uncaught KeyboardInterrupt by dying of SIGINT.
    assert returncode == -signal.SIGINT
