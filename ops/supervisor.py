"""`payhook worker --processes N`: N worker processes, kept running, stopped together.

Each child is an ordinary `payhook worker` (its own event loop, its own Celery consumer). A
child that dies is started again after a short pause; SIGTERM or SIGINT is passed on to
every child, which finishes its in-flight sessions (a warm shutdown) before exiting.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from types import FrameType

RESTART_PAUSE_SECONDS = 1.0


def _start(index: int, concurrency: int) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "ops", "worker", "--index", str(index)]
    return subprocess.Popen([*command, "--concurrency", str(concurrency)])


def supervise(count: int, *, concurrency: int) -> int:
    children = {index: _start(index, concurrency) for index in range(count)}
    stopping: list[int] = []

    def stop(signum: int, _: FrameType | None) -> None:
        stopping.append(signum)
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signum)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        while not stopping:
            for index, child in list(children.items()):
                if child.poll() is not None and not stopping:
                    print(
                        f"payhook worker {index} exited {child.returncode}; starting it again",
                        file=sys.stderr,
                    )
                    time.sleep(RESTART_PAUSE_SECONDS)
                    children[index] = _start(index, concurrency)
            time.sleep(0.2)
        codes = [child.wait() for child in children.values()]
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return max((abs(code) for code in codes), default=0) if codes else 0
