"""The PSP fakes as `payhook dev` runs them: served on a port, steered over their admin API."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from sandbox.psp import FAKES, RunningFake, start_psp_fake

SEEDS = {
    "http": None,
    "ledyer": {"id": "or_9", "lines": [{"totalAmount": 1_000, "reference": "a"}]},
    "aplazame": {"id": "ord-9", "total": 1_000},
    "purchase": {"id": "pu-9", "items": [{"reference": "a", "amount": 1_000}]},
    "bigcommerce": {"id": 9, "total": "10.00"},
}


@pytest.fixture(params=list(FAKES))
async def running(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, RunningFake]]:
    fake = await start_psp_fake(request.param, "127.0.0.1", 0)
    yield request.param, fake
    await fake.close()


async def test_faults_calls_orders_and_reset_over_http(running: tuple[str, RunningFake]) -> None:
    name, fake = running
    async with aiohttp.ClientSession(base_url=fake.url) as http:
        async with http.post("/_sandbox/faults", json={"kind": "status", "times": 2}) as answer:
            assert answer.status == 201
        async with http.post("/_sandbox/faults", json={"kind": "explode"}) as answer:
            assert answer.status == 400
        async with http.get("/_sandbox/faults") as answer:
            [fault] = (await answer.json())["faults"]
            assert (fault["kind"], fault["remaining"]) == ("status", 2)
        if SEEDS[name] is not None:
            async with http.post("/_sandbox/orders", json=SEEDS[name]) as answer:
                assert answer.status == 201
        async with http.post("/_sandbox/reset") as answer:
            assert answer.status == 200
        async with http.get("/_sandbox/calls") as answer:
            assert (await answer.json())["calls"] == []
