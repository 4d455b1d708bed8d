"""Async generator hooks and shutdown_asyncgens."""

from __future__ import annotations

import asyncio
import gc
import sys

import pytest


def make_agen(log):
    async def agen():
        try:
            for i in range(10):
                yield i
                await asyncio.sleep(0)
        finally:
            await asyncio.sleep(0)  # finalization may await
            log.append("finalized")

    return agen()


def test_shutdown_asyncgens_finalizes_unfinished_generators(loop):
    log = []
    gen = make_agen(log)

    async def start():
        return await gen.__anext__()  # first iterated while the loop runs, so the loop tracks it

    assert loop.run_until_complete(start()) == 0
    assert log == []
    loop.run_until_complete(loop.shutdown_asyncgens())
    assert log == ["finalized"]
    with pytest.raises(StopAsyncIteration):
        loop.run_until_complete(gen.__anext__())


def test_shutdown_asyncgens_reports_errors(loop):
    contexts = []
    loop.set_exception_handler(lambda lp, context: contexts.append(context))

    async def agen():
        try:
            yield 1
        finally:
            raise ValueError("in finally")

    gen = agen()

    async def start():
        await gen.__anext__()  # first iterated while the loop runs, so the loop tracks it

    loop.run_until_complete(start())
    loop.run_until_complete(loop.shutdown_asyncgens())
    assert len(contexts) == 1
    assert isinstance(contexts[0]["exception"], ValueError)
    assert contexts[0]["asyncgen"] is gen


def test_shutdown_asyncgens_without_generators(loop):
    loop.run_until_complete(loop.shutdown_asyncgens())


def test_hooks_are_installed_while_running(loop):
    outside = sys.get_asyncgen_hooks()

    async def main():
        return sys.get_asyncgen_hooks()

    inside = loop.run_until_complete(main())
    assert inside.firstiter is not None
    assert inside.finalizer is not None
    assert inside != outside
    assert sys.get_asyncgen_hooks() == outside


def test_previous_hooks_are_restored(loop):
    def firstiter(agen):
        pass

    def finalizer(agen):
        pass

    old = sys.get_asyncgen_hooks()
    sys.set_asyncgen_hooks(firstiter=firstiter, finalizer=finalizer)
    try:
        async def main():
            return sys.get_asyncgen_hooks()

        inside = loop.run_until_complete(main())
        assert inside.firstiter is not firstiter
        assert sys.get_asyncgen_hooks() == (firstiter, finalizer)
    finally:
        sys.set_asyncgen_hooks(*old)


def test_hooks_are_restored_after_an_exception(loop):
    def interrupt():
        raise KeyboardInterrupt

    outside = sys.get_asyncgen_hooks()
    loop.call_soon(interrupt)
    with pytest.raises(KeyboardInterrupt):
        loop.run_forever()
    assert sys.get_asyncgen_hooks() == outside


def test_abandoned_generator_is_closed_by_the_loop(loop):
    log = []

    async def main():
        gen = make_agen(log)
        await gen.__anext__()
        del gen
        gc.collect()  # the finalizer hook schedules aclose() on the loop
        for _ in range(5):
            await asyncio.sleep(0)
        return list(log)

    assert loop.run_until_complete(main()) == ["finalized"]


def test_generators_iterated_in_tasks_are_tracked(loop):
    log = []
    gens = []

    async def start_one():
        gen = make_agen(log)
        gens.append(gen)
        await gen.__anext__()

    async def main():
        await asyncio.gather(start_one(), start_one())

    loop.run_until_complete(main())
    loop.run_until_complete(loop.shutdown_asyncgens())
    assert log == ["finalized", "finalized"]
