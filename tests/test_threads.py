"""Executors and threads: run_in_executor, default executor, run_coroutine_threadsafe, to_thread."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import sys
import threading
import time

import pytest

var = contextvars.ContextVar("var", default="default")


def thread_ident(*args, **kwargs):
    return threading.get_ident(), args, kwargs


def is_shut_down(executor):
    try:
        executor.submit(int).result()
    except RuntimeError:
        return True
    return False


def test_run_in_executor_default(loop):
    fut = loop.run_in_executor(None, thread_ident, 1, 2)
    assert isinstance(fut, asyncio.Future)
    ident, args, kwargs = loop.run_until_complete(fut)
    assert ident != threading.get_ident()
    assert (args, kwargs) == ((1, 2), {})


def test_run_in_executor_exception(loop):
    def fail():
        raise ValueError("in thread")

    with pytest.raises(ValueError, match="in thread"):
        loop.run_until_complete(loop.run_in_executor(None, fail))


def test_run_in_executor_custom_executor(loop):
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="custom") as executor:
        name = loop.run_until_complete(
            loop.run_in_executor(executor, lambda: threading.current_thread().name)
        )
    assert name.startswith("custom")


def test_run_in_executor_cancel(loop):
    started = threading.Event()
    release = threading.Event()

    def block():
        started.set()
        release.wait(2)

    async def main():
        fut = loop.run_in_executor(None, block)
        await loop.run_in_executor(None, started.wait, 2)
        fut.cancel()
        with pytest.raises(asyncio.CancelledError):
            await fut
        release.set()

    loop.run_until_complete(main())


def test_set_default_executor(loop):
    executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="default-for-test")
    try:
        loop.set_default_executor(executor)
        name = loop.run_until_complete(
            loop.run_in_executor(None, lambda: threading.current_thread().name)
        )
        assert name.startswith("default-for-test")
    finally:
        loop.run_until_complete(loop.shutdown_default_executor())
    assert is_shut_down(executor)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="only deprecated before Python 3.11")
def test_set_default_executor_requires_a_thread_pool(assert_raises_like_asyncio):
    with concurrent.futures.ProcessPoolExecutor(1) as executor:
        stock = assert_raises_like_asyncio(lambda lp: lp.set_default_executor(executor))
        assert isinstance(stock, TypeError)


def test_shutdown_default_executor(loop):
    assert loop.run_until_complete(loop.run_in_executor(None, sum, [1, 2])) == 3
    loop.run_until_complete(loop.shutdown_default_executor())
    with pytest.raises(RuntimeError, match="Executor shutdown has been called"):
        loop.run_in_executor(None, sum, [1])
    # A given executor still works.
    with concurrent.futures.ThreadPoolExecutor(1) as executor:
        assert loop.run_until_complete(loop.run_in_executor(executor, sum, [4])) == 4


def test_shutdown_default_executor_without_one(loop):
    loop.run_until_complete(loop.shutdown_default_executor())
    with pytest.raises(RuntimeError, match="Executor shutdown has been called"):
        loop.run_in_executor(None, sum, [1])


def test_shutdown_default_executor_waits_for_running_work(loop):
    finished = []

    def work():
        time.sleep(0.05)
        finished.append(True)

    loop.run_in_executor(None, work)
    loop.run_until_complete(loop.shutdown_default_executor())
    assert finished == [True]


@pytest.mark.skipif(
    sys.version_info < (3, 13), reason="timeout= is new in 3.12, and 3.12.1 waits for the work anyway"
)
def test_shutdown_default_executor_timeout(loop):
    release = threading.Event()
    loop.run_in_executor(None, release.wait, 2)
    start = time.monotonic()
    try:
        with pytest.warns(RuntimeWarning, match="did not finishing joining"):
            loop.run_until_complete(loop.shutdown_default_executor(timeout=0.05))
    finally:
        release.set()
    assert time.monotonic() - start < 1


def test_close_shuts_down_the_default_executor(loop):
    executor = concurrent.futures.ThreadPoolExecutor(1)
    loop.set_default_executor(executor)
    assert loop.run_until_complete(loop.run_in_executor(None, sum, [1])) == 1
    loop.close()
    assert is_shut_down(executor)


def test_run_coroutine_threadsafe(loop):
    async def add(a, b):
        await asyncio.sleep(0.01)
        assert asyncio.get_running_loop() is loop
        return a + b

    results = []

    def from_thread():
        results.append(asyncio.run_coroutine_threadsafe(add(1, 2), loop).result(2))
        loop.call_soon_threadsafe(loop.stop)

    thread = threading.Thread(target=from_thread)
    loop.call_soon(thread.start)
    guard = loop.call_later(5, loop.stop)
    loop.run_forever()
    guard.cancel()
    thread.join()
    assert results == [3]


def test_run_coroutine_threadsafe_exception_and_cancel(loop):
    async def fail():
        raise ValueError("in coroutine")

    outcomes = []

    def from_thread():
        with pytest.raises(ValueError):
            asyncio.run_coroutine_threadsafe(fail(), loop).result(2)
        outcomes.append("raised")
        fut = asyncio.run_coroutine_threadsafe(asyncio.sleep(10), loop)
        time.sleep(0.01)
        fut.cancel()
        with pytest.raises(concurrent.futures.CancelledError):
            fut.result(2)
        outcomes.append("cancelled")
        loop.call_soon_threadsafe(loop.stop)

    thread = threading.Thread(target=from_thread)
    loop.call_soon(thread.start)
    guard = loop.call_later(5, loop.stop)
    loop.run_forever()
    guard.cancel()
    thread.join()
    assert outcomes == ["raised", "cancelled"]


def test_to_thread(loop):
    async def main():
        var.set("copied into the thread")
        ident, args, kwargs = await asyncio.to_thread(thread_ident, "a", b="c")
        value = await asyncio.to_thread(var.get)
        return ident, args, kwargs, value

    ident, args, kwargs, value = loop.run_until_complete(main())
    assert ident != threading.get_ident()
    assert (args, kwargs) == (("a",), {"b": "c"})
    assert value == "copied into the thread"


def test_many_executor_jobs(loop):
    async def main():
        return await asyncio.gather(*(loop.run_in_executor(None, pow, i, 2) for i in range(200)))

    assert loop.run_until_complete(main()) == [i * i for i in range(200)]


def run_in_thread(target):
    results = []

    def wrapper():
        try:
            results.append(("ok", target()))
        except BaseException as exc:  # noqa: BLE001 - reported to the main thread
            results.append(("error", exc))

    thread = threading.Thread(target=wrapper)
    thread.start()
    thread.join(5)
    assert not thread.is_alive()
    [(status, value)] = results
    if status == "error":
        raise value
    return value


def test_loop_in_another_thread(loop_factory):
    def work():
        loop = loop_factory()

        async def main():
            assert asyncio.get_running_loop() is loop
            await asyncio.sleep(0.01)
            return await loop.run_in_executor(None, threading.get_ident) != threading.get_ident()

        return loop.run_until_complete(main())

    assert run_in_thread(work) is True


def test_loops_in_two_threads_at_once(loop_factory):
    barrier = threading.Barrier(2, timeout=2)
    loops = [loop_factory(), loop_factory()]

    def work(loop):
        async def main():
            # Both loops are running at the same time here.
            await loop.run_in_executor(None, barrier.wait)
            await asyncio.sleep(0.01)
            return asyncio.get_running_loop()

        return loop.run_until_complete(main())

    results = []
    threads = [
        threading.Thread(target=lambda lp=lp: results.append(work(lp))) for lp in loops
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert sorted(map(id, results)) == sorted(map(id, loops))


def test_signal_handlers_need_the_main_thread(loop_factory):
    import signal

    def work():
        loop = loop_factory()
        with pytest.raises(RuntimeError):
            loop.add_signal_handler(signal.SIGUSR1, print)
        return True

    assert run_in_thread(work) is True


EXIT_WITH_A_BUSY_DAEMON_LOOP = """
import asyncio, threading, time

started = threading.Event()

def run():
    loop = asyncio.new_event_loop()
    def spin():
        started.set()
        time.sleep(0.01)  # gives the GIL up and takes it back, as SSL reads and sends do
        loop.call_soon(spin)
    loop.call_soon(spin)
    loop.run_forever()

threading.Thread(target=run, daemon=True).start()
started.wait()
print("bye")
"""


def test_exit_while_a_daemon_thread_runs_a_loop(run_program):
    # On 3.10-3.13 a daemon thread that takes the GIL back while the interpreter finalizes is
    # ended with pthread_exit; unwinding through native frames must not abort the process.
    for _ in range(3):
        result = run_program(EXIT_WITH_A_BUSY_DAEMON_LOOP)
        assert (result.returncode, result.stdout, result.stderr) == (0, "bye\n", "")
