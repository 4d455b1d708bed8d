"""``python -m oxloop bench``: a short benchmark of oxloop against the other installed loops.

The short version of the repository's ``bench/micro.py`` and ``bench/net.py``, self-contained so
that it runs from an installed wheel: a few core rows and an in-process TCP echo, on the stock
asyncio loop, uvloop, rloop, veloxloop and oxloop (whichever are installed), in under a minute.
Every row does the same fixed work on every loop, in a fresh loop, checks that the work was done,
and reports the median ops/s of a few interleaved repetitions and the ratios to uvloop and to
stock.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib
import json
import os
import platform
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata

PROG = "python -m oxloop bench"
WATCHDOG_SECONDS = 20.0  # a cell still running then is stopped and fails
BATCH = 1000  # call_soon is scheduled in rounds of this many (see bench/README.md)
ECHO_CONNECTIONS = 4

Loop = asyncio.AbstractEventLoop


class BenchmarkError(Exception):
    """A benchmark did not do the work it was asked to do."""


# What a row noticed besides its timing (it appends, run_once collects): listed under the
# tables, the row still counts.
NOTES: list[str] = []


def check(what: str, done: int, expected: int) -> None:
    if done != expected:
        raise BenchmarkError(f"{what}: {done} done, {expected} expected")


# --- the rows: each does n operations on a fresh loop and returns the seconds it took ---------


def timed_run_forever(loop: Loop) -> float:
    t0 = time.perf_counter()
    loop.run_forever()
    return time.perf_counter() - t0


def timed_run_until_complete(loop: Loop, coro) -> float:
    t0 = time.perf_counter()
    loop.run_until_complete(coro)
    return time.perf_counter() - t0


def bench_call_soon(loop: Loop, n: int) -> float:
    """call_soon(cb) and running cb(): one callback schedules rounds of BATCH."""
    count = 0
    left = n

    def cb() -> None:
        nonlocal count
        count += 1

    def round_() -> None:
        nonlocal left
        if left == 0:
            loop.stop()
            return
        size = min(BATCH, left)
        left -= size
        call_soon = loop.call_soon
        for _ in range(size):
            call_soon(cb)
        call_soon(round_)

    loop.call_soon(round_)
    seconds = timed_run_forever(loop)
    check("callbacks", count, n)
    return seconds


def bench_chain(loop: Loop, n: int) -> float:
    """One lap of the loop: each callback schedules the next (an idle socket is registered,
    as in any real program, so a loop that polls pays for it)."""
    count = 0
    call_soon = loop.call_soon

    def cb() -> None:
        nonlocal count
        count += 1
        if count < n:
            call_soon(cb)
        else:
            loop.stop()

    a, b = socket.socketpair()
    loop.add_reader(a.fileno(), lambda: None)
    try:
        loop.call_soon(cb)
        seconds = timed_run_forever(loop)
    finally:
        loop.remove_reader(a.fileno())
        a.close()
        b.close()
    check("laps", count, n)
    return seconds


def bench_sleep0(loop: Loop, n: int) -> float:
    """await asyncio.sleep(0): two tasks, n // 2 each, alternating."""
    count = 0

    async def player() -> None:
        nonlocal count
        for _ in range(n // 2):
            await asyncio.sleep(0)
            count += 1

    async def main() -> None:
        await asyncio.gather(loop.create_task(player()), loop.create_task(player()))

    seconds = timed_run_until_complete(loop, main())
    check("sleep(0) calls", count, n // 2 * 2)
    return seconds


def bench_future_ping_pong(loop: Loop, n: int) -> float:
    """One hand-off between two tasks: create_future, set_result, a task wake-up."""
    count = 0

    async def player(inbox: asyncio.Future) -> None:
        nonlocal count
        for _ in range(n // 2):
            reply = await inbox
            inbox = loop.create_future()
            reply.set_result(inbox)
            count += 1

    async def main() -> None:
        inbox_a, inbox_b = loop.create_future(), loop.create_future()
        tasks = [loop.create_task(player(inbox_a)), loop.create_task(player(inbox_b))]
        inbox_a.set_result(inbox_b)
        await asyncio.gather(*tasks)

    seconds = timed_run_until_complete(loop, main())
    check("hand-offs", count, n // 2 * 2)
    return seconds


class _EchoServer(asyncio.Protocol):
    def __init__(self, closed: Callable[[], None]) -> None:
        self.closed = closed

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed()


class _EchoClient(asyncio.Protocol):
    """Sends a message, waits for all of it to come back (and checks it), sends the next."""

    def __init__(self, message: bytes, rounds: int, done: asyncio.Future) -> None:
        self.message = message
        self.left = rounds
        self.done = done
        self.chunks: list[bytes] = []
        self.received = 0

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(self.message)

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        self.received += len(data)
        if self.received < len(self.message):
            return
        echoed = b"".join(self.chunks)
        self.chunks.clear()
        self.received = 0
        if echoed != self.message:
            self.fail(
                BenchmarkError(f"echo of {len(self.message)} bytes came back different")
            )
            return
        self.left -= 1
        if self.left:
            self.transport.write(self.message)
        else:
            self.transport.close()
            if not self.done.done():
                self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.left:
            self.fail(
                exc
                or BenchmarkError(f"connection closed with {self.left} rounds to go")
            )

    def fail(self, exc: BaseException) -> None:
        if not self.done.done():
            self.done.set_exception(exc)
        self.transport.close()


def echo_bench(size: int) -> Callable[[Loop, int], float]:
    """n round trips of a `size`-byte message over TCP loopback, on ECHO_CONNECTIONS
    connections; the server and the clients are both on the loop under test."""

    def bench_echo(loop: Loop, n: int) -> float:
        message = bytes(range(256)) * (size // 256) + bytes(size % 256)
        rounds = n // ECHO_CONNECTIONS
        server_side_closed = loop.create_future()
        closed = 0

        def one_closed() -> None:
            nonlocal closed
            closed += 1
            if closed == ECHO_CONNECTIONS and not server_side_closed.done():
                server_side_closed.set_result(None)

        async def main(port: int) -> None:
            futures = [loop.create_future() for _ in range(ECHO_CONNECTIONS)]
            for done in futures:
                await loop.create_connection(
                    lambda done=done: _EchoClient(message, rounds, done),
                    "127.0.0.1",
                    port,
                )
            await asyncio.gather(*futures)

        server = loop.run_until_complete(
            loop.create_server(lambda: _EchoServer(one_closed), "127.0.0.1", 0)
        )
        port = server.sockets[0].getsockname()[1]
        seconds = timed_run_until_complete(loop, main(port))
        # Not timed: the server side should see every client close. If it does not, the
        # row still counts (the round trips were done) and the report says so.
        try:
            loop.run_until_complete(asyncio.wait_for(server_side_closed, 1.0))
        except asyncio.TimeoutError:
            NOTES.append(
                f"{ECHO_CONNECTIONS - closed} of {ECHO_CONNECTIONS} server-side connections "
                "still open 1 s after their clients closed them (after the timed part)"
            )
            server.close()  # wait_closed() would wait for those connections
            return seconds
        server.close()
        loop.run_until_complete(server.wait_closed())
        return seconds

    return bench_echo


@dataclass(frozen=True)
class Row:
    name: str
    label: str
    n: int  # the stock loop takes about 0.2 s on a 2-core machine
    run: Callable[[Loop, int], float]


ROWS = [
    Row("call_soon", "call_soon", 300_000, bench_call_soon),
    Row("chain", "call_soon chain", 100_000, bench_chain),
    Row("sleep0", "sleep(0) ping-pong", 100_000, bench_sleep0),
    Row("future_pp", "future ping-pong", 70_000, bench_future_ping_pong),
    Row("echo_1k", "echo 1 KiB (in-process)", 12_000, echo_bench(1024)),
    Row("echo_64k", "echo 64 KiB (in-process)", 5_000, echo_bench(64 * 1024)),
]


# --- the loops ------------------------------------------------------------------------


def _stock_factory() -> Loop:
    return asyncio.DefaultEventLoopPolicy().new_event_loop()


LOOPS = ("stock", "uvloop", "rloop", "veloxloop", "oxloop")


def load_loops(
    names: list[str],
) -> tuple[dict[str, Callable[[], Loop]], dict[str, str]]:
    """The factories of the loops that can be made, and why the others cannot."""
    found: dict[str, Callable[[], Loop]] = {}
    versions: dict[str, str] = {}
    for name in names:
        if name == "stock":
            found[name] = _stock_factory
            versions[name] = f"asyncio {platform.python_version()}"
            continue
        try:
            module = importlib.import_module(name)
            module.new_event_loop().close()
        except Exception as exc:  # noqa: BLE001 - any failure means "not installed"
            versions[name] = f"not installed or broken ({type(exc).__name__}: {exc})"
            continue
        found[name] = module.new_event_loop
        version = getattr(module, "__version__", None)
        if version is None:
            with contextlib.suppress(metadata.PackageNotFoundError):
                version = metadata.version(name)
        versions[name] = f"{name} {version or '?'}"
    return found, versions


# --- running ------------------------------------------------------------------------------


@dataclass
class Cell:
    n: int
    seconds: list[float] = field(default_factory=list)
    error: str | None = None
    notes: set[str] = field(default_factory=set)

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.seconds)

    @property
    def median(self) -> float:
        return statistics.median(self.n / s for s in self.seconds)


def run_once(factory: Callable[[], Loop], row: Row, n: int, cell: Cell) -> float:
    NOTES.clear()
    gc.collect()
    loop = factory()
    hung = threading.Event()

    def stop_hung_loop() -> None:
        hung.set()
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(loop.stop)

    watchdog = threading.Timer(WATCHDOG_SECONDS, stop_hung_loop)
    watchdog.start()
    try:
        seconds = row.run(loop, n)
    except Exception:
        if not hung.is_set():
            raise
    finally:
        watchdog.cancel()
        loop.close()
    if hung.is_set():
        raise BenchmarkError(f"not done after {WATCHDOG_SECONDS:g} s: stopped")
    cell.notes.update(NOTES)
    return seconds


class Progress:
    """One line on stderr, rewritten in place (a line per repetition if not a terminal)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.tty = sys.stderr.isatty()

    def step(self, text: str) -> None:
        self.done += 1
        if self.tty:
            print(
                f"\r\033[K[{self.done}/{self.total}] {text}...",
                end="",
                file=sys.stderr,
                flush=True,
            )

    def note(self, text: str) -> None:
        if not self.tty:
            print(text, file=sys.stderr, flush=True)

    def clear(self) -> None:
        if self.tty:
            print("\r\033[K", end="", file=sys.stderr, flush=True)


def run_all(
    rows: list[Row], factories: dict[str, Callable[[], Loop]], repeat: int, scale: float
) -> dict[str, dict[str, Cell]]:
    names = list(factories)
    results = {
        r.name: {
            k: Cell(max(ECHO_CONNECTIONS, int(r.n * scale) // 4 * 4)) for k in names
        }
        for r in rows
    }
    progress = Progress(len(rows) * len(names) * repeat)
    for rep in range(repeat):
        order = names[rep % len(names) :] + names[: rep % len(names)]
        for row in rows:
            for name in order:
                cell = results[row.name][name]
                progress.step(f"{row.label} on {name}")
                if cell.error:
                    continue
                try:
                    if rep == 0:  # warm-up
                        warmup_n = max(ECHO_CONNECTIONS, cell.n // 20 // 4 * 4)
                        run_once(factories[name], row, warmup_n, cell)
                    cell.seconds.append(run_once(factories[name], row, cell.n, cell))
                except Exception as exc:  # noqa: BLE001 - reported, the run goes on
                    cell.error = f"{type(exc).__name__}: {exc}"
        progress.note(f"repetition {rep + 1}/{repeat} done")
    progress.clear()
    return results


# --- reporting -------------------------------------------------------------------------------


def fmt_rate(x: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= div:
            return f"{x / div:.3g}{unit}"
    return f"{x:.3g}"


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    table = [headers, *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(headers))]

    def fmt(row: list[str]) -> str:
        rest = (c.rjust(w) for c, w in zip(row[1:], widths[1:]))
        return "  ".join([row[0].ljust(widths[0]), *rest])

    print(fmt(headers))
    print("-" * len(fmt(headers)))
    for row in rows:
        print(fmt(row))


def report(
    rows: list[Row], names: list[str], results: dict[str, dict[str, Cell]]
) -> None:
    print("\nops/s (median)")
    print_table(
        ["", *names],
        [
            [
                r.label,
                *(
                    fmt_rate(c.median) if c.ok else "FAILED"
                    for c in (results[r.name][k] for k in names)
                ),
            ]
            for r in rows
        ],
    )
    for base in ("uvloop", "stock"):
        if base not in names:
            continue
        print(f"\nratio to {base} (> 1 is faster than {base})")
        table = []
        for r in rows:
            ref = results[r.name][base]
            line = [r.label]
            for k in names:
                c = results[r.name][k]
                line.append(f"{c.median / ref.median:.2f}" if c.ok and ref.ok else "-")
            table.append(line)
        print_table(["", *names], table)
    failures = [
        f"  {r.label} on {k}: {results[r.name][k].error}"
        for r in rows
        for k in names
        if results[r.name][k].error
    ]
    if failures:
        print("\nfailed:", *failures, sep="\n")
    notes = [
        f"  {r.label} on {k}: {note}"
        for r in rows
        for k in names
        for note in sorted(results[r.name][k].notes)
    ]
    if notes:
        print("\nnoticed (the rows still count):", *notes, sep="\n")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="A short benchmark (under a minute) of oxloop against the stock asyncio "
        "loop, uvloop, rloop and veloxloop, whichever are installed. The full benchmarks are "
        "bench/micro.py and bench/net.py in oxloop's repository.",
    )
    parser.add_argument(
        "--loops", help=f"comma-separated, in this order (default {','.join(LOOPS)})"
    )
    parser.add_argument("--repeat", type=int, default=5, help="repetitions (default 5)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every N")
    parser.add_argument("--json", metavar="FILE", help="also write the results to FILE")
    args = parser.parse_args(argv)
    args.loops = [
        s.strip() for s in (args.loops or ",".join(LOOPS)).split(",") if s.strip()
    ]
    unknown = [name for name in args.loops if name not in LOOPS]
    if unknown:
        parser.error(f"unknown loops: {', '.join(unknown)} (known: {', '.join(LOOPS)})")
    if args.repeat < 1 or args.scale <= 0:
        parser.error("--repeat must be >= 1 and --scale > 0")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    factories, versions = load_loops(args.loops)
    print(
        f"{PROG}: the short version of oxloop's benchmarks (the full ones are bench/micro.py "
        "and bench/net.py in the repository)"
    )
    print(
        f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs; "
        f"median of {args.repeat} repetition{'s' if args.repeat > 1 else ''}"
    )
    for name in args.loops:
        if name in factories:
            print(f"  {name}: {versions[name]}")
        else:
            print(f"  {name}: skipped: {versions[name]}")
    print(
        f"  echo: client and server in the same process, both on the loop under test, "
        f"{ECHO_CONNECTIONS} connections over 127.0.0.1"
    )
    if not factories:
        return 2

    t0 = time.perf_counter()
    results = run_all(ROWS, factories, args.repeat, args.scale)
    report(ROWS, list(factories), results)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")
    if args.json:
        data = {
            "python": sys.version,
            "loops": versions,
            "repeat": args.repeat,
            "rows": {
                r.name: {
                    "label": r.label,
                    "results": {
                        k: {
                            "n": c.n,
                            "seconds": c.seconds,
                            "error": c.error,
                            "median_ops_per_s": c.median if c.ok else None,
                        }
                        for k, c in results[r.name].items()
                    },
                }
                for r in ROWS
            },
        }
        with open(args.json, "w") as f:
            json.dump(data, f, indent=2)
        print(f"results written to {args.json}")
    failed = any(c.error for row in results.values() for c in row.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
