"""`payhook dev --demo N --exit`, the README's first command, run as a user would."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from config.settings import child_environment
from ops.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.integration
def test_dev_mode_starts_everything_and_the_demo_sessions_reach_shopify(tmp_path: Path) -> None:
    env = child_environment(
        {
            "PAYHOOK_STATE_DIR": str(tmp_path / "state"),
            "PAYHOOK_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
            "PAYHOOK_PORT": str(free_port()),
        }
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ops",
            "dev",
            "--demo",
            "20",
            "--exit",
            "--sandbox-port",
            str(free_port()),
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    summary = re.search(r"(\d+) resolved, (\d+) rejected at Shopify", done.stdout)
    assert summary is not None, done.stdout[-2000:]
    resolved, rejected = int(summary[1]), int(summary[2])
    assert (resolved + rejected, rejected) == (20, 2)  # every tenth demo amount is declined
    assert "● web" in done.stdout
    assert "● sandbox" in done.stdout
    logs = tmp_path / "state" / "logs"
    assert {p.name for p in logs.iterdir()} >= {"web.log", "worker.log", "beat.log", "sandbox.log"}
