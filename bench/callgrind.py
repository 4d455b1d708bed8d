"""Server instructions per echo request, counted by callgrind: stable where timings are not.

    python3 bench/callgrind.py [--loops oxloop,rloop,uvloop] [--modes protocol] [--sizes 1024]
                               [--requests 2000,12000] [--repeat 1] [--annotate]

For each loop, mode (protocol, streams or sockets: net_server.py's echo servers) and message
size, the server runs under ``valgrind --tool=callgrind`` twice while
``loadgen echo`` (8 connections) sends the two request counts; what the second run counted
beyond the first, divided by the extra requests, is the server's work per request, without
start-up, warm-up and shut-down. The count varies by a few percent from run to run (how many
requests a lap of the loop serves changes its per-lap share): ``--repeat R`` measures R times
and prints the median and the range. ``--annotate`` also prints the functions whose cost per
request differs most between the first loop and each other one.

Caveats: callgrind counts instructions, not time: system calls cost nothing here, and
``rep movsb`` (glibc's memcpy for large copies) counts once per byte, so a copy looks far dearer
than it is. Use it to compare code paths, and timings (bench/net.py) to compare loops.
Needs valgrind and callgrind_annotate (Debian: valgrind), and bench/loadgen built.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
LOADGEN = HERE / "loadgen" / "target" / "release" / "loadgen"
SERVER = """
import asyncio, signal, sys
sys.path.insert(0, {here!r})
import net_server
loop = net_server.new_loop(sys.argv[1])
asyncio.set_event_loop(loop)
port = loop.run_until_complete(net_server.SERVERS[sys.argv[2]](loop))
print(f"PORT {{port}}", flush=True)
signal.signal(signal.SIGTERM, lambda *_: loop.call_soon_threadsafe(loop.stop))
loop.run_forever()  # until SIGTERM: callgrind then writes its counts as the process exits
"""


def count(loop: str, mode: str, size: int, requests: int, out: Path) -> int:
    """Instructions the server ran while serving `requests` echo requests (and its set-up)."""
    script = out.with_suffix(".py")
    script.write_text(SERVER.format(here=str(HERE)))
    server = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable,
         str(script), loop, mode],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    line = server.stdout.readline()
    if not line.startswith("PORT "):
        server.kill()
        raise RuntimeError(f"{loop} {mode}: the server did not start: {server.stderr.read()[-500:]}")
    port = int(line.split()[1])
    subprocess.run(
        [str(LOADGEN), "echo", "--addr", f"127.0.0.1:{port}", "--size", str(size),
         "--connections", "8", "--requests", str(requests), "--warmup", "0", "--duration", "900"],
        check=True, stdout=subprocess.DEVNULL,
    )
    server.send_signal(signal.SIGTERM)
    _, err = server.communicate(timeout=300)
    found = re.search(r"Collected : (\d+)", err)
    if not found:
        raise RuntimeError(f"{loop} {mode}: no callgrind total: {err[-500:]}")
    return int(found.group(1))


def functions(path: Path) -> dict[str, int]:
    """Self cost per function, from callgrind_annotate."""
    text = subprocess.run(
        ["callgrind_annotate", "--threshold=100", str(path)], capture_output=True, text=True,
        check=True,
    ).stdout
    costs: dict[str, int] = {}
    for line in text.splitlines():
        m = re.match(r"\s*([\d,]+) \(\s*[\d.]+%\)\s+(.*)$", line)
        if m and "PROGRAM TOTALS" not in m.group(2):
            name = re.sub(r" \[[^]]*\]$", "", m.group(2))
            costs[name] = costs.get(name, 0) + int(m.group(1).replace(",", ""))
    return costs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loops", default="oxloop,rloop,uvloop")
    parser.add_argument("--modes", default="protocol")
    parser.add_argument("--sizes", default="1024")
    parser.add_argument("--requests", default="2000,12000", help="the two request counts")
    parser.add_argument("--repeat", type=int, default=1, help="measurements per cell")
    parser.add_argument("--annotate", action="store_true", help="(of the last measurement)")
    args = parser.parse_args()
    low, high = (int(n) for n in args.requests.split(","))
    loops = args.loops.split(",")
    if not LOADGEN.exists():
        print(f"build the load generator first: cd {LOADGEN.parents[2]} && cargo build --release")
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        for mode in args.modes.split(","):
            for size in (int(s) for s in args.sizes.split(",")):
                per_function = {}
                for loop in loops:
                    started = time.monotonic()
                    measured = []
                    for _ in range(max(1, args.repeat)):
                        files = [Path(tmp) / f"{loop}.{mode}.{size}.{n}.out" for n in (low, high)]
                        totals = [count(loop, mode, size, n, f) for n, f in zip((low, high), files)]
                        measured.append((totals[1] - totals[0]) / (high - low))
                    spread = (
                        f", {min(measured):,.0f}..{max(measured):,.0f} over {len(measured)}"
                        if len(measured) > 1
                        else ""
                    )
                    print(f"{mode:9} {size:>7} B  {loop:10} {statistics.median(measured):9,.0f} "
                          f"instructions per request{spread}  "
                          f"({time.monotonic() - started:.0f} s)", flush=True)
                    if args.annotate:
                        a, b = (functions(f) for f in files)
                        per_function[loop] = {
                            k: (b.get(k, 0) - a.get(k, 0)) / (high - low) for k in set(a) | set(b)
                        }
                for other in loops[1:] if args.annotate else ():
                    base, them = per_function[loops[0]], per_function[other]
                    diff = sorted(((base.get(k, 0) - them.get(k, 0)), k) for k in set(base) | set(them))
                    print(f"  {loops[0]} - {other}, per request, largest differences:")
                    for value, name in diff[::-1][:12] + diff[:6]:
                        print(f"    {value:8.0f}  {name[:100]}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    sys.exit(main())
