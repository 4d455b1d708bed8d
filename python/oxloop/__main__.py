"""Run asyncio programs on oxloop.

    python -m oxloop                    the demo: the overview's six examples, on oxloop
    python -m oxloop script.py [args]   run an asyncio program with oxloop as its event loop
    python -m oxloop -m module [args]   the same for a module, as ``python -m module`` does

The program is run unchanged: oxloop is installed as the event loop policy first, so
``asyncio.run()`` and ``asyncio.new_event_loop()`` give it oxloop loops.
"""

from __future__ import annotations

import importlib.util
import os
import runpy
import sys
from collections.abc import Callable, Sequence

import oxloop

USAGE = """\
usage: python -m oxloop                    run the demo (six small asyncio examples)
       python -m oxloop script.py [args]   run an asyncio program on oxloop
       python -m oxloop -m module [args]   run a module as a script on oxloop
       python -m oxloop bench              a short benchmark against the other loops"""

# The demo, in the overview's order: module in oxloop._examples, its command-line
# arguments, and what it shows. The network examples talk to servers of their own on
# 127.0.0.1, so the demo needs no network.
DEMO = (
    ("compute", (), "two coroutines chained together"),
    ("future", (), "a future resolved by a coroutine, with a done-callback"),
    ("task", (), "the same with a task"),
    ("factorial", (), "three tasks side by side"),
    ("headers", (), "HTTP headers over the Streams API, from a local server"),
    ("echo_server", ("--demo",), "an echo server over a protocol, and one client"),
)

# Subcommands: `python -m oxloop NAME [args]` calls SUBCOMMANDS[NAME](args) and exits
# with the int it returns. A subcommand takes precedence over a script of the same name.
def run_bench(args: list[str]) -> int:
    """`python -m oxloop bench`: the short benchmark (see oxloop._bench)."""
    from oxloop import _bench

    return _bench.main(args)


SUBCOMMANDS: dict[str, Callable[[list[str]], int]] = {"bench": run_bench}


def demo_header(name: str, title: str, args: Sequence[str] = ()) -> str:
    return f"--- {' '.join([f'{name}.py', *args])}: {title}"


def run_demo() -> int:
    oxloop.install()
    print(f"oxloop {oxloop.__version__}: the examples of the overview 'Asynchronous Python'")
    argv = sys.argv
    try:
        for name, args, title in DEMO:
            print()
            print(demo_header(name, title, args), flush=True)
            # Each example sees the command line `python NAME.py ARGS`.
            sys.argv = [f"{name}.py", *args]
            runpy.run_module(f"oxloop._examples.{name}", run_name="__main__")
            sys.stdout.flush()
    finally:
        sys.argv = argv
    return 0


def run_script(path: str, args: list[str]) -> int:
    if not os.path.exists(path):
        print(f"{sys.executable}: can't open file {os.path.abspath(path)!r}: "
              "[Errno 2] No such file or directory", file=sys.stderr)
        return 2
    sys.argv = [path, *args]
    # `python script.py` puts the script's directory first on sys.path, where
    # `python -m oxloop` put the current directory. runpy adds a directory or a
    # zip file itself.
    if os.path.isfile(path) and not _safe_path():
        sys.path[0] = os.path.dirname(os.path.abspath(path))
    oxloop.install()
    runpy.run_path(path, run_name="__main__")
    return 0


def run_module(name: str, args: list[str]) -> int:
    try:
        found = importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        print(f"{sys.executable}: No module named {name}", file=sys.stderr)
        return 1
    sys.argv = [name, *args]  # runpy replaces argv[0] with the module's path
    oxloop.install()
    runpy.run_module(name, run_name="__main__", alter_sys=True)
    return 0


def _safe_path() -> bool:
    """True when Python keeps the script's directory off sys.path (-I, -P)."""
    return bool(sys.flags.isolated or getattr(sys.flags, "safe_path", False))


def main(argv: list[str]) -> int:
    if not argv:
        return run_demo()
    first, rest = argv[0], argv[1:]
    if first in ("-h", "--help"):
        print(USAGE)
        return 0
    if first == "-m":
        if not rest:
            print(f"Argument expected for the -m option\n{USAGE}", file=sys.stderr)
            return 2
        return run_module(rest[0], rest[1:])
    if first in SUBCOMMANDS:
        return SUBCOMMANDS[first](rest)
    if first.startswith("-"):
        print(f"unknown option {first!r}\n{USAGE}", file=sys.stderr)
        return 2
    return run_script(first, rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
