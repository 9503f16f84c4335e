"""`payhook sessions stats` as a script or an operator runs it: the real CLI on a real
redis-server holding captures failed by the real runner."""

from __future__ import annotations

import asyncio
import json

import pytest
from redis.asyncio import Redis

from ops.redis_server import LocalRedis
from sessions.keys import CONFIRMING, DUE_INDEXED, PENDING, WORKABLE
from sessions.store import SessionStore
from tests.factories import make_session, received_event
from tests.ops.test_release import failed_capture, payhook

DB = 2

pytestmark = pytest.mark.integration


async def seed(url: str) -> None:
    redis = Redis.from_url(url)
    try:
        await redis.flushdb()
        await SessionStore(redis).create(make_session(), received_event(), due_at=0, queue=False)
    finally:
        await redis.aclose()
    # Every PSP answer lost: each failed capture keeps its reservation.
    for amount in ("10.55", "2.55"):
        await failed_capture(url, amount, attempts=2)


@pytest.fixture
def url(redis_server: LocalRedis) -> str:
    address = f"{redis_server.url[:-2]}/{DB}"
    asyncio.run(seed(address))
    return address


def test_stats_as_json_for_scripts(url: str) -> None:
    shown = payhook(url, "sessions", "stats", "--json")
    assert shown.returncode == 0, shown.stderr
    stats = json.loads(shown.stdout)
    assert stats["sessions"] == {"failed": {"capture": 2}, "received": {"capture": 1}}
    assert stats["failed"] == {"payment": 0, "capture": 2, "refund": 0, "void": 0}
    assert stats["due"] == 1
    assert stats["overdue"] == 1
    assert stats["oldest_unfinished_seconds"] < 60
    assert stats["money_held"] == {"EUR": "13.10"}
    assert stats["sessions_holding_money"] == 2
    assert stats["pending_payments"] == 0
    assert stats["pending_closes_in_seconds"] is None
    assert stats["due_indexed"] is True


def test_stats_as_a_table_for_people(url: str) -> None:
    shown = payhook(url, "sessions", "stats")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].split() == ["STATE", "payment", "capture", "refund", "void", "total"]
    assert "failed 0 2 0 0 2" in [" ".join(line.split()) for line in lines]
    assert "failed: 2 (payment 0, capture 2, refund 0, void 0)" in shown.stdout
    assert "money held by failed: 13.10 EUR (2 sessions, 0 voids)" in shown.stdout


def test_reindex_builds_the_due_summary_of_a_store_from_before_its_indexes(url: str) -> None:
    async def forget() -> None:
        redis = Redis.from_url(url)
        await redis.delete(WORKABLE, PENDING, CONFIRMING, DUE_INDEXED)
        await redis.aclose()

    asyncio.run(forget())
    before = json.loads(payhook(url, "sessions", "stats", "--json").stdout)
    assert before["due_indexed"] is False
    shown = payhook(url, "sessions", "reindex")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines()[-1].startswith("indexed: 1 index entries for 1 due sessions")
    after = json.loads(payhook(url, "sessions", "stats", "--json").stdout)
    assert after["due_indexed"] is True
    assert after["oldest_unfinished_seconds"] == pytest.approx(
        before["oldest_unfinished_seconds"], abs=30
    )
