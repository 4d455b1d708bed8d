"""oxloop under uvloop's name, for libraries' own test suites (libraries.py): anyio's and
aiohttp's run every loop-dependent test on the stock loop and on ``uvloop.new_event_loop()``;
with this directory first on ``sys.path``, their uvloop runs are oxloop's."""

from oxloop import EventLoopPolicy, Loop, install, new_event_loop, run
from oxloop import __version__ as __version__

from . import loop as loop

__all__ = ("EventLoopPolicy", "Loop", "install", "new_event_loop", "run")
