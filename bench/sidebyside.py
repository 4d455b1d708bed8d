"""Run rows of benchmarks on several loops side by side (used by transports.py and tls.py).

Each row is ``(label, bench)`` where ``bench(loop)`` returns a coroutine giving a number (higher
is better). Every row runs on a fresh loop of each loop kind, repetitions interleaved with the
order of the loops rotated; the medians are printed with ratios to the chosen base loops.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import statistics
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

FACTORIES = {
    "stock": ("asyncio", "new_event_loop"),
    "uvloop": ("uvloop", "new_event_loop"),
    "rloop": ("rloop", "new_event_loop"),
    "oxloop": ("oxloop", "new_event_loop"),
}

Row = tuple[str, Callable[[asyncio.AbstractEventLoop], Coroutine[Any, Any, float]]]


def parse_args(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--loops", default=",".join(FACTORIES))
    parser.add_argument("--repeat", type=int, default=3)
    return parser.parse_args()


def load_factories(names: str) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """The loop factories that import; the others are reported as missing."""
    factories = {}
    for name in names.split(","):
        module, attr = FACTORIES[name]
        try:
            factories[name] = getattr(importlib.import_module(module), attr)
        except ImportError as exc:
            print(f"{name}: missing ({exc})")
    return factories


def run(factories, rows: Sequence[Row], repeat: int) -> dict[tuple[str, str], float]:
    """Median of each (row, loop); a row a loop cannot run is reported and counts as NaN."""
    results: dict[tuple[str, str], list[float]] = {}
    for rep in range(repeat):
        names = list(factories)
        names = names[rep % len(names):] + names[: rep % len(names)]  # rotate the order
        for label, bench in rows:
            for name in names:
                loop = factories[name]()
                asyncio.set_event_loop(loop)
                try:
                    value = loop.run_until_complete(bench(loop))
                except Exception as exc:  # noqa: BLE001 (reported; the others go on)
                    print(f"{label} on {name}: {type(exc).__name__}: {exc}")
                    value = float("nan")
                finally:
                    asyncio.set_event_loop(None)
                    loop.close()
                results.setdefault((label, name), []).append(value)
    return {key: statistics.median(values) for key, values in results.items()}


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
