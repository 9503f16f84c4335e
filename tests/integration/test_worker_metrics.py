"""Worker metrics as an operator's Prometheus sees them: a scripted run through a real worker
process (approve, decline, a PSP that fails three times, Shopify answering 503 twice and 429
once, a dead letter), then one scrape of the worker's metrics port over HTTP."""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from config import Settings
from ops.redis_server import LocalRedis
from sandbox.client import SandboxShopifyClient
from sandbox.shopify import RunningShopifySandbox
from sandbox.shopify_side import send_capture_session
from sessions.models import Session
from sessions.states import State
from sessions.store import SessionStore
from tests.integration.conftest import WorkerProcess, wait_final, worker_environment
from webhook.app import create_app
from workers.connectors.simulator import Magic, magic_amount

pytestmark = pytest.mark.integration

DB = 11
SHOP = "metrics-shop.myshopify.com"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture(scope="module")
def metrics_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def metered_worker(
    redis_server: LocalRedis,
    shopify_sandbox: RunningShopifySandbox,
    tmp_path_factory: pytest.TempPathFactory,
    metrics_port: int,
) -> Iterator[WorkerProcess]:
    state: Path = tmp_path_factory.mktemp("metered")
    env = worker_environment(
        redis_server,
        shopify_sandbox,
        state,
        PAYHOOK_REDIS_URL=f"redis://127.0.0.1:{redis_server.port}/{DB}",
        PAYHOOK_WORKER_METRICS_PORT=str(metrics_port),
    )
    process = WorkerProcess.start(["worker"], env, state / "worker.log")
    yield process
    process.stop()


@pytest.fixture
def metered_settings(redis_server: LocalRedis, settings: Settings) -> Settings:
    return settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{redis_server.port}/{DB}"})


@pytest.fixture
async def metered_store(metered_settings: Settings) -> AsyncIterator[SessionStore]:
    client = Redis.from_url(metered_settings.redis_url)
    await client.flushdb()
    yield SessionStore(client)
    await client.aclose()


async def scrape(http: aiohttp.ClientSession, url: str) -> Samples:
    async with http.get(url) as response:
        assert response.status == 200
        body = await response.text()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_a_scripted_run_shows_in_the_worker_metrics(
    metered_worker: WorkerProcess,
    metrics_port: int,
    metered_settings: Settings,
    metered_store: SessionStore,
    aiohttp_server: Any,
    http: aiohttp.ClientSession,
    sandbox: SandboxShopifyClient,
) -> None:
    server = await aiohttp_server(create_app(metered_settings))
    app_url = str(server.make_url("")).rstrip("/")

    async def settle(amount: str) -> Session:
        sent = await send_capture_session(
            http,
            app_url=app_url,
            sandbox=sandbox,
            shop=SHOP,
            payment_id=f"pay_{uuid.uuid4().hex[:10]}",
            amount=amount,
            currency="EUR",
        )
        assert sent.status == 201
        return await wait_final(metered_store, sent.id, patience=60)

    approved = await settle("12.00")
    declined = await settle(magic_amount(Magic.DECLINE, 12))
    flaky = await settle(magic_amount(Magic.FLAKY, 12))
    # Fault rules apply in the order armed: two 503s, then a 429, then Shopify takes it.
    await sandbox.add_fault({"kind": "status", "status": 503, "times": 2})
    await sandbox.add_fault({"kind": "html_429", "times": 1})
    throttled = await settle("12.00")
    lost = await settle(magic_amount(Magic.VANISHING, 12))
    assert [s.state for s in (approved, declined, flaky, throttled)] == [State.REPORTED] * 4
    assert lost.state is State.FAILED

    samples = await scrape(http, f"http://127.0.0.1:{metrics_port}/metrics")
    settled = "payhook_settlements_total"
    psp = {"kind": "capture", "connector": "simulator"}
    assert value(samples, settled, result="approved", **psp) == 3
    assert value(samples, settled, result="declined", **psp) == 1
    assert value(samples, settled, result="failed", **psp) == 1
    assert value(samples, "payhook_dead_letters_total", kind="capture") == 1
    assert value(samples, "payhook_reports_total", kind="capture", report="resolved") == 3
    assert value(samples, "payhook_reports_total", kind="capture", report="rejected") == 1

    retries = "payhook_retries_total"
    assert value(samples, retries, loop="psp", reason="unavailable") == 3
    # 8 attempts at most (the test ladder): 7 retries, then the dead letter.
    assert value(samples, retries, loop="psp", reason="ambiguous") == 7
    assert value(samples, retries, loop="shopify", reason="http_5xx") == 2
    assert value(samples, retries, loop="shopify", reason="http_429") == 1

    shopify = "payhook_shopify_call_seconds_count"
    assert value(samples, shopify, kind="capture", result="accepted") == 4
    assert value(samples, shopify, kind="capture", result="http_5xx") == 2
    assert value(samples, shopify, kind="capture", result="http_429") == 1
    calls = "payhook_psp_call_seconds_count"
    assert value(samples, calls, result="approved", **psp) == 3
    assert value(samples, calls, result="declined", **psp) == 1
    assert value(samples, calls, result="unavailable", **psp) == 3
    # The lost session: 8 sends, and before each of the last 7 a status look-up.
    assert value(samples, calls, result="ambiguous", **psp) == 8
    assert value(samples, calls, result="not_found", **psp) == 7
    # Every call took some time, and none anywhere near a timeout.
    assert 0 < value(samples, "payhook_psp_call_seconds_sum", result="approved", **psp) < 3
    within_a_second = value(
        samples, "payhook_psp_call_seconds_bucket", le="1.0", result="approved", **psp
    )
    assert within_a_second == 3

    delay = "payhook_proposed_to_reported_seconds"
    assert value(samples, f"{delay}_count", kind="capture") == 4
    # proposedAt is when the test built each request: all four were reported within a minute.
    assert value(samples, f"{delay}_bucket", kind="capture", le="60.0") == 4
    assert value(samples, f"{delay}_sum", kind="capture") > 0
    assert value(samples, "payhook_sessions_in_flight") == 0
