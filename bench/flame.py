"""Where `payhook serve` spends its CPU under load: a py-spy flame graph and the top frames.

    python -m bench.flame [--seconds 10] [--connections 32] [--out docs/performance/flame-after.svg]

The server is pinned to core 0 and wrk to core 1, Redis on either (bench.suite's layout);
py-spy samples it 250 times a second. A profile is only of the path it claims when every
request was answered `201`: with any error the graph would show error handling instead, so
none is written then.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from bench.suite import PYTHON, ROOT, Plan, Suite, pinned_to, process, wait_up
from ops.redis_server import LocalRedis, free_port

SAMPLE_RATE = 250
GRAPH = ROOT / "docs" / "performance" / "flame-after.svg"
LINE = re.compile(r":\d+\)$")


def stacks_of(collapsed: str) -> list[tuple[list[str], int]]:
    """py-spy's collapsed stacks (`frame;frame;frame count` per line), outermost first."""
    found = []
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            found.append((stack.split(";"), int(count)))
    return found


def shares(counts: dict[str, int], total: int, floor_percent: float) -> list[tuple[float, str]]:
    rows = ((100.0 * n / total, name) for name, n in counts.items()) if total else iter(())
    return sorted(((p, n) for p, n in rows if p >= floor_percent), reverse=True)


def top_frames(collapsed: str, floor_percent: float = 2.0) -> list[tuple[float, str]]:
    """Each function's inclusive share of all samples, the largest first. Lines of one
    function are merged, and a sample counts once for a function however often it is on the
    stack. On uvloop a callback's stack starts at its coroutine, not at the loop, so one
    request is split over several roots and these shares under-count outer functions."""
    counts: dict[str, int] = defaultdict(int)
    stacks = stacks_of(collapsed)
    for frames, samples in stacks:
        for function in {LINE.sub(")", frame) for frame in frames}:
            counts[function] += samples
    return shares(counts, sum(samples for _, samples in stacks), floor_percent)


FILE = re.compile(r"\(([^():]+)(?::\d+)?\)$")


def by_package(collapsed: str, floor_percent: float = 0.0) -> list[tuple[float, str]]:
    """Self time by the package of the innermost Python frame (the code running, or the C
    code it called: uvloop, hiredis, orjson and pydantic-core count for their caller)."""
    counts: dict[str, int] = defaultdict(int)
    stacks = stacks_of(collapsed)
    for frames, samples in stacks:
        found = FILE.search(frames[-1])
        path = found.group(1) if found else "?"
        counts[path.split("/", 1)[0] if "/" in path else path.removesuffix(".py")] += samples
    return shares(counts, sum(samples for _, samples in stacks), floor_percent)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--out", type=Path, default=GRAPH)
    args = parser.parse_args()
    py_spy = shutil.which("py-spy") or str(Path(PYTHON).with_name("py-spy"))
    state = Path(tempfile.mkdtemp(prefix="payhook-flame-"))
    suite = Suite(Plan.of(quick=True), state)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with pinned_to(None):
        redis = LocalRedis(state / "redis").start()
    try:
        serve = [PYTHON, "-m", "ops", "serve"]
        env = suite.env(redis.url, port)
        with process("serve", serve, env, state, cores=suite.server_cores()) as child:
            wait_up(f"{url}/healthz", child)
            suite.load(url, args.connections, 2.0, f"warm-{time.time_ns()}")
            profile, stacks = state / "flame.svg", state / "stacks.txt"
            # Two samplers at once: the graph, and the collapsed stacks the summary reads.
            spies = [
                subprocess.Popen(
                    [
                        py_spy,
                        *["record", "--pid", str(child.pid), "--rate", str(SAMPLE_RATE)],
                        *["--duration", str(int(args.seconds) + 1), "--output", str(out)],
                        *["--format", form, "--nonblocking"],
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                for out, form in ((profile, "flamegraph"), (stacks, "raw"))
            ]
            time.sleep(0.5)
            found = suite.load(url, args.connections, args.seconds, f"flame-{time.time_ns()}")
            for spy in spies:
                spy.wait(timeout=args.seconds + 60)
        print(
            f"{found.per_second:.0f} req/s, p50 {found.p50_ms:.2f} ms, p99 {found.p99_ms:.2f} ms, "
            f"errors {found.errors} ({args.connections} connections, {args.seconds:g} s)"
        )
        if found.errors:
            print("not written: a profile with errors shows their handling, not the intake")
            return 1
        args.out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(profile, args.out)
        shutil.copyfile(stacks, args.out.with_suffix(".txt"))
        collapsed = stacks.read_text()
        print("self time by package:")
        for percent, name in by_package(collapsed):
            print(f"{percent:6.2f}%  {name}")
        print("functions, inclusive (a sample counts once for each function on its stack):")
        for percent, name in top_frames(collapsed):
            print(f"{percent:6.2f}%  {name}")
        print(f"wrote {args.out} and the collapsed stacks {args.out.with_suffix('.txt')}")
        return 0
    finally:
        redis.stop()
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
