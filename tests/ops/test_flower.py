"""`payhook flower` serves Flower on the project's broker, so operators can watch workers;
beyond localhost only behind basic auth, and not at all without it."""

from __future__ import annotations

import base64
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from pydantic import ValidationError
from redis import Redis

from config import Settings
from config.settings import child_environment
from ops.redis_server import LocalRedis, free_port
from sessions.models import Kind
from transport.celery_app import create_celery
from transport.messages import CeleryHandoff

ROOT = Path(__file__).resolve().parents[2]
DB = 7


@contextmanager
def running(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as sink:
        child = subprocess.Popen(
            [sys.executable, "-m", "ops", *args], env=env, cwd=ROOT, stdout=sink, stderr=sink
        )
    try:
        yield child
    finally:
        child.terminate()
        try:
            child.wait(timeout=20)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(timeout=5)


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as answer:
        body: bytes = answer.read()
        return body


def wait_healthy(port: int, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if fetch(f"http://127.0.0.1:{port}/healthcheck") == b"OK":
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(log.read_text()[-2000:])


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
            "PAYHOOK_REDIS_URL": f"{redis_server.url[:-2]}/{DB}",
            "PAYHOOK_FLOWER_ADDRESS": "0.0.0.0",
            "PAYHOOK_FLOWER_BASIC_AUTH": "ops:correct-horse",
        }
    )
    log = tmp_path / "flower.log"
    with running(["flower", "--port", str(port)], env, log):
        wait_healthy(port, log)
        assert b"flower_" in fetch(f"http://127.0.0.1:{port}/metrics")
        assert "payhook.sweep" in log.read_text()
        workers = f"http://127.0.0.1:{port}/workers"
        assert status_of(workers) == 401
        assert status_of(workers, "ops:wrong") == 401
        assert status_of(workers, "ops:correct-horse") == 200
        assert "correct-horse" not in log.read_text()


@pytest.mark.integration
def test_flower_sees_the_tasks_of_a_worker_started_with_events_off(
    redis_server: LocalRedis, tmp_path: Path
) -> None:
    # Workers run with task events off by default (they cost a fifth of Celery's time per
    # message); Flower switches them on over remote control, so what it shows is still live.
    url = f"{redis_server.url[:-2]}/{DB}"
    env = child_environment({"PAYHOOK_REDIS_URL": url})
    assert not Settings(redis_url=url).worker_task_events
    handoff = CeleryHandoff(create_celery(Settings(redis_url=url)))
    broker = Redis.from_url(url)
    port = free_port()
    succeeded = re.compile(
        r'flower_events_total\{[^}]*task="payhook\.capture"[^}]*type="task-succeeded"'
    )
    with (
        running(["worker"], env, tmp_path / "worker.log"),
        running(["flower", "--port", str(port)], env, tmp_path / "flower.log"),
    ):
        wait_healthy(port, tmp_path / "flower.log")
        seen = False
        deadline = time.monotonic() + 45
        while not seen and time.monotonic() < deadline:
            # A session that does not exist: the worker takes the message and does nothing.
            envelope = handoff.envelope(Kind.CAPTURE, "flower-probe")
            broker.lpush(envelope.queue, envelope.body)
            time.sleep(1)
            seen = bool(succeeded.search(fetch(f"http://127.0.0.1:{port}/metrics").decode()))
        broker.close()
    assert seen, (tmp_path / "worker.log").read_text()[-3000:]


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
