"""`payhook psp-sandbox NAME --port P`, the process `payhook dev --connector NAME` starts."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from ops.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]


def test_psp_sandbox_serves_a_fake_that_opens_unknown_orders(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "psp.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "ops", "psp-sandbox", "ledyer", "--port", str(port)],
            cwd=ROOT,
            stdout=sink,
            stderr=sink,
        )
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/orders/or_dev", headers={"Authorization": "Bearer any"}
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(request, timeout=1) as answer:
                    assert answer.status == 200
                    assert b'"uncaptured"' in answer.read()
                    break
            except OSError:
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
    finally:
        process.terminate()
        process.wait(timeout=10)
