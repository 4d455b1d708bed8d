"""Network benchmarks of several event loops side by side: echo, connections, HTTP, memory.

Run ``python3 bench/net.py --help``; ``bench/README.md`` explains each row.

Each measurement starts a fresh server process (``net_server.py``) on the loop under
test, pinned to CPU 0, and drives it from CPU 1 with the Rust load generator in
``loadgen/`` (or with ``wrk`` for HTTP). Besides the rate it reads the server's CPU
time from /proc, so each cell also gives requests per server CPU-second, which does
not depend on how much of CPU 0 the server got. Repetitions are interleaved (each
repetition runs every cell on every loop, in an order that rotates per repetition)
and each cell reports the median.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import resource
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from micro import LOOP_MODULES, fmt_rate, load_loops, pick_names, print_table

HERE = Path(__file__).resolve().parent
SERVER = HERE / "net_server.py"
LOADGEN_DIR = HERE / "loadgen"
LOADGEN = LOADGEN_DIR / "target" / "release" / "loadgen"
# The echo rows' reference: an echo server with no Python and no loop library (Rust, epoll;
# see loadgen/src/bin/echo_server.rs). What it reaches bounds what any loop can reach here.
REFERENCE = "reference"
REFERENCE_SERVER = LOADGEN_DIR / "target" / "release" / "echo_server"

SERVER_CPU = "0"  # the server under test runs here ...
CLIENT_CPU = "1"  # ... and the load generator (or wrk) here

# The stock loop once more, with glibc's malloc told to keep big blocks: see README.
TUNABLES = "glibc.malloc.mmap_threshold=4194304:glibc.malloc.trim_threshold=16777216"
STOCK_TUNED = "stock+tunables"
ALL_LOOPS = ["stock", STOCK_TUNED, "uvloop", "rloop", "veloxloop", "oxloop", REFERENCE]

ECHO_MODES = ["protocol", "streams", "sockets"]
ECHO_SIZES = [1024, 10 * 1024, 100 * 1024]
SECTIONS = ["echo", "connect", "http", "idle"]

# A run in which the server or the load generator waited for its CPU longer than this
# share of the window (another process had the CPU) is marked "!" in the CPU tables.
CONTENDED = 0.05

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


class BenchmarkError(Exception):
    """A run did not do what it should: the server or the client failed, or hung."""


# --- one server process -----------------------------------------------------------


def proc_sched(pid: int) -> tuple[float, float]:
    """Seconds a process (all its threads) has run on a CPU, and seconds it has waited
    for one while runnable (another process had it), from /proc/PID/task/*/schedstat;
    without schedstat, utime + stime from /proc/PID/stat (10 ms ticks) and no wait."""
    run_ns = wait_ns = 0
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                run, wait, _ = f.read().split()
            run_ns += int(run)
            wait_ns += int(wait)
        return run_ns / 1e9, wait_ns / 1e9
    except (FileNotFoundError, ValueError):
        return sum(proc_user_system(pid)), 0.0


def proc_user_system(pid: int) -> tuple[float, float]:
    """A process's user and system CPU seconds so far, from /proc/PID/stat (10 ms ticks)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK  # stat's 14 and 15


def proc_rss_kib(pid: int) -> int:
    """Resident memory of a process in KiB, from /proc/PID/statm (VmRSS)."""
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE_KIB


PIN = True  # set in main(): pinning needs taskset and 2 CPUs


def pinned(cpu: str, argv: list[str]) -> list[str]:
    return ["taskset", "-c", cpu, *argv] if PIN else argv


class Server:
    """A net_server.py process: started pinned, stopped with SIGTERM, stderr checked."""

    def __init__(self, loop: str, mode: str, lifetime: float) -> None:
        env = dict(os.environ)
        env.pop("GLIBC_TUNABLES", None)  # stock means stock
        if loop == STOCK_TUNED:
            env["GLIBC_TUNABLES"] = TUNABLES
            loop = "stock"
        # Closed by close(); a file, not a pipe, so that a chatty server never blocks.
        self.stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115
        argv = [
            sys.executable,
            str(SERVER),
            loop,
            mode,
            "--lifetime",
            str(int(lifetime)),
        ]
        if loop == REFERENCE:  # an echo server: the same for every echo mode
            argv = [str(REFERENCE_SERVER), "--lifetime", str(int(lifetime))]
        self.proc = subprocess.Popen(
            pinned(SERVER_CPU, argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            env=env,
            text=True,
        )
        self.pid = self.proc.pid  # taskset execs the server: same process
        self.port = self._wait_for_port(15.0)

    def _wait_for_port(self, timeout: float) -> int:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not line.startswith("PORT "):
            self.stop()
            raise BenchmarkError(
                f"server did not start: {line.strip()!r} {self.errors()}"
            )
        return int(line.split()[1])

    def sched(self) -> tuple[float, float]:
        """(CPU seconds, seconds waiting for the CPU) so far."""
        return proc_sched(self.pid)

    def rss_kib(self) -> int:
        return proc_rss_kib(self.pid)

    def errors(self) -> str:
        self.stderr.seek(0)
        text = self.stderr.read().strip()
        return f"; server stderr: {text[-2000:]}" if text else ""

    def check(self) -> None:
        """Fail if the server died or wrote anything to stderr."""
        status = self.proc.poll()
        if status is not None:
            raise BenchmarkError(f"server exited with status {status}{self.errors()}")
        if self.errors():
            raise BenchmarkError(self.errors().lstrip("; "))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()

    def close(self) -> None:
        self.stop()
        self.stderr.close()


@contextlib.contextmanager
def running(loop: str, mode: str, lifetime: float) -> Iterator[Server]:
    """A server of `mode` on `loop`, stopped on the way out."""
    server = Server(loop, mode, lifetime)
    try:
        yield server
    finally:
        server.close()


# --- the load generators ----------------------------------------------------------------


class Client:
    """A load generator process pinned to CLIENT_CPU, killed if it outlives `limit` s."""

    def __init__(self, argv: list[str], limit: float, stdin: int | None = None) -> None:
        self.name = Path(argv[0]).name
        self.proc = subprocess.Popen(
            pinned(CLIENT_CPU, argv),
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.killed = threading.Event()
        self.timer = threading.Timer(limit, self._kill)
        self.timer.start()

    def _kill(self) -> None:
        self.killed.set()
        self.proc.kill()

    def release(self) -> None:
        """Close the generator's stdin (the idle mode then lets its connections go)."""
        if self.proc.stdin is not None:
            self.proc.stdin.close()
            self.proc.stdin = None  # communicate() must not touch it again

    def lines(self):
        assert self.proc.stdout is not None
        yield from self.proc.stdout

    def finish(self) -> tuple[int, str, str]:
        """Wait for the exit; return the status and the rest of stdout, and stderr."""
        out, err = self.proc.communicate()
        self.timer.cancel()
        if self.killed.is_set():
            raise BenchmarkError(f"{self.name} did not finish in time: killed")
        return self.proc.returncode, out, err

    def close(self) -> None:
        self.timer.cancel()
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def drive(
    client: Client, server: Server, on_line: Callable[[str], None], complete: Callable[[], bool]
) -> dict[str, Any]:
    """Hand the load generator's progress lines to `on_line` until it exits; return its JSON.
    Raises BenchmarkError if it reported an error, failed, or `complete()` is false after it."""
    result: dict[str, Any] = {}
    try:
        for line in client.lines():
            if line.startswith("{"):
                result = json.loads(line)
            else:
                on_line(line)
        status, _, err = client.finish()
    finally:
        client.close()
    if "error" in result:
        raise BenchmarkError(f"load generator: {result['error']}{server.errors()}")
    if status != 0 or not complete():
        raise BenchmarkError(f"load generator exited with {status}: {err.strip()}")
    return result


def loadgen(server: Server, mode: str, *options: str, limit: float) -> dict[str, Any]:
    """Run the load generator; return its JSON with the server's CPU seconds in the
    measured window (`server_cpu`) added."""
    argv = [str(LOADGEN), mode, "--addr", f"127.0.0.1:{server.port}", *options]
    client = Client(argv, limit)
    marks = {}  # "start"/"stop" -> (server, load generator) schedstat

    def on_line(line: str) -> None:
        if line in ("start\n", "stop\n"):
            marks[line.strip()] = server.sched(), proc_sched(client.proc.pid)

    result = drive(client, server, on_line, lambda: len(marks) == 2)
    (server_start, client_start), (server_stop, client_stop) = marks["start"], marks["stop"]
    result["server_cpu"] = server_stop[0] - server_start[0]
    result["server_wait"] = server_stop[1] - server_start[1]
    result["client_cpu"] = result["loadgen_cpu_seconds"]
    result["client_wait"] = client_stop[1] - client_start[1]
    return result


def run_wrk(
    server: Server, seconds: int, threads: int, connections: int
) -> dict[str, Any]:
    argv = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "2s",
        f"http://127.0.0.1:{server.port}/",
    ]
    # wrk's own CPU time: what the children reaped meanwhile (only wrk) used.
    children_start = resource.getrusage(resource.RUSAGE_CHILDREN)
    client = Client(argv, seconds + 30)
    try:
        sched_start = server.sched()
        status, out, err = client.finish()
        sched_stop = server.sched()
    finally:
        client.close()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk_cpu = (children.ru_utime - children_start.ru_utime) + (
        children.ru_stime - children_start.ru_stime
    )
    result = parse_wrk(status, out, err)
    result["server_cpu"] = sched_stop[0] - sched_start[0]
    result["server_wait"] = sched_stop[1] - sched_start[1]
    result["client_cpu"] = wrk_cpu
    return result


def parse_wrk(status: int, out: str, err: str) -> dict[str, Any]:
    rate = re.search(r"Requests/sec:\s*([\d.]+)", out)
    total = re.search(r"(\d+) requests in ([\d.]+)(\w+)", out)
    if status != 0 or not rate or not total:
        raise BenchmarkError(f"wrk failed ({status}): {(out + err).strip()[-500:]}")
    problems = []
    errors = re.search(r"Socket errors: (.*)", out)
    if errors:
        problems.append(f"socket errors: {errors.group(1)}")
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        problems.append(f"{non2xx.group(1)} non-2xx responses")
    if problems:
        raise BenchmarkError("wrk: " + "; ".join(problems))
    latency = re.search(r"Latency\s+(\S+)", out)
    unit = {"ms": 1e-3, "s": 1.0, "m": 60.0}.get(total.group(3), 1.0)
    return {
        "requests": int(total.group(1)),
        "seconds": float(total.group(2)) * unit,
        "per_second": float(rate.group(1)),
        "latency_mean": latency.group(1) if latency else None,
    }


# --- the benchmarks: one run of one cell on one loop ------------------------------------------
#
# Each returns (value, details): the value is what the tables show (a rate, or KiB for
# memory); details go to --json.


def run_load(
    loop: str, server_mode: str, load_mode: str, connections: int, size: int,
    args: argparse.Namespace,
) -> tuple[float, dict]:
    """A fresh server in `server_mode`, driven by the load generator in `load_mode`."""
    limit = args.warmup + args.duration + 30
    with running(loop, server_mode, limit + 30) as server:
        result = loadgen(
            server,
            load_mode,
            *("--connections", str(connections), "--size", str(size)),
            *("--duration", str(args.duration), "--warmup", str(args.warmup)),
            limit=limit,
        )
        server.check()
    return result["per_second"], result


def run_echo(
    loop: str, mode: str, size: int, args: argparse.Namespace
) -> tuple[float, dict]:
    return run_load(loop, mode, "echo", args.connections, size, args)


def run_connect(loop: str, args: argparse.Namespace) -> tuple[float, dict]:
    return run_load(loop, "protocol", "connect", args.connect_concurrency, 16, args)


def run_http(loop: str, mode: str, args: argparse.Namespace) -> tuple[float, dict]:
    with running(loop, mode, args.wrk_duration * 2 + 90) as server:
        if args.wrk_warmup:
            run_wrk(server, args.wrk_warmup, args.wrk_threads, args.wrk_connections)
        result = run_wrk(
            server, args.wrk_duration, args.wrk_threads, args.wrk_connections
        )
        server.check()
    return result["per_second"], result


def hold_idle(server: Server, count: int, hold: float) -> tuple[int, dict]:
    """Open `count` connections to the server and hold them; return the server's RSS
    (KiB) once all are open, and the load generator's JSON."""
    argv = [str(LOADGEN), "idle", "--addr", f"127.0.0.1:{server.port}"]
    argv += ["--count", str(count), "--hold", str(hold)]
    client = Client(argv, hold + 30, stdin=subprocess.PIPE)
    rss = []

    def on_line(line: str) -> None:
        if line.startswith("ready"):
            time.sleep(0.2)  # let the server finish with the last few
            rss.append(server.rss_kib())
            client.release()

    result = drive(client, server, on_line, lambda: bool(rss))
    return rss[0], result


def run_idle(loop: str, args: argparse.Namespace) -> tuple[float, dict]:
    with running(loop, "protocol", 120) as server:
        # A warm-up round of 200 connections, so that what a loop allocates once (code
        # paths, caches, lists grown to size) is in the baseline, not in the delta.
        hold_idle(server, 200, 20)
        time.sleep(0.3)
        base = server.rss_kib()
        full, result = hold_idle(server, args.idle_count, 60)
        time.sleep(0.3)
        after = server.rss_kib()
        server.check()
    per_conn = (full - base) / args.idle_count
    details = {
        "rss_base_kib": base,
        "rss_full_kib": full,
        "rss_after_kib": after,
        **result,
    }
    return per_conn, details


# --- rows, cells, repetitions -------------------------------------------------------------


@dataclass
class Row:
    section: str
    name: str  # unique, for --json
    label: str
    run: Callable[[str, argparse.Namespace], tuple[float, dict]]
    loops: list[str]


@dataclass
class Cell:
    values: list[float] = field(default_factory=list)
    details: list[dict] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.values)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def spread(self) -> float:
        """Half the min..max range, relative to the median."""
        med = self.median
        return (max(self.values) - min(self.values)) / 2 / med if med else 0.0

    def per_cpu_second(self) -> float | None:
        """Median requests per server CPU-second, for the rows that measure it."""
        rates = [
            d["requests"] / d["server_cpu"]
            for d in self.details
            if d.get("server_cpu") and "requests" in d
        ]
        return statistics.median(rates) if rates else None

    def share(self, key: str) -> float | None:
        """Median share of the measured window that the server ("server_cpu") or the
        load generator ("client_cpu") ran on its CPU, or waited for it ("..._wait")."""
        shares = [d[key] / d["seconds"] for d in self.details if key in d]
        return statistics.median(shares) if shares else None

    def contended(self) -> bool:
        """True when the server or the load generator typically waited for its CPU
        (another process had it) more than CONTENDED of the measured window."""
        waits = [self.share("server_wait"), self.share("client_wait")]
        return any(w is not None and w > CONTENDED for w in waits)


def size_label(size: int) -> str:
    return f"{size // 1024} KiB" if size >= 1024 else f"{size} B"


def build_rows(args: argparse.Namespace, loops: list[str]) -> list[Row]:
    plain = [name for name in loops if name not in (STOCK_TUNED, REFERENCE)]
    rows: list[Row] = []
    if "echo" in args.only:
        for mode in args.modes:
            for size in ECHO_SIZES:
                rows.append(
                    Row(
                        "echo",
                        f"echo-{mode}-{size}",
                        f"{mode} {size_label(size)}",
                        lambda loop, a, m=mode, s=size: run_echo(loop, m, s, a),
                        loops,
                    )
                )
    if "connect" in args.only:
        label = f"connect+echo+close, {args.connect_concurrency} at once"
        rows.append(Row("connect", "connect", label, run_connect, plain))
    if "http" in args.only and args.wrk:
        rows.append(
            Row(
                "http",
                "http",
                "response in one write()",
                lambda loop, a: run_http(loop, "http", a),
                plain,
            )
        )
        rows.append(
            Row(
                "http",
                "http-split",
                "header + body: two write()s",
                lambda loop, a: run_http(loop, "http-split", a),
                plain,
            )
        )
    if "idle" in args.only:
        label = f"{args.idle_count:,} idle connections"
        rows.append(Row("idle", "idle", label, run_idle, plain))
    return rows


Results = dict[str, dict[str, Cell]]  # row name -> loop name -> cell


def progress(text: str) -> None:
    """One line on stderr, rewritten in place (nothing if stderr is not a terminal)."""
    if sys.stderr.isatty():
        print(f"\r\033[K{text}", end="", file=sys.stderr, flush=True)


def run_all(rows: list[Row], loops: list[str], args: argparse.Namespace) -> Results:
    results = {row.name: {loop: Cell() for loop in row.loops} for row in rows}
    total = sum(len(row.loops) for row in rows) * args.repeat
    done = 0
    for rep in range(args.repeat):
        shift = rep % len(loops)
        order = loops[shift:] + loops[:shift]
        for row in rows:
            for loop in (name for name in order if name in row.loops):
                done += 1
                cell = results[row.name][loop]
                if cell.error is not None:
                    continue  # failed once: not run again
                progress(f"[{done}/{total}] {row.section}: {row.label} on {loop}...")
                try:
                    value, details = row.run(loop, args)
                except BenchmarkError as exc:
                    cell.error = str(exc)
                    continue
                cell.values.append(value)
                cell.details.append(details)
        if not sys.stderr.isatty():
            print(f"  repetition {rep + 1}/{args.repeat} done", file=sys.stderr)
    progress("")
    return results


# --- reporting ---------------------------------------------------------------------------


def ratio_table(
    rows: list[Row], loops: list[str], results: Results, base: str, value: Callable
) -> None:
    table = []
    for row in rows:
        ref = results[row.name].get(base)
        ref_value = value(ref) if ref is not None and ref.ok else None
        line = [row.label]
        for loop in loops:
            cell = results[row.name].get(loop)
            mine = value(cell) if cell is not None and cell.ok else None
            line.append(f"{mine / ref_value:.2f}" if mine and ref_value else "-")
        table.append(line)
    print_table(["", *loops], table)


def rate_tables(
    title: str, rows: list[Row], loops: list[str], results: Results, unit: str
) -> None:
    """The medians with their spread, then the ratios to uvloop and to stock."""
    print(f"\n{title}: {unit}, median of the repetitions, ± half their min..max range")
    table = []
    for row in rows:
        line = [row.label]
        for loop in loops:
            cell = results[row.name].get(loop)
            if cell is None:
                line.append("")
            elif cell.ok:
                mark = " !" if cell.contended() else ""
                line.append(f"{fmt_rate(cell.median)} ±{cell.spread:.0%}{mark}")
            else:
                line.append("FAILED")
        table.append(line)
    print_table(["", *loops], table)
    for base in ("uvloop", "stock"):
        if base in loops:
            print(f"\n{title}: ratio to {base} (> 1 is faster than {base})")
            ratio_table(rows, loops, results, base, lambda c: c.median)


def cpu_tables(title: str, rows: list[Row], loops: list[str], results: Results) -> None:
    print(
        f"\n{title}: requests per server CPU-second (median); in brackets the share of"
        " its CPU\nthat the server / the load generator used in the measured window"
        " (! marks contention, see below)"
    )
    table = []
    for row in rows:
        line = [row.label]
        for loop in loops:
            cell = results[row.name].get(loop)
            if cell is None or not cell.ok or cell.per_cpu_second() is None:
                line.append("-")
                continue
            uses = [cell.share("server_cpu"), cell.share("client_cpu")]
            shown = "/".join(f"{u:.0%}" if u is not None else "?" for u in uses)
            mark = " !" if cell.contended() else ""
            line.append(f"{fmt_rate(cell.per_cpu_second())} ({shown}){mark}")
        table.append(line)
    print_table(["", *loops], table)
    if "uvloop" in loops:
        print(f"\n{title}: requests per server CPU-second, ratio to uvloop")
        ratio_table(rows, loops, results, "uvloop", lambda c: c.per_cpu_second())


def report(rows: list[Row], loops: list[str], results: Results) -> None:
    def section(name: str) -> list[Row]:
        return [row for row in rows if row.section == name]

    def shown(rows_: list[Row]) -> list[str]:
        return [loop for loop in loops if any(loop in row.loops for row in rows_)]

    if echo := section("echo"):
        rate_tables("echo", echo, shown(echo), results, "requests/s")
        cpu_tables("echo", echo, shown(echo), results)
    if connect := section("connect"):
        rate_tables("connect", connect, shown(connect), results, "connections/s")
        cpu_tables("connect", connect, shown(connect), results)
    if http := section("http"):
        names = shown(http)
        rate_tables("http (wrk)", http, names, results, "requests/s")
        cpu_tables("http (wrk)", http, names, results)
        one, two = (results[row.name] for row in http)
        print("\nhttp: throughput lost by writing header and body separately")
        line = ["1 - two writes / one write"]
        for loop in names:
            ok = one[loop].ok and two[loop].ok
            line.append(f"{1 - two[loop].median / one[loop].median:.0%}" if ok else "-")
        print_table(["", *names], [line])
    if idle := section("idle"):
        names = shown(idle)
        print("\nmemory per idle connection: server RSS growth / connections (median)")
        table = []
        for row in idle:
            line = [row.label]
            for loop in names:
                cell = results[row.name][loop]
                line.append(
                    f"{cell.median:.2f} KiB ±{cell.spread:.0%}" if cell.ok else "FAILED"
                )
            table.append(line)
        print_table(["", *names], table)
        if "uvloop" in names:
            print(
                "\nmemory per idle connection: ratio to uvloop (< 1 uses less than uvloop)"
            )
            ratio_table(idle, names, results, "uvloop", lambda c: c.median)

    contended = [
        cell for row in rows for cell in results[row.name].values() if cell.contended()
    ]
    if contended:
        print(
            f"\n! {len(contended)} cells: in most runs the server or the load generator"
            f" waited for its CPU\n  more than {CONTENDED:.0%} of the time (another"
            " process ran there): their rates are low by\n  about that much; requests per"
            " server CPU-second are less affected."
        )
    failures = [
        f"  {row.section}: {row.label} on {loop}: {cell.error}"
        for row in rows
        for loop, cell in results[row.name].items()
        if cell.error
    ]
    if failures:
        print("\nfailed cells:", *failures, sep="\n")


def to_json(
    rows: list[Row],
    versions: dict[str, str],
    missing: dict[str, str],
    results: Results,
    args: argparse.Namespace,
    load: dict[str, list[float]],
) -> dict:
    def cell_json(cell: Cell) -> dict:
        out: dict[str, Any] = {"error": cell.error, "values": cell.values}
        if cell.ok:
            out["median"] = cell.median
            out["per_server_cpu_second"] = cell.per_cpu_second()
            out["contended"] = cell.contended()
        out["runs"] = cell.details
        return out

    settings = {
        k: v
        for k, v in vars(args).items()
        if k not in ("json", "png") and not callable(v)
    }
    return {
        "python": sys.version,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "pinned": PIN,
        "load_average": load,
        "settings": settings,
        "glibc_tunables": TUNABLES,
        "loops": versions,
        "missing": missing,
        "rows": {
            row.name: {
                "section": row.section,
                "label": row.label,
                "results": {
                    loop: cell_json(c) for loop, c in results[row.name].items()
                },
            }
            for row in rows
        },
    }


def draw_png(path: str, rows: list[Row], loops: list[str], results: Results) -> None:
    """Bar charts: each rate relative to uvloop (if it ran), and memory per connection."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"matplotlib is not installed: no chart ({path}); pip install matplotlib")
        return

    base = "uvloop" if "uvloop" in loops else None
    colors = dict(zip(ALL_LOOPS, plt.get_cmap("tab10").colors, strict=False))
    # (title, rows, value of a cell, shown relative to `base`)
    panels = [
        ("echo: requests/s", ["echo"], lambda c: c.median, True),
        ("echo: requests per server CPU-second", ["echo"], Cell.per_cpu_second, True),
        (
            "connections/s and HTTP requests/s",
            ["connect", "http"],
            lambda c: c.median,
            True,
        ),
        (
            "KiB per idle connection (lower is better)",
            ["idle"],
            lambda c: c.median,
            False,
        ),
    ]
    panels = [
        (title, [r for r in rows if r.section in sections], value, relative)
        for title, sections, value, relative in panels
    ]
    panels = [p for p in panels if p[1]]
    if not panels:
        return
    fig, axes = plt.subplots(len(panels), 1, figsize=(11, 3.4 * len(panels)))
    axes = axes if len(panels) > 1 else [axes]

    def cell_value(row: Row, loop: str, value: Callable) -> float | None:
        cell = results[row.name].get(loop)
        return value(cell) if cell is not None and cell.ok else None

    for ax, (title, prows, value, relative) in zip(axes, panels, strict=True):
        relative = relative and base is not None
        shown = [loop for loop in loops if any(loop in r.loops for r in prows)]
        width = 0.8 / len(shown)
        for i, loop in enumerate(shown):
            heights = []
            for r in prows:
                v = cell_value(r, loop, value)
                ref = cell_value(r, base, value) if relative else 1.0
                heights.append(v / ref if v is not None and ref else 0.0)
            xs = [j + (i - (len(shown) - 1) / 2) * width for j in range(len(prows))]
            ax.bar(xs, heights, width, label=loop, color=colors.get(loop))
        ax.set_xticks(
            range(len(prows)), [r.label for r in prows], rotation=15, ha="right"
        )
        if len(prows) == 1:
            ax.set_xlim(-1.5, 1.5)  # not one bar as wide as the chart
        if relative:
            ax.axhline(1.0, color="grey", linewidth=0.8)
            ax.set_ylabel(f"ratio to {base}")
            title += f" relative to {base} (> 1: faster)"
        ax.set_title(title)
        ax.legend(fontsize="small", ncol=len(shown))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"chart written to {path}")


# --- command line ------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--quick", action="store_true", help="short run (about 2 minutes)")
    add("--repeat", type=int, help="repetitions (default 3; 2 with --quick)")
    add("--only", help=f"comma-separated sections: {','.join(SECTIONS)}")
    add("--loops", help=f"comma-separated loops (default {','.join(ALL_LOOPS)})")
    add("--modes", help=f"echo servers (default {','.join(ECHO_MODES)})")
    add(
        "--duration",
        type=float,
        help="seconds per echo/connect run (default 2; 0.5 quick)",
    )
    add(
        "--warmup",
        type=float,
        help="seconds of load before each (default 0.5; 0.2 quick)",
    )
    add("--connections", type=int, default=8, help="echo connections (default 8)")
    add("--connect-concurrency", type=int, default=8, help="connect row (default 8)")
    add("--wrk-duration", type=int, help="seconds per wrk run (default 5; 2 quick)")
    add(
        "--wrk-warmup", type=int, help="seconds of wrk before each (default 1; 0 quick)"
    )
    add("--wrk-threads", type=int, default=2, help="wrk threads (default 2)")
    add("--wrk-connections", type=int, default=50, help="wrk connections (default 50)")
    add(
        "--idle-count",
        type=int,
        default=10_000,
        help="idle connections (default 10000)",
    )
    add("--json", metavar="FILE", help="also write every measurement to FILE")
    add("--png", metavar="FILE", help="draw a bar chart to FILE (needs matplotlib)")
    args = parser.parse_args(argv)

    quick = args.quick
    defaults = {
        "repeat": 2 if quick else 3,
        "duration": 0.5 if quick else 2.0,
        "warmup": 0.2 if quick else 0.5,
        "wrk_duration": 2 if quick else 5,
        "wrk_warmup": 0 if quick else 1,
    }
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if (
        args.repeat < 1
        or args.duration <= 0
        or args.warmup < 0
        or args.wrk_duration < 1
    ):
        parser.error(
            "--repeat >= 1, --duration > 0, --warmup >= 0, --wrk-duration >= 1"
        )

    args.only = pick_names(parser, args.only, SECTIONS, "section")
    args.loops = pick_names(parser, args.loops, ALL_LOOPS, "loop")
    args.modes = pick_names(parser, args.modes, ECHO_MODES, "echo mode")
    return args


def build_loadgen() -> str | None:
    """Build the load generator if needed; return an error message if that failed."""
    if shutil.which("cargo") is None:
        return None if LOADGEN.exists() else "cargo is not installed"
    manifest = LOADGEN_DIR / "Cargo.toml"
    proc = subprocess.run(
        ["cargo", "build", "--release", "--quiet", "--manifest-path", str(manifest)],
        capture_output=True,
        text=True,
        check=False,
    )
    return None if proc.returncode == 0 else proc.stderr.strip()[-2000:]


def main(argv: list[str] | None = None) -> int:
    global PIN
    args = parse_args(argv)

    # The loops: stock+tunables comes with stock.
    wanted = [name for name in args.loops if name != STOCK_TUNED]
    if STOCK_TUNED in args.loops and "stock" not in wanted:
        wanted.insert(0, "stock")
    kinds, missing = load_loops([n for n in LOOP_MODULES if n in wanted])
    versions = {k.name: k.version for k in kinds}
    if REFERENCE in wanted and "echo" in args.only:
        versions[REFERENCE] = "reference (echo rows: Rust epoll echo server, no Python)"
    if "stock" in versions and STOCK_TUNED in args.loops:
        versions[STOCK_TUNED] = versions["stock"] + " + GLIBC_TUNABLES"
    loops = [name for name in args.loops if name in versions]

    machine = f"{platform.machine()}, {os.cpu_count()} CPUs"
    print(f"Python {platform.python_version()} on {machine}")
    print("loops: " + ", ".join(versions[name] for name in loops))
    for name, why in missing.items():
        print(f"missing (skipped): {name}: {why}")
    if not loops:
        return 2

    PIN = shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2
    if PIN:
        print(
            f"server on CPU {SERVER_CPU}, load generator on CPU {CLIENT_CPU} (taskset)"
        )
    else:
        print("not pinned (needs taskset and 2 CPUs): the rates include the contention")
    if error := build_loadgen():
        print(f"cannot build the load generator ({LOADGEN_DIR}):\n{error}")
        return 2
    args.wrk = shutil.which("wrk") is not None
    if "http" in args.only and not args.wrk:
        print(
            "wrk is not installed: the HTTP rows are skipped (apt-get install -y wrk)"
        )
    if "idle" in args.only:
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard != resource.RLIM_INFINITY and hard < args.idle_count + 100:
            args.idle_count = max(100, hard - 100)
            print(
                f"open-file limit {hard}: idle connections lowered to {args.idle_count}"
            )
    print(
        f"{args.repeat} repetitions; echo: {args.connections} connections, "
        f"{args.duration:g} s after {args.warmup:g} s of warm-up; "
        f"wrk: {args.wrk_threads} threads, {args.wrk_connections} connections, "
        f"{args.wrk_duration} s"
    )
    load = {"before": list(os.getloadavg())}
    print(f"load average before: {' '.join(f'{x:.2f}' for x in load['before'])}")

    rows = build_rows(args, loops)
    t0 = time.perf_counter()
    results = run_all(rows, loops, args)
    load["after"] = list(os.getloadavg())
    report(rows, loops, results)
    print(
        f"\ntotal {time.perf_counter() - t0:.0f} s; load average after: "
        + " ".join(f"{x:.2f}" for x in load["after"])
    )

    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                to_json(rows, versions, missing, results, args, load), f, indent=2
            )
            f.write("\n")
        print(f"results written to {args.json}")
    if args.png:
        draw_png(args.png, rows, loops, results)

    failed = any(cell.error for row in results.values() for cell in row.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
