"""`payhook dev` as the ops tests run it: left running on ports of its own, its output in a
file, until it says it is running."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from config.settings import child_environment
from ops.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]


def start_dev(
    tmp_path: Path,
    *,
    demo: int = 0,
    app_port: int | None = None,
    flower_port: int | None = None,
    sandbox_port: int | None = None,
    preexec_fn: Callable[[], object] | None = None,
) -> tuple[subprocess.Popen[bytes], Path]:
    """`payhook dev --demo N` left running, on ports of its own, its output in a file."""
    env = child_environment(
        {
            "PAYHOOK_WORKER_METRICS_PORT": str(free_port()),
            "PAYHOOK_OPERATOR_PORT": str(free_port()),
            "PAYHOOK_STATE_DIR": str(tmp_path / "state"),
            "PAYHOOK_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
            "PAYHOOK_PORT": str(app_port or free_port()),
        }
    )
    output = tmp_path / "dev.out"
    ports = [
        *("--sandbox-port", str(sandbox_port or free_port())),
        *("--flower-port", str(flower_port or free_port())),
    ]
    with output.open("wb") as sink:
        dev = subprocess.Popen(
            [sys.executable, "-m", "ops", "dev", "--demo", str(demo), *ports],
            env=env,
            cwd=ROOT,
            stdout=sink,
            stderr=subprocess.STDOUT,
            preexec_fn=preexec_fn,
        )
    return dev, output


def wait_running(dev: subprocess.Popen[bytes], output: Path) -> float:
    """Wait for "payhook is running"; the deadline it kept, for the test's later waits."""
    deadline = time.monotonic() + 120
    while "payhook is running" not in output.read_text():
        assert dev.poll() is None, output.read_text()[-3000:]
        assert time.monotonic() < deadline, output.read_text()[-3000:]
        time.sleep(0.2)
    return deadline
