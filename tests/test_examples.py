"""The examples print the same, line for line, on the stock loop and on oxloop."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# What the overview's programs print.
EXPECTED = {
    "compute": "Compute 1 + 2 ...\n1 + 2 = 3\n",
    "future": "A result set by the slow_operation coroutine!\n",
    "task": "A return value from the slow_operation coroutine!\n",
    "factorial": (
        "Task A: Compute factorial(2)...\n"
        "Task B: Compute factorial(2)...\n"
        "Task C: Compute factorial(2)...\n"
        "Task A: factorial(2) = 2\n"
        "Task B: Compute factorial(3)...\n"
        "Task C: Compute factorial(3)...\n"
        "Task B: factorial(3) = 6\n"
        "Task C: Compute factorial(4)...\n"
        "Task C: factorial(4) = 24\n"
    ),
}


def run_example(run_python, name, kind):
    script = f"examples/{name}.py"
    prefix = [sys.executable] if kind == "asyncio" else [sys.executable, "-m", "oxloop"]
    result = run_python([*prefix, script])
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout


@pytest.mark.parametrize("name", list(EXPECTED))
def test_example(name, loop_kind, run_python):
    stock = run_example(run_python, name, "asyncio")
    assert stock == EXPECTED[name]
    if loop_kind == "oxloop":
        assert run_example(run_python, name, "oxloop") == stock


@pytest.mark.parametrize("name", list(EXPECTED))
def test_example_is_the_packaged_one(name):
    # `python -m oxloop` runs the copies in the package; examples/ must show the same code.
    shipped = ROOT / "python" / "oxloop" / "_examples" / f"{name}.py"
    assert (ROOT / "examples" / f"{name}.py").read_text() == shipped.read_text()


def test_demo_prints_every_example(oxloop_module, run_python):
    from oxloop.__main__ import DEMO, demo_header

    result = run_python([sys.executable, "-m", "oxloop"])
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert [name for name, _ in DEMO] == list(EXPECTED)
    position = 0
    for name, title in DEMO:
        section = f"{demo_header(name, title)}\n{EXPECTED[name]}"
        found = result.stdout.find(section, position)
        assert found >= 0, f"{name}'s output is missing or out of order:\n{result.stdout}"
        position = found + len(section)
