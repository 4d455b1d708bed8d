"""Run rows of benchmarks on several loops side by side (used by transports.py and tls.py).

Each row is ``(label, bench)`` where ``bench(loop)`` returns a coroutine giving a number (higher
is better). Every row runs on a fresh loop of each loop kind, repetitions interleaved with the
order of the loops rotated; the medians are printed with ratios to the chosen base loops. A cell
that raises, or is still running after micro.WATCHDOG_SECONDS (then stopped from a watchdog thread), is
reported, counts as NaN and is not run again; the run goes on with the others.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import math
import statistics
import traceback
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

import micro

FACTORIES = {
    "stock": ("asyncio", "new_event_loop"),
    "uvloop": ("uvloop", "new_event_loop"),
    "rloop": ("rloop", "new_event_loop"),
    "veloxloop": ("veloxloop", "new_event_loop"),
    "oxloop": ("oxloop", "new_event_loop"),
}

Bench = Callable[[asyncio.AbstractEventLoop], Coroutine[Any, Any, float]]
Row = tuple[str, Bench]


def parse_args(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--loops", default=",".join(FACTORIES))
    parser.add_argument("--repeat", type=int, default=3)
    return parser.parse_args()


def load_factories(names: str) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """The loop factories that import and make a loop; the others are reported as missing."""
    factories = {}
    for name in names.split(","):
        module, attr = FACTORIES[name]
        try:
            factory = getattr(importlib.import_module(module), attr)
            factory().close()  # fails here, not mid-run, if the loop cannot be made
        except Exception as exc:  # noqa: BLE001 (any failure means "missing")
            print(f"{name}: missing ({type(exc).__name__}: {exc})")
            continue
        factories[name] = factory
    return factories


def run_cell(factory: Callable[[], asyncio.AbstractEventLoop], bench: Bench) -> float:
    """One row on a fresh loop; raises TimeoutError if the watchdog had to stop it."""
    loop = factory()
    asyncio.set_event_loop(loop)
    try:
        return micro.run_watched(loop, lambda: loop.run_until_complete(bench(loop)), TimeoutError)
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def describe(exc: BaseException) -> str:
    """The exception's type and text; for one without text (the NotImplementedError of a method
    the loop does not have), the function that raised it."""
    text = str(exc)
    frames = traceback.extract_tb(exc.__traceback__)
    if not text and frames:
        where = "/".join(Path(frames[-1].filename).parts[-2:])
        text = f"(raised by {frames[-1].name}, {where}:{frames[-1].lineno})"
    return f"{type(exc).__name__}: {text}"


def run(factories, rows: Sequence[Row], repeat: int) -> dict[tuple[str, str], float]:
    """Median of each (row, loop); a row a loop cannot run is reported and counts as NaN."""
    results: dict[tuple[str, str], list[float]] = {}
    for rep in range(repeat):
        names = list(factories)
        names = names[rep % len(names):] + names[: rep % len(names)]  # rotate the order
        for label, bench in rows:
            for name in names:
                values = results.setdefault((label, name), [])
                if values and math.isnan(values[-1]):
                    continue  # gave no number once: not run again
                try:
                    value = run_cell(factories[name], bench)
                except Exception as exc:  # noqa: BLE001 (reported; the others go on)
                    print(f"{label} on {name}: {describe(exc)}", flush=True)
                    value = math.nan
                values.append(value)
    return {
        key: math.nan if math.isnan(values[-1]) else statistics.median(values)
        for key, values in results.items()
    }


def report(factories, rows: Sequence[Row], medians, bases: Sequence[str] = ("uvloop",)) -> None:
    width = max(len(label) for label, _ in rows)
    header = "  ".join(f"{name:>10}" for name in factories)
    print(f"{'median':{width}}  {header}")
    for label, _ in rows:
        print(f"{label:{width}}  " + "  ".join(f"{medians[(label, n)]:>10.0f}" for n in factories))
    for base in bases:
        if base not in factories:
            continue
        print(f"\n{'ratio to ' + base:{width}}  {header}")
        for label, _ in rows:
            b = medians[(label, base)]
            print(
                f"{label:{width}}  "
                + "  ".join(f"{medians[(label, n)] / b:>10.2f}" for n in factories)
            )
