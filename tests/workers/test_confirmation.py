"""The payment lifecycle with confirmation on, run by the real runner against the sandbox
Shopify (a real server) on fakeredis: one `paymentSessionConfirm` whatever the deliveries,
then the mutation Shopify's answer calls for."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import fakeredis
import pytest

from sandbox.client import SandboxShopifyClient
from sessions.ledger_store import LedgerStore
from sessions.models import Kind, Outcome, PaymentKind, Report
from sessions.states import State
from sessions.store import SessionStore
from tests.factories import make_session, new_id, received_event
from tests.workers.conftest import ServicesFor
from workers.connectors.simulator import SimulatorConnector
from workers.lifecycle.moves import DeadLetter, Done, Skipped
from workers.lifecycle.payment import PAYMENT
from workers.lifecycle.ports import Services
from workers.lifecycle.runner import run

# Nobody listens here: the sandbox's confirmation request is not this module's subject.
NOWHERE = "http://127.0.0.1:9/payment_confirmations"


@pytest.fixture
def services(services_for: ServicesFor, redis: fakeredis.FakeAsyncRedis) -> Services:
    return replace(services_for(SimulatorConnector(redis)), payment_confirmation=True)


async def approved(redis: fakeredis.FakeAsyncRedis, **fields: Any) -> tuple[str, str]:
    session_id = new_id()
    session = make_session(
        **{
            "id": session_id,
            "kind": Kind.PAYMENT,
            "gid": f"gid://shopify/PaymentSession/{session_id}",
            "payment_id": session_id,
            "state": State.SETTLED,
            "outcome": Outcome.APPROVED,
            "payment_kind": PaymentKind.AUTHORIZATION,
            **fields,
        }
    )
    await SessionStore(redis).create(session, received_event(), due_at=0, queue=False)
    return session_id, session.gid


async def test_a_payment_is_confirmed_once_however_often_it_is_delivered(
    services: Services, redis: fakeredis.FakeAsyncRedis, sandbox: SandboxShopifyClient
) -> None:
    session_id, gid = await approved(redis)
    await sandbox.register([gid], confirmation_callback_url=NOWHERE)

    assert await run(session_id, services, PAYMENT) == Done(State.CONFIRMING)
    # Redeliveries (a duplicate task, the sweeper) find it waiting for Shopify's answer.
    for _ in range(3):
        assert isinstance(await run(session_id, services, PAYMENT), Skipped)

    assert [c["mutation"] for c in await sandbox.calls(gid=gid)] == ["paymentSessionConfirm"]
    session = await SessionStore(redis).get(session_id)
    assert session is not None
    assert (session.state, session.report, session.sent_mutation) == (
        State.CONFIRMING,
        None,
        "paymentSessionConfirm",
    )
    # Not resolved yet: no book for captures to draw on.
    assert await LedgerStore(redis).get(session_id) is None


@pytest.mark.parametrize(
    ("confirmed", "mutation", "report"),
    [
        (True, "paymentSessionResolve", Report.RESOLVED),
        (False, "paymentSessionReject", Report.REJECTED),
    ],
)
async def test_shopifys_answer_decides_the_report(
    services: Services,
    redis: fakeredis.FakeAsyncRedis,
    sandbox: SandboxShopifyClient,
    confirmed: bool,
    mutation: str,
    report: Report,
) -> None:
    rejected = {} if confirmed else {"reject_code": "CONFIRMATION_REJECTED"}
    session_id, gid = await approved(
        redis, confirmation_result=confirmed, sent_mutation="paymentSessionConfirm", **rejected
    )

    assert await run(session_id, services, PAYMENT) == Done(State.REPORTED)

    [call] = await sandbox.calls(gid=gid)
    assert call["mutation"] == mutation
    if not confirmed:
        assert call["variables"]["reason"]["code"] == "CONFIRMATION_REJECTED"
    session = await SessionStore(redis).get(session_id)
    assert session is not None
    assert session.report is report
    assert (await LedgerStore(redis).get(session_id) is not None) is confirmed


async def test_an_app_shopify_has_not_set_up_for_confirmation_fails_saying_so(
    services: Services, redis: fakeredis.FakeAsyncRedis, sandbox: SandboxShopifyClient
) -> None:
    session_id, gid = await approved(redis)
    await sandbox.register([gid])  # no confirmation_callback_url

    step = await run(session_id, services, PAYMENT)

    assert isinstance(step, DeadLetter)
    assert "CONFIRMATION_NOT_SUPPORTED" in step.reason
