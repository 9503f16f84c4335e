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
def test_dev_mode_runs_all_four_session_kinds_through_to_shopify(tmp_path: Path) -> None:
    metrics_port = free_port()
    env = child_environment(
        {
            "PAYHOOK_WORKER_METRICS_PORT": str(metrics_port),
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
    summary = re.search(
        r"20 orders, (\d+) sessions reported to Shopify in .*: (.*)$", done.stdout, re.MULTILINE
    )
    assert summary is not None, done.stdout[-2000:]
    reported = {name: int(n) for n, name in re.findall(r"(\d+) (\w+)", summary[2])}
    # 20 payments; orders 9 and 19 voided; 6 and 13 over-capture; 1, 5 and 17 refunded.
    assert reported == {
        "paymentSessionResolve": 20,
        "voidSessionResolve": 2,
        "captureSessionResolve": 16,
        "captureSessionReject": 2,
        "refundSessionResolve": 3,
    }
    assert int(summary[1]) == 43
    assert "● web" in done.stdout
    assert "● sandbox" in done.stdout
    logs = tmp_path / "state" / "logs"
    assert {p.name for p in logs.iterdir()} >= {"web.log", "worker.log", "beat.log", "sandbox.log"}
    assert f"worker metrics on :{metrics_port}/metrics" in done.stdout
    served = [line for line in (logs / "worker.log").read_text().splitlines() if "metrics" in line]
    assert any('"metrics served"' in line and str(metrics_port) in line for line in served), served
    # Shop tokens in dev are encrypted under a key of dev's own, readable by its owner alone.
    assert (tmp_path / "state" / "token-key").stat().st_mode & 0o777 == 0o600
