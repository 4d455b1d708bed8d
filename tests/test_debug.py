"""Debug mode: set_debug/get_debug, slow callback warnings, thread checks, PYTHONASYNCIODEBUG."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import pytest


def run_briefly(loop):
    loop.call_soon(loop.stop)
    loop.run_forever()


def test_set_and_get_debug(loop, stock_loop):
    assert loop.get_debug() == stock_loop.get_debug()
    loop.set_debug(True)
    assert loop.get_debug() is True
    loop.set_debug(False)
    assert loop.get_debug() is False


@pytest.mark.parametrize("value", [0, 1, "", "yes", None])
def test_set_debug_keeps_what_it_is_given(loop, value):
    # asyncio stores the value itself (aiohttp's tests call set_debug(0) and set_debug(1)).
    loop.set_debug(value)
    assert loop.get_debug() is value
    assert loop._debug is value
    seen = []
    loop.call_soon(lambda: seen.append(loop.get_debug()))
    run_briefly(loop)
    assert seen == [value]


def test_debug_mode_of_asyncio_run(loop_kind):
    async def main():
        return asyncio.get_running_loop().get_debug()

    if loop_kind == "asyncio":
        assert asyncio.run(main(), debug=True) is True
    else:
        import oxloop

        assert oxloop.run(main(), debug=True) is True
        assert oxloop.run(main(), debug=False) is False


def slow():
    time.sleep(0.05)


def test_slow_callback_is_logged_in_debug_mode(loop, caplog):
    loop.set_debug(True)
    loop.slow_callback_duration = 0.01
    loop.call_soon(slow)
    with caplog.at_level(logging.WARNING, logger="asyncio"):
        run_briefly(loop)
    messages = [r.getMessage() for r in caplog.records
                if r.name == "asyncio" and r.levelno == logging.WARNING]
    assert len(messages) == 1, messages
    assert messages[0].startswith("Executing")
    assert "slow" in messages[0]
    assert "took" in messages[0]


def test_slow_callback_is_not_logged_outside_debug_mode(loop, caplog):
    loop.slow_callback_duration = 0.01
    loop.call_soon(slow)
    with caplog.at_level(logging.DEBUG, logger="asyncio"):
        run_briefly(loop)
    assert [r for r in caplog.records if r.name == "asyncio"] == []


def test_fast_callbacks_are_not_logged(loop, caplog):
    loop.set_debug(True)
    loop.slow_callback_duration = 1
    loop.call_soon(lambda: None)
    with caplog.at_level(logging.WARNING, logger="asyncio"):
        run_briefly(loop)
    assert [r for r in caplog.records if r.name == "asyncio"] == []


@pytest.mark.parametrize("method", ["call_soon", "call_later", "call_at"])
def test_non_threadsafe_call_from_another_thread_is_refused(loop, method):
    loop.set_debug(True)
    errors = []
    done = loop.create_future()

    def from_thread():
        try:
            args = {"call_later": (0,), "call_at": (loop.time(),)}.get(method, ())
            getattr(loop, method)(*args, print)
        except RuntimeError as exc:
            errors.append(str(exc))
        loop.call_soon_threadsafe(done.set_result, None)

    thread = threading.Thread(target=from_thread)
    loop.call_soon(thread.start)
    loop.run_until_complete(asyncio.wait_for(done, 2))
    thread.join()
    assert len(errors) == 1
    assert "Non-thread-safe operation" in errors[0]


def test_source_traceback_in_debug_mode(loop):
    loop.set_debug(True)
    contexts = []
    loop.set_exception_handler(lambda lp, context: contexts.append(context))

    def fail():
        raise ZeroDivisionError

    loop.call_soon(fail)
    run_briefly(loop)
    assert len(contexts) == 1
    frames = contexts[0]["source_traceback"]
    assert frames[-1].filename == __file__
    assert frames[-1].name == "test_source_traceback_in_debug_mode"


DEBUG_PROGRAM = """\
import asyncio

loop = asyncio.new_event_loop()
print(loop.get_debug(), type(loop).__module__.split(".")[0])
loop.close()
"""


def test_debug_from_environment(loop_kind, run_program):
    result = run_program(DEBUG_PROGRAM, env={"PYTHONASYNCIODEBUG": "1"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", loop_kind]
    result = run_program(DEBUG_PROGRAM)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", loop_kind]


def test_debug_from_dev_mode(loop_kind, python_command, run_python):
    cmd = python_command(DEBUG_PROGRAM)
    cmd[1:1] = ["-X", "dev"]
    result = run_python(cmd)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", loop_kind]
