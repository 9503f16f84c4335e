"""`payhook flower` serves Flower on the project's broker, so operators can watch workers;
beyond localhost only behind basic auth, and not at all without it."""

from __future__ import annotations

import base64
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from pydantic import ValidationError

from config import Settings
from config.settings import child_environment
from ops.redis_server import LocalRedis, free_port

ROOT = Path(__file__).resolve().parents[2]


def status_of(url: str, credentials: str | None = None) -> int:
    request = urllib.request.Request(url)
    if credentials is not None:
        request.add_header(
            "Authorization", "Basic " + base64.b64encode(credentials.encode()).decode()
        )
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as refused:
        return refused.code


@pytest.mark.integration
def test_flower_on_every_interface_serves_on_the_payhook_broker_behind_basic_auth(
    redis_server: LocalRedis, tmp_path: Path
) -> None:
    port = free_port()
    env = child_environment(
        {
            "PAYHOOK_REDIS_URL": f"{redis_server.url[:-2]}/7",
            "PAYHOOK_FLOWER_ADDRESS": "0.0.0.0",
            "PAYHOOK_FLOWER_BASIC_AUTH": "ops:correct-horse",
        }
    )
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
        workers = f"http://127.0.0.1:{port}/workers"
        assert status_of(workers) == 401
        assert status_of(workers, "ops:wrong") == 401
        assert status_of(workers, "ops:correct-horse") == 200
        assert "correct-horse" not in log.read_text()
    finally:
        flower.terminate()
        flower.wait(timeout=15)


@pytest.mark.parametrize("address", ["0.0.0.0", "::", "10.1.2.3"])
def test_flower_beyond_localhost_without_a_password_refuses_to_start(address: str) -> None:
    env = child_environment({"PAYHOOK_FLOWER_ADDRESS": address})
    env.pop("PAYHOOK_FLOWER_BASIC_AUTH", None)
    done = subprocess.run(
        [sys.executable, "-m", "ops", "flower", "--port", str(free_port())],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "PAYHOOK_FLOWER_BASIC_AUTH" in done.stderr
    assert address in done.stderr


@pytest.mark.parametrize("credentials", ["ops", "ops:", ":secret", "ops:secret,"])
def test_basic_auth_that_is_no_user_and_password_is_a_configuration_error(
    credentials: str,
) -> None:
    with pytest.raises(ValidationError, match="flower_basic_auth"):
        Settings(flower_basic_auth=credentials)
