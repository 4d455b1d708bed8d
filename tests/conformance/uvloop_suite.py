"""uvloop's own test suite, for the conformance runner's ``--suite uvloop``: where it comes from.

uvloop's tests (the ``tests/`` package of its sdist; its wheels do not have it) run each scenario
on uvloop (the ``Test_UV_*`` classes) and on the stock loop (``Test_AIO_*``, subclasses of
``uvloop._testbase.AIOTestCase``, whose loop is ``asyncio.new_event_loop()``). The runner runs
the asyncio half with the default policy's loop factory replaced, as it does CPython's suite:
uvloop's scenarios, as asyncio's loop passes them, on the loop under test.

The tests are those of the uvloop installed (their ``_testbase`` is its module): its sdist's,
fetched and unpacked by sdist.py.
"""

from __future__ import annotations

from pathlib import Path

import sdist  # beside this file

# The modules with Test_AIO_* classes, the slowest first, so that --jobs packs well.
SELECTION = (
    "test_tcp",
    "test_process",
    "test_base",
    "test_unix",
    "test_signals",
    "test_context",
    "test_pipes",
    "test_udp",
    "test_sockets",
    "test_executors",
    "test_dns",
    "test_aiohttp",
)
PACKAGE = "tests"  # the package name the test modules import as


def tests_path() -> Path:
    """The directory to put on ``sys.path`` for ``import tests.test_tcp`` and the rest: fetched
    and unpacked once per uvloop version."""
    return sdist.unpacked(
        "uvloop", "tests", lambda path: path.parts[0] == PACKAGE, f"{PACKAGE}/__init__.py"
    )
