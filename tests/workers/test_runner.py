"""The lifecycle runner without Celery: fakeredis for the store and the simulator PSP, the
sandbox Shopify as a real server. Each test is one decision a payments engineer relies on."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from decimal import Decimal
from typing import Any

import fakeredis
import pytest

from readouts.held import money_held
from sandbox.client import SandboxShopifyClient
from sessions.claims import Claimed
from sessions.keys import lease_key
from sessions.ledger import Book
from sessions.models import Kind, Op, Outcome, PaymentKind, Report
from sessions.replay import replay
from sessions.states import State
from sessions.store import SessionStore
from tests.factories import make_session, new_id, received_event
from tests.workers.conftest import ServicesFor
from workers.connectors.base import Approved, Operation, Result
from workers.connectors.simulator import Magic, SimulatorConnector, magic_amount
from workers.lifecycle.capture import CAPTURE
from workers.lifecycle.moves import DeadLetter, Done, RetryLater, Skipped
from workers.lifecycle.payment import PAYMENT
from workers.lifecycle.ports import Services
from workers.lifecycle.refund import REFUND
from workers.lifecycle.runner import run
from workers.lifecycle.void import VOID
from workers.retry_policy import RetryPolicy
from workers.shopify import mutations

LIFECYCLE = CAPTURE


@pytest.fixture
def services(services_for: ServicesFor, redis: fakeredis.FakeAsyncRedis) -> Services:
    return services_for(SimulatorConnector(redis))


@pytest.fixture
def store(redis: fakeredis.FakeAsyncRedis) -> SessionStore:
    return SessionStore(redis)


async def stored(store: SessionStore, **fields: Any) -> str:
    session = make_session(**fields)
    await store.create(session, received_event(), due_at=0, queue=False)
    return session.id


def book(services: Services) -> SimulatorConnector:
    assert isinstance(services.connector, SimulatorConnector)
    return services.connector


async def test_one_run_settles_and_reports(
    services: Services, store: SessionStore, sandbox: SandboxShopifyClient
) -> None:
    session_id = await stored(store)
    assert await run(session_id, services, LIFECYCLE) == Done(State.REPORTED)
    session = await store.get(session_id)
    assert session is not None
    assert (session.outcome, session.report, session.inflight) == (
        Outcome.APPROVED,
        Report.RESOLVED,
        None,
    )
    assert await store.due_count() == 0
    events = [e.event for e in await store.timeline(session_id)]
    assert events == ["received", "psp_settled", "reported"]


async def test_a_transient_psp_failure_asks_for_a_retry_and_stays_settling(
    services: Services, store: SessionStore
) -> None:
    session_id = await stored(store, amount=Decimal(magic_amount(Magic.FLAKY)))
    step = await run(session_id, services, LIFECYCLE)
    assert isinstance(step, RetryLater)
    session = await store.get(session_id)
    assert session is not None
    assert (session.state, session.psp_attempts) == (State.SETTLING, 1)
    assert session.last_error


async def test_the_psp_ladder_runs_out_into_a_failed_session(
    services: Services, store: SessionStore
) -> None:
    session_id = await stored(store, amount=Decimal(magic_amount(Magic.FLAKY)))
    steps = [await run(session_id, services, LIFECYCLE) for _ in range(3)]
    assert isinstance(steps[-1], DeadLetter)
    session = await store.get(session_id)
    assert session is not None
    assert session.state is State.FAILED
    assert session.outcome is None  # nothing was settled: replaying it will ask the PSP again


async def test_a_stored_outcome_is_reported_without_asking_the_psp_again(
    services: Services, store: SessionStore, sandbox: SandboxShopifyClient
) -> None:
    session_id = await stored(store, state=State.SETTLED, outcome=Outcome.APPROVED)
    assert await run(session_id, services, LIFECYCLE) == Done(State.REPORTED)
    assert (await book(services).book(Op.CAPTURE, session_id)).calls == 0


@pytest.mark.parametrize("state", [State.REPORTED, State.FAILED])
async def test_a_finished_or_failed_session_is_left_alone(
    services: Services, store: SessionStore, sandbox: SandboxShopifyClient, state: State
) -> None:
    session_id = await stored(store, state=state)
    assert isinstance(await run(session_id, services, LIFECYCLE), Skipped)
    assert (await book(services).book(Op.CAPTURE, session_id)).calls == 0
    assert await sandbox.calls() == []


async def test_duplicate_deliveries_of_a_leased_session_merge_and_never_turn_poison(
    services: Services, store: SessionStore
) -> None:
    # max_deliveries is 5: ten deliveries while another worker holds the lease count nothing.
    session_id = await stored(store)
    held = await services.claims.claim(session_id, now=time.time(), lease_seconds=600)
    steps = [await run(session_id, services, LIFECYCLE) for _ in range(10)]
    assert all(isinstance(step, Skipped) for step in steps)
    assert (await book(services).book(Op.CAPTURE, session_id)).calls == 0
    session = await store.get(session_id)
    assert session is not None
    assert (session.state, session.deliveries) == (State.RECEIVED, 1)
    assert isinstance(held, Claimed)


async def test_a_delivery_during_the_backoff_does_nothing(
    services: Services, store: SessionStore
) -> None:
    session_id = await stored(store, state=State.SETTLING, not_before=time.time() + 600)
    assert isinstance(await run(session_id, services, LIFECYCLE), Skipped)
    assert (await book(services).book(Op.CAPTURE, session_id)).calls == 0


async def test_a_session_that_keeps_killing_its_worker_is_declared_poison_under_its_lease(
    services: Services, store: SessionStore
) -> None:
    # Each claim whose worker died counts; the sixth finds the limit passed and fails it.
    session_id = await stored(store)
    for _ in range(5):
        claim = await services.claims.claim(session_id, now=time.time(), lease_seconds=30)
        assert isinstance(claim, Claimed)
        await services.claims.release(session_id, claim.fence)
    step = await run(session_id, services, LIFECYCLE)
    assert isinstance(step, DeadLetter)
    session = await store.get(session_id)
    assert session is not None
    assert session.state is State.FAILED
    assert "poison" in (session.last_error or "")
    assert await store.failed_ids() == [session_id]
    assert (await book(services).book(Op.CAPTURE, session_id)).calls == 0


async def test_invalid_state_on_the_first_report_is_someone_elses_decision(
    services: Services, store: SessionStore, sandbox: SandboxShopifyClient
) -> None:
    session_id = await stored(store, state=State.SETTLED, outcome=Outcome.APPROVED)
    session = await store.get(session_id)
    assert session is not None
    await services.gateway.send(
        session.shop,
        mutations.reject("capture", session.gid, "PROCESSING_ERROR", "merchant cancelled"),
    )
    assert isinstance(await run(session_id, services, LIFECYCLE), DeadLetter)


async def test_invalid_state_after_our_own_earlier_attempt_counts_as_done(
    services: Services, store: SessionStore, sandbox: SandboxShopifyClient
) -> None:
    # We sent this reject before and lost the answer; Shopify now calls a repeat a conflict.
    session_id = await stored(
        store,
        state=State.SETTLED,
        outcome=Outcome.DECLINED,
        reject_code="PROCESSING_ERROR",
        merchant_message="declined",
        report_attempts=1,
        sent_mutation="captureSessionReject",
        sent_mutation_attempts=1,
    )
    session = await store.get(session_id)
    assert session is not None
    await services.gateway.send(session.shop, mutations.resolve("capture", session.gid))
    assert await run(session_id, services, LIFECYCLE) == Done(State.REPORTED)


async def test_invalid_state_after_a_different_earlier_mutation_is_not_ours(
    services: Services, store: SessionStore, sandbox: SandboxShopifyClient
) -> None:
    # A payment reported pending, then approved by the PSP: its first resolve is refused
    # because someone else rejected it. The earlier pending mutation is not this resolve.
    session_id = await stored(
        store,
        kind=Kind.PAYMENT,
        gid=f"gid://shopify/PaymentSession/{new_id()}",
        state=State.SETTLED,
        outcome=Outcome.APPROVED,
        payment_kind=PaymentKind.SALE,
        report_attempts=1,
        sent_mutation="paymentSessionPending",
        sent_mutation_attempts=1,
    )
    session = await store.get(session_id)
    assert session is not None
    await services.gateway.send(
        session.shop, mutations.reject_payment(session.gid, "PROCESSING_ERROR", "cancelled")
    )
    step = await run(session_id, services, PAYMENT)
    assert isinstance(step, DeadLetter)
    assert "already been rejected" in step.reason


async def test_a_pending_payment_whose_window_closed_is_rejected(
    services: Services, store: SessionStore, sandbox: SandboxShopifyClient
) -> None:
    session_id = await stored(
        store,
        kind=Kind.PAYMENT,
        gid=f"gid://shopify/PaymentSession/{new_id()}",
        state=State.PENDING,
        outcome=Outcome.PENDING,
        payment_kind=PaymentKind.SALE,
        report=Report.PENDING,
        pending_expires_at=time.time() - 1,
    )
    assert await run(session_id, services, PAYMENT) == Done(State.REPORTED)
    session = await store.get(session_id)
    assert session is not None
    assert (session.outcome, session.report) == (Outcome.DECLINED, Report.REJECTED)
    assert [c["mutation"] for c in await sandbox.calls()] == ["paymentSessionReject"]
    assert "pending_expired" in [e.event for e in await store.timeline(session_id)]


async def test_a_pending_payment_still_in_its_window_is_left_alone(
    services: Services, store: SessionStore, sandbox: SandboxShopifyClient
) -> None:
    session_id = await stored(
        store,
        kind=Kind.PAYMENT,
        state=State.PENDING,
        outcome=Outcome.PENDING,
        pending_expires_at=time.time() + 3600,
    )
    assert isinstance(await run(session_id, services, PAYMENT), Skipped)
    assert await sandbox.calls() == []


async def test_an_ambiguous_answer_makes_the_next_attempt_ask_for_the_status_first(
    services: Services, store: SessionStore, sandbox: SandboxShopifyClient
) -> None:
    session_id = await stored(store, amount=Decimal(magic_amount(Magic.AMBIGUOUS)))
    assert isinstance(await run(session_id, services, LIFECYCLE), RetryLater)
    uncertain = await store.get(session_id)
    assert uncertain is not None
    assert uncertain.psp_uncertain
    assert await run(session_id, services, LIFECYCLE) == Done(State.REPORTED)
    ledger = await book(services).book(Op.CAPTURE, session_id)
    assert (ledger.calls, ledger.status_calls, ledger.charges) == (1, 1, 1)


async def test_a_run_interrupted_mid_call_makes_the_next_one_ask_for_the_status_first(
    services: Services, store: SessionStore, sandbox: SandboxShopifyClient
) -> None:
    # A worker claimed the session, charged it and died before storing the answer.
    session_id = await stored(store)
    claim = await services.claims.claim(session_id, now=time.time(), lease_seconds=30)
    session = await store.get(session_id)
    assert session is not None
    await book(services).settle(
        Op.CAPTURE, Operation(session_id, session.payment_id, session.amount, "EUR", test=True)
    )
    await services.claims.release(session_id, claim.fence)
    assert await run(session_id, services, LIFECYCLE) == Done(State.REPORTED)
    ledger = await book(services).book(Op.CAPTURE, session_id)
    assert (ledger.calls, ledger.status_calls, ledger.charges) == (1, 1, 1)
    settled = [e for e in await store.timeline(session_id) if e.event == "psp_settled"]
    assert "interrupted" in (settled[0].detail or "")


class SlowPsp(SimulatorConnector):
    """The simulator, answering captures only after `delay` seconds."""

    def __init__(self, redis: fakeredis.FakeAsyncRedis, delay: float) -> None:
        super().__init__(redis)
        self.delay = delay

    async def settle(self, kind: Op, operation: Operation) -> Result:
        if kind is Op.CAPTURE:
            await asyncio.sleep(self.delay)
        return await super().settle(kind, operation)


async def test_a_psp_call_longer_than_several_leases_keeps_its_lease(
    services: Services, store: SessionStore, redis: fakeredis.FakeAsyncRedis
) -> None:
    slow = replace(
        services,
        connector=SlowPsp(redis, delay=1.0),
        policy=replace(services.policy, lease_seconds=0.3),
    )
    session_id = await stored(store)
    running = asyncio.ensure_future(run(session_id, slow, LIFECYCLE))
    others = []
    for _ in range(8):  # a second worker keeps trying while the first waits on the PSP
        await asyncio.sleep(0.1)
        others.append(await run(session_id, slow, LIFECYCLE))
    assert await running == Done(State.REPORTED)
    assert all(isinstance(step, Skipped) for step in others)
    assert (await book(services).book(Op.CAPTURE, session_id)).calls == 1


async def test_a_holder_that_loses_its_lease_stops_and_writes_nothing(
    services: Services, store: SessionStore, redis: fakeredis.FakeAsyncRedis
) -> None:
    slow = replace(
        services,
        connector=SlowPsp(redis, delay=1.0),
        policy=replace(services.policy, lease_seconds=0.3),
    )
    session_id = await stored(store)
    running = asyncio.ensure_future(run(session_id, slow, LIFECYCLE))
    await asyncio.sleep(0.05)
    # Another worker takes the session over (its own claim after the lease was broken).
    await redis.delete(lease_key(session_id))
    taken = await services.claims.claim(session_id, now=time.time(), lease_seconds=60)
    assert isinstance(taken, Claimed)
    step = await running
    assert isinstance(step, Skipped)
    assert "superseded" in step.reason or "lease" in step.reason
    session = await store.get(session_id)
    assert session is not None
    assert (session.state, session.outcome) == (State.RECEIVED, None)


# --- money held by failed sessions ----------------------------------------------------------


async def stored_void(store: SessionStore, payment_id: str) -> str:
    void_id = new_id()
    gid = f"gid://shopify/VoidSession/{void_id}"
    return await stored(
        store, id=void_id, kind=Kind.VOID, gid=gid, payment_id=payment_id, amount=None
    )


async def test_a_capture_the_psp_never_applied_gives_its_money_back_when_it_fails(
    services: Services, store: SessionStore
) -> None:
    # Unavailable three times (refused before anything was applied): the ladder runs out.
    session_id = await stored(store, amount=Decimal(magic_amount(Magic.FLAKY)))
    for _ in range(3):
        await run(session_id, services, LIFECYCLE)
    failed = await store.get(session_id)
    assert failed is not None
    assert failed.state is State.FAILED
    assert await money_held(services.ledger, failed) is None
    # The payment is not blocked by a capture that did nothing: it can still be voided.
    void_id = await stored_void(store, failed.payment_id)
    assert await run(void_id, services, VOID) == Done(State.REPORTED)
    voided = await store.get(void_id)
    assert voided is not None
    assert voided.outcome is Outcome.APPROVED


async def test_a_capture_whose_fate_is_unknown_keeps_its_money_held_and_visible(
    services: Services, store: SessionStore
) -> None:
    # Every answer lost: the provider may have captured, so the money stays reserved.
    session_id = await stored(store, amount=Decimal(magic_amount(Magic.VANISHING)))
    for _ in range(3):
        await run(session_id, services, LIFECYCLE)
    failed = await store.get(session_id)
    assert failed is not None
    assert failed.state is State.FAILED
    held = await money_held(services.ledger, failed)
    assert held is not None
    assert held.describe() == f"capture 10.55 EUR on payment {failed.payment_id}"
    assert "money held" in ((await store.timeline(session_id))[-1].detail or "")
    void_id = await stored_void(store, failed.payment_id)
    assert await run(void_id, services, VOID) == Done(State.REPORTED)
    refused = await store.get(void_id)
    assert refused is not None
    assert refused.outcome is Outcome.DECLINED


async def test_a_failed_capture_that_gave_its_money_back_is_counted_when_replayed(
    services: Services, store: SessionStore
) -> None:
    session_id = await stored(store, amount=Decimal(magic_amount(Magic.FLAKY)))
    for _ in range(3):
        await run(session_id, services, LIFECYCLE)
    failed = await store.get(session_id)
    assert failed is not None
    await replay(store, [session_id], lease_seconds=0, per_second=0)
    # The fourth call is approved: the replay reserved again and the capture is on the book.
    assert await run(session_id, services, LIFECYCLE) == Done(State.REPORTED)
    book_after = await services.ledger.get(failed.payment_id)
    assert book_after is not None
    assert (book_after.captured, book_after.reserved(Op.CAPTURE)) == (1053, 0)
    assert (await book(services).book(Op.CAPTURE, session_id)).charges == 1


async def test_a_huge_retry_after_from_shopify_waits_no_longer_than_the_ladders_top_step(
    services: Services, store: SessionStore, sandbox: SandboxShopifyClient
) -> None:
    ladder = RetryPolicy((5.0, 30.0), max_attempts=3, deadline_seconds=60.0)
    services = replace(services, policy=replace(services.policy, shopify=ladder))
    session_id = await stored(store, state=State.SETTLED, outcome=Outcome.APPROVED)
    await sandbox.add_fault({"kind": "html_429", "times": 1, "retry_after": 10**12})
    before = time.time()
    step = await run(session_id, services, LIFECYCLE)
    assert isinstance(step, RetryLater)
    assert step.delay == 30.0  # Shopify's wait, capped at the ladder's top step
    session = await store.get(session_id)
    assert session is not None
    assert session.state is State.SETTLED
    assert session.not_before is not None
    assert session.not_before <= before + 30.0 + 5
    assert len(await sandbox.calls()) == 1


async def test_an_approved_capture_whose_reservation_a_failover_lost_is_counted_once(
    services: Services, store: SessionStore
) -> None:
    # As a promoted replica can hold it: the book and the claim, no reservation, while the
    # provider did capture (its answer never stored).
    payment = f"pay_{new_id()}"
    await services.ledger.open(payment, Book(currency="EUR", authorized=5000))
    session_id = await stored(
        store, payment_id=payment, amount=Decimal("30.00"), psp_uncertain=True
    )
    captured = await book(services).settle(
        Op.CAPTURE, Operation(session_id, payment, Decimal("30.00"), "EUR", test=True)
    )
    assert isinstance(captured, Approved)
    assert await run(session_id, services, LIFECYCLE) == Done(State.REPORTED)
    ledger = await services.ledger.get(payment)
    assert ledger is not None
    assert ledger.captured == 3000
    # Counted once: the outcome written again (a repeated delivery) adds nothing.
    assert isinstance(await run(session_id, services, LIFECYCLE), Skipped)
    again = await services.ledger.get(payment)
    assert again is not None
    assert again.captured == 3000
    # What the merchant then does is judged against the money that moved.
    void_id = await stored_void(store, payment)
    assert await run(void_id, services, VOID) == Done(State.REPORTED)
    voided = await store.get(void_id)
    assert voided is not None
    assert voided.outcome is Outcome.DECLINED
    refund_id = new_id()
    await stored(
        store,
        id=refund_id,
        kind=Kind.REFUND,
        gid=f"gid://shopify/RefundSession/{refund_id}",
        payment_id=payment,
        amount=Decimal("30.00"),
    )
    assert await run(refund_id, services, REFUND) == Done(State.REPORTED)
    refunded = await store.get(refund_id)
    assert refunded is not None
    assert refunded.outcome is Outcome.APPROVED
