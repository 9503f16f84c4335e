"""`payhook flower` serves Flower on the project's broker, so operators can watch workers."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from config.settings import child_environment
from ops.redis_server import LocalRedis, free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.integration
def test_flower_comes_up_on_the_payhook_broker(redis_server: LocalRedis, tmp_path: Path) -> None:
    port = free_port()
    env = child_environment({"PAYHOOK_REDIS_URL": f"{redis_server.url[:-2]}/7"})
    log = tmp_path / "flower.log"
    with log.open("wb") as sink:
        flower = subprocess.Popen(
            [sys.executable, "-m", "ops", "flower", "--port", str(port)],
            env=env,
            cwd=ROOT,
            stdout=sink,
            stderr=sink,
        )
    try:
        deadline = time.monotonic() + 30
        health = b""
        while time.monotonic() < deadline and not health:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthcheck", timeout=1) as r:
                    health = r.read()
            except OSError:
                time.sleep(0.2)
        assert health == b"OK", log.read_text()[-2000:]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            assert b"flower_" in r.read()
        assert "payhook.capture" in log.read_text()
    finally:
        flower.terminate()
        flower.wait(timeout=15)
