"""Micro-benchmarks of the event loop core, several loops side by side.

Run ``python3 bench/micro.py --help``; ``bench/README.md`` explains each row.

Every benchmark does a fixed number of operations N (the same for every loop),
in a fresh loop from each loop's factory, and counts the operations it did: a
loop that skips work fails the cell instead of looking fast. Repetitions are
interleaved (each repetition runs every benchmark on every loop, in an order
that rotates per repetition) and each cell reports the median ops/s.
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
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

# A cell still running after this long (a lost callback or wake-up, a timer
# that never fires) is stopped from a watchdog thread and fails.
WATCHDOG_SECONDS = 60.0


class BenchmarkError(Exception):
    """A benchmark did not do the work it was asked to do."""


def check(name: str, done: int, expected: int) -> None:
    if done != expected:
        raise BenchmarkError(f"{name}: {done} operations done, {expected} expected")


# --- the benchmarks -----------------------------------------------------------
#
# Each takes a fresh loop and N (and, if batched, the batch size), does N
# operations, checks that it did, and returns the seconds the loop ran.
# Building the closures and the first coroutine is not timed.

Loop = asyncio.AbstractEventLoop

# The batched rows schedule their N callbacks in rounds of BATCH from one
# callback, not all N at once: a ready queue of N (10^5) live handles turns
# the row into a benchmark of the cyclic GC. `--batch 0` restores all at once.
BATCH = 1000


def run_forever_timed(loop: Loop) -> float:
    t0 = time.perf_counter()
    loop.run_forever()
    return time.perf_counter() - t0


def run_until_complete_timed(loop: Loop, coro: Coroutine[Any, Any, None]) -> float:
    t0 = time.perf_counter()
    loop.run_until_complete(coro)
    return time.perf_counter() - t0


def in_rounds(loop: Loop, n: int, batch: int, schedule: Callable[[int], None]) -> None:
    """Make the loop call schedule(size) for rounds of `batch` (0: all n at once)
    until n is reached, then stop. Each round is one callback that re-arms
    itself with call_soon, so it runs after the callbacks of the round before."""
    batch = batch or n
    left = n

    def round_() -> None:
        nonlocal left
        if left == 0:
            loop.stop()
            return
        size = min(batch, left)
        left -= size
        schedule(size)
        loop.call_soon(round_)

    loop.call_soon(round_)


def bench_call_soon(loop: Loop, n: int, batch: int) -> float:
    count = 0

    def cb() -> None:
        nonlocal count
        count += 1

    def schedule(size: int) -> None:
        call_soon = loop.call_soon
        for _ in range(size):
            call_soon(cb)

    in_rounds(loop, n, batch, schedule)
    elapsed = run_forever_timed(loop)
    check("callbacks run", count, n)
    return elapsed


def bench_call_soon_args(loop: Loop, n: int, batch: int) -> float:
    count = 0

    def cb(a: int, b: str) -> None:
        nonlocal count
        count += 1

    def schedule(size: int) -> None:
        call_soon = loop.call_soon
        for _ in range(size):
            call_soon(cb, 1, "x")

    in_rounds(loop, n, batch, schedule)
    elapsed = run_forever_timed(loop)
    check("callbacks run", count, n)
    return elapsed


def bench_call_soon_chain(loop: Loop, n: int) -> float:
    count = 0
    call_soon = loop.call_soon

    def cb() -> None:
        nonlocal count
        count += 1
        if count < n:
            call_soon(cb)
        else:
            loop.stop()

    loop.call_soon(cb)
    elapsed = run_forever_timed(loop)
    check("laps run", count, n)
    return elapsed


def bench_call_soon_chain_with_fd(loop: Loop, n: int) -> float:
    """The chain with an idle reader registered, as any real program has: every lap polls."""

    a, b = socket.socketpair()
    loop.add_reader(a.fileno(), lambda: None)
    try:
        return bench_call_soon_chain(loop, n)
    finally:
        loop.remove_reader(a.fileno())
        a.close()
        b.close()


def bench_threadsafe_same_thread(loop: Loop, n: int, batch: int) -> float:
    count = 0

    def cb() -> None:
        nonlocal count
        count += 1

    def schedule(size: int) -> None:
        call_soon_threadsafe = loop.call_soon_threadsafe
        for _ in range(size):
            call_soon_threadsafe(cb)

    in_rounds(loop, n, batch, schedule)
    elapsed = run_forever_timed(loop)
    check("callbacks run", count, n)
    return elapsed


def bench_threadsafe_other_thread(loop: Loop, n: int) -> float:
    count = 0

    def cb() -> None:
        nonlocal count
        count += 1

    def submit() -> None:
        call_soon_threadsafe = loop.call_soon_threadsafe
        for _ in range(n):
            call_soon_threadsafe(cb)
        call_soon_threadsafe(loop.stop)  # runs after the n callbacks: FIFO

    thread = threading.Thread(target=submit, name="bench-submitter")
    t0 = time.perf_counter()
    thread.start()
    loop.run_forever()
    thread.join()
    elapsed = time.perf_counter() - t0
    check("callbacks run", count, n)
    return elapsed


def bench_timer_cancel(loop: Loop, n: int, batch: int) -> float:
    fired = 0
    cancelled = 0

    def cb() -> None:
        nonlocal fired
        fired += 1

    def schedule(size: int) -> None:
        nonlocal cancelled
        call_later = loop.call_later
        for _ in range(size):
            call_later(10.0, cb).cancel()
            cancelled += 1

    in_rounds(loop, n, batch, schedule)
    elapsed = run_forever_timed(loop)
    check("timers scheduled and cancelled", cancelled, n)
    check("cancelled timers that fired", fired, 0)
    return elapsed


def bench_timers_firing(loop: Loop, n: int) -> float:
    # All n timers are pending at once, their delays spread evenly over 1 ms.
    fired = 0

    def cb() -> None:
        nonlocal fired
        fired += 1
        if fired == n:
            loop.stop()

    def schedule() -> None:
        call_later = loop.call_later
        step = 0.001 / n
        for i in range(n):
            call_later(i * step, cb)

    loop.call_soon(schedule)
    elapsed = run_forever_timed(loop)
    check("timers fired", fired, n)
    return elapsed


def bench_sleep0_ping_pong(loop: Loop, n: int) -> float:
    # Two tasks, n // 2 sleeps each: n sleep(0) calls in all.
    count = 0
    each = n // 2

    async def player() -> None:
        nonlocal count
        sleep = asyncio.sleep
        for _ in range(each):
            await sleep(0)
            count += 1

    async def main() -> None:
        await asyncio.gather(loop.create_task(player()), loop.create_task(player()))

    elapsed = run_until_complete_timed(loop, main())
    check("sleep(0) calls", count, 2 * each)
    return elapsed


GATHER_BATCH = 100


def bench_create_task_gather(loop: Loop, n: int) -> float:
    count = 0

    async def trivial() -> None:
        nonlocal count
        count += 1

    async def main() -> None:
        create_task = loop.create_task
        gather = asyncio.gather
        for start in range(0, n, GATHER_BATCH):
            size = min(GATHER_BATCH, n - start)
            await gather(*[create_task(trivial()) for _ in range(size)])

    elapsed = run_until_complete_timed(loop, main())
    check("tasks run", count, n)
    return elapsed


def bench_future_ping_pong(loop: Loop, n: int) -> float:
    # Each player waits on its inbox future; the other player resolves it with
    # a fresh future to reply on. One hand-off = create_future + set_result + a
    # task wake-up. Two players, n // 2 hand-offs each: n hand-offs in all.
    count = 0
    each = n // 2

    async def player(inbox: asyncio.Future) -> None:
        nonlocal count
        create_future = loop.create_future
        for _ in range(each):
            reply = await inbox
            inbox = create_future()
            reply.set_result(inbox)
            count += 1

    async def main() -> None:
        inbox_a = loop.create_future()
        inbox_b = loop.create_future()
        tasks = [loop.create_task(player(inbox_a)), loop.create_task(player(inbox_b))]
        inbox_a.set_result(inbox_b)  # serve: A replies on B's inbox
        await asyncio.gather(*tasks)

    elapsed = run_until_complete_timed(loop, main())
    check("future hand-offs", count, 2 * each)
    return elapsed


@dataclass(frozen=True)
class Benchmark:
    name: str
    label: str
    n: int  # sized so that the stock loop takes ~0.3 s on a 2-core dev machine
    run: Callable[..., float]  # (loop, n) or, if batched, (loop, n, batch)
    batched: bool = False


BENCHMARKS = [
    Benchmark(
        "call_soon", "call_soon (no args)", 450_000, bench_call_soon, batched=True
    ),
    Benchmark(
        "call_soon_args",
        "call_soon (2 args)",
        400_000,
        bench_call_soon_args,
        batched=True,
    ),
    Benchmark("call_soon_chain", "call_soon chain", 165_000, bench_call_soon_chain),
    Benchmark(
        "call_soon_chain_fd",
        "call_soon chain, idle fd",
        165_000,
        bench_call_soon_chain_with_fd,
    ),
    Benchmark(
        "threadsafe",
        "call_soon_threadsafe (same thread)",
        140_000,
        bench_threadsafe_same_thread,
        batched=True,
    ),
    Benchmark(
        "threadsafe_thread",
        "call_soon_threadsafe (other thread)",
        65_000,
        bench_threadsafe_other_thread,
    ),
    Benchmark(
        "timer_cancel",
        "timer schedule+cancel",
        200_000,
        bench_timer_cancel,
        batched=True,
    ),
    Benchmark("timers_firing", "timers firing", 85_000, bench_timers_firing),
    Benchmark("sleep0", "sleep(0) ping-pong", 170_000, bench_sleep0_ping_pong),
    Benchmark("gather", "create_task + gather", 90_000, bench_create_task_gather),
    Benchmark("future_pp", "future ping-pong", 105_000, bench_future_ping_pong),
]


# --- the loops ------------------------------------------------------------------


def stock_factory() -> asyncio.AbstractEventLoop:
    # The default policy's loop, whatever policy is installed process-wide.
    return asyncio.DefaultEventLoopPolicy().new_event_loop()


LOOP_MODULES = {
    "stock": None,
    "uvloop": "uvloop",
    "rloop": "rloop",
    "veloxloop": "veloxloop",
    "oxloop": "oxloop",
}


@dataclass
class LoopKind:
    name: str
    version: str
    factory: Callable[[], asyncio.AbstractEventLoop]


def load_loops(names: list[str]) -> tuple[list[LoopKind], dict[str, str]]:
    """Import the loops asked for; return those found and why the others are missing."""
    found: list[LoopKind] = []
    missing: dict[str, str] = {}
    for name in names:
        module_name = LOOP_MODULES[name]
        if module_name is None:
            found.append(
                LoopKind(name, f"asyncio {platform.python_version()}", stock_factory)
            )
            continue
        try:
            module = importlib.import_module(module_name)
            factory = module.new_event_loop
            factory().close()  # fails here, not mid-run, if the loop cannot be made
        except Exception as exc:  # noqa: BLE001 - any failure means "missing"
            missing[name] = f"{type(exc).__name__}: {exc}"
            continue
        version = getattr(module, "__version__", None) or _dist_version(module_name)
        found.append(LoopKind(name, f"{name} {version}", factory))
    return found, missing


def _dist_version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


# --- running --------------------------------------------------------------------


@dataclass
class Cell:
    """One benchmark on one loop: the seconds of each repetition, or an error."""

    n: int
    seconds: list[float] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.seconds)

    @property
    def rates(self) -> list[float]:
        return [self.n / s for s in self.seconds]

    @property
    def median(self) -> float:
        return statistics.median(self.rates)

    @property
    def spread(self) -> float:
        """Half the min..max range of the rates, relative to the median."""
        rates = self.rates
        return (max(rates) - min(rates)) / 2 / self.median


Results = dict[str, dict[str, Cell]]  # benchmark name -> loop name -> cell


def sized(bench: Benchmark, scale: float) -> int:
    return max(2, int(bench.n * scale) // 2 * 2)  # even: the ping-pongs halve N


def run_watched(
    loop: asyncio.AbstractEventLoop,
    run: Callable[[], Any],
    error: type[Exception] = BenchmarkError,
) -> Any:
    """run(), with a watchdog thread that stops the loop if it is still running after
    WATCHDOG_SECONDS; then raises error."""
    hung = threading.Event()

    def stop_hung_loop() -> None:
        hung.set()
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(loop.stop)

    # Waits without the GIL: no cost to the loop under test.
    watchdog = threading.Timer(WATCHDOG_SECONDS, stop_hung_loop)
    watchdog.start()
    try:
        value = run()
    except Exception:
        if not hung.is_set():
            raise
    finally:
        watchdog.cancel()
        watchdog.join()
    if hung.is_set():
        raise error(f"not done after {WATCHDOG_SECONDS:g} s: stopped")
    return value


def run_cell(kind: LoopKind, bench: Benchmark, n: int, batch: int = BATCH) -> float:
    """Run one benchmark once in a fresh loop; return its seconds."""
    gc.collect()
    loop = kind.factory()
    try:
        if bench.batched:
            return run_watched(loop, lambda: bench.run(loop, n, batch))
        return run_watched(loop, lambda: bench.run(loop, n))
    finally:
        loop.close()


def run_all(
    benches: list[Benchmark], kinds: list[LoopKind], args: argparse.Namespace
) -> Results:
    results = {
        b.name: {k.name: Cell(sized(b, args.scale)) for k in kinds} for b in benches
    }

    def attempt(kind: LoopKind, bench: Benchmark, n: int) -> float | None:
        cell = results[bench.name][kind.name]
        if cell.error is not None:
            return None  # failed once: not run again
        try:
            return run_cell(kind, bench, n, args.batch)
        except Exception as exc:  # noqa: BLE001 - shown in the report, run goes on
            cell.error = f"{type(exc).__name__}: {exc}"
            return None

    if args.warmup:
        for bench in benches:
            for kind in kinds:
                attempt(kind, bench, max(2, sized(bench, args.scale) // 20 // 2 * 2))

    for rep in range(args.repeat):
        shift = rep % len(kinds)
        order = kinds[shift:] + kinds[:shift]
        for bench in benches:
            for kind in order:
                cell = results[bench.name][kind.name]
                seconds = attempt(kind, bench, cell.n)
                if seconds is not None:
                    cell.seconds.append(seconds)
        print(f"  repetition {rep + 1}/{args.repeat} done", file=sys.stderr, flush=True)
    return results


# --- reporting ------------------------------------------------------------------


def fmt_rate(x: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= div:
            return f"{x / div:.3g}{unit}"
    return f"{x:.3g}"


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    """Print a plain-text table: first column left-aligned, the others right."""
    table = [headers, *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(headers))]

    def fmt(row: list[str]) -> str:
        first = row[0].ljust(widths[0])
        rest = (c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True))
        return "  ".join([first, *rest])

    print(fmt(headers))
    print("-" * len(fmt(headers)))
    for row in rows:
        print(fmt(row))


def report(
    benches: list[Benchmark], names: list[str], results: Results, scale: float
) -> None:
    print("\nops/s: median of the repetitions, ± half their min..max range")
    rows = []
    for b in benches:
        row = [b.label, f"{sized(b, scale):,}"]
        for k in names:
            cell = results[b.name][k]
            row.append(
                f"{fmt_rate(cell.median)} ±{cell.spread:.0%}" if cell.ok else "FAILED"
            )
        rows.append(row)
    print_table(["benchmark", "N", *names], rows)

    for base in ("uvloop", "stock"):
        if base not in names:
            continue
        print(f"\nratio to {base} (median ops/s; > 1 is faster than {base})")
        rows = []
        for b in benches:
            ref = results[b.name][base]
            row = [b.label]
            for k in names:
                cell = results[b.name][k]
                ok = cell.ok and ref.ok
                row.append(f"{cell.median / ref.median:.2f}" if ok else "-")
            rows.append(row)
        print_table(["benchmark", *names], rows)

    failures = [
        f"  {b.label} on {k}: {results[b.name][k].error}"
        for b in benches
        for k in names
        if results[b.name][k].error
    ]
    if failures:
        print("\nfailed cells:", *failures, sep="\n")


def to_json(
    benches: list[Benchmark],
    kinds: list[LoopKind],
    missing: dict[str, str],
    results: Results,
    args: argparse.Namespace,
) -> dict:
    def cell_json(cell: Cell) -> dict:
        out = {"error": cell.error, "seconds": cell.seconds, "ops_per_s": cell.rates}
        if cell.ok:
            out["median_ops_per_s"] = cell.median
            out["best_ops_per_s"] = max(cell.rates)
        return out

    return {
        "python": sys.version,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "repeat": args.repeat,
        "scale": args.scale,
        "batch": args.batch,
        "loops": {k.name: k.version for k in kinds},
        "missing": missing,
        "benchmarks": {
            b.name: {
                "label": b.label,
                "n": sized(b, args.scale),
                "results": {k.name: cell_json(results[b.name][k.name]) for k in kinds},
            }
            for b in benches
        },
    }


# --- command line ---------------------------------------------------------------


def pick_names(
    parser: argparse.ArgumentParser, value: str | None, known: list[str], what: str
) -> list[str]:
    """A comma-separated option's names, in the order given (all of `known` when absent)."""
    if value is None:
        return known
    chosen = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [v for v in chosen if v not in known]
    if unknown:
        parser.error(
            f"unknown {what}: {', '.join(unknown)} (known: {', '.join(known)})"
        )
    return chosen


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--repeat", type=int, help="repetitions (default 5; 3 with --quick)")
    add("--quick", action="store_true", help="short run: N / 2, 3 repetitions")
    add("--scale", type=float, help="multiply every N (default 1; 0.5 with --quick)")
    add("--only", help="comma-separated benchmark names (see --list)")
    add("--loops", help=f"comma-separated loops (default {','.join(LOOP_MODULES)})")
    add(
        "--batch",
        type=int,
        default=BATCH,
        help=f"round size of the batched rows (default {BATCH}; 0: all N at once)",
    )
    add("--json", metavar="FILE", help="also write the results as JSON to FILE")
    add("--no-warmup", dest="warmup", action="store_false", help="skip the warm-up")
    add("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args(argv)

    if args.repeat is None:
        args.repeat = 3 if args.quick else 5
    if args.scale is None:
        args.scale = 0.5 if args.quick else 1.0
    if args.repeat < 1 or args.scale <= 0 or args.batch < 0:
        parser.error("--repeat must be >= 1, --scale > 0 and --batch >= 0")

    args.only = pick_names(parser, args.only, [b.name for b in BENCHMARKS], "benchmark")
    args.loops = pick_names(parser, args.loops, list(LOOP_MODULES), "loop")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        for b in BENCHMARKS:
            print(f"{b.name:18} N={b.n:<9,} {b.label}")
        return 0

    benches = [b for b in BENCHMARKS if b.name in args.only]
    kinds, missing = load_loops(args.loops)
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs"
    print(f"Python {platform.python_version()} on {machine}")
    batch = args.batch or "all N at once"
    print(f"{args.repeat} repetitions, N x {args.scale:g}, batch {batch}")
    print("loops: " + ", ".join(k.version for k in kinds))
    for name, why in missing.items():
        print(f"missing (skipped): {name}: {why}")
    if not kinds:
        return 2

    t0 = time.perf_counter()
    results = run_all(benches, kinds, args)
    report(benches, [k.name for k in kinds], results, args.scale)
    print(f"\ntotal {time.perf_counter() - t0:.1f} s")

    if args.json:
        with open(args.json, "w") as f:
            json.dump(to_json(benches, kinds, missing, results, args), f, indent=2)
            f.write("\n")
        print(f"results written to {args.json}")

    failed = any(cell.error for row in results.values() for cell in row.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
