#!/usr/bin/env python3
"""Conformance by the test suites of the libraries oxloop's users run on it, with a ratchet.

anyio's and aiohttp's own tests run every loop-dependent test twice: on the stock loop and on
``uvloop.new_event_loop()``. This runner runs a suite (from the installed version's sdist, see
sdist.py) with as_uvloop/ first on ``sys.path``, so that the uvloop runs are oxloop's, and pairs
each oxloop run with its stock twin: a test that fails on oxloop and passes on the stock loop is
a difference to fix.

Usage (the interpreter's Python version; another: ``PYENV_VERSION=3.13.0 python3 ...``)::

    python3 tests/conformance/libraries.py anyio             # counts, and the differences
    python3 tests/conformance/libraries.py anyio --check     # CI: fail if a listed test failed
    python3 tests/conformance/libraries.py anyio --update    # list the newly passing tests
    python3 tests/conformance/libraries.py aiohttp --jobs 2  # ~12 minutes on 2 cores: not in CI

The ratchet: ``passing-<suite>-3.X.txt`` lists the node ids of the oxloop runs that pass. With
``--check`` a listed test that did not pass is run once more, alone, to tell a flaky test from a
lost one; one that fails again makes the exit status 1. Tests that fail on both loops (anyio's
IPv6 tests on a machine without IPv6) are never listed.
"""

from __future__ import annotations

import argparse
import collections
import os
import socket
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import sdist  # beside this file

HERE = Path(__file__).resolve().parent
SHIM = HERE / "as_uvloop"
PY_VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"
SUITE_TIMEOUT = 3600  # seconds for one pytest run of a whole suite


@dataclass(frozen=True)
class Suite:
    project: str
    # The sdist's top directories not unpacked: the package's own sources, so that the installed
    # package is the one tested.
    sources: tuple[str, ...]
    options: tuple[str, ...]  # pytest's options, besides the runner's own
    ours: str  # the parameter id of a test's oxloop run
    stock: str  # that of its stock-loop twin
    # pytest's addopts of the suite's configuration replaced by these (None: kept)
    addopts: str | None = None
    deselect: str = ""  # a -k expression of the tests not run
    # The -k word of the suite's IPv6 runs, deselected on a machine whose "localhost" has no IPv6
    # address: they fail there on every loop, and the sockets they leave open make other tests
    # fail at random, when the garbage collector reports them.
    ipv6: str | None = None

    def keywords(self) -> str:
        words = [self.deselect] if self.deselect else []
        if self.ipv6 and not localhost_has_ipv6():
            words.append(self.ipv6)
        return " or ".join(words)

    def keep(self, path: Path) -> bool:
        return path.parts[0] not in self.sources


SUITES = {
    # The trio backend's runs are not the loop's.
    "anyio": Suite(
        "anyio", ("src",), (), "asyncio+uvloop", "asyncio", deselect="trio", ipv6="ipv6"
    ),
    # aiohttp's addopts ask for xdist's workers, coverage and doctests of the sources.
    "aiohttp": Suite(
        "aiohttp", ("aiohttp",), ("--aiohttp-loop=pyloop,uvloop",), "uvloop", "pyloop", ""
    ),
}


def localhost_has_ipv6() -> bool:
    try:
        socket.getaddrinfo("localhost", 0, socket.AF_INET6)
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


def suite_version(suite: Suite) -> str:
    return sdist.installed_version(suite.project)


def suite_path(suite: Suite) -> Path:
    return sdist.unpacked(suite.project, "tests", suite.keep, "tests/conftest.py")


def run_pytest(suite: Suite, root: Path, targets: list[str], jobs: int, timeout: float) -> dict:
    """Run pytest on ``targets`` (node ids; the suite's tests if empty); {node id: outcome}."""
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "junit.xml"
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        if suite.addopts is not None:
            cmd += ["-o", f"addopts={suite.addopts}"]
        cmd += ["--timeout", str(timeout), f"--junitxml={report}", "-o", "junit_family=xunit1"]
        if jobs > 1:
            cmd += ["-p", "xdist", "-n", str(jobs)]
        cmd += suite.options
        if suite.keywords():
            cmd += ["-k", f"not ({suite.keywords()})"]
        cmd += targets or ["tests"]
        path = os.pathsep.join(filter(None, (str(SHIM), os.environ.get("PYTHONPATH"))))
        print(f"$ (cd {root} && {' '.join(cmd)})", flush=True)
        proc = subprocess.run(
            cmd,
            cwd=root,
            env=dict(os.environ, PYTHONPATH=path),
            timeout=SUITE_TIMEOUT,
            capture_output=True,
            text=True,
        )
        if not report.exists():
            print(proc.stdout[-4000:], proc.stderr[-4000:], sep="\n")
            raise RuntimeError(f"pytest wrote no report (exit status {proc.returncode})")
        return read_report(report, root)


def read_report(report: Path, root: Path) -> dict:
    outcomes = {}
    for case in ET.parse(report).iter("testcase"):
        tags = {child.tag for child in case}
        if tags & {"failure", "error"}:
            outcome = "fail"
        elif "skipped" in tags:
            outcome = "skip"
        else:
            outcome = "pass"
        node = node_id(root, case.get("file"), case.get("classname", ""), case.get("name", ""))
        # A test that errs in its teardown after passing is reported twice: the worse counts.
        if outcomes.get(node) != "fail":
            outcomes[node] = outcome
    return outcomes


def node_id(root: Path, file: str | None, classname: str, name: str) -> str:
    """pytest's node id of a junit test case: its file, then its classes, then its name."""
    parts = classname.split(".")
    for i in range(len(parts), 0, -1):
        path = "/".join(parts[:i]) + ".py"
        if (file and path == file) or (root / path).exists():
            return "::".join([path, *parts[i:], name])
    return "::".join([classname, name])


def twin(suite: Suite, node: str) -> str | None:
    """The stock-loop twin of an oxloop run's node id; None if ``node`` is not an oxloop run."""
    head, bracket, params = node.partition("[")
    words = params.rstrip("]").split("-")
    if not bracket or suite.ours not in words:
        return None
    return f"{head}[{'-'.join(suite.stock if w == suite.ours else w for w in words)}]"


def ratchet_file(name: str) -> Path:
    return HERE / f"passing-{name}-{PY_VERSION}.txt"


def read_ids(path: Path) -> set[str]:
    if not path.exists():
        return set()
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return {line for line in lines if line}


def summarize(suite: Suite, outcomes: dict) -> tuple[list[str], str]:
    """Print the counts per loop and the differences; return the oxloop runs that pass, and a
    line that sums it up."""
    ours = {n: o for n, o in outcomes.items() if twin(suite, n) is not None}
    stock = {twin(suite, n): None for n in ours}
    counts = {
        "oxloop": collections.Counter(ours.values()),
        "asyncio": collections.Counter(outcomes.get(n, "absent") for n in stock),
    }
    for loop, c in counts.items():
        absent = f", {c['absent']} not run" if c["absent"] else ""
        print(f"{loop:>8}: {c['pass']} passed, {c['fail']} failed, {c['skip']} skipped{absent}")

    def differ(mine: str, theirs: str) -> list[str]:
        return sorted(
            n for n, o in ours.items() if o == mine and outcomes.get(twin(suite, n)) == theirs
        )

    only_ours, better = differ("fail", "pass"), differ("pass", "fail")
    both = differ("fail", "fail")
    print(f"failed on oxloop, passed on the stock loop: {len(only_ours)}")
    print("".join(f"  {n}\n" for n in only_ours), end="")
    print(f"passed on oxloop, failed on the stock loop: {len(better)}")
    print("".join(f"  {n}\n" for n in better), end="")
    print(f"failed on both loops: {len(both)}")
    print("".join(f"  {n}\n" for n in both), end="")
    c = counts["oxloop"]
    line = f"{c['pass']} passed, {c['fail']} failed ({len(only_ours)} on oxloop only)"
    return sorted(n for n, o in ours.items() if o == "pass"), line


def check(suite: Suite, name: str, root: Path, outcomes: dict, passing: list[str], opts) -> int:
    listed = read_ids(ratchet_file(name))
    gained = [n for n in passing if n not in listed]
    if gained:
        print(
            f"ratchet: {len(gained)} passing test(s) not listed in {ratchet_file(name).name}"
            " yet (add: --update)"
        )
    # A listed test deselected here (an IPv6 one, say) is not lost.
    absent = [n for n in listed if n not in outcomes]
    if absent:
        print(f"ratchet: {len(absent)} listed test(s) not run here (deselected)")
    lost = sorted(n for n in listed if outcomes.get(n, "pass") != "pass")
    if lost:
        print(f"ratchet: {len(lost)} listed test(s) did not pass; running them again", flush=True)
        again = run_pytest(suite, root, lost, 1, opts.timeout)
        flaky = [n for n in lost if again.get(n) == "pass"]
        if flaky:
            print(f"ratchet: {len(flaky)} listed test(s) failed, then passed when run again:")
            print("".join(f"  {n}\n" for n in flaky), end="")
        lost = [n for n in lost if n not in flaky]
    if not lost:
        print(f"ratchet: all {len(listed)} tests listed in {ratchet_file(name).name} passed")
        return 0
    print(f"ratchet: {len(lost)} of the {len(listed)} listed tests did not pass:")
    print("".join(f"  {n}  [{outcomes.get(n, 'absent')}]\n" for n in lost), end="")
    return 1


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("suite", choices=sorted(SUITES))
    p.add_argument("--jobs", type=int, default=1, help="pytest-xdist workers (default: 1)")
    p.add_argument(
        "--timeout", type=float, default=60.0, help="seconds one test may take (default: 60)"
    )
    p.add_argument("--check", action="store_true", help="exit 1 if a listed test did not pass")
    p.add_argument("--update", action="store_true", help="add the newly passing tests to the list")
    opts = p.parse_args()
    suite = SUITES[opts.suite]
    root = suite_path(suite)
    outcomes = run_pytest(suite, root, [], opts.jobs, opts.timeout)
    passing, line = summarize(suite, outcomes)
    status = check(suite, opts.suite, root, outcomes, passing, opts) if opts.check else 0
    if opts.update:
        path = ratchet_file(opts.suite)
        old = read_ids(path)
        new = old | set(passing)
        path.write_text("".join(f"{n}\n" for n in sorted(new)))
        print(f"ratchet: {path.name}: {len(new - old)} added, {len(new)} listed")
    print(f"{opts.suite} {suite_version(suite)}: {line}")
    return status


if __name__ == "__main__":
    sys.exit(main())
