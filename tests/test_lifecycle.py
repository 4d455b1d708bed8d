"""Running, stopping and closing a loop (asyncio's base_events.BaseEventLoop)."""

from __future__ import annotations

import asyncio
import gc

import pytest


def test_stop_finishes_the_current_lap(loop):
    ran = []
    loop.call_soon(ran.append, 1)
    loop.call_soon(loop.stop)
    loop.call_soon(ran.append, 2)  # ready in the same lap as stop(): still runs
    loop.run_forever()
    assert ran == [1, 2]
    assert not loop.is_running()


def test_stop_before_run_forever_runs_one_lap(loop):
    ran = []
    loop.stop()
    loop.call_soon(ran.append, "ready")
    loop.run_forever()
    assert ran == ["ready"]
    # The stop was consumed: the next run_forever runs until the next stop().
    loop.call_soon(ran.append, "again")
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert ran == ["ready", "again"]


def test_run_forever_can_run_again_after_stop(loop):
    for _ in range(3):
        loop.call_later(0.001, loop.stop)
        loop.run_forever()
    assert not loop.is_running()


def test_run_until_complete_future(loop):
    fut = loop.create_future()
    loop.call_soon(fut.set_result, 42)
    assert loop.run_until_complete(fut) == 42


def test_run_until_complete_coroutine(loop):
    async def coro(x):
        await asyncio.sleep(0)
        return x * 2

    assert loop.run_until_complete(coro(21)) == 42


def test_run_until_complete_raises_the_exception(loop):
    async def coro():
        await asyncio.sleep(0)
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        loop.run_until_complete(coro())
    assert not loop.is_running()


def test_run_until_complete_awaitable_object(loop):
    class Awaitable:
        def __await__(self):
            yield from asyncio.sleep(0).__await__()
            return "awaited"

    assert loop.run_until_complete(Awaitable()) == "awaited"


def test_run_until_complete_rejects_non_awaitables(assert_raises_like_asyncio):
    stock = assert_raises_like_asyncio(lambda lp: lp.run_until_complete(42))
    assert isinstance(stock, TypeError)


def test_run_until_complete_future_of_other_loop(loop, loop_factory):
    other = loop_factory()
    fut = other.create_future()
    with pytest.raises(ValueError, match="different loop"):
        loop.run_until_complete(fut)


def test_stopped_before_future_completed(loop):
    fut = loop.create_future()
    loop.call_soon(loop.stop)
    with pytest.raises(RuntimeError, match=r"^Event loop stopped before Future completed\.$"):
        loop.run_until_complete(fut)
    assert not fut.done()
    # The loop can go on to complete the future.
    loop.call_soon(fut.set_result, "later")
    assert loop.run_until_complete(fut) == "later"


def test_close_refuses_while_running(loop):
    errors = []

    def try_close():
        try:
            loop.close()
        except RuntimeError as exc:
            errors.append(str(exc))
        loop.stop()

    loop.call_soon(try_close)
    loop.run_forever()
    assert errors == ["Cannot close a running event loop"]
    assert not loop.is_closed()


def test_close_is_idempotent(loop):
    assert not loop.is_closed()
    loop.close()
    assert loop.is_closed()
    loop.close()
    assert loop.is_closed()


def test_is_running(loop):
    seen = []

    def check():
        seen.append(loop.is_running())
        loop.stop()

    assert not loop.is_running()
    loop.call_soon(check)
    loop.run_forever()
    assert seen == [True]
    assert not loop.is_running()

    async def coro():
        return loop.is_running()

    assert loop.run_until_complete(coro()) is True
    assert not loop.is_running()


def test_closed_loop_refuses_to_run(loop):
    loop.close()
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        loop.run_forever()
    fut = asyncio.Future(loop=loop)
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        loop.run_until_complete(fut)
    coro = asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        loop.run_until_complete(coro)
    coro.close()
    assert not loop.is_running()


@pytest.mark.parametrize("method", ["call_soon", "call_later", "call_at", "call_soon_threadsafe"])
def test_closed_loop_refuses_callbacks(loop, method):
    loop.close()
    args = (0, print) if method in ("call_later", "call_at") else (print,)
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        getattr(loop, method)(*args)


def test_closed_loop_refuses_tasks(loop):
    loop.close()
    coro = asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        loop.create_task(coro)
    coro.close()


def test_already_running(loop):
    errors = []
    fut = loop.create_future()

    def nested():
        try:
            loop.run_until_complete(fut)
        except RuntimeError as exc:
            errors.append(str(exc))
        loop.stop()

    loop.call_soon(nested)
    loop.run_forever()
    assert errors == ["This event loop is already running"]


def test_another_loop_is_running(loop, loop_factory):
    other = loop_factory()
    errors = []
    fut = other.create_future()

    def nested():
        try:
            other.run_until_complete(fut)
        except RuntimeError as exc:
            errors.append(str(exc))
        loop.stop()

    loop.call_soon(nested)
    loop.run_forever()
    assert errors == ["Cannot run the event loop while another loop is running"]
    assert not other.is_running()


def test_get_running_loop_in_callbacks(loop):
    seen = []

    def callback():
        seen.append(asyncio.get_running_loop())
        seen.append(asyncio.get_event_loop())
        seen.append(asyncio._get_running_loop())
        loop.stop()

    loop.call_soon(callback)
    loop.run_forever()
    assert seen == [loop, loop, loop]
    assert asyncio._get_running_loop() is None
    with pytest.raises(RuntimeError, match="no running event loop"):
        asyncio.get_running_loop()


def test_get_running_loop_in_timer_callbacks_and_coroutines(loop):
    seen = []
    loop.call_later(0.001, lambda: seen.append(asyncio.get_running_loop()))

    async def coro():
        await asyncio.sleep(0.01)
        seen.append(asyncio.get_running_loop())
        seen.append(asyncio.get_event_loop())

    loop.run_until_complete(coro())
    assert seen == [loop, loop, loop]


def test_running_loop_is_restored_after_an_exception(loop):
    def fail():
        raise KeyboardInterrupt

    loop.call_soon(fail)
    with pytest.raises(KeyboardInterrupt):
        loop.run_forever()
    assert asyncio._get_running_loop() is None
    assert not loop.is_running()
    # The loop is usable afterwards.
    assert loop.run_until_complete(asyncio.sleep(0, "ok")) == "ok"


def test_run_cancelled_future(loop):
    fut = loop.create_future()
    loop.call_soon(fut.cancel)
    with pytest.raises(asyncio.CancelledError):
        loop.run_until_complete(fut)


def drop_and_collect(objects):
    objects.clear()
    gc.collect()


def test_unclosed_loop_warns(loop):
    unclosed = [type(loop)()]
    with pytest.warns(ResourceWarning, match="unclosed event loop"):
        drop_and_collect(unclosed)


# -- asyncio.run / oxloop.run ----------------------------------------------------------


def test_run_returns_the_result_on_a_fresh_loop(run_function, loop_kind):
    async def main():
        loop = asyncio.get_running_loop()
        return type(loop).__module__.split(".")[0], loop.get_debug()

    assert run_function(main()) == (loop_kind, False)
    assert run_function(main(), debug=True) == (loop_kind, True)
    assert asyncio._get_running_loop() is None


def test_run_closes_the_loop_and_cleans_up(run_function):
    log = []

    async def agen():
        try:
            yield 1
            yield 2
        finally:
            log.append("asyncgen finalized")

    async def forgotten():
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            log.append("task cancelled")
            raise

    async def main():
        loop = asyncio.get_running_loop()
        asyncio.ensure_future(forgotten())
        gen = agen()
        await gen.__anext__()
        main.gen = gen  # keep it unfinished and alive
        await loop.run_in_executor(None, sum, [1])
        await asyncio.sleep(0)
        return loop

    loop = run_function(main())
    assert loop.is_closed()
    assert sorted(log) == ["asyncgen finalized", "task cancelled"]


def test_run_propagates_the_exception(run_function):
    async def main():
        raise ValueError("from main")

    with pytest.raises(ValueError, match="from main"):
        run_function(main())


def test_run_refuses_a_running_loop(run_function):
    async def main():
        coro = asyncio.sleep(0)
        try:
            run_function(coro)
        except RuntimeError as exc:
            return str(exc)
        finally:
            coro.close()

    assert "cannot be called from a running event loop" in run_function(main())
