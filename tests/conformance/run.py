#!/usr/bin/env python3
"""Conformance: CPython's own test_asyncio, run against oxloop, with a ratchet.

Usage (the Python version is the interpreter's; another one: ``PYENV_VERSION=3.13.0 python3 ...``)::

    python3 tests/conformance/run.py                      # every module, on oxloop
    python3 tests/conformance/run.py --check --jobs 2     # CI: fail if a listed test stopped passing
    python3 tests/conformance/run.py --update             # add newly passing tests to the list
    python3 tests/conformance/run.py --modules test_tasks,test_locks --loop asyncio
    python3 tests/conformance/run.py --json results-3.11.json
    python3 tests/conformance/run.py --report docs/compatibility.md results-3.1*.json
    python3 tests/conformance/run.py --suite uvloop --check --jobs 2   # uvloop's tests, below

The modules: test_base_events, test_buffered_proto, test_context, test_eager_task_factory,
test_events, test_futures, test_futures2, test_locks, test_queues, test_runners, test_sendfile,
test_server, test_sock_lowlevel, test_ssl, test_sslproto, test_staggered, test_streams,
test_subprocess, test_taskgroups, test_tasks, test_threads, test_timeouts, test_unix_events,
test_waitfor: those this Python has. (The rest of test_asyncio makes no loop that could be ours:
test_pep492, test_protocols, test_selector_events and test_transports use mock loops or
asyncio's own classes directly, and the Windows modules skip.)

``--suite uvloop`` runs, instead, the half of uvloop's own tests written for the stock loop: the
``Test_AIO_*`` classes, whose loop is ``asyncio.new_event_loop()`` (uvloop_suite.py says where they
come from). The default policy's loop factory, replaced as below, makes them run on the loop under
test; their ratchet is ``passing-uvloop-3.X.txt``. A test that asks whether its loop is asyncio's
(``is_asyncio_loop()``: the loop class's module) takes uvloop's branch on oxloop: test_udp's
``test_socketpair`` then calls ``sendto(data)`` with no address on a socket given with ``sock=``,
which asyncio's datagram transport (and so oxloop's, which runs asyncio's code) refuses as a
fatal error; it is not listed.

How the suite is pointed at the loop, without touching CPython's files (see child.py):

- In a child interpreter, the default policy's loop factory is replaced before any test runs
  (``_UnixDefaultEventLoopPolicy._loop_factory``): ``new_event_loop``, ``asyncio.run``,
  ``asyncio.Runner`` and ``IsolatedAsyncioTestCase`` then make our loop, also after a test resets
  the policy.
- Test classes that build a selector loop themselves (``create_event_loop``/``new_loop``
  returning ``asyncio.SelectorEventLoop(...)``: test_events, test_sendfile, test_sock_lowlevel,
  test_server, test_buffered_proto, test_sslproto) are replaced, per family of selector variants
  (EPoll/Poll/Select), by one ``Oxloop<Name>`` subclass of the epoll variant whose loop method
  returns our loop. It is named so under ``--loop asyncio``/``uvloop`` too: ids compare across
  loops. (test_ssl's ``new_loop`` calls ``asyncio.new_event_loop()``: the factory covers it.)
- Test classes whose own ``setUp`` does ``self.loop = asyncio.SelectorEventLoop()``
  (test_base_events' ``BaseEventLoopWithSelectorTests``, test_unix_events' signal and Unix socket
  tests) are replaced by an ``Oxloop<Name>`` subclass whose setUp runs the original one with
  ``asyncio.SelectorEventLoop`` standing for the factory.
- test_runners' classes get their loops from ``BaseTest.new_loop``, an ``asyncio.BaseEventLoop``
  with its selector and self-pipe mocked; their ``Oxloop<Name>`` variants make ours instead, with
  the one public change the original makes (``shutdown_asyncgens`` records that it ran).
- In test_tasks and test_futures, ``test_utils.TestCase.new_test_loop()`` called without a time
  generator makes a loop of the factory instead of test_utils' mock ``TestLoop`` (whose clock,
  with no generator, never moves: those tests use no timers). Their Future and Task checks then
  run on the loop under test. With a generator, the mock loop stays.
- Every loop the factory makes is counted per test. A test that passes without having made one
  (many use test_utils' mock ``TestLoop``, some no loop at all) is reported as "passed without a
  loop" ("no loop" below) and is not a pass: it says nothing about the loop under test.

Robustness: one child process per module, ``--jobs N`` at a time; a per-test limit
(``--timeout``: faulthandler's watchdog dumps the stacks and ends the child) and a per-module
wall-clock limit (``--module-timeout``). After a crash or a hang the test that was running is
recorded as crashed or timed out, and the module goes on in a fresh child from the next test.
Children stream results as JSON lines, so a crash loses nothing that had finished.

The ratchet: ``passing-3.X.txt`` beside this file lists, per Python version, the tests that pass
on oxloop (sorted ids such as ``test_tasks.CTask_CFuture_Tests.test_foo``). ``--check`` exits 1
if a listed test (of the modules run) did not pass, and prints them; a listed test that failed
is first run once more, alone, and reported as flaky if it passes then. ``--update`` adds the
newly passing tests; it drops none unless ``--allow-shrink``.

Exclusions: ``excluded.txt`` beside this file, ``<test id>  <reason>`` per line. A test may be
excluded only if it patches the stock loop's private internals (its modules' globals, such
as ``asyncio.base_events.socket``, or its private attributes) or calls its private methods.
Excluded tests run on no loop.

Output: a line per module as it ends, then the table (passed, no loop, failed, errors, crashed,
timed out, skipped, not run, excluded), and last, alone, ``N passed, N failed``: passed counts
passes that created a loop; failed counts failures, errors, crashes and time-outs (a crash or
hang outside any test counts one).

``--report FILE [RESULTS.json ...]`` writes the compatibility document (counts per Python
version and module, failing tests grouped by exception and first message line) from ``--json``
results of one or more versions, or from a run of this interpreter if none is given. Its "cause"
column is for a human: what is written there is kept when the file is regenerated.
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import uvloop_suite  # beside this file

HERE = Path(__file__).resolve().parent
CHILD = HERE / "child.py"
EXCLUDED_FILE = HERE / "excluded.txt"
PY_VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"

# The selection, in start order: the slowest first, so that --jobs packs well.
SELECTION = (
    "test_tasks",
    "test_events",
    "test_subprocess",
    "test_ssl",
    "test_taskgroups",
    "test_streams",
    "test_sslproto",
    "test_sock_lowlevel",
    "test_sendfile",
    "test_eager_task_factory",
    "test_timeouts",
    "test_waitfor",
    "test_locks",
    "test_queues",
    "test_threads",
    "test_server",
    "test_base_events",
    "test_unix_events",
    "test_runners",
    "test_futures",
    "test_staggered",
    "test_buffered_proto",
    "test_futures2",
    "test_context",
)

# What a test record counts as (see category()), in table order, with the table's headings.
COLUMNS = {
    "pass": "passed",
    "noloop": "no loop",
    "fail": "failed",
    "error": "errors",
    "crash": "crashed",
    "timeout": "timeout",
    "skip": "skipped",
    "notrun": "not run",
    "excluded": "excluded",
}
FAILURES = ("fail", "error", "crash", "timeout")
MAX_RESTARTS = 50  # fresh children for one module, after crashes or hangs
DETAIL_LIMIT = 4000


def module_of(test_id: str) -> str:
    return test_id.split(".", 1)[0]


def category(rec: dict) -> str:
    """pass (and created a loop), noloop (passed without one), or the outcome itself."""
    if rec["outcome"] in ("pass", "xfail"):
        return "pass" if rec.get("loops", 0) > 0 else "noloop"
    return rec["outcome"]


def count(records) -> collections.Counter:
    counts = collections.Counter(dict.fromkeys(COLUMNS, 0))
    for rec in records:
        counts[category(rec)] += 1
    return counts


def ratchet_file(suite: str) -> Path:
    prefix = "passing-" if suite == "cpython" else f"passing-{suite}-"
    return HERE / f"{prefix}{PY_VERSION}.txt"


def read_ids(path: Path) -> list[str]:
    if not path.exists():
        return []
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def read_exclusions() -> dict[str, str]:
    """``<test id>  <reason>`` per line; ``#`` starts a comment line."""
    excluded = {}
    text = EXCLUDED_FILE.read_text() if EXCLUDED_FILE.exists() else ""
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            test_id, _, reason = line.strip().partition(" ")
            excluded[test_id] = reason.strip()
    return excluded


# ------------------------------------------------------------------------------------------------
# Child processes


class Children:
    """The live child processes, each the leader of its own process group."""

    def __init__(self):
        self._lock = threading.Lock()
        self._live: set[subprocess.Popen] = set()
        self.stopping = False

    def start(self, args: list[str], log) -> subprocess.Popen | None:
        with self._lock:
            if self.stopping:
                return None
            proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            self._live.add(proc)
            return proc

    def wait(self, proc: subprocess.Popen, timeout: float) -> bool:
        """Wait for the child to end (False if the time ran out), then end its whole group.

        The child is not reaped until its group was signalled, so the group id cannot have
        been reused meanwhile: what is killed is what this runner started (a test's servers
        or subprocesses included).
        """
        deadline = time.monotonic() + timeout
        ended = False
        while time.monotonic() < deadline:
            if os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG):
                ended = True
                break
            time.sleep(0.02)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()
        with self._lock:
            self._live.discard(proc)
        return ended

    def stop_all(self) -> None:
        with self._lock:
            self.stopping = True
            for proc in self._live:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass


def read_events(path: Path):
    if not path.exists():
        return
    for line in path.read_text(errors="replace").splitlines():
        try:
            yield json.loads(line)
        except json.JSONDecodeError:  # the last line of a child killed mid-write
            pass


def describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with status {code} before the module finished"


def tail(path: Path, size: int = DETAIL_LIMIT) -> str:
    if not path.exists():
        return ""
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - size))
        return f.read().decode(errors="replace")


# ------------------------------------------------------------------------------------------------
# Running one module


class ModuleRun:
    """Runs one module in a child process, and again from the next test after a crash or hang."""

    def __init__(
        self,
        module: str,
        opts,
        excluded: set[str],
        only: list[str] | None,
        workdir: Path,
        children: Children,
    ):
        self.module = module
        self.opts = opts
        self.excluded = {i for i in excluded if module_of(i) == module}
        self.only = only
        self.dir = Path(tempfile.mkdtemp(prefix=f"{module}-", dir=workdir))
        self.children = children
        self.plan: list[str] = []
        self.results: dict[str, dict] = {}
        # The module did not load or skipped itself; a crash or hang outside any test.
        self.incidents: list[dict] = []
        self.elapsed = 0.0

    def run(self) -> ModuleRun:
        start = time.monotonic()
        deadline = start + self.opts.module_timeout
        for attempt in range(MAX_RESTARTS + 1):
            finished, progressed = self._attempt(attempt, deadline)
            if finished or not progressed or time.monotonic() >= deadline:
                break
        for test_id in self.plan:
            if test_id in self.excluded:
                self.results[test_id] = {"id": test_id, "outcome": "excluded", "loops": 0}
            elif test_id not in self.results:
                self.results[test_id] = {"id": test_id, "outcome": "notrun", "loops": 0}
        self.elapsed = time.monotonic() - start
        return self

    def _attempt(self, attempt: int, deadline: float) -> tuple[bool, bool]:
        """One child. Returns (the module ran to its end, this child recorded a test)."""
        events = self.dir / f"events-{attempt}.jsonl"
        fh_path = self.dir / f"faulthandler-{attempt}.txt"
        config = self.dir / f"config-{attempt}.json"
        config.write_text(
            json.dumps(
                {
                    "module": self.module,
                    "loop": self.opts.loop,
                    "suite": self.opts.suite,
                    "path": self.opts.suite_path,
                    "timeout": self.opts.timeout,
                    "skip": sorted(self.excluded | set(self.results)),
                    "only": self.only,
                    "events": str(events),
                    "faulthandler": str(fh_path),
                    "scratch": str(self.dir),
                }
            )
        )
        with open(self.dir / "output.log", "ab") as log:
            proc = self.children.start([sys.executable, str(CHILD), str(config)], log)
        if proc is None:  # interrupted
            return False, False
        ended = self.children.wait(proc, max(1.0, deadline - time.monotonic()))

        running, finished, recorded = None, False, False
        for event in read_events(events):
            kind = event.pop("ev")
            if kind == "plan":
                self.plan = event["ids"]
            elif kind == "start":
                running = event["id"]
            elif kind == "result":
                self.results[event["id"]] = event
                running, recorded = None, True
            elif kind == "module_skip":
                self.incidents.append(
                    {
                        "kind": "skip",
                        "message": "the module skipped itself",
                        "detail": event["detail"],
                    }
                )
            elif kind == "module_error":
                self.incidents.append(
                    {
                        "kind": "error",
                        "message": "the module did not load",
                        "detail": event["detail"],
                    }
                )
            elif kind == "done":
                finished = True
        if finished and ended:
            return True, recorded

        fh_text = fh_path.read_text(errors="replace") if fh_path.exists() else ""
        if not ended:
            kind, message = "timeout", f"module time limit ({self.opts.module_timeout:g} s) reached"
        elif fh_text.startswith("Timeout ("):
            kind, message = "timeout", f"no progress for {self.opts.timeout:g} s"
        else:
            kind, message = "crash", describe_exit(proc.returncode)
        detail = (fh_text or tail(self.dir / "output.log"))[-DETAIL_LIMIT:]
        if running is None:
            message = f"outside any test, {message}"
            self.incidents.append({"kind": kind, "message": message, "detail": detail})
        else:
            self.results[running] = {
                "id": running,
                "outcome": kind,
                "loops": 0,
                "exc_type": None,
                "message": message,
                "detail": detail,
            }
            recorded = True
        return False, recorded and ended and not self.children.stopping


# ------------------------------------------------------------------------------------------------
# Running the selection, and the score


def available_modules(opts) -> list[str]:
    if opts.suite == "uvloop":
        return [m for m in uvloop_suite.SELECTION if in_uvloop_suite(opts, m)]
    return [m for m in SELECTION if importlib.util.find_spec(f"test.test_asyncio.{m}")]


def in_uvloop_suite(opts, module: str) -> bool:
    return (Path(opts.suite_path) / uvloop_suite.PACKAGE / f"{module}.py").exists()


def run_all(
    opts, modules: list[str], excluded: dict[str, str], only: dict[str, list[str]] | None = None
) -> dict:
    """Run the modules (or only the given tests of each); return the results document."""
    workdir = Path(tempfile.mkdtemp(prefix="oxloop-conformance-"))
    children = Children()
    lock = threading.Lock()
    finished = []
    start = time.monotonic()

    def one(module: str) -> ModuleRun:
        run = ModuleRun(module, opts, set(excluded), only and only[module], workdir, children)
        run.run()
        with lock:
            finished.append(module)
            c = count(run.results.values())
            print(
                f"[{len(finished)}/{len(modules)}] {module:<24} {c['pass']:4d} passed"
                f" {sum(c[k] for k in FAILURES):4d} failed {c['noloop']:4d} without a loop"
                f"  ({run.elapsed:.1f} s)",
                flush=True,
            )
            for rec in run.results.values():
                if rec["outcome"] in ("crash", "timeout"):
                    print(f"    {rec['outcome']} in {rec['id']}: {rec['message']}", flush=True)
            for incident in run.incidents:
                print(f"    {incident['kind']}: {incident['message']}", flush=True)
        return run

    try:
        with ThreadPoolExecutor(max_workers=opts.jobs) as pool:
            runs = list(pool.map(one, modules))
    except KeyboardInterrupt:
        children.stop_all()
        raise
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    tests = sorted(
        (dict(t, module=r.module) for r in runs for t in r.results.values()), key=lambda t: t["id"]
    )
    return {
        "python": sys.version.split()[0],
        "version": PY_VERSION,
        "loop": opts.loop,
        "suite": opts.suite,
        "elapsed": round(time.monotonic() - start, 1),
        "excluded": {t["id"]: excluded[t["id"]] for t in tests if t["outcome"] == "excluded"},
        "modules": {
            r.module: {"elapsed": round(r.elapsed, 1), "incidents": r.incidents} for r in runs
        },
        "tests": tests,
    }


def print_summary(results: dict) -> tuple[int, int]:
    """The table per module and the total; returns (passed, failed) for the closing line."""
    by_module = collections.defaultdict(list)
    for rec in results["tests"]:
        by_module[rec["module"]].append(rec)
    loop = results["loop"]
    suite = "test_asyncio" if results["suite"] == "cpython" else "with uvloop's tests (asyncio's half)"
    print(
        f"\nCPython {results['python']} {suite} on {loop} ({results['elapsed']:.0f} s)."
        f" passed: passed and created a {loop} loop; no loop: passed without creating one"
    )
    header = f"{'module':<24}" + "".join(f"{h:>9}" for h in COLUMNS.values())
    print(header)
    print("-" * len(header))
    total = collections.Counter()
    incidents = 0
    for module in sorted(results["modules"]):
        c = count(by_module[module])
        total.update(c)
        notes = results["modules"][module]["incidents"]
        incidents += sum(1 for i in notes if i["kind"] != "skip")
        note = "; ".join(f"{i['kind']}: {i['message']}" for i in notes)
        print(
            f"{module:<24}"
            + "".join(f"{c[k]:>9}" for k in COLUMNS)
            + (f"  ({note})" if note else "")
        )
    print("-" * len(header))
    print(f"{'total':<24}" + "".join(f"{total[k]:>9}" for k in COLUMNS))
    return total["pass"], sum(total[k] for k in FAILURES) + incidents


# ------------------------------------------------------------------------------------------------
# The ratchet


def lost_tests(results: dict, modules: list[str]) -> list[str]:
    """The tests the ratchet lists (of the modules run) that did not pass, with a loop."""
    records = {r["id"]: r for r in results["tests"]}
    listed = [i for i in read_ids(ratchet_file(results["suite"])) if module_of(i) in modules]
    return [i for i in listed if category(records.get(i, {"outcome": "notrun"})) != "pass"]


def check_ratchet(results: dict, modules: list[str], opts) -> int:
    """The exit status of --check; prints what was lost, what is flaky, and what is new."""
    name = ratchet_file(opts.suite).name
    listed = {i for i in read_ids(ratchet_file(opts.suite)) if module_of(i) in modules}
    gained = [r["id"] for r in results["tests"] if category(r) == "pass" and r["id"] not in listed]
    if gained:
        print(f"\nratchet: {len(gained)} passing test(s) not listed in {name} yet (add: --update)")
    lost = lost_tests(results, modules)
    if lost:  # once more, alone, to tell a flaky test from a lost one
        print(f"\nratchet: {len(lost)} listed test(s) did not pass; running them again", flush=True)
        by_module = collections.defaultdict(list)
        for test_id in lost:
            by_module[module_of(test_id)].append(test_id)
        retry = run_all(opts, sorted(by_module), read_exclusions(), only=by_module)
        still = set(lost_tests(retry, modules))
        flaky = [i for i in lost if i not in still]
        if flaky:
            print(
                f"ratchet: {len(flaky)} listed test(s) failed, then passed when run again (flaky):"
            )
            print("".join(f"  {i}\n" for i in flaky), end="")
        lost = [i for i in lost if i in still]
    if not lost:
        print(f"ratchet: all {len(listed)} tests listed in {name} passed")
        return 0
    records = {r["id"]: r for r in results["tests"]}
    print(f"\nratchet: {len(lost)} of the {len(listed)} tests listed in {name} did not pass:")
    for test_id in lost:
        rec = records.get(test_id, {"outcome": "absent from this Python's suite", "loops": 0})
        what = "passed without a loop" if category(rec) == "noloop" else rec["outcome"]
        message = ": ".join(filter(None, (rec.get("exc_type"), rec.get("message"))))
        print(f"  {test_id}  [{what}] {message}".rstrip())
    return 1


def update_ratchet(results: dict, modules: list[str], allow_shrink: bool) -> None:
    path = ratchet_file(results["suite"])
    old = set(read_ids(path))
    passing = {r["id"] for r in results["tests"] if category(r) == "pass"}
    new = old | passing
    if allow_shrink:  # forget the listed tests of the modules run that did not pass this time
        new = {i for i in new if i in passing or module_of(i) not in modules}
    path.write_text("".join(f"{i}\n" for i in sorted(new)))
    print(
        f"\nratchet: {path.name}: {len(new - old)} added, {len(old - new)} removed,"
        f" {len(new)} listed"
    )


# ------------------------------------------------------------------------------------------------
# The compatibility report


def cause_key(rec: dict) -> str:
    """Failures with the same key likely share a cause: the exception type and the first line
    of its message, with numbers, addresses and object reprs made generic."""
    message = rec.get("message") or ""
    if rec["outcome"] in ("crash", "timeout"):
        return f"{rec['outcome']}: " + re.sub(r"\d+(\.\d+)? s\b", "N s", message)
    message = re.sub(r"0x[0-9a-fA-F]+", "0x…", message)
    message = re.sub(r"<(\w+)[^<>]*>", r"<\1 …>", message)
    message = re.sub(r"(?<![A-Za-z_])\d+(\.\d+)?", "N", message)
    message = re.sub(r"'[^']{40,}'", "'…'", message)
    key = f"{rec.get('exc_type') or rec['outcome']}: {message}".strip().rstrip(":")
    return key if len(key) <= 140 else key[:139] + "…"


def md_code(text: str) -> str:
    """Text as inline code in a table cell."""
    return "`" + text.replace("`", "'").replace("|", "\\|") + "`"


def read_causes(path: Path) -> dict[str, str]:
    """The hand-written cells of the "cause" column of an existing report, by row key."""
    causes = {}
    for line in path.read_text().splitlines() if path.exists() else []:
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        if len(cells) == 5 and cells[0].isdigit() and cells[1].startswith("`") and cells[2]:
            causes[cells[1]] = cells[2]
    return causes


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in version.split("."))


def stock_comparison(all_results: list[dict]) -> list[str]:
    """Lines saying, per Python with results of both loops, which tests pass on the stock loop
    but not on oxloop (a skip or "no loop" on oxloop included)."""
    by_run = {(r["version"], r["loop"]): r for r in all_results}
    lines = []
    for version in sorted({v for v, _ in by_run}, key=version_key):
        stock, ours = by_run.get((version, "asyncio")), by_run.get((version, "oxloop"))
        if stock is None or ours is None:
            continue
        outcome = {
            r["id"]: category(r) + (f": {r['message']}" if r["outcome"] == "skip" else "")
            for r in ours["tests"]
        }
        behind = sorted(
            (r["id"], outcome.get(r["id"], "absent"))
            for r in stock["tests"]
            if category(r) == "pass" and outcome.get(r["id"]) != "pass"
        )
        tests = ", ".join(f"`{i}` ({what})" for i, what in behind) or "none"
        lines.append(f"- {version}: passed on asyncio, not on oxloop: {tests}.")
    if not lines:
        return []
    return ["", "Against the stock loop, run on the same tests:", "", *lines]


def write_report(path: Path, all_results: list[dict]) -> None:
    # One result per Python and loop: the last one given.
    by_run = {(r["python"], r["loop"]): r for r in all_results}
    all_results = sorted(by_run.values(), key=lambda r: (version_key(r["version"]), r["loop"]))
    # Modules and failures are reported for oxloop's results (for all, if none is oxloop's).
    subject = [r for r in all_results if r["loop"] == "oxloop"] or all_results
    versions = [r["version"] for r in subject]
    causes = read_causes(path)
    out = [
        "# Compatibility: CPython's test_asyncio on oxloop",
        "",
        "Generated by `tests/conformance/run.py --report docs/compatibility.md results-*.json`",
        "from the `--json` results of each Python version (`scripts/conformance-all.sh` makes",
        "them). Only the *cause* column is written by hand; it is kept when the file is",
        "regenerated. A test counts as passed only if it created a loop of the loop under test;",
        "one that passed without creating one (most use test_utils' mock `TestLoop`) is counted",
        "apart, as *no loop*. `tests/conformance/passing-3.X.txt` lists the passing tests.",
        "",
        "## Counts per Python version",
        "",
        "| Python | loop | " + " | ".join(COLUMNS.values()) + " | total |",
        "|---|---|" + "--:|" * (len(COLUMNS) + 1),
    ]
    for res in all_results:
        c = count(res["tests"])
        cells = [f"**{c[k]}**" if k == "pass" else str(c[k]) for k in COLUMNS]
        out.append(
            f"| {res['python']} | {res['loop']} | "
            + " | ".join(cells)
            + f" | {len(res['tests'])} |"
        )

    out += stock_comparison(all_results)
    out += [
        "",
        "## Passed per module",
        "",
        "passed / ran, where ran = passed + failed + errors + crashed + timed out; the tests that",
        "passed without creating a loop are not in either number.",
        "",
        "| module | " + " | ".join(versions) + " |",
        "|---|" + "--:|" * len(versions),
    ]
    for module in sorted({m for res in subject for m in res["modules"]}):
        cells = []
        for res in subject:
            c = count(r for r in res["tests"] if r["module"] == module)
            ran = sum(c[k] for k in ("pass", *FAILURES))
            cells.append(f"{c['pass']} / {ran}" if module in res["modules"] else "—")
        out.append(f"| {module} | " + " | ".join(cells) + " |")

    groups = collections.defaultdict(lambda: collections.defaultdict(list))
    for res in subject:
        for rec in res["tests"]:
            if rec["outcome"] in FAILURES:
                groups[cause_key(rec)][rec["id"]].append(res["version"])
        for module, info in res["modules"].items():
            for incident in info["incidents"]:
                if incident["kind"] != "skip":
                    key = f"{incident['kind']}: {incident['message']}"
                    groups[key][module].append(res["version"])
    ordered = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    out += [
        "",
        "## Failing tests by cause",
        "",
        "Grouped by exception type and the first line of its message: a heuristic, so one",
        "cause may show as several rows and one row may hide several causes.",
        "",
        "| # | exception (heuristic) | cause | tests | Python |",
        "|--:|---|---|--:|---|",
    ]
    for n, (key, tests) in enumerate(ordered, 1):
        seen = sorted({v for vs in tests.values() for v in vs}, key=version_key)
        out.append(
            f"| {n} | {md_code(key)} | {causes.get(md_code(key), '')} | {len(tests)}"
            f" | {', '.join(seen)} |"
        )
    for n, (key, tests) in enumerate(ordered, 1):
        summary = f"<details><summary>{len(tests)} test(s)</summary>"
        out += ["", f"### {n}. {md_code(key)}", "", summary, ""]
        for test_id, vs in sorted(tests.items()):
            out.append(
                f"- `{test_id}`" + ("" if len(vs) == len(versions) else f" ({', '.join(vs)})")
            )
        out += ["", "</details>"]

    excluded = {k: v for res in all_results for k, v in res.get("excluded", {}).items()}
    out += [
        "",
        "## Excluded tests",
        "",
        "Run on no loop: they patch the stock loop's private internals or call its private",
        "methods.",
        "The list, with the reasons: `tests/conformance/excluded.txt`.",
        "",
    ]
    if excluded:
        out += ["| test | reason |", "|---|---|"]
        out += [f"| `{k}` | {v.replace('|', '/')} |" for k, v in sorted(excluded.items())]
    else:
        out.append("None.")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(out) + "\n")
    runs = ", ".join(f"{r['version']} on {r['loop']}" for r in all_results)
    print(f"report: wrote {path} ({runs})")


# ------------------------------------------------------------------------------------------------


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog="See the top of this file for the details."
    )
    p.add_argument(
        "--loop",
        choices=("oxloop", "asyncio", "uvloop"),
        default="oxloop",
        help="the loop under test (default: oxloop)",
    )
    p.add_argument(
        "--suite",
        choices=("cpython", "uvloop"),
        default="cpython",
        help="CPython's test_asyncio (the default) or the asyncio half of uvloop's tests",
    )
    p.add_argument("--modules", help="a comma-separated subset, e.g. test_tasks,test_locks")
    p.add_argument("--jobs", type=int, default=1, help="modules run at once (default: 1)")
    p.add_argument(
        "--timeout", type=float, default=30.0, help="seconds one test may take (default: 30)"
    )
    p.add_argument(
        "--module-timeout",
        type=float,
        default=600.0,
        help="seconds one module may take, restarts included (default: 600)",
    )
    p.add_argument(
        "--check",
        action="store_true",
        help=f"exit 1 if a test listed in passing-{PY_VERSION}.txt did not pass",
    )
    p.add_argument(
        "--update",
        action="store_true",
        help=f"add the newly passing tests to passing-{PY_VERSION}.txt",
    )
    p.add_argument(
        "--allow-shrink",
        action="store_true",
        help="with --update: also drop the listed tests that did not pass",
    )
    p.add_argument("--json", metavar="FILE", help="write the full results to FILE")
    p.add_argument("--report", metavar="FILE", help="write the compatibility report to FILE")
    p.add_argument(
        "results",
        nargs="*",
        metavar="RESULTS.json",
        help="with --report: --json results (of several versions) to merge",
    )
    opts = p.parse_args(argv)
    if opts.results and not opts.report:
        p.error("results files are read only with --report")
    if (opts.check or opts.update) and opts.loop != "oxloop":
        p.error("the ratchet (--check, --update) is oxloop's: drop --loop")
    if opts.allow_shrink and not opts.update:
        p.error("--allow-shrink goes with --update")
    if opts.report and opts.suite != "cpython":
        p.error("the compatibility report is of CPython's suite: drop --suite")
    return opts


def main(argv=None) -> int:
    opts = parse_args(argv)
    if opts.report and opts.results:
        write_report(Path(opts.report), [json.loads(Path(f).read_text()) for f in opts.results])
        return 0
    if opts.loop != "asyncio" and importlib.util.find_spec(opts.loop) is None:
        hint = " (build it: python3 -m pip install .)" if opts.loop == "oxloop" else ""
        print(f"error: {opts.loop} is not installed in {sys.executable}{hint}", file=sys.stderr)
        return 2
    opts.suite_path = None
    if opts.suite == "uvloop":
        try:
            opts.suite_path = str(uvloop_suite.tests_path())
        except (OSError, RuntimeError) as exc:
            print(f"error: uvloop's tests: {exc}", file=sys.stderr)
            return 2
    modules = available_modules(opts)
    if opts.modules:
        modules = [m.strip() for m in opts.modules.split(",") if m.strip()]
        unknown = [m for m in modules if m not in available_modules(opts)]
        if unknown:
            print(f"error: not in the {opts.suite} suite: {', '.join(unknown)}", file=sys.stderr)
            return 2

    results = run_all(opts, modules, read_exclusions())
    if opts.json:
        Path(opts.json).write_text(json.dumps(results, indent=1) + "\n")
    if opts.report:
        write_report(Path(opts.report), [results])
    passed, failed = print_summary(results)
    status = 0
    if opts.update:
        update_ratchet(results, modules, opts.allow_shrink)
    if opts.check:
        status = check_ratchet(results, modules, opts)
    print(f"{passed} passed, {failed} failed")
    return status


if __name__ == "__main__":
    sys.exit(main())
