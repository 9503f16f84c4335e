"""The admin API through the real app on a real redis-server: listing, reading and
replaying failed sessions, and who may do it."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
import redis
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from config import Settings
from ops.redis_server import LocalRedis
from sessions.ledger import Book
from sessions.ledger_store import LedgerStore
from sessions.models import Op, Outcome
from sessions.states import State
from sessions.store import SessionStore
from tests.factories import make_session, received_event, store_failed
from transport.messages import QUEUE
from webhook.app import create_app

DB = 4
TOKEN = "admin-secret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def settings(redis_server: LocalRedis) -> Settings:
    return Settings(redis_url=f"redis://127.0.0.1:{redis_server.port}/{DB}", admin_token=TOKEN)


@pytest.fixture
async def store(settings: Settings, inspect: redis.Redis) -> AsyncIterator[SessionStore]:
    client = Redis.from_url(settings.redis_url)
    yield SessionStore(client)
    await client.aclose()


def queued_ids(inspect: redis.Redis) -> list[str]:
    return [
        json.loads(base64.b64decode(json.loads(m)["body"]))[0][0]
        for m in inspect.lrange(QUEUE, 0, -1)
    ]


@pytest.mark.parametrize(
    ("headers", "status"), [({}, 401), ({"Authorization": "Bearer nope"}, 401)]
)
async def test_the_admin_api_needs_the_token(
    client: TestClient[Any, Any], headers: dict[str, str], status: int
) -> None:
    answer = await client.get("/admin/sessions", headers=headers)
    assert answer.status == status
    assert (await answer.json())["error"]["code"] == "unauthorized"


async def test_without_a_configured_token_the_admin_api_does_not_exist(
    aiohttp_client: Any, redis_server: LocalRedis
) -> None:
    app = create_app(Settings(redis_url=f"redis://127.0.0.1:{redis_server.port}/{DB}"))
    answer = await (await aiohttp_client(app)).get("/admin/sessions", headers=AUTH)
    assert answer.status == 404


async def test_failed_sessions_are_listed_with_filters(
    client: TestClient[Any, Any], store: SessionStore
) -> None:
    first = await store_failed(store, "captureSessionResolve: HTTP 503", shop="a.myshopify.com")
    second = await store_failed(store, "captureSessionResolve: HTTP 401", shop="b.myshopify.com")
    await store.create(make_session(), received_event(), due_at=0, queue=False)  # not failed

    async def ids(query: str) -> list[str]:
        answer = await client.get(f"/admin/sessions?state=failed{query}", headers=AUTH)
        assert answer.status == 200
        return [s["id"] for s in (await answer.json())["sessions"]]

    assert await ids("") == [first.id, second.id]
    assert await ids("&shop=b.myshopify.com") == [second.id]
    assert await ids("&error_contains=503") == [first.id]
    assert await ids("&kind=capture&shop=a.myshopify.com") == [first.id]
    assert await ids("&since=2999-01-01T00:00:00Z") == []


async def test_a_session_reads_with_its_timeline(
    client: TestClient[Any, Any], store: SessionStore
) -> None:
    session = await store_failed(store, "boom")
    answer = await client.get(f"/admin/sessions/{session.id}", headers=AUTH)
    document = await answer.json()
    assert document["session"]["state"] == "failed"
    assert [e["event"] for e in document["timeline"]] == ["received", "failed"]
    assert (await client.get("/admin/sessions/nope", headers=AUTH)).status == 404
    assert document["money_held"] is None


async def test_a_failed_session_shows_the_money_it_holds(
    client: TestClient[Any, Any], store: SessionStore
) -> None:
    session = make_session(amount=Decimal("25.00"))
    ledger = LedgerStore(store.redis)
    book = Book(currency="EUR", authorized=10_000)
    await ledger.open(session.payment_id, book)
    await ledger.reserve(session.payment_id, session.id, Op.CAPTURE, 2500, "EUR", time.time())
    held = await store_failed(store, "ambiguous: timeout", id=session.id, amount=Decimal("25.00"))
    answer = await client.get(f"/admin/sessions/{held.id}", headers=AUTH)
    document = await answer.json()
    assert document["money_held"] == f"capture 25.00 EUR on payment {held.payment_id}"


async def test_replay_resumes_at_the_recovery_point_and_queues_once(
    client: TestClient[Any, Any], store: SessionStore, inspect: redis.Redis
) -> None:
    settled = await store_failed(store, "HTTP 503", state=State.SETTLED, outcome=Outcome.APPROVED)
    unsettled = await store_failed(store, "PSP down")
    alive = make_session()
    await store.create(alive, received_event(), due_at=0, queue=False)
    answer = await client.post(
        "/admin/replay", headers=AUTH, json={"session_ids": [settled.id, unsettled.id, alive.id]}
    )
    assert answer.status == 200
    document = await answer.json()
    assert document["replayed"] == [
        {"id": settled.id, "resumes_at": "settled"},
        {"id": unsettled.id, "resumes_at": "received"},
    ]
    assert [s["id"] for s in document["skipped"]] == [alive.id]
    assert queued_ids(inspect) == [settled.id, unsettled.id][::-1]
    resumed = await store.get(settled.id)
    assert resumed is not None
    assert (resumed.state, resumed.replays, resumed.outcome) == (State.SETTLED, 1, Outcome.APPROVED)
    assert (await store.timeline(settled.id))[-1].event == "replayed"
    assert await store.failed_ids() == []


async def test_a_dry_run_bulk_replay_changes_nothing(
    client: TestClient[Any, Any], store: SessionStore, inspect: redis.Redis
) -> None:
    session = await store_failed(store, "HTTP 503")
    answer = await client.post(
        "/admin/replay", headers=AUTH, json={"failed": True, "dry_run": True}
    )
    assert (await answer.json())["replayed"] == [{"id": session.id, "resumes_at": "received"}]
    assert inspect.llen(QUEUE) == 0
    assert await store.failed_ids() == [session.id]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"failed": True, "session_ids": ["x"]},
        {"failed": True, "rate": 0},
        {"failed": True, "kind": "refund_or_what"},
        {"session_ids": "x"},
    ],
)
async def test_a_malformed_replay_request_is_a_422(
    client: TestClient[Any, Any], body: dict[str, Any]
) -> None:
    answer = await client.post("/admin/replay", headers=AUTH, json=body)
    assert answer.status == 422
    assert (await answer.json())["error"]["code"] in ("invalid_field", "invalid_body")


async def test_readiness_warns_when_redis_could_evict_sessions(
    client: TestClient[Any, Any], inspect: redis.Redis
) -> None:
    assert (await (await client.get("/readyz", headers=AUTH)).json())["warnings"] == []
    inspect.config_set("maxmemory-policy", "allkeys-lru")
    try:
        document = await (await client.get("/readyz", headers=AUTH)).json()
    finally:
        inspect.config_set("maxmemory-policy", "noeviction")
    assert document["ready"] is True
    assert any("noeviction" in w for w in document["warnings"])


@pytest.mark.parametrize(
    "moment", ["0001-01-01T00:00:00", "0001-01-01T00:00:00+23:00", "9999-12-31T23:59:59-23:00"]
)
async def test_the_earliest_and_latest_times_filter_without_an_error(
    client: TestClient[Any, Any], store: SessionStore, moment: str
) -> None:
    # A time without an offset is UTC, as for `payhook sessions list`.
    await store_failed(store, "boom")
    for name in ("since", "until"):
        answer = await client.get(
            "/admin/sessions", params={"state": "failed", name: moment}, headers=AUTH
        )
        assert answer.status == 200, (name, moment)
