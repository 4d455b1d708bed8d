"""Subprocesses: spawned with subprocess.Popen, their exit learned without a thread per child."""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import threading

import pytest


def open_fds():
    return set(os.listdir("/proc/self/fd"))


def test_communicate_and_returncode(loop):
    async def main():
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "import sys; sys.stdout.write(sys.stdin.read().upper()); sys.exit(3)",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate(b"hello")
        return out, err, proc.returncode

    assert loop.run_until_complete(main()) == (b"HELLO", None, 3)


def test_a_missing_program_raises_and_leaves_nothing_open(loop):
    async def main():
        with pytest.raises(FileNotFoundError):
            await asyncio.create_subprocess_exec(
                "/nonexistent/program", stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )

    loop.run_until_complete(asyncio.sleep(0))
    gc.collect()
    before = open_fds()
    loop.run_until_complete(main())
    gc.collect()
    assert open_fds() == before


def test_a_closed_loop_refuses(loop_factory):
    loop = loop_factory()
    coro = loop.subprocess_exec(asyncio.SubprocessProtocol, sys.executable, "-c", "pass")
    loop.close()
    with pytest.raises(RuntimeError):
        coro.send(None)
    coro.close()


def test_an_exit_before_the_pipes_close_is_reported_once(loop):
    # The child exits at once while a grandchild keeps stdout open for a moment.
    exits = []

    class Proto(asyncio.SubprocessProtocol):
        def __init__(self):
            self.done = loop.create_future()

        def process_exited(self):
            exits.append(transport.get_returncode())

        def connection_lost(self, exc):
            self.done.set_result(None)

    script = "import subprocess, sys; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(0.3)']); sys.exit(7)"
    transport, proto = loop.run_until_complete(
        loop.subprocess_exec(Proto, sys.executable, "-c", script, stdin=None, stderr=None)
    )
    loop.run_until_complete(asyncio.wait_for(proto.done, 10))
    loop.run_until_complete(asyncio.sleep(0.05))
    assert exits == [7]
    transport.close()


def test_no_thread_per_child(loop_kind, loop):
    async def main():
        procs = [await asyncio.create_subprocess_exec("sleep", "0.2") for _ in range(5)]
        during = threading.active_count()
        await asyncio.gather(*(p.wait() for p in procs))
        return during

    before = threading.active_count()
    during = loop.run_until_complete(main())
    if loop_kind == "oxloop":
        assert during == before  # the exits come from pidfds in the poller
