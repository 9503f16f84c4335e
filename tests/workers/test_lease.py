"""Holding a lease while working: the session is free again however the work ends."""

from __future__ import annotations

import asyncio
import time

import fakeredis
import pytest

from sessions.claims import Claimed, Claims
from sessions.keys import lease_key
from sessions.store import SessionStore
from tests.factories import make_session, received_event
from workers.lifecycle.lease import holding

LEASE = 0.3  # renewed every 0.1 s


async def claimed(redis: fakeredis.FakeAsyncRedis) -> tuple[Claims, Claimed]:
    session = make_session()
    await SessionStore(redis).create(session, received_event(), due_at=0, queue=False)
    claims = Claims(redis)
    claim = await claims.claim(session.id, now=time.time(), lease_seconds=LEASE)
    assert isinstance(claim, Claimed)
    return claims, claim


async def test_work_that_fails_leaves_the_session_free_for_the_next_delivery(
    redis: fakeredis.FakeAsyncRedis,
) -> None:
    claims, claim = await claimed(redis)

    async def work() -> None:
        raise RuntimeError("connector bug")

    with pytest.raises(RuntimeError):
        await holding(
            claims, claim.session.id, claim.fence, lease_seconds=LEASE, clock=time.time, work=work()
        )
    assert not await redis.exists(lease_key(claim.session.id))
    again = await claims.claim(claim.session.id, now=time.time(), lease_seconds=LEASE)
    assert isinstance(again, Claimed)


async def test_a_lease_renewed_during_the_work_is_released_after_the_renewer_stops(
    redis: fakeredis.FakeAsyncRedis,
) -> None:
    claims, claim = await claimed(redis)
    renewed = []

    async def work() -> str:
        # Longer than two renewal intervals: the lease outlives its first length.
        await asyncio.sleep(LEASE * 1.2)
        renewed.append(await redis.pttl(lease_key(claim.session.id)))
        return "done"

    result = await holding(
        claims, claim.session.id, claim.fence, lease_seconds=LEASE, clock=time.time, work=work()
    )
    assert result == "done"
    assert renewed[0] > 0  # still held after more than its first length
    assert not await redis.exists(lease_key(claim.session.id))
