"""The Aplazame connector against the Aplazame captures fake (no idempotency key there:
the connector's journal is what keeps a capture to one)."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest

from sandbox.psp.aplazame import APLAZAME_ORDERS, MEDIA_TYPE, create_aplazame_app, seed_order
from sessions.models import Op
from tests.workers.connectors.conftest import DELAY, TOKEN, Fake, Serve, operation, settled
from workers.connectors.base import (
    Approved,
    Authorization,
    Declined,
    NotFound,
    TryAgain,
)


@pytest.fixture
async def fake(serve: Serve) -> Fake:
    fake = await serve("aplazame", create_aplazame_app(token=TOKEN))
    seed_order(fake.app, {"id": "ord-1", "total": 60_020})
    return fake


def capture_of(amount: str, **overrides: Any) -> Any:
    return operation(payment_id="ord-1", amount=Decimal(amount), **overrides)


def captures(fake: Fake) -> list[dict[str, Any]]:
    return fake.app[APLAZAME_ORDERS]["ord-1"].captures


async def test_a_capture_posts_the_amount_in_minor_units_with_the_media_type(
    fake: Fake,
) -> None:
    answer = await fake.connector.settle(Op.CAPTURE, capture_of("100.50"))
    [capture] = captures(fake)
    assert answer == Approved(capture["id"])
    assert capture["amount"] == 10_050
    assert fake.app[APLAZAME_ORDERS]["ord-1"].remaining == 49_970


async def test_the_fake_refuses_another_media_type(fake: Fake) -> None:
    import aiohttp

    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{fake.url}/orders/ord-1/captures",
            headers={"Authorization": f"Bearer {TOKEN}", "Accept": "application/json"},
        ) as answer,
    ):
        assert answer.status == 406
        assert answer.headers["X-Aplazame-Media-Type"] == "aplazame.v1"
    assert MEDIA_TYPE == "application/vnd.aplazame.v1+json"


async def test_a_declined_capture_carries_aplazames_message(fake: Fake) -> None:
    answer = await fake.connector.settle(Op.CAPTURE, capture_of("100.51"))
    assert isinstance(answer, Declined)
    assert answer.message == "Capture declined"
    assert captures(fake) == []


async def test_more_than_remains_is_declined_before_sending(fake: Fake) -> None:
    answer = await fake.connector.settle(Op.CAPTURE, capture_of("700.00"))
    assert isinstance(answer, Declined)
    assert "600.20 EUR left" in answer.message
    assert fake.calls("capture") == []


async def test_an_unconfirmed_order_is_declined(fake: Fake) -> None:
    seed_order(fake.app, {"id": "ord-1", "total": 60_020, "confirmed": False})
    answer = await fake.connector.settle(Op.CAPTURE, capture_of("10.00"))
    assert isinstance(answer, Declined)
    assert "not confirmed" in answer.message


async def test_server_errors_are_ambiguous_and_the_retry_looks_before_sending(
    fake: Fake,
) -> None:
    fake.state.arm({"kind": "status", "status": 503, "times": 2, "operation": "capture"})
    op = capture_of("100.50")
    answer = await fake.connector.settle(Op.CAPTURE, op)
    assert isinstance(answer, TryAgain)
    assert answer.ambiguous  # no idempotency key: a 5xx may hide a capture
    assert isinstance(await settled(fake.connector, Op.CAPTURE, op), Approved)
    assert fake.applied("capture") == 1
    assert len(captures(fake)) == 1
    assert len(fake.calls("capture")) == 3  # two 503s, then the capture


async def test_a_timeout_is_resolved_by_status_without_a_second_capture(fake: Fake) -> None:
    fake.state.arm({"kind": "delay", "seconds": DELAY, "apply": True, "operation": "capture"})
    op = capture_of("100.50")
    lost = await fake.connector.settle(Op.CAPTURE, op)
    assert isinstance(lost, TryAgain)
    assert lost.ambiguous
    assert await fake.connector.status(Op.CAPTURE, op) == Approved(captures(fake)[0]["id"])
    assert len(fake.calls("capture")) == 1


async def test_the_same_session_twice_is_one_capture(fake: Fake) -> None:
    op = capture_of("100.50")
    first = await fake.connector.settle(Op.CAPTURE, op)
    assert await fake.connector.settle(Op.CAPTURE, op) == first
    assert len(fake.calls("capture")) == 1
    assert len(captures(fake)) == 1


async def test_a_lost_answer_then_a_retry_finds_the_capture(fake: Fake) -> None:
    fake.state.arm({"kind": "lost", "status": 504, "operation": "capture"})
    op = capture_of("100.50")
    assert isinstance(await fake.connector.settle(Op.CAPTURE, op), TryAgain)
    assert isinstance(await fake.connector.settle(Op.CAPTURE, op), Approved)
    assert len(captures(fake)) == 1


async def test_another_capture_of_the_same_amount_is_not_mistaken_for_ours(fake: Fake) -> None:
    first = await fake.connector.settle(Op.CAPTURE, capture_of("100.50"))
    second = capture_of("100.50")
    fake.state.arm({"kind": "status", "status": 502, "operation": "capture"})
    assert isinstance(await fake.connector.settle(Op.CAPTURE, second), TryAgain)
    assert not isinstance(await fake.connector.status(Op.CAPTURE, second), Approved)
    answer = await settled(fake.connector, Op.CAPTURE, second)
    assert isinstance(answer, Approved)
    assert answer != first
    assert len(captures(fake)) == 2


async def test_refunds_and_voids_are_declined_with_a_pointer_to_aplazame(fake: Fake) -> None:
    refund = await fake.connector.settle(Op.REFUND, capture_of("10.00"))
    void = await fake.connector.settle(Op.VOID, capture_of("10.00"))
    assert isinstance(refund, Declined)
    assert isinstance(void, Declined)
    assert "Aplazame merchant panel" in refund.message
    assert fake.state.calls == []


async def test_authorization_is_what_was_captured_plus_what_remains(fake: Fake) -> None:
    await fake.connector.settle(Op.CAPTURE, capture_of("100.50"))
    known = await fake.connector.authorization(capture_of("1.00"))
    assert isinstance(known, Authorization)
    assert (known.authorized, known.captured) == (Decimal("600.20"), Decimal("100.50"))
    assert await fake.connector.authorization(operation(payment_id="nope")) == NotFound()


async def test_a_capture_that_lands_after_its_answer_was_lost_is_not_sent_twice(
    fake: Fake,
) -> None:
    # Aplazame applies the capture only after the connector gave up waiting for it.
    fake.state.arm({"kind": "delay", "seconds": DELAY, "apply": False, "operation": "capture"})
    op = capture_of("100.50")
    assert isinstance(await fake.connector.settle(Op.CAPTURE, op), TryAgain)
    retry = await fake.connector.settle(Op.CAPTURE, op)
    if isinstance(retry, TryAgain):  # nothing shows yet, and nothing is sent meanwhile
        assert retry.ambiguous
        assert retry.retry_after
        await asyncio.sleep(retry.retry_after)
    await fake.state.wait(DELAY)  # the late capture has landed by now, however slow we were
    [capture] = captures(fake)
    assert await fake.connector.settle(Op.CAPTURE, op) == Approved(capture["id"])
    assert len(fake.calls("capture")) == 1
