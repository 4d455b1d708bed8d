"""Futures, tasks, task factories, and asyncio's coroutine helpers running on the loop."""

from __future__ import annotations

import asyncio
import contextvars
import sys

import pytest

var = contextvars.ContextVar("var", default="default")

py311 = pytest.mark.skipif(sys.version_info < (3, 11), reason="new in Python 3.11")
py312 = pytest.mark.skipif(sys.version_info < (3, 12), reason="new in Python 3.12")


async def double(x, delay=0):
    await asyncio.sleep(delay)
    return x * 2


def test_create_future(loop):
    fut = loop.create_future()
    assert isinstance(fut, asyncio.Future)
    assert fut.get_loop() is loop
    assert not fut.done()
    loop.call_soon(fut.set_result, "result")
    assert loop.run_until_complete(fut) == "result"
    assert type(fut) is asyncio.Future
    # In debug mode the future remembers where it was made, as asyncio's Future(loop=...) does.
    assert fut._source_traceback is None
    loop.set_debug(True)
    fut = loop.create_future()
    # (asyncio's create_future, Python, is the last frame on its loop.)
    assert "test_create_future" in [frame.name for frame in fut._source_traceback[-2:]]
    with pytest.raises(TypeError):
        loop.create_future(1)


def test_future_callbacks_are_scheduled_on_the_loop(loop):
    fut = loop.create_future()
    seen = []
    fut.add_done_callback(lambda f: seen.append(("callback", f.result())))
    fut.set_result(1)
    assert seen == []  # done-callbacks run in a later lap, never inside set_result
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert seen == [("callback", 1)]


def test_create_task(loop):
    task = loop.create_task(double(21))
    assert isinstance(task, asyncio.Task)
    assert task.get_loop() is loop
    assert loop.run_until_complete(task) == 42


def test_create_task_name(loop):
    task = loop.create_task(double(1), name="my task")
    assert task.get_name() == "my task"
    unnamed = loop.create_task(double(1))
    assert unnamed.get_name().startswith("Task-")
    loop.run_until_complete(asyncio.gather(task, unnamed))


@py311
def test_create_task_context(loop):
    ctx = contextvars.copy_context()
    ctx.run(var.set, "task context")

    async def read_var():
        await asyncio.sleep(0)
        value = var.get()
        var.set("changed by the task")
        return value

    assert loop.run_until_complete(loop.create_task(read_var(), context=ctx)) == "task context"
    assert ctx[var] == "changed by the task"
    assert var.get() == "default"


def test_create_task_rejects_non_coroutines(assert_raises_like_asyncio):
    stock = assert_raises_like_asyncio(lambda lp: lp.create_task(42))
    assert isinstance(stock, TypeError)


def test_task_factory(loop):
    made = []

    def factory(loop, coro, **kwargs):
        task = asyncio.Task(coro, loop=loop, **kwargs)
        made.append(task)
        return task

    assert loop.get_task_factory() is None
    loop.set_task_factory(factory)
    assert loop.get_task_factory() is factory
    task = loop.create_task(double(2), name="made by factory")
    assert made == [task]
    assert task.get_name() == "made by factory"

    async def main():
        # asyncio.create_task and ensure_future use the loop's factory as well.
        inner = asyncio.create_task(double(3))
        return await inner + await asyncio.ensure_future(double(4))

    assert loop.run_until_complete(main()) == 14
    assert len(made) == 4  # task, main, inner, ensure_future's
    assert task.result() == 4
    loop.set_task_factory(None)
    assert loop.get_task_factory() is None
    loop.run_until_complete(double(1))
    assert len(made) == 4


def test_task_factory_must_be_callable(assert_raises_like_asyncio):
    stock = assert_raises_like_asyncio(lambda lp: lp.set_task_factory(42))
    assert isinstance(stock, TypeError)


@py312
def test_eager_task_factory(loop):
    loop.set_task_factory(asyncio.eager_task_factory)
    steps = []

    async def eager():
        steps.append("started")
        await asyncio.sleep(0)
        steps.append("resumed")
        return "done"

    async def finishes_at_once():
        return "at once"

    async def main():
        task = asyncio.create_task(eager())
        # The coroutine ran up to its first suspension inside create_task.
        assert steps == ["started"]
        quick = asyncio.create_task(finishes_at_once())
        assert quick.done()
        assert quick.result() == "at once"
        return await task

    assert loop.run_until_complete(main()) == "done"
    assert steps == ["started", "resumed"]


@py311
def test_task_group(loop):
    async def fail():
        await asyncio.sleep(0.01)
        raise ValueError("in group")

    async def main():
        async with asyncio.TaskGroup() as group:
            a = group.create_task(double(1))
            b = group.create_task(double(2, 0.01))
        results = [a.result(), b.result()]
        slow = None
        with pytest.raises(ExceptionGroup) as info:  # noqa: F821 (3.11+ builtin)
            async with asyncio.TaskGroup() as group:
                slow = group.create_task(asyncio.sleep(10))
                group.create_task(fail())
        assert slow.cancelled()
        assert [type(e) for e in info.value.exceptions] == [ValueError]
        return results

    assert loop.run_until_complete(main()) == [2, 4]


@py311
def test_timeout(loop):
    async def main():
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.01):
                await asyncio.sleep(10)
        async with asyncio.timeout(1) as cm:
            await asyncio.sleep(0)
        assert not cm.expired()
        return "ok"

    assert loop.run_until_complete(main()) == "ok"


def test_gather(loop):
    async def fail():
        raise ValueError("in gather")

    async def main():
        results = await asyncio.gather(double(1, 0.01), double(2), double(3, 0.005))
        mixed = await asyncio.gather(double(1), fail(), return_exceptions=True)
        return results, mixed

    results, mixed = loop.run_until_complete(main())
    assert results == [2, 4, 6]
    assert mixed[0] == 2
    assert isinstance(mixed[1], ValueError)


def test_gather_cancellation(loop):
    async def main():
        inner = asyncio.ensure_future(asyncio.sleep(10))
        outer = asyncio.gather(inner)
        await asyncio.sleep(0)
        outer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await outer
        return inner.cancelled()

    assert loop.run_until_complete(main()) is True


def test_wait(loop):
    async def main():
        fast = asyncio.ensure_future(double(1, 0.001))
        slow = asyncio.ensure_future(double(2, 10))
        done, pending = await asyncio.wait({fast, slow}, return_when=asyncio.FIRST_COMPLETED)
        assert done == {fast}
        assert pending == {slow}
        done, pending = await asyncio.wait({slow}, timeout=0.01)
        assert (done, pending) == (set(), {slow})
        slow.cancel()
        done, pending = await asyncio.wait({slow})
        assert done == {slow}
        return fast.result()

    assert loop.run_until_complete(main()) == 2


def test_wait_for(loop):
    async def main():
        assert await asyncio.wait_for(double(5), 1) == 10
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.sleep(10), 0.01)
        return "ok"

    assert loop.run_until_complete(main()) == "ok"


def test_shield(loop):
    async def main():
        inner = asyncio.ensure_future(double(3, 0.01))
        outer = asyncio.shield(inner)
        outer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await outer
        assert not inner.cancelled()
        return await inner

    assert loop.run_until_complete(main()) == 6


def test_as_completed(loop):
    async def main():
        order = []
        coros = [double(3, 0.03), double(1, 0.01), double(2, 0.02)]
        for next_done in asyncio.as_completed(coros):
            order.append(await next_done)
        return order

    assert loop.run_until_complete(main()) == [2, 4, 6]


def test_sleep_result_and_zero(loop):
    async def main():
        assert await asyncio.sleep(0, "zero") == "zero"
        assert await asyncio.sleep(0.001, "short") == "short"
        return "ok"

    assert loop.run_until_complete(main()) == "ok"


def test_task_cancel(loop):
    async def main():
        task = asyncio.ensure_future(asyncio.sleep(10))
        await asyncio.sleep(0)
        task.cancel("because")
        with pytest.raises(asyncio.CancelledError):
            await task
        return task.cancelled()

    assert loop.run_until_complete(main()) is True


def test_current_task(loop):
    async def main():
        task = asyncio.current_task()
        assert asyncio.current_task(loop) is task
        return task

    task = loop.create_task(main())
    assert loop.run_until_complete(task) is task
    assert asyncio.current_task(loop) is None


def test_current_task_in_a_plain_callback_is_none(loop):
    seen = []

    def callback():
        seen.append(asyncio.current_task())
        loop.stop()

    loop.call_soon(callback)
    loop.run_forever()
    assert seen == [None]


def test_all_tasks(loop):
    async def main():
        others = [asyncio.ensure_future(asyncio.sleep(10)) for _ in range(3)]
        tasks = asyncio.all_tasks()
        assert tasks == {asyncio.current_task(), *others}
        assert asyncio.all_tasks(loop) == tasks
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        return asyncio.all_tasks()

    main_task = loop.create_task(main())
    assert asyncio.all_tasks(loop) == {main_task}
    assert loop.run_until_complete(main_task) == {main_task}
    assert asyncio.all_tasks(loop) == set()

