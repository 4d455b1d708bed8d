"""oxloop: a drop-in asyncio event loop written in Rust.

Three ways to use it::

    oxloop.run(main())                                        # like asyncio.run
    asyncio.run(main(), loop_factory=oxloop.new_event_loop)   # Python 3.12+
    oxloop.install()                                          # sets oxloop.EventLoopPolicy
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

from ._loop import Loop

__all__ = ("EventLoopPolicy", "Loop", "install", "new_event_loop", "run")
__version__ = "0.1.0"

_T = TypeVar("_T")


def new_event_loop() -> Loop:
    """Return a new oxloop event loop."""
    return Loop()


class EventLoopPolicy(asyncio.DefaultEventLoopPolicy):
    """An event loop policy whose loops are oxloop loops."""

    def _loop_factory(self) -> Loop:  # type: ignore[override]
        return new_event_loop()


def install() -> None:
    """Make oxloop the event loop of every later ``asyncio.new_event_loop()``."""
    asyncio.set_event_loop_policy(EventLoopPolicy())


def run(main: Coroutine[Any, Any, _T], *, debug: bool | None = None) -> _T:
    """Run a coroutine on a new oxloop loop, as ``asyncio.run`` does."""
    if sys.version_info >= (3, 12):
        return asyncio.run(main, debug=debug, loop_factory=new_event_loop)
    if asyncio._get_running_loop() is not None:
        # Checked before a loop is made, as asyncio.run does.
        raise RuntimeError("asyncio.run() cannot be called from a running event loop")
    if sys.version_info >= (3, 11):
        with asyncio.Runner(debug=debug, loop_factory=new_event_loop) as runner:
            return runner.run(main)
    # Python 3.10: asyncio.run takes its loop from the policy.
    previous = asyncio.get_event_loop_policy()
    asyncio.set_event_loop_policy(EventLoopPolicy())
    try:
        return asyncio.run(main, debug=debug)
    finally:
        asyncio.set_event_loop_policy(previous)
