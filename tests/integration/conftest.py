"""End-to-end fixtures: the sandbox Shopify as a real server, real worker processes, the real
web app on a TCP port, all on a real redis-server."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from config import Settings
from config.settings import child_environment
from ops.redis_server import LocalRedis, free_port
from sandbox.client import SandboxShopifyClient
from sandbox.shopify import RunningShopifySandbox, start_shopify_sandbox
from sessions.models import Session
from sessions.states import State
from sessions.store import SessionStore
from tests.factories import CALLBACK_SECRET, payment_body, shopify_headers, signed_callback
from webhook.app import create_app
from workers.connectors.simulator import SimulatorConnector

DB = 0
TOKEN = "shpat_integration_test"
# Opens the web processes' readiness detail and metrics on their Shopify-facing listener.
ADMIN_TOKEN = "integration-admin-token-0123456789abcdef"
ROOT = Path(__file__).resolve().parents[2]
Found = TypeVar("Found")


class ThreadedSandbox:
    """The sandbox Shopify on its own event loop thread, so it outlives each test's loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        future = asyncio.run_coroutine_threadsafe(
            start_shopify_sandbox("127.0.0.1", 0, callback_secret=CALLBACK_SECRET), self.loop
        )
        self.running: RunningShopifySandbox = future.result(timeout=10)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.running.close(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


@pytest.fixture(scope="session")
def shopify_sandbox() -> Iterator[RunningShopifySandbox]:
    sandbox = ThreadedSandbox()
    yield sandbox.running
    sandbox.close()


# The sandbox's buyer page, as the payment tests give it: it calls payhook back.
BUYER_PAGE = "/pay/{session_id}?amount={amount}&currency={currency}&callback={callback}"


def buyer_page(sandbox: RunningShopifySandbox, page: str = BUYER_PAGE) -> dict[str, Any]:
    """Settings (for `serve_app`) whose payments send the buyer to the sandbox's simulator
    PSP page `page`, which calls the app back, signed, at its `public_url`."""
    return {"buyer_page_url": sandbox.url + page, "simulator_webhook_secret": CALLBACK_SECRET}


def worker_environment(
    redis_server: LocalRedis, sandbox: RunningShopifySandbox, state_dir: Path, **overrides: str
) -> dict[str, str]:
    env = {
        "PAYHOOK_REDIS_URL": f"redis://127.0.0.1:{redis_server.port}/{DB}",
        "PAYHOOK_SHOPIFY_GRAPHQL_URL": sandbox.graphql_url_template,
        "PAYHOOK_SHOPIFY_ACCESS_TOKEN": TOKEN,
        # Short ladders: the paths are the production ones, only the waits shrink.
        "PAYHOOK_PSP_RETRY_LADDER": "0.05,0.1,0.2",
        "PAYHOOK_PSP_MAX_ATTEMPTS": "8",
        "PAYHOOK_PSP_RETRY_DEADLINE_SECONDS": "0",
        "PAYHOOK_SHOPIFY_RETRY_LADDER": "0.05,0.1,0.2",
        "PAYHOOK_SHOPIFY_MAX_ATTEMPTS": "10",
        "PAYHOOK_SHOPIFY_RETRY_DEADLINE_SECONDS": "0",
        "PAYHOOK_PSP_TIMEOUT_SECONDS": "1",
        "PAYHOOK_SHOPIFY_TIMEOUT_SECONDS": "2",
        "PAYHOOK_LEASE_SECONDS": "5",
        "PAYHOOK_REDIS_TIMEOUT_SECONDS": "1",
        "PAYHOOK_SWEEP_INTERVAL_SECONDS": "0.5",
        "PAYHOOK_STATE_DIR": str(state_dir),
        "PAYHOOK_LOG_LEVEL": "INFO",
    }
    env.update(overrides)
    return child_environment(env)


@dataclass
class WorkerProcess:
    """`payhook worker` (or `beat`) as a subprocess, with its log file."""

    process: subprocess.Popen[bytes]
    log: Path

    @classmethod
    def start(
        cls, command: list[str], env: dict[str, str], log: Path, ready_marker: str | None = "ready"
    ) -> WorkerProcess:
        sink = log.open("ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "ops", *command],
            env=env,
            cwd=ROOT,
            stdout=sink,
            stderr=sink,
            start_new_session=True,
        )
        sink.close()
        started = cls(process, log)
        if ready_marker is not None:
            started.wait_for(ready_marker)
        return started

    def wait_for(self, marker: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if marker in self.log.read_text(errors="replace"):
                return
            if self.process.poll() is not None:
                raise RuntimeError(f"process exited:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.1)
        raise RuntimeError(f"no {marker!r} in {self.log}:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture(scope="module")
def worker(
    redis_server: LocalRedis,
    shopify_sandbox: RunningShopifySandbox,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[WorkerProcess]:
    state = tmp_path_factory.mktemp("worker")
    env = worker_environment(redis_server, shopify_sandbox, state)
    process = WorkerProcess.start(["worker"], env, state / "worker.log")
    yield process
    process.stop()


@pytest.fixture
def settings(redis_server: LocalRedis, shopify_sandbox: RunningShopifySandbox) -> Settings:
    return Settings(
        redis_url=f"redis://127.0.0.1:{redis_server.port}/{DB}",
        shopify_graphql_url=shopify_sandbox.graphql_url_template,
        shopify_access_token=TOKEN,
        psp_timeout_seconds=1,
        shopify_timeout_seconds=2,
        lease_seconds=5,
        redis_timeout_seconds=1,
    )


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[Redis]:
    client = Redis.from_url(settings.redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def store(redis: Redis) -> SessionStore:
    return SessionStore(redis)


@pytest.fixture
def psp(redis: Redis) -> SimulatorConnector:
    return SimulatorConnector(redis)


@pytest.fixture
async def app_url(aiohttp_server: Any, settings: Settings) -> str:
    server = await aiohttp_server(create_app(settings))
    return str(server.make_url("")).rstrip("/")


# `serve_app(**overrides)`: the app's base URL.
ServeApp = Callable[..., Awaitable[str]]


@pytest.fixture
def serve_app(aiohttp_server: Any, settings: Settings) -> ServeApp:
    """Starts the real app with `settings` and `overrides` on 127.0.0.1, at a port picked
    just before it binds (one picked earlier may be taken by then, under xdist). Its URL is
    its `public_url`: the buyer page calls the app back there, so it is known before the
    app starts."""

    async def serve(**overrides: Any) -> str:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        served = settings.model_copy(update={"public_url": url, **overrides})
        await aiohttp_server(create_app(Settings.model_validate(served.model_dump())), port=port)
        return url

    return serve


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def sandbox(
    http: aiohttp.ClientSession, shopify_sandbox: RunningShopifySandbox
) -> AsyncIterator[SandboxShopifyClient]:
    client = SandboxShopifyClient(shopify_sandbox.url, http)
    await client.clear_faults()
    yield client
    await client.clear_faults()


async def send_session(
    http: aiohttp.ClientSession,
    app_url: str,
    sandbox: SandboxShopifyClient,
    kind: str,
    body: dict[str, Any],
    *,
    shop: str,
    confirmation_callback_url: str | None = None,
) -> tuple[int, dict[str, Any]]:
    """Shopify sends a `kind` session of `shop` once, its gid registered with the sandbox
    Shopify first (as Shopify creates a session before the app hears of it); the app's
    status and JSON answer."""
    await sandbox.register([body["gid"]], confirmation_callback_url=confirmation_callback_url)
    async with http.post(
        f"{app_url}/{kind}_sessions",
        json=body,
        headers=shopify_headers(**{"Shopify-Shop-Domain": shop}),
    ) as answer:
        return answer.status, await answer.json()


@dataclass(frozen=True)
class OpenedPayment:
    """A payment session the app accepted: the body Shopify sent and the app's answer."""

    body: dict[str, Any]
    answer: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.body["id"])

    @property
    def gid(self) -> str:
        return str(self.body["gid"])

    @property
    def redirect_url(self) -> str:
        """Where the app sends the buyer."""
        return str(self.answer["redirect_url"])


async def open_payment(
    http: aiohttp.ClientSession,
    app_url: str,
    sandbox: SandboxShopifyClient,
    *,
    shop: str,
    confirmation_callback_url: str | None = None,
    **overrides: Any,
) -> OpenedPayment:
    """Shopify opens a payment session (`payment_body(**overrides)`) and the app takes it."""
    body = payment_body(**overrides)
    status, answer = await send_session(
        http,
        app_url,
        sandbox,
        "payment",
        body,
        shop=shop,
        confirmation_callback_url=confirmation_callback_url,
    )
    assert status == 201, answer
    return OpenedPayment(body, answer)


async def psp_says(
    http: aiohttp.ClientSession, app_url: str, session_id: str, outcome: str, **fields: Any
) -> tuple[int, dict[str, Any]]:
    """The simulator PSP calls the app back, signed, with the buyer's `outcome` (and
    `fields`); the app's status and JSON answer."""
    raw, headers = signed_callback(session_id, outcome, **fields)
    url = f"{app_url}/psp/simulator/payments/{quote(session_id, safe='')}"
    async with http.post(url, data=raw, headers=headers) as answer:
        return answer.status, await answer.json()


async def wait_state(store: SessionStore, session_id: str, state: State) -> Session:
    """The session once it is in `state`; the test fails if it never is."""

    async def check() -> Session | None:
        session = await store.get(session_id)
        return session if session is not None and session.state is state else None

    return await until(check, f"session {session_id} {state}")


async def wait_final(store: SessionStore, session_id: str, patience: float = 30.0) -> Session:
    """Wait until the session is reported or failed; fail the test if it never is."""
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        session = await store.get(session_id)
        if session is not None and session.state in (State.REPORTED, State.FAILED):
            return session
        await asyncio.sleep(0.05)
    raise AssertionError(f"session {session_id} is still {session and session.state}")


async def until(
    check: Callable[[], Awaitable[Found | None]], what: str, patience: float = 30.0
) -> Found:
    """The first truthy answer of `check`, asked every 50 ms; the test fails if none comes
    within `patience` seconds. A Redis that refuses connections (a test restarting it) is
    asked again."""
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        try:
            found = await check()
        except RedisConnectionError:
            found = None
        if found:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"never, within {patience:g} s: {what}")
