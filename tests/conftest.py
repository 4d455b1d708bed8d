"""Fixtures shared by the behaviour tests.

Every test that takes ``loop``, ``loop_factory`` or ``loop_kind`` runs twice: on the
stock asyncio loop (id ``asyncio``) and on oxloop (id ``oxloop``). Tests are written
against the stock loop; a difference on oxloop is a bug in oxloop until shown otherwise.
The oxloop runs are skipped, with the reason shown, only while ``import oxloop`` fails.
"""

from __future__ import annotations

import asyncio
import faulthandler
import os
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import oxloop
except ImportError as exc:
    oxloop = None
    OXLOOP_MISSING = f"oxloop is not importable ({exc}); build it with `pip install .`"
else:
    OXLOOP_MISSING = ""

ROOT = Path(__file__).resolve().parent.parent

# A hung test (a loop that never wakes up) dumps every thread's stack to the terminal
# and ends the run, rather than blocking it forever. No test comes near this.
WATCHDOG_SECONDS = 60
_watchdog_file = sys.__stderr__


def pytest_configure(config):
    # faulthandler writes to a descriptor; pytest's capture would swallow the dump, so
    # keep a copy of the real stderr.
    global _watchdog_file
    capture = config.pluginmanager.getplugin("capturemanager")
    if capture is not None:
        with capture.global_and_fixture_disabled():
            _watchdog_file = os.fdopen(os.dup(sys.stderr.fileno()), "w")


def default_sigint() -> None:
    """Popen's preexec_fn for a child that is sent SIGINT: a shell's background job starts with
    SIGINT ignored, and Python then never installs its KeyboardInterrupt handler."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def new_loop(kind: str) -> asyncio.AbstractEventLoop:
    """A new event loop of the given kind: 'asyncio' (the default policy's) or 'oxloop'."""
    if kind == "asyncio":
        return asyncio.new_event_loop()
    return oxloop.new_event_loop()


@pytest.fixture(
    params=[
        pytest.param("asyncio", id="asyncio"),
        pytest.param(
            "oxloop",
            id="oxloop",
            marks=pytest.mark.skipif(oxloop is None, reason=OXLOOP_MISSING),
        ),
    ]
)
def loop_kind(request) -> str:
    """The kind of loop under test: 'asyncio' or 'oxloop'."""
    return request.param


@pytest.fixture
def loop_factory(loop_kind):
    """A callable making new loops of the kind under test; they are closed afterwards."""
    made = []

    def factory() -> asyncio.AbstractEventLoop:
        loop = new_loop(loop_kind)
        made.append(loop)
        return loop

    yield factory
    asyncio.set_event_loop(None)
    for loop in made:
        if not loop.is_running():
            loop.close()


@pytest.fixture
def loop(loop_factory) -> asyncio.AbstractEventLoop:
    """A new loop of the kind under test, closed after the test."""
    return loop_factory()


@pytest.fixture
def run_function(loop_kind):
    """``asyncio.run`` or ``oxloop.run``."""
    return asyncio.run if loop_kind == "asyncio" else oxloop.run


@pytest.fixture
def oxloop_module():
    """The oxloop package, for tests of oxloop alone; they are skipped while it is missing."""
    if oxloop is None:
        pytest.skip(OXLOOP_MISSING)
    return oxloop


@pytest.fixture
def stock_loop():
    """A stock asyncio loop, to learn the reference behaviour from."""
    loop = new_loop("asyncio")
    yield loop
    loop.close()


def raised_by(call, *args):
    """The exception ``call(*args)`` raises, or None."""
    try:
        call(*args)
    except Exception as exc:  # noqa: BLE001 - whatever it raises is what gets compared
        return exc
    return None


@pytest.fixture
def assert_raises_like_asyncio(loop, stock_loop):
    """``assert_raises_like_asyncio(call)``: ``call(loop)`` raises as ``call(stock_loop)`` does.

    The exceptions must have the same type (and errno, for OSError; and text, with
    ``same_text=True``), or neither call may raise. Returns the stock loop's exception.
    """

    def check(call, *, same_text=False):
        stock = raised_by(call, stock_loop)
        ours = raised_by(call, loop)
        assert type(ours) is type(stock), f"{ours!r} (stock asyncio: {stock!r})"
        if isinstance(stock, OSError):
            assert ours.errno == stock.errno, f"{ours!r} (stock asyncio: {stock!r})"
        if same_text:
            assert str(ours) == str(stock)
        return stock

    return check


@pytest.fixture
def python_command(loop_kind, tmp_path):
    """Return the command that runs a Python program on the loop under test.

    ``python_command(source)`` writes ``source`` to a file and returns
    ``[python, file]`` for asyncio, ``[python, "-m", "oxloop", file]`` for oxloop:
    the program is ordinary asyncio code that gets its loops from asyncio.
    """
    count = 0

    def command(source: str, *args: str) -> list[str]:
        nonlocal count
        count += 1
        path = tmp_path / f"program{count}.py"
        path.write_text(source)
        prefix = [sys.executable] if loop_kind == "asyncio" else [sys.executable, "-m", "oxloop"]
        return [*prefix, str(path), *args]

    return command


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """os.environ without asyncio's debug switch, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONASYNCIODEBUG"}
    env.update(extra or {})
    return env


@pytest.fixture
def run_python():
    """``run_python(cmd, env=None)``: run a command from the repository root, capture its output."""

    def run(cmd: list[str], *, env: dict[str, str] | None = None, timeout: float = 10):
        return subprocess.run(
            cmd,
            check=False,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=clean_env(env),
            cwd=ROOT,
        )

    return run


@pytest.fixture
def run_program(python_command, run_python):
    """``run_program(source, *args, env=None)``: run it on the loop under test, return the result."""

    def run(source: str, *args: str, env: dict[str, str] | None = None):
        return run_python(python_command(source, *args), env=env)

    return run


def pytest_unconfigure(config):
    if _watchdog_file is not sys.__stderr__:
        _watchdog_file.close()


@pytest.fixture(autouse=True)
def _watchdog():
    faulthandler.dump_traceback_later(WATCHDOG_SECONDS, exit=True, file=_watchdog_file)
    yield
    faulthandler.cancel_dump_traceback_later()
