"""Holding a lease while working: the session is free again however the work ends."""

from __future__ import annotations

import asyncio
import time

import fakeredis
import pytest

from errors import LeaseLostError
from sessions.claims import Claimed, Claims
from sessions.keys import lease_key
from sessions.store import SessionStore
from tests.factories import make_session, received_event
from workers.lifecycle.lease import holding
from workers.metrics import WorkerMetrics

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


async def test_renewals_and_a_lost_lease_show_in_the_worker_metrics(
    redis: fakeredis.FakeAsyncRedis,
) -> None:
    claims, claim = await claimed(redis)
    metrics = WorkerMetrics("simulator")
    session_id = claim.session.id

    async def kept() -> None:
        await asyncio.sleep(LEASE * 1.2)

    await holding(
        claims,
        session_id,
        claim.fence,
        lease_seconds=LEASE,
        clock=time.time,
        work=kept(),
        renewed=metrics.lease,
    )
    renewals = metrics.registry.get_sample_value("payhook_lease_renewals_total", {"result": "kept"})
    assert renewals is not None
    assert renewals >= 2

    second = await claims.claim(session_id, now=time.time(), lease_seconds=LEASE)
    assert isinstance(second, Claimed)

    async def taken_over() -> None:
        # Another worker claims the session once the lease is gone.
        await redis.delete(lease_key(session_id))
        assert isinstance(
            await claims.claim(session_id, now=time.time(), lease_seconds=LEASE), Claimed
        )
        await asyncio.sleep(LEASE * 2)

    with pytest.raises(LeaseLostError):
        await holding(
            claims,
            session_id,
            second.fence,
            lease_seconds=LEASE,
            clock=time.time,
            work=taken_over(),
            renewed=metrics.lease,
        )
    assert metrics.registry.get_sample_value("payhook_leases_lost_total") == 1
