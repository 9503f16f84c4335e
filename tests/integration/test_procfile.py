"""The Procfile, as a new user runs it: its process types are the ones the README and the
compose file name, with the same commands, and `honcho start` brings the whole service up
against a local Redis: the web answers `/healthz`, a worker settles a capture and Shopify
hears of it, beat holds its lock and Flower answers its health check."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import pytest
import yaml
from honcho.environ import parse_procfile
from redis import Redis as SyncRedis

from ops.redis_server import LocalRedis, free_port
from sandbox.client import SandboxShopifyClient
from sandbox.shopify import RunningShopifySandbox
from sandbox.shopify_side import send_capture_session
from sessions.keys import BEAT_LOCK, session_key
from tests.integration.conftest import ROOT, TOKEN

pytestmark = pytest.mark.integration

PROCESS_TYPES = ["web", "worker", "beat", "flower"]
# Everything up, on two cores shared with other work; the test as a whole stays under a
# minute because stopping takes honcho at most its own 5 s before it SIGKILLs.
START_SECONDS = 40.0
STOP_SECONDS = 15.0


def procfile() -> dict[str, str]:
    """The Procfile as honcho reads it: process type to command."""
    return dict(parse_procfile((ROOT / "Procfile").read_text()).processes)


def readme_process_types() -> dict[str, str]:
    """The README's "Process types (`Procfile`): `web` (`payhook serve`), ..." sentence."""
    text = (ROOT / "README.md").read_text()
    sentence = text[text.index("Process types (`Procfile`)") :].split("\n\n", 1)[0]
    return dict(re.findall(r"`(\w+)`\s+\(`(payhook [^`]+)`", sentence))


def readme_settings() -> set[str]:
    """Every variable the README's configuration table documents."""
    rows = (line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("|"))
    return {name for row in rows for name in re.findall(r"`(PAYHOOK_[A-Z0-9_]+)`", row)}


def compose_services() -> dict[str, dict[str, Any]]:
    """The compose file's payhook services (the ones built from payhook's image)."""
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    services: dict[str, dict[str, Any]] = compose["services"]
    return {name: spec for name, spec in services.items() if spec.get("image") == "payhook:latest"}


def test_the_procfile_has_the_four_process_types_the_readme_documents() -> None:
    assert list(procfile()) == PROCESS_TYPES
    assert procfile() == readme_process_types()


def test_the_compose_file_runs_each_process_type_with_the_procfile_command() -> None:
    commands = procfile()
    seen = set()
    for name, spec in compose_services().items():
        kind = re.sub(r"-\d+$", "", name)  # web-1, web-2: both are `web`
        seen.add(kind)
        assert commands[kind].split() == ["payhook", *spec["command"]], name
    assert seen == set(PROCESS_TYPES)


def test_every_setting_the_compose_file_gives_a_process_is_documented() -> None:
    env_file = (ROOT / "deploy" / "payhook.env").read_text()
    shared = set(re.findall(r"^(PAYHOOK_[A-Z0-9_]+)=", env_file, re.MULTILINE))
    given = shared | {
        variable
        for spec in compose_services().values()
        for variable in spec.get("environment", {})
        if variable.startswith("PAYHOOK_")
    }
    assert given - readme_settings() == set()


# Which process types read each setting payhook.env says to give from the environment.
READ_BY = {
    "PAYHOOK_TOKEN_KEYS": {"web", "worker", "beat", "flower"},
    "PAYHOOK_SIMULATOR_WEBHOOK_SECRET": {"web"},
    "PAYHOOK_ADMIN_TOKEN": {"web"},
    "PAYHOOK_SHOPIFY_API_KEY": {"web"},
    "PAYHOOK_SHOPIFY_API_SECRET": {"web"},
    "PAYHOOK_SHOPIFY_API_SECRET_PREVIOUS": {"web"},
    "PAYHOOK_PUBLIC_URL": {"web"},
    "PAYHOOK_TRUSTED_PROXIES": {"web"},
    "PAYHOOK_TLS_CERT_FILE": {"web"},
    "PAYHOOK_TLS_KEY_FILE": {"web"},
    "PAYHOOK_TLS_CLIENT_CA_FILE": {"web"},
    "PAYHOOK_TLS_CLIENT_SUBJECT": {"web"},
    "PAYHOOK_FLOWER_BASIC_AUTH": {"flower"},
}
# Each listening process type's probe: the setting naming its port, and the path it asks.
PROBES = {
    "web": ("PAYHOOK_OPERATOR_PORT", "/readyz"),
    "worker": ("PAYHOOK_WORKER_METRICS_PORT", "/metrics"),
    "flower": ("PAYHOOK_FLOWER_PORT", "/healthcheck"),
}


def from_the_environment() -> set[str]:
    """The settings payhook.env says are set in the environment of `docker compose`."""
    text = (ROOT / "deploy" / "payhook.env").read_text()
    comment = text[text.index("# Set in the environment of `docker compose`") :]
    return set(re.findall(r"PAYHOOK_[A-Z0-9_]+", comment))


def test_the_compose_file_forwards_every_setting_payhook_env_leaves_to_the_environment() -> None:
    named = from_the_environment()
    assert named == set(READ_BY), "a setting payhook.env names has no reader here, or back"
    for name, spec in compose_services().items():
        kind = re.sub(r"-\d+$", "", name)
        given = spec.get("environment", {})
        for variable, readers in READ_BY.items():
            if kind in readers:
                assert str(given.get(variable, "")).startswith(f"${{{variable}"), (
                    f"{name} does not forward {variable}"
                )


def test_every_listening_process_in_the_compose_file_is_probed_on_its_own_port() -> None:
    for name, spec in compose_services().items():
        kind = re.sub(r"-\d+$", "", name)
        if kind not in PROBES:
            assert "healthcheck" not in spec, name  # beat listens nowhere
            continue
        setting, path = PROBES[kind]
        port = spec["environment"][setting]
        probe = " ".join(spec["healthcheck"]["test"])
        assert f"http://127.0.0.1:{port}{path}" in probe, (name, probe)
        assert {"interval", "timeout", "retries"} <= set(spec["healthcheck"]), name


@dataclass
class Honcho:
    """`honcho start` on the repository's Procfile, with its output in `log`."""

    process: subprocess.Popen[bytes]
    log: Path
    web_url: str
    flower_url: str

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def check_running(self) -> None:
        # honcho stops every process once one exits: then nothing more will come up.
        if self.process.poll() is not None:
            raise AssertionError(f"honcho stopped:\n{self.output()[-4000:]}")


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM honcho, which passes it on to every process type; whatever is left after
    STOP_SECONDS is SIGKILLed, process group by process group."""
    try:
        children = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    _gone, alive = psutil.wait_procs(children, timeout=1)
    for child in alive:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, signal.SIGKILL)
    psutil.wait_procs(alive, timeout=5)


@pytest.fixture
def local_redis(tmp_path: Path) -> Iterator[LocalRedis]:
    server = LocalRedis(tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.fixture
def honcho(
    tmp_path: Path, local_redis: LocalRedis, shopify_sandbox: RunningShopifySandbox
) -> Iterator[Honcho]:
    web_port, flower_port = free_port(), free_port()
    # Nothing of the caller's own payhook settings: only what this test gives.
    inherited = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PAYHOOK_", "OTEL_", "PORT"))
    }
    env = {
        **inherited,
        # The `payhook` of this checkout's environment, as `make setup` installs it.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{inherited.get('PATH', '')}",
        "PYTHONUNBUFFERED": "1",
        "PAYHOOK_REDIS_URL": local_redis.url,
        "PAYHOOK_PORT": str(web_port),
        "PAYHOOK_FLOWER_PORT": str(flower_port),
        "PAYHOOK_SHOPIFY_GRAPHQL_URL": shopify_sandbox.graphql_url_template,
        "PAYHOOK_SHOPIFY_ACCESS_TOKEN": TOKEN,
        "PAYHOOK_STATE_DIR": str(tmp_path / "state"),
    }
    # An empty .env: a developer's own one in the checkout must not change what runs.
    env_file = tmp_path / "empty.env"
    env_file.write_text("")
    log = tmp_path / "honcho.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "honcho",
                "start",
                "--procfile",
                str(ROOT / "Procfile"),
                "--app-root",
                str(tmp_path),
                "--env",
                str(env_file),
            ],
            env=env,
            # Not the checkout: whatever a process writes to its working directory stays here.
            cwd=tmp_path,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    running = Honcho(
        process, log, f"http://127.0.0.1:{web_port}", f"http://127.0.0.1:{flower_port}"
    )
    yield running
    stop(process)


async def until_ok(http: aiohttp.ClientSession, url: str, honcho: Honcho, deadline: float) -> str:
    """GET `url` until it answers 200; its body."""
    while time.monotonic() < deadline:
        honcho.check_running()
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with http.get(url, timeout=aiohttp.ClientTimeout(total=2)) as answer:
                if answer.status == 200:
                    return await answer.text()
        await asyncio.sleep(0.2)
    raise AssertionError(f"{url} never answered 200:\n{honcho.output()[-4000:]}")


async def test_honcho_starts_web_worker_beat_and_flower_from_the_procfile(
    honcho: Honcho, local_redis: LocalRedis, shopify_sandbox: RunningShopifySandbox
) -> None:
    deadline = time.monotonic() + START_SECONDS
    redis = SyncRedis.from_url(local_redis.url, decode_responses=True)
    async with aiohttp.ClientSession() as http:
        assert '"ok"' in await until_ok(http, f"{honcho.web_url}/healthz", honcho, deadline)

        # A worker is up when a capture the web took is settled and reported to Shopify.
        sent = await send_capture_session(
            http,
            app_url=honcho.web_url,
            sandbox=SandboxShopifyClient(shopify_sandbox.url, http),
            shop="procfile-shop.myshopify.com",
            payment_id=f"pay_{uuid.uuid4().hex[:10]}",
            amount="12.00",
            currency="EUR",
        )
        assert sent.status == 201
        while redis.hget(session_key(sent.id), "state") != "reported":
            honcho.check_running()
            assert time.monotonic() < deadline, f"not reported:\n{honcho.output()[-4000:]}"
            await asyncio.sleep(0.2)
        calls = await SandboxShopifyClient(shopify_sandbox.url, http).calls(gid=sent.gid)
        assert [c["mutation"] for c in calls] == ["captureSessionResolve"]

        # Beat is up when it holds the beat lock, which it takes on its first tick.
        while not redis.get(BEAT_LOCK):
            honcho.check_running()
            assert time.monotonic() < deadline, f"no beat lock:\n{honcho.output()[-4000:]}"
            await asyncio.sleep(0.2)

        assert await until_ok(http, f"{honcho.flower_url}/healthcheck", honcho, deadline) == "OK"
    redis.close()
    # Each process type ran from the Procfile under its own name in honcho's output.
    for kind in PROCESS_TYPES:
        assert f"{kind}.1 started" in honcho.output()
