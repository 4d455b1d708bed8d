"""One net.py cell, all loops at once: their servers run side by side and the load moves
between them in short slices.

    python3 bench/slices.py --mode protocol --size 1024 --loops uvloop,rloop,oxloop,reference

net.py measures each loop's cell in a run of its own, seconds apart; on a machine whose speed
drifts (a shared VM) its medians of three then move by several percent between runs. Here every
server (net_server.py, or the reference echo server) is started first, all pinned to CPU 0 (an
idle one costs nothing), and then each round drives each of them for one slice from CPU 1, the
order reversed every other round. A slice-by-slice ratio compares two loops measured within
seconds of each other; the median of those ratios over the rounds, with its quartiles, is what
this prints, for requests/s and for requests per server CPU-second (the server's schedstat over
the load generator's measured window), with that CPU time split into user and system time (in
the shares /proc/PID/stat's utime and stime, 10 ms ticks, give over the slice). Echo modes use
the load generator (8 connections), the http modes wrk (2 threads, 50 connections, as net.py).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys

import net

HTTP_MODES = ("http", "http-split")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--mode", default="protocol", choices=[*net.ECHO_MODES, *HTTP_MODES]
    )
    parser.add_argument("--size", type=int, default=1024, help="echo message bytes")
    parser.add_argument(
        "--loops",
        default="uvloop,rloop,oxloop,reference",
        help="the first is the base of the ratios; reference: echo modes only",
    )
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--slice", type=float, default=1.0, help="seconds per slice")
    parser.add_argument("--connections", type=int, default=8, help="echo connections")
    return parser.parse_args(argv)


def drive(
    server: net.Server, args: argparse.Namespace, seconds: float
) -> tuple[float, float, float]:
    """One slice: (requests/s, server CPU seconds per request, user share of that CPU)."""
    user0, system0 = net.proc_user_system(server.pid)
    if args.mode in HTTP_MODES:
        result = net.run_wrk(server, max(1, round(seconds)), 2, 50)
    else:
        result = net.loadgen(
            server,
            "echo",
            *("--connections", str(args.connections), "--size", str(args.size)),
            *("--duration", str(seconds), "--warmup", "0.1"),
            limit=seconds + 30,
        )
    user1, system1 = net.proc_user_system(server.pid)
    server.check()
    ticks = (user1 - user0) + (system1 - system0)
    user_share = (user1 - user0) / ticks if ticks else float("nan")
    return result["per_second"], result["server_cpu"] / result["requests"], user_share


def quartiles(values: list[float]) -> tuple[float, float, float]:
    v = sorted(values)
    return v[len(v) // 4], statistics.median(v), v[(3 * len(v)) // 4]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    loops = args.loops.split(",")
    if args.mode in HTTP_MODES and net.REFERENCE in loops:
        loops.remove(net.REFERENCE)
    if not net.LOADGEN.exists():
        print(
            f"build the load generator first: cd {net.LOADGEN_DIR} && cargo build --release"
        )
        return 2
    lifetime = args.rounds * len(loops) * (args.slice + 5) + 120
    label = (
        args.mode
        if args.mode in HTTP_MODES
        else f"{args.mode} {net.size_label(args.size)}"
    )
    samples: dict[str, list[tuple[float, float, float]]] = {loop: [] for loop in loops}
    with contextlib.ExitStack() as stack:
        servers = {
            loop: stack.enter_context(net.running(loop, args.mode, lifetime))
            for loop in loops
        }
        for loop in loops:  # warm-up
            drive(servers[loop], args, 1.0)
        for r in range(args.rounds):
            for loop in loops if r % 2 == 0 else loops[::-1]:
                samples[loop].append(drive(servers[loop], args, args.slice))
            print(f"  round {r + 1}/{args.rounds}", file=sys.stderr, flush=True)
    base = loops[0]
    print(
        f"{label}: {args.rounds} rounds of {args.slice:g} s slices; quartiles of the ratios "
        f"to {base}, slice by slice"
    )
    print(
        f"{'loop':12} {'req/s':>9} {'µs CPU/req':>11} {'user':>6} {'system':>6}   "
        f"{'req/s ratio':>22}   {'per-CPU ratio':>22}"
    )
    for loop in loops:
        rates = [s[0] for s in samples[loop]]
        cpus = [s[1] for s in samples[loop]]
        cpu = statistics.median(cpus) * 1e6
        user = statistics.median(s[2] for s in samples[loop]) * cpu
        system = cpu - user
        rate_q = quartiles([s[0] / b[0] for s, b in zip(samples[loop], samples[base])])
        cpu_q = quartiles([b[1] / s[1] for s, b in zip(samples[loop], samples[base])])
        print(
            f"{loop:12} {statistics.median(rates):9,.0f} {cpu:11.2f} {user:6.2f} {system:6.2f}   "
            f"{rate_q[1]:6.3f} ({rate_q[0]:.3f}..{rate_q[2]:.3f})   "
            f"{cpu_q[1]:6.3f} ({cpu_q[0]:.3f}..{cpu_q[2]:.3f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
