"""The lifecycle runner without Celery: fakeredis for the store and the simulator PSP, the
sandbox Shopify as a real server. Each test is one decision a payments engineer relies on."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import aiohttp
import fakeredis
import pytest

from sandbox.client import SandboxShopifyClient
from sandbox.shopify import GRAPHQL_PATH, create_shopify_app
from sessions.ledger_store import LedgerStore
from sessions.models import Outcome, Report
from sessions.states import State
from sessions.store import SessionStore
from tests.factories import make_session, received_event
from workers.connectors.simulator import SimulatorConnector
from workers.lifecycle.capture import CAPTURE
from workers.lifecycle.runner import DeadLetter, Done, RetryLater, Services, run
from workers.retry_policy import RetryPolicy
from workers.shopify import mutations
from workers.shopify.gateway import GqlShopifyGateway

LIFECYCLE = CAPTURE


class Tokens:
    async def token_for(self, shop: str) -> str | None:
        return "shpat_unit"


@pytest.fixture
async def sandbox_url(aiohttp_server: Any) -> str:
    server = await aiohttp_server(create_shopify_app(strict_sessions=False))
    return str(server.make_url("")).rstrip("/")


@pytest.fixture
async def sandbox(sandbox_url: str) -> AsyncIterator[SandboxShopifyClient]:
    async with aiohttp.ClientSession() as http:
        yield SandboxShopifyClient(sandbox_url, http)


@pytest.fixture
async def services(sandbox_url: str) -> AsyncIterator[Services]:
    redis = fakeredis.FakeAsyncRedis()
    gateway = GqlShopifyGateway(
        url_template=sandbox_url + GRAPHQL_PATH,
        api_version="2025-10",
        tokens=Tokens(),
        timeout_seconds=2,
    )
    yield Services(
        store=SessionStore(redis),
        connector=SimulatorConnector(redis),
        gateway=gateway,
        psp_policy=RetryPolicy((0.0,), max_attempts=3),
        shopify_policy=RetryPolicy((0.0,), max_attempts=3),
        lease_seconds=10,
        max_deliveries=5,
        ledger=LedgerStore(redis),
        owner="unit-worker",
        clock=time.time,
    )
    await gateway.close()
    await redis.aclose()


async def stored(services: Services, **fields: Any) -> str:
    session = make_session(**fields)
    await services.store.create(session, received_event(), due_at=0)
    return session.id


def book(services: Services) -> SimulatorConnector:
    assert isinstance(services.connector, SimulatorConnector)
    return services.connector


async def test_one_run_settles_and_reports(
    services: Services, sandbox: SandboxShopifyClient
) -> None:
    session_id = await stored(services)
    assert await run(session_id, services, LIFECYCLE) == Done(State.REPORTED)
    session = await services.store.get(session_id)
    assert session is not None
    assert (session.outcome, session.report) == (Outcome.APPROVED, Report.RESOLVED)
    assert await services.store.due_count() == 0


async def test_a_transient_psp_failure_asks_for_a_retry_and_stays_settling(
    services: Services,
) -> None:
    session_id = await stored(services, amount=Decimal("10.53"))
    step = await run(session_id, services, LIFECYCLE)
    assert isinstance(step, RetryLater)
    session = await services.store.get(session_id)
    assert session is not None
    assert (session.state, session.psp_attempts) == (State.SETTLING, 1)
    assert session.last_error


async def test_the_psp_ladder_runs_out_into_a_failed_session(services: Services) -> None:
    session_id = await stored(services, amount=Decimal("10.53"))
    steps = [await run(session_id, services, LIFECYCLE) for _ in range(3)]
    assert isinstance(steps[-1], DeadLetter)
    session = await services.store.get(session_id)
    assert session is not None
    assert session.state is State.FAILED
    assert session.outcome is None  # nothing was settled: replaying it will ask the PSP again


async def test_a_stored_outcome_is_reported_without_asking_the_psp_again(
    services: Services, sandbox: SandboxShopifyClient
) -> None:
    session_id = await stored(services, state=State.SETTLED, outcome=Outcome.APPROVED)
    assert await run(session_id, services, LIFECYCLE) == Done(State.REPORTED)
    assert (await book(services).book("capture", session_id)).calls == 0


@pytest.mark.parametrize("state", [State.REPORTED, State.FAILED])
async def test_a_finished_or_failed_session_is_left_alone(
    services: Services, sandbox: SandboxShopifyClient, state: State
) -> None:
    session_id = await stored(services, state=state)
    assert await run(session_id, services, LIFECYCLE) == Done(state)
    assert (await book(services).book("capture", session_id)).calls == 0
    assert await sandbox.calls() == []


async def test_a_session_leased_by_another_worker_is_not_touched(services: Services) -> None:
    session_id = await stored(services)
    assert await services.store.acquire_lease(session_id, "someone-else", 30)
    step = await run(session_id, services, LIFECYCLE)
    assert isinstance(step, RetryLater)
    assert (await book(services).book("capture", session_id)).calls == 0


async def test_invalid_state_on_the_first_report_is_someone_elses_decision(
    services: Services, sandbox: SandboxShopifyClient
) -> None:
    session_id = await stored(services, state=State.SETTLED, outcome=Outcome.APPROVED)
    session = await services.store.get(session_id)
    assert session is not None
    await services.gateway.send(
        session.shop,
        mutations.reject("capture", session.gid, "PROCESSING_ERROR", "merchant cancelled"),
    )
    assert isinstance(await run(session_id, services, LIFECYCLE), DeadLetter)


async def test_invalid_state_after_our_own_earlier_attempt_counts_as_done(
    services: Services, sandbox: SandboxShopifyClient
) -> None:
    # We sent this reject before and lost the answer; Shopify now calls a repeat a conflict.
    session_id = await stored(
        services,
        state=State.SETTLED,
        outcome=Outcome.DECLINED,
        reject_code="PROCESSING_ERROR",
        merchant_message="declined",
        report_attempts=1,
    )
    session = await services.store.get(session_id)
    assert session is not None
    await services.gateway.send(session.shop, mutations.resolve("capture", session.gid))
    assert await run(session_id, services, LIFECYCLE) == Done(State.REPORTED)


async def test_a_session_delivered_too_often_is_declared_poison(services: Services) -> None:
    # Every delivery counts, even one that cannot run (here: a lease nobody releases, as
    # when the task keeps killing the worker that holds it).
    session_id = await stored(services)
    assert await services.store.acquire_lease(session_id, "wedged-worker", 600)
    steps = [await run(session_id, services, LIFECYCLE) for _ in range(6)]
    assert all(isinstance(step, RetryLater) for step in steps[:5])
    assert isinstance(steps[-1], DeadLetter)
    session = await services.store.get(session_id)
    assert session is not None
    assert session.state is State.FAILED
    assert "poison" in (session.last_error or "")
    assert await services.store.failed_ids() == [session_id]


async def test_an_ambiguous_answer_makes_the_next_attempt_ask_for_the_status_first(
    services: Services, sandbox: SandboxShopifyClient
) -> None:
    session_id = await stored(services, amount=Decimal("10.54"))
    assert isinstance(await run(session_id, services, LIFECYCLE), RetryLater)
    uncertain = await services.store.get(session_id)
    assert uncertain is not None
    assert uncertain.psp_uncertain
    assert await run(session_id, services, LIFECYCLE) == Done(State.REPORTED)
    ledger = await book(services).book("capture", session_id)
    assert (ledger.calls, ledger.status_calls, ledger.charges) == (1, 1, 1)
