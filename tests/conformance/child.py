"""Child side of the conformance runner: runs one test module on one loop: of CPython's
test_asyncio, or (``"suite": "uvloop"``, see uvloop_suite.py) the asyncio half of one of uvloop's.

Started by ``run.py`` (one process per module, restarted after a crash or a hang), never by
hand, though ``python3 child.py CONFIG.json`` works for debugging. CONFIG names the suite (and,
for uvloop's, the directory it is in), the module, the loop (``oxloop``,
``asyncio`` or ``uvloop``), the per-test time limit, the test ids not to run (excluded, or done
before a restart), optionally the only ids to run, a scratch directory, and two files: the event
log this process appends JSON lines to, and the faulthandler file that a crash or a hang dumps
its tracebacks into.

Events, one JSON object per line, flushed as they happen so that a crash loses nothing finished:
  {"ev": "plan", "ids": [...]}           the tests of the module (or of "only"), in run order,
                                         those to skip included
  {"ev": "start", "id": ...}             a test began (a crash or hang from here on is its)
  {"ev": "result", "id": ..., "outcome": "pass"|"fail"|"error"|"skip"|"xfail",
   "loops": N, "time": s, "exc_type": ..., "message": ..., "detail": ...}
  {"ev": "module_error", "detail": ...}  the module could not be imported
  {"ev": "module_skip", "detail": ...}   the module skipped itself (unittest.SkipTest at import)
  {"ev": "done"}                         the whole module ran to the end
"""

from __future__ import annotations

import asyncio
import faulthandler
import importlib
import inspect
import json
import os
import re
import signal
import sys
import tempfile
import time
import traceback
import unittest
from asyncio import unix_events

import uvloop_suite  # beside this file

# The methods through which a test class builds its own loop, and what marks a selector variant.
LOOP_METHODS = ("create_event_loop", "new_loop")
SELECTOR_CALL = "SelectorEventLoop("
# What a test class's own setUp says when it builds the stock loop there (test_base_events,
# test_unix_events) rather than in a loop method.
SETUP_CALL = "self.loop = asyncio.SelectorEventLoop()"
# test_runners' BaseTest.new_loop: an asyncio.BaseEventLoop with its selector and self-pipe
# mocked (the tests do no I/O), whose shutdown_asyncgens only records that it was called.
BASE_LOOP_CALL = "loop = asyncio.BaseEventLoop()"
# Modules whose tests take a mock loop from test_utils only for want of a real one (see
# real_test_loops).
REAL_LOOP_MODULES = ("test_futures", "test_tasks")
DETAIL_LIMIT = 4000  # characters of traceback kept per test
# A test's outcome is the most severe one reported for it (subtests report several).
SEVERITY = {"pass": 0, "xfail": 1, "skip": 1, "fail": 2, "error": 2}


class LoopFactory:
    """Makes the loops under test and counts them, so each test knows whether it made one."""

    def __init__(self, kind: str):
        self.kind = kind
        self.made = 0
        if kind == "oxloop":
            import oxloop

            self._new = oxloop.new_event_loop
        elif kind == "uvloop":
            import uvloop

            self._new = uvloop.new_event_loop
        elif kind == "asyncio":
            self._new = _policy_class()._loop_factory  # the stock selector loop class
        else:
            raise ValueError(f"unknown loop kind {kind!r}")

    def __call__(self):
        loop = self._new()
        self.made += 1
        return loop


def _policy_class():
    # 3.10-3.13 name; 3.14 renamed it.
    return (
        getattr(unix_events, "_UnixDefaultEventLoopPolicy", None)
        or unix_events._DefaultEventLoopPolicy
    )


def install_factory(factory: LoopFactory) -> None:
    """Make every loop the default policy creates one of ours.

    Patching the class (not an instance) survives ``set_event_loop_policy(None)``, which every
    test module calls in ``tearDownModule`` and many tests call in ``tearDown``, and it covers
    ``new_event_loop``, ``get_event_loop``, ``asyncio.run``, ``asyncio.Runner`` and
    ``IsolatedAsyncioTestCase``. A staticmethod, so the policy does not bind itself to it.
    """
    _policy_class()._loop_factory = staticmethod(factory)


def real_test_loops(factory: LoopFactory) -> None:
    """``test_utils.TestCase.new_test_loop()`` without a time generator makes a loop of the
    factory instead of test_utils' ``TestLoop`` (a ``BaseEventLoop`` over a mock selector, with
    a clock that moves only as the generator says). Without a generator that clock never moves,
    so such a test uses no timers: what it checks of Futures and Tasks it then checks on the
    loop under test. Done for ``REAL_LOOP_MODULES`` only: elsewhere (test_unix_events' pipe
    transport tests) the mock loop's own methods, ``assert_reader`` and the like, are used."""
    from test.test_asyncio import utils as test_utils

    mock_loop = test_utils.TestCase.new_test_loop

    def new_test_loop(self, gen=None):
        if gen is not None:
            return mock_loop(self, gen)
        loop = factory()
        self.set_event_loop(loop)
        return loop

    test_utils.TestCase.new_test_loop = new_test_loop


def _loop_method(cls):
    """(name, function) of the method through which ``cls`` builds its loop, or None."""
    for name in LOOP_METHODS:
        for klass in cls.__mro__:
            if name in vars(klass):
                return name, vars(klass)[name]
    return None


def _says(func, text: str) -> bool:
    """``func``'s source contains ``text`` (False without a function or its source)."""
    try:
        return func is not None and text in inspect.getsource(func)
    except (OSError, TypeError):
        return False


def _is_selector_variant(cls) -> bool:
    found = _loop_method(cls)
    return found is not None and _says(found[1], SELECTOR_CALL)


def _variant_rank(cls) -> int:
    """Which selector variant the loop variant derives from: epoll first, as oxloop uses epoll."""
    source = inspect.getsource(_loop_method(cls)[1])
    if "EpollSelector" in source:
        return 0
    if "SelectorEventLoop()" in source:  # the platform default: epoll on Linux
        return 1
    return 2


def _builds_loop_in_setup(cls) -> bool:
    """``cls`` (not a base) defines a setUp that makes ``asyncio.SelectorEventLoop()``."""
    return _says(vars(cls).get("setUp"), SETUP_CALL)


def _variant(module, base: type, methods: dict) -> type:
    """``Oxloop<Name>``, a subclass of ``base`` with ``methods``, put in ``module``."""
    name = "Oxloop" + re.sub(r"EPoll|Epoll|Kqueue|Selector|Select|Poll", "", base.__name__)
    while hasattr(module, name):
        name += "_"
    cls = type(name, (base,), {**methods, "__module__": module.__name__, "__qualname__": name})
    setattr(module, name, cls)
    return cls


def _setup_variant(module, base: type, factory: LoopFactory) -> type:
    """A subclass of ``base`` whose setUp, the original one, gets our loop from its
    ``asyncio.SelectorEventLoop()``: the name is the factory while it runs."""
    original = base.setUp

    def setUp(self):
        stock = asyncio.SelectorEventLoop
        asyncio.SelectorEventLoop = factory
        try:
            original(self)
        finally:
            asyncio.SelectorEventLoop = stock

    return _variant(module, base, {"setUp": setUp})


def _makes_base_loop(cls) -> bool:
    """``cls`` gets its ``new_loop`` from a class that makes ``asyncio.BaseEventLoop()``."""
    found = _loop_method(cls)
    return found is not None and _says(found[1], BASE_LOOP_CALL)


def _base_loop_variant(module, base: type, factory: LoopFactory) -> type:
    """A subclass of ``base`` whose ``new_loop`` makes our loop, with the one public change the
    original makes (``shutdown_asyncgens`` records its call in ``shutdown_ag_run``, which the
    tests check) and none of its mocks of asyncio's private attributes."""

    def new_loop(self):
        loop = factory()
        loop.shutdown_ag_run = False

        async def shutdown_asyncgens():
            loop.shutdown_ag_run = True

        loop.shutdown_asyncgens = shutdown_asyncgens
        return loop

    return _variant(module, base, {"new_loop": new_loop})


def loop_variants(module, factory: LoopFactory) -> tuple[list[type], list[type]]:
    """Replace the module's selector-loop test classes by one class per family running our loop.

    A family is the selector variants sharing the same bases (test_events' EPoll/Poll/Select
    ``EventLoopTests`` are one family). Its loop variant subclasses the epoll member (so it keeps
    that member's overrides) and returns our loop from the loop method. The class is named
    ``Oxloop<Name>`` whichever loop is under test, so test ids compare across loops. A class
    whose own setUp makes the stock loop is replaced likewise, by ``_setup_variant``, and one
    whose ``new_loop`` makes a bare ``asyncio.BaseEventLoop`` by ``_base_loop_variant``.
    Returns (the module's TestCase classes to run, the generated ones).
    """
    classes = [
        obj
        for _, obj in sorted(vars(module).items())
        if isinstance(obj, type) and issubclass(obj, unittest.TestCase)
    ]
    families: dict[tuple, list[type]] = {}
    for cls in classes:
        if _is_selector_variant(cls):
            families.setdefault(cls.__bases__, []).append(cls)
    generated = []
    for members in families.values():
        base = min(members, key=lambda c: (_variant_rank(c), c.__name__))
        method = _loop_method(base)[0]

        def make_loop(self):
            return factory()

        generated.append(_variant(module, base, {method: make_loop}))
    variants = {c for members in families.values() for c in members}
    for cls in [c for c in classes if c not in variants]:
        if _builds_loop_in_setup(cls):
            generated.append(_setup_variant(module, cls, factory))
        elif _makes_base_loop(cls):
            generated.append(_base_loop_variant(module, cls, factory))
        else:
            continue
        variants.add(cls)
    kept = [c for c in classes if c not in variants] + generated
    return sorted(kept, key=lambda c: c.__name__), generated


def asyncio_half(module) -> list[type]:
    """A uvloop test module's classes that run on asyncio's loop (``tb.AIOTestCase``): with the
    policy's factory replaced, on the loop under test. Its ``Test_UV_*`` classes are uvloop's."""
    from uvloop import _testbase as tb

    return [
        obj
        for _, obj in sorted(vars(module).items())
        if isinstance(obj, type) and issubclass(obj, tb.AIOTestCase)
    ]


def short_id(test_id: str) -> str:
    """``test.test_asyncio.test_x.C.m`` (or uvloop's ``tests.test_x.C.m``) -> ``test_x.C.m``;
    class/module fixture errors likewise."""
    m = re.fullmatch(r"(\w+) \((.+)\)", test_id)  # unittest's _ErrorHolder: "setUpClass (mod.C)"
    if m:
        test_id = f"{m.group(2)}.{m.group(1)}"
    return test_id.removeprefix("test.test_asyncio.").removeprefix(uvloop_suite.PACKAGE + ".")


class EventLog:
    def __init__(self, path: str):
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, **event) -> None:
        os.write(self._fd, (json.dumps(event) + "\n").encode())


class RecordingResult(unittest.TestResult):
    """Writes one event per test, counts our loops per test, and re-arms the hang watchdog.

    A test's record spans its whole ``run()`` (see ``instrument``), not just startTest..stopTest:
    IsolatedAsyncioTestCase on 3.10 makes its loop in ``run()`` before ``startTest``, and 3.12+
    reports a skipped test without ``startTest``.
    """

    def __init__(self, log: EventLog, factory: LoopFactory, timeout: float, fh_file):
        super().__init__()
        self.log = log
        self.factory = factory
        self.timeout = timeout
        self.fh_file = fh_file
        self.current = None

    def _arm(self):
        # Also armed between tests: a hang in tearDownClass or tearDownModule is caught too.
        faulthandler.dump_traceback_later(self.timeout, exit=True, file=self.fh_file)

    def _new_record(self, test_id):
        return {
            "id": test_id,
            "outcome": "pass",
            "loops_before": self.factory.made,
            "started": time.monotonic(),
        }

    def instrument(self, test):
        """Wrap ``test.run`` so that the test's record covers all of it."""
        original = test.run

        def run(*args, **kwargs):
            self.current = self._new_record(short_id(test.id()))
            self.log.write(ev="start", id=self.current["id"])
            self._arm()
            try:
                return original(*args, **kwargs)
            finally:
                self._arm()
                rec, self.current = self.current, None
                self._write(rec)

        test.run = run
        return test

    def _record(self, test, outcome, err=None, reason=None):
        test = getattr(test, "test_case", test)  # a subtest's outcome is its test's
        test_id = short_id(test.id())
        rec = self.current
        fixture = rec is None or rec["id"] != test_id
        if fixture:  # a class or module fixture failed (or skipped) outside any test
            rec = self._new_record(test_id)
        if SEVERITY[outcome] > SEVERITY[rec["outcome"]]:  # the first failure wins
            rec["outcome"] = outcome
            if err is not None:
                exc_type, value, _ = err
                name = exc_type.__qualname__
                if exc_type.__module__ not in ("builtins", None):
                    name = f"{exc_type.__module__}.{name}"
                rec["exc_type"] = name
                rec["message"] = (str(value).strip().splitlines() or [""])[0][:300]
                rec["detail"] = self._exc_info_to_string(err, test)[-DETAIL_LIMIT:]
            elif reason is not None:
                rec["message"] = str(reason)[:300]
        if fixture:
            self._write(rec)

    def _write(self, rec):
        self.log.write(
            ev="result",
            id=rec["id"],
            outcome=rec["outcome"],
            loops=self.factory.made - rec["loops_before"],
            time=round(time.monotonic() - rec["started"], 3),
            exc_type=rec.get("exc_type"),
            message=rec.get("message"),
            detail=rec.get("detail"),
        )

    def addError(self, test, err):
        super().addError(test, err)
        self._record(test, "error", err)

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._record(test, "fail", err)

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:
            kind = "fail" if issubclass(err[0], test.failureException) else "error"
            self._record(test, kind, err)

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self._record(test, "skip", reason=reason)

    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err)
        self._record(test, "xfail")

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self.current["outcome"] = "fail"
        self.current["exc_type"] = "UnexpectedSuccess"
        self.current["message"] = "unexpected success of an expectedFailure test"


def _iter_tests(suite):
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            yield from _iter_tests(item)
        else:
            yield item


def main(config_path: str) -> None:
    with open(config_path) as f:
        config = json.load(f)
    log = EventLog(config["events"])
    fh_file = open(config["faulthandler"], "a")  # noqa: SIM115 (faulthandler keeps its descriptor)
    faulthandler.enable(file=fh_file)
    # A runner started in the background (a shell's `&`) inherits SIGINT ignored, and the
    # interpreter then installs no KeyboardInterrupt handler (nor does asyncio.Runner): the tests
    # that interrupt themselves, or a child they start, would wait forever. Run them as an
    # interpreter started from a terminal does.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    # As regrtest does: run inside a scratch directory (tests write files named after the pid).
    os.chdir(tempfile.mkdtemp(prefix="cwd-", dir=config["scratch"]))

    factory = LoopFactory(config["loop"])
    install_factory(factory)
    of_uvloop = config["suite"] == "uvloop"
    if of_uvloop:
        sys.path.insert(0, config["path"])
    elif config["module"] in REAL_LOOP_MODULES:
        real_test_loops(factory)
    faulthandler.dump_traceback_later(config["timeout"], exit=True, file=fh_file)
    package = uvloop_suite.PACKAGE if of_uvloop else "test.test_asyncio"
    try:
        module = importlib.import_module(f"{package}.{config['module']}")
    except unittest.SkipTest as exc:
        log.write(ev="module_skip", detail=str(exc))
        log.write(ev="done")
        return
    except Exception:  # noqa: BLE001 (any import failure is reported, as a module error)
        log.write(ev="module_error", detail=traceback.format_exc()[-DETAIL_LIMIT:])
        log.write(ev="done")
        return

    classes = asyncio_half(module) if of_uvloop else loop_variants(module, factory)[0]
    loader = unittest.TestLoader()
    tests = [t for cls in classes for t in _iter_tests(loader.loadTestsFromTestCase(cls))]
    if config.get("only") is not None:  # a re-run of some tests
        only = set(config["only"])
        tests = [t for t in tests if short_id(t.id()) in only]
    log.write(ev="plan", ids=[short_id(t.id()) for t in tests])
    skip = set(config["skip"])
    result = RecordingResult(log, factory, config["timeout"], fh_file)
    suite = unittest.TestSuite(result.instrument(t) for t in tests if short_id(t.id()) not in skip)
    suite.run(result)
    faulthandler.cancel_dump_traceback_later()
    log.write(ev="done")


if __name__ == "__main__":
    try:
        main(sys.argv[1])
    except BaseException:  # noqa: BLE001 (the parent reads the traceback from the log)
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(2)
    sys.stdout.flush()
    sys.stderr.flush()
    # Leave at once: a test that failed may have left a non-daemon thread (an executor, a
    # server) that interpreter shutdown would wait for forever. Everything is written already.
    os._exit(0)
