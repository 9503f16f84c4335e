"""The PSP fakes as `payhook dev` runs them: served on a port, steered over their admin API."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from sandbox.psp import FAKES, RunningFake, start_psp_fake
from sandbox.psp.aplazame import MEDIA_TYPE
from sandbox.psp.common import Charges

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


async def test_charges_show_an_order_aplazame_captured_twice() -> None:
    """Aplazame takes no key: a second POST is a second capture, and the count says 2."""
    fake = await start_psp_fake("aplazame", "127.0.0.1", 0)
    headers = {"Accept": MEDIA_TYPE, "Authorization": "Bearer sk_test"}
    try:
        async with aiohttp.ClientSession(base_url=fake.url, headers=headers) as http:
            for amount in (1_000, 1_000, 1_051):  # the last one is declined
                async with http.post("/orders/ord-9/captures", json={"amount": amount}):
                    pass
            async with http.get("/_sandbox/charges", params={"operation": "capture"}) as answer:
                charges = Charges.model_validate(await answer.json())
    finally:
        await fake.close()
    assert charges == Charges(operation="capture", payments={"ord-9": 2}, keys={}, sent=3)


async def test_charges_count_a_payment_captured_under_two_keys_and_a_repeated_key_once() -> None:
    """The key dedupes a repeat; a second key for the same payment is a second charge."""
    fake = await start_psp_fake("http", "127.0.0.1", 0)
    money = {"payment_id": "p-1", "amount": "10.00", "currency": "EUR"}
    try:
        async with aiohttp.ClientSession(base_url=fake.url) as http:
            statuses = []
            for key in ("s-1", "s-1", "s-2"):
                body = {"session_id": key, **money}
                headers = {"Idempotency-Key": key}
                async with http.post("/captures", json=body, headers=headers) as answer:
                    statuses.append(answer.status)
            async with http.get("/_sandbox/charges") as answer:
                charges = Charges.model_validate(await answer.json())
    finally:
        await fake.close()
    assert statuses == [201, 409, 201]
    assert charges == Charges(
        operation="capture", payments={"p-1": 2}, keys={"s-1": 1, "s-2": 1}, sent=3, replayed=1
    )
