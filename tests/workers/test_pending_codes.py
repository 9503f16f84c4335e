"""`paymentSessionPending`'s userError codes, from the sandbox Shopify over HTTP, through the
real gateway and the runner: each is retried, failed, or taken as done (or as a window that
closed), as docs/sessions.md's table says."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import fakeredis
import pytest

from errors import ShopifyUnavailable, ShopifyUserError
from sandbox.client import SandboxShopifyClient
from sandbox.shopify import GRAPHQL_PATH, create_shopify_app
from sessions.models import Kind, Outcome, PaymentKind, PendingReason, Report
from sessions.states import State
from sessions.store import SessionStore
from tests.factories import make_session, new_id, received_event
from tests.workers.conftest import ServicesFor, Tokens
from workers.connectors.simulator import SimulatorConnector
from workers.lifecycle.moves import DeadLetter, Done, RetryLater
from workers.lifecycle.payment import PAYMENT
from workers.lifecycle.ports import Services
from workers.lifecycle.reporting import PENDING_EXPIRED
from workers.lifecycle.runner import run
from workers.shopify import mutations
from workers.shopify.gateway import GqlShopifyGateway

SHOP = "pending-shop.myshopify.com"
PENDING = "paymentSessionPending"


def iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def user_error(code: str, times: int = 1) -> dict[str, Any]:
    return {"kind": "user_error", "mutation": PENDING, "code": code, "times": times}


@pytest.fixture
def services(services_for: ServicesFor, redis: fakeredis.FakeAsyncRedis) -> Services:
    return services_for(SimulatorConnector(redis))


@pytest.fixture
def store(redis: fakeredis.FakeAsyncRedis) -> SessionStore:
    return SessionStore(redis)


async def pending_payment(store: SessionStore, **fields: Any) -> str:
    """A payment the PSP said is pending, its report to Shopify still to send."""
    values: dict[str, Any] = {
        "kind": Kind.PAYMENT,
        "gid": f"gid://shopify/PaymentSession/{new_id()}",
        "state": State.SETTLED,
        "outcome": Outcome.PENDING,
        "payment_kind": PaymentKind.SALE,
        "pending_expires_at": time.time() + 2 * 86400,
        **fields,
    }
    session = make_session(**values)
    await store.create(session, received_event(), due_at=0, queue=False)
    return session.id


# -- the gateway: each code as payhook's own error ------------------------------------------


@pytest.mark.parametrize(
    ("code", "invalid_state"),
    [
        ("PENDING_INVALID_STATE", True),
        ("EXPIRED_PENDING_EXPIRES_AT", False),
        ("NOT_FOUND", False),
        ("UNSUPPORTED_PAYMENT_METHOD", False),
    ],
)
async def test_the_gateway_gives_each_final_pending_code_as_a_user_error(
    services: Services, sandbox: SandboxShopifyClient, code: str, invalid_state: bool
) -> None:
    await sandbox.add_fault(user_error(code))
    pend = mutations.pend_payment(
        "gid://shopify/PaymentSession/gw", iso(time.time() + 3600), "BUYER_ACTION_REQUIRED"
    )
    with pytest.raises(ShopifyUserError) as caught:
        await services.gateway.send(SHOP, pend)
    assert (caught.value.code, caught.value.invalid_state) == (code, invalid_state)


async def test_the_gateway_gives_a_window_out_of_range_as_retryable(
    services: Services, sandbox: SandboxShopifyClient
) -> None:
    # The sandbox's own rule, no fault: Shopify's clock would put it beyond three days.
    pend = mutations.pend_payment(
        "gid://shopify/PaymentSession/gw-far",
        iso(time.time() + 4 * 86400),
        "PARTNER_ACTION_REQUIRED",
    )
    with pytest.raises(ShopifyUnavailable) as caught:
        await services.gateway.send(SHOP, pend)
    assert caught.value.cause == "pending_out_of_range"
    assert "OUT_OF_RANGE_PENDING_EXPIRES_AT" in str(caught.value)


@pytest.mark.parametrize("version", ["2025-10", "2026-04"])
async def test_the_gateway_speaks_each_version_to_a_sandbox_of_that_version(
    aiohttp_server: Any, version: str
) -> None:
    server = await aiohttp_server(create_shopify_app(strict_sessions=False, api_version=version))
    base = str(server.make_url("")).rstrip("/")

    def gateway(api_version: str) -> GqlShopifyGateway:
        return GqlShopifyGateway(
            url_template=base + GRAPHQL_PATH,
            api_version=api_version,
            tokens=Tokens(),
            timeout_seconds=2,
        )

    right = gateway(version)
    wrong = gateway("2025-10" if version == "2026-04" else "2026-04")
    target = f"gid://shopify/PaymentSession/v-{version}"
    try:
        await right.send(
            SHOP, mutations.pend_payment(target, iso(time.time() + 60), "BUYER_ACTION_REQUIRED")
        )
        await right.send(SHOP, mutations.resolve_payment(target, None))
        # A payhook calling another version than the sandbox serves is told at once.
        with pytest.raises(ShopifyUserError) as caught:
            await wrong.send(SHOP, mutations.resolve_payment(target, None))
        assert caught.value.code == "HTTP_404"
    finally:
        await right.close()
        await wrong.close()


# -- the runner: what becomes of the payment -----------------------------------------------


async def test_pending_invalid_state_on_the_first_attempt_fails_the_payment(
    services: Services, store: SessionStore, sandbox: SandboxShopifyClient
) -> None:
    session_id = await pending_payment(store)
    await sandbox.add_fault(user_error("PENDING_INVALID_STATE"))

    step = await run(session_id, services, PAYMENT)

    assert isinstance(step, DeadLetter)
    assert "PENDING_INVALID_STATE" in step.reason
    session = await store.get(session_id)
    assert session is not None
    assert session.state is State.FAILED


async def test_pending_invalid_state_after_our_own_lost_attempt_is_pending(
    services: Services, store: SessionStore, sandbox: SandboxShopifyClient
) -> None:
    session_id = await pending_payment(store)
    # The first pending lands and its answer is lost; the next one is refused as a repeat
    # of a session already in that state.
    await sandbox.add_fault({"kind": "commit_then_status", "mutation": PENDING, "times": 1})
    assert isinstance(await run(session_id, services, PAYMENT), RetryLater)
    await sandbox.add_fault(user_error("PENDING_INVALID_STATE"))

    assert await run(session_id, services, PAYMENT) == Done(State.PENDING)
    session = await store.get(session_id)
    assert session is not None
    assert (session.state, session.report) == (State.PENDING, Report.PENDING)


async def test_a_window_out_of_range_is_sent_again_with_the_same_window_until_taken(
    services: Services, store: SessionStore, sandbox: SandboxShopifyClient
) -> None:
    session_id = await pending_payment(store)
    await sandbox.add_fault(user_error("OUT_OF_RANGE_PENDING_EXPIRES_AT", times=2))

    steps = [await run(session_id, services, PAYMENT) for _ in range(3)]

    assert [type(step) for step in steps] == [RetryLater, RetryLater, Done]
    assert steps[-1] == Done(State.PENDING)
    sent = await sandbox.calls(mutation=PENDING)
    assert [call["user_error_codes"] for call in sent] == [
        ["OUT_OF_RANGE_PENDING_EXPIRES_AT"],
        ["OUT_OF_RANGE_PENDING_EXPIRES_AT"],
        [],
    ]
    assert len({call["variables"]["pendingExpiresAt"] for call in sent}) == 1


async def test_a_window_out_of_range_until_the_shopify_ladder_runs_out_fails(
    services: Services, store: SessionStore, sandbox: SandboxShopifyClient
) -> None:
    session_id = await pending_payment(store)
    await sandbox.add_fault(user_error("OUT_OF_RANGE_PENDING_EXPIRES_AT", times=3))

    steps = [await run(session_id, services, PAYMENT) for _ in range(3)]

    assert isinstance(steps[-1], DeadLetter)
    assert "OUT_OF_RANGE_PENDING_EXPIRES_AT" in steps[-1].reason


async def test_a_window_that_closed_before_shopify_took_it_rejects_the_payment_at_once(
    services: Services, store: SessionStore, sandbox: SandboxShopifyClient
) -> None:
    # Shopify was unreachable for days: the window the PSP's word opened has closed, and the
    # sandbox refuses it by its own rule.
    session_id = await pending_payment(store, pending_expires_at=time.time() - 60)

    assert await run(session_id, services, PAYMENT) == Done(State.REPORTED)

    session = await store.get(session_id)
    assert session is not None
    assert (session.outcome, session.report) == (Outcome.DECLINED, Report.REJECTED)
    calls = await sandbox.calls()
    assert [(c["mutation"], c["user_error_codes"]) for c in calls] == [
        (PENDING, ["EXPIRED_PENDING_EXPIRES_AT"]),
        ("paymentSessionReject", []),
    ]
    assert calls[1]["variables"]["reason"] == {
        "code": "PROCESSING_ERROR",
        "merchantMessage": PENDING_EXPIRED,
    }
    events = [(e.event, e.state) for e in await store.timeline(session_id)]
    assert events[-2:] == [("pending_expired", State.SETTLED), ("reported", State.REPORTED)]


async def test_an_expired_window_said_by_a_fault_is_rejected_the_same_way(
    services: Services, store: SessionStore, sandbox: SandboxShopifyClient
) -> None:
    session_id = await pending_payment(store)
    await sandbox.add_fault(user_error("EXPIRED_PENDING_EXPIRES_AT"))

    assert await run(session_id, services, PAYMENT) == Done(State.REPORTED)
    session = await store.get(session_id)
    assert session is not None
    assert session.report is Report.REJECTED
    assert (await sandbox.session_state(session.gid) or {})["state"] == "rejected"


@pytest.mark.parametrize("code", ["NOT_FOUND", "UNSUPPORTED_PAYMENT_METHOD"])
async def test_a_payment_shopify_cannot_hold_pending_fails_saying_why(
    services: Services, store: SessionStore, sandbox: SandboxShopifyClient, code: str
) -> None:
    session_id = await pending_payment(store)
    await sandbox.add_fault(user_error(code))

    step = await run(session_id, services, PAYMENT)

    assert isinstance(step, DeadLetter)
    session = await store.get(session_id)
    assert session is not None
    assert session.state is State.FAILED
    assert session.last_error is not None
    assert code in session.last_error
    # Nothing else was sent: no reject behind the operator's back.
    assert [c["mutation"] for c in await sandbox.calls()] == [PENDING]


@pytest.mark.parametrize(
    ("reason", "sent"),
    [
        (None, "BUYER_ACTION_REQUIRED"),
        (PendingReason.MERCHANT_ACTION_REQUIRED, "MERCHANT_ACTION_REQUIRED"),
        (PendingReason.NETWORK_ACTION_REQUIRED, "NETWORK_ACTION_REQUIRED"),
    ],
)
async def test_the_psps_pending_reason_is_the_one_shopify_is_told(
    services: Services,
    store: SessionStore,
    sandbox: SandboxShopifyClient,
    reason: PendingReason | None,
    sent: str,
) -> None:
    session_id = await pending_payment(store, pending_reason=reason)

    assert await run(session_id, services, PAYMENT) == Done(State.PENDING)

    [call] = await sandbox.calls(mutation=PENDING)
    assert call["variables"]["reason"] == sent
    session = await store.get(session_id)
    assert session is not None
    assert (await sandbox.session_state(session.gid) or {})["reason"] == {"code": sent}
