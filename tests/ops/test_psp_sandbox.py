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


def test_psp_sandbox_latency_slows_every_capture(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "psp.log"
    args = ["psp-sandbox", "http", "--port", str(port), "--latency", "0.3"]
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "ops", *args], cwd=ROOT, stdout=sink, stderr=sink
        )
    base = f"http://127.0.0.1:{port}"
    capture = urllib.request.Request(
        f"{base}/captures",
        data=b'{"session_id": "s-1", "payment_id": "p-1", "amount": "10.00", "currency": "EUR"}',
        headers={"Idempotency-Key": "s-1", "Content-Type": "application/json"},
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"{base}/_sandbox/calls", timeout=1):
                    break
            except OSError:
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        started = time.perf_counter()
        with urllib.request.urlopen(capture, timeout=5) as answer:
            assert answer.status == 201
        assert time.perf_counter() - started >= 0.3
    finally:
        process.terminate()
        process.wait(timeout=10)
