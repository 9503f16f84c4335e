"""Capture sessions end to end: HTTP in, a real Celery worker, the simulator PSP, and the
sandbox Shopify receiving the mutations over real HTTP."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from sandbox.client import SandboxShopifyClient
from sandbox.shopify import RunningShopifySandbox
from sandbox.shopify_side import SentSession, build_capture_body, post_session, send_capture_session
from sessions.models import Op, Outcome, Report
from sessions.states import State
from sessions.store import SessionStore
from tests.integration.conftest import WorkerProcess, wait_final
from workers.connectors.simulator import Magic, SimulatorConnector, magic_amount

pytestmark = pytest.mark.integration

SHOP = "e2e-shop.myshopify.com"


@dataclass(frozen=True)
class E2E:
    """Shopify's side of one test: the app, the sandbox, and the books to check."""

    http: aiohttp.ClientSession
    app_url: str
    sandbox: SandboxShopifyClient
    shopify: RunningShopifySandbox
    store: SessionStore
    psp: SimulatorConnector

    async def send(self, amount: str, currency: str = "EUR") -> SentSession:
        sent = await send_capture_session(
            self.http,
            app_url=self.app_url,
            sandbox=self.sandbox,
            shop=SHOP,
            payment_id=f"pay_{uuid.uuid4().hex[:10]}",
            amount=amount,
            currency=currency,
        )
        assert sent.status == 201
        return sent


@pytest.fixture
def e2e(
    worker: WorkerProcess,
    http: aiohttp.ClientSession,
    app_url: str,
    sandbox: SandboxShopifyClient,
    shopify_sandbox: RunningShopifySandbox,
    store: SessionStore,
    psp: SimulatorConnector,
) -> E2E:
    return E2E(http, app_url, sandbox, shopify_sandbox, store, psp)


async def mutations_for(sandbox: SandboxShopifyClient, gid: str) -> list[dict[str, Any]]:
    return await sandbox.calls(gid=gid)


async def test_an_approved_capture_is_resolved_at_shopify_once(e2e: E2E) -> None:
    sent = await e2e.send("49.99")
    session = await wait_final(e2e.store, sent.id)
    assert (session.state, session.outcome, session.report) == (
        State.REPORTED,
        Outcome.APPROVED,
        Report.RESOLVED,
    )
    calls = await mutations_for(e2e.sandbox, sent.gid)
    assert [(c["mutation"], c["applied"]) for c in calls] == [("captureSessionResolve", True)]
    assert calls[0]["variables"] == {"id": sent.gid}
    assert calls[0]["shop"] == SHOP
    assert (await e2e.sandbox.session_state(sent.gid) or {})["state"] == "resolved"
    book = await e2e.psp.book(Op.CAPTURE, sent.id)
    assert (book.calls, book.charges) == (1, 1)
    events = [e.event for e in await e2e.store.timeline(sent.id)]
    assert events == ["received", "psp_settled", "reported"]


@pytest.mark.parametrize(
    ("amount", "code"),
    [
        (magic_amount(Magic.DECLINE), "PROCESSING_ERROR"),
        (magic_amount(Magic.EXPIRED), "AUTHORIZATION_EXPIRED"),
        ("1051", "PROCESSING_ERROR"),
    ],
    ids=["declined", "authorization expired", "declined in yen"],
)
async def test_a_declined_capture_is_rejected_with_the_reason(
    e2e: E2E, amount: str, code: str
) -> None:
    currency = "JPY" if "." not in amount else "EUR"
    sent = await e2e.send(amount, currency)
    session = await wait_final(e2e.store, sent.id)
    assert (session.state, session.report) == (State.REPORTED, Report.REJECTED)
    calls = await mutations_for(e2e.sandbox, sent.gid)
    assert [c["mutation"] for c in calls] == ["captureSessionReject"]
    reason = calls[0]["variables"]["reason"]
    assert reason["code"] == code
    assert reason["merchantMessage"]
    state = await e2e.sandbox.session_state(sent.gid)
    assert state is not None
    assert state["state"] == "rejected"
    assert (await e2e.psp.book(Op.CAPTURE, sent.id)).charges == 0


async def test_a_psp_that_fails_three_times_is_retried_and_charges_once(e2e: E2E) -> None:
    sent = await e2e.send(magic_amount(Magic.FLAKY, 20))
    session = await wait_final(e2e.store, sent.id)
    assert (session.state, session.report) == (State.REPORTED, Report.RESOLVED)
    book = await e2e.psp.book(Op.CAPTURE, sent.id)
    assert (book.calls, book.charges) == (4, 1)
    timeline = await e2e.store.timeline(sent.id)
    assert [e.attempt for e in timeline if e.event == "psp_retry"] == [1, 2, 3]
    assert all(e.error for e in timeline if e.event == "psp_retry")
    assert [c["mutation"] for c in await mutations_for(e2e.sandbox, sent.gid)] == [
        "captureSessionResolve"
    ]


async def test_an_ambiguous_psp_answer_is_resolved_by_asking_the_psp_not_by_capturing_again(
    e2e: E2E,
) -> None:
    sent = await e2e.send(magic_amount(Magic.AMBIGUOUS, 20))
    session = await wait_final(e2e.store, sent.id)
    assert session.report is Report.RESOLVED
    book = await e2e.psp.book(Op.CAPTURE, sent.id)
    assert (book.calls, book.status_calls, book.charges) == (1, 1, 1)
    timeline = await e2e.store.timeline(sent.id)
    assert [e.event for e in timeline][:3] == ["received", "psp_retry", "psp_settled"]
    assert "ambiguous" in (timeline[1].error or "")
    assert "status: Approved" in (timeline[2].detail or "")


async def test_shopify_5xx_twice_then_the_resolve_lands_without_a_second_capture(e2e: E2E) -> None:
    await e2e.sandbox.add_fault(
        {"kind": "status", "status": 500, "times": 2, "mutation": "captureSessionResolve"}
    )
    sent = await e2e.send("30.00")
    session = await wait_final(e2e.store, sent.id)
    assert (session.state, session.report) == (State.REPORTED, Report.RESOLVED)
    calls = await mutations_for(e2e.sandbox, sent.gid)
    assert [c["status"] for c in calls] == [500, 500, 200]
    assert session.report_attempts == 3
    book = await e2e.psp.book(Op.CAPTURE, sent.id)
    assert (book.calls, book.charges) == (1, 1)


async def test_an_html_429_is_retried_no_sooner_than_retry_after_up_to_the_top_step(
    e2e: E2E,
) -> None:
    await e2e.sandbox.add_fault(
        {"kind": "html_429", "times": 1, "retry_after": 1, "mutation": "captureSessionResolve"}
    )
    sent = await e2e.send("31.00")
    session = await wait_final(e2e.store, sent.id)
    assert session.report is Report.RESOLVED
    first, second = await mutations_for(e2e.sandbox, sent.gid)
    assert (first["status"], second["status"]) == (429, 200)
    # Retry-After asks for 1 s; the ladder's top step here is 0.2 s, and that is the cap
    # (the first step's own jitter alone would wait at most 0.05 s).
    assert second["at"] - first["at"] >= 0.2
    assert (await e2e.psp.book(Op.CAPTURE, sent.id)).calls == 1


async def test_graphql_throttling_is_retried(e2e: E2E) -> None:
    await e2e.sandbox.add_fault(
        {"kind": "throttled", "times": 2, "mutation": "captureSessionResolve"}
    )
    sent = await e2e.send("32.00")
    session = await wait_final(e2e.store, sent.id)
    assert session.report is Report.RESOLVED
    calls = await mutations_for(e2e.sandbox, sent.gid)
    assert [c["fault"] for c in calls] == ["throttled", "throttled", None]


async def test_a_lost_resolve_answer_is_repeated_and_counts_once(e2e: E2E) -> None:
    await e2e.sandbox.add_fault(
        {
            "kind": "commit_then_status",
            "status": 502,
            "times": 1,
            "mutation": "captureSessionResolve",
        }
    )
    sent = await e2e.send("33.00")
    session = await wait_final(e2e.store, sent.id)
    assert session.report is Report.RESOLVED
    calls = await mutations_for(e2e.sandbox, sent.gid)
    assert [(c["status"], c["applied"]) for c in calls] == [(502, True), (200, True)]
    assert (await e2e.psp.book(Op.CAPTURE, sent.id)).calls == 1


async def test_a_session_someone_else_rejected_becomes_a_visible_failure(e2e: E2E) -> None:
    body = build_capture_body(payment_id="pay-contested", amount="34.00", currency="EUR")
    await e2e.sandbox.register([body["gid"]])
    # Another actor settles the session at Shopify before payhook reports.
    reject = {
        "query": "mutation R($id: ID!, $reason: CaptureSessionRejectionReasonInput!) {"
        " captureSessionReject(id: $id, reason: $reason) { userErrors { code } } }",
        "variables": {
            "id": body["gid"],
            "reason": {"code": "PROCESSING_ERROR", "merchantMessage": "manual"},
        },
    }
    async with e2e.http.post(
        e2e.shopify.graphql_url(SHOP), json=reject, headers={"X-Shopify-Access-Token": "other"}
    ) as answer:
        assert answer.status == 200
    status, _ = await post_session(
        e2e.http, url=f"{e2e.app_url}/capture_sessions", body=body, shop=SHOP, api_version="2025-10"
    )
    assert status == 201
    session = await wait_final(e2e.store, body["id"])
    assert session.state is State.FAILED
    assert session.outcome is Outcome.APPROVED
    assert "CAPTURE_SESSION_INVALID_STATE" in (session.last_error or "")
    assert [e.event for e in await e2e.store.timeline(body["id"])][-1] == "failed"


async def test_shopify_down_past_the_attempt_cap_leaves_a_failed_session_with_its_history(
    e2e: E2E,
) -> None:
    await e2e.sandbox.add_fault(
        {"kind": "status", "status": 503, "times": 10, "mutation": "captureSessionResolve"}
    )
    sent = await e2e.send("35.00")
    session = await wait_final(e2e.store, sent.id)
    assert session.state is State.FAILED
    assert session.outcome is Outcome.APPROVED
    assert session.report_attempts == 10
    assert "503" in (session.last_error or "")
    timeline = await e2e.store.timeline(sent.id)
    assert sum(e.event == "report_retry" for e in timeline) == 9
    assert (await e2e.psp.book(Op.CAPTURE, sent.id)).calls == 1


async def test_fifty_concurrent_duplicates_settle_and_resolve_once(e2e: E2E) -> None:
    body = build_capture_body(payment_id="pay-dup", amount="36.00", currency="EUR")
    await e2e.sandbox.register([body["gid"]])
    answers = await asyncio.gather(
        *(
            post_session(
                e2e.http,
                url=f"{e2e.app_url}/capture_sessions",
                body=body,
                shop=SHOP,
                api_version="2025-10",
            )
            for _ in range(50)
        )
    )
    assert {status for status, _ in answers} == {201}
    session = await wait_final(e2e.store, body["id"])
    assert session.report is Report.RESOLVED
    await asyncio.sleep(0.5)  # room for any stray second delivery to show itself
    calls = await mutations_for(e2e.sandbox, body["gid"])
    assert [c["mutation"] for c in calls] == ["captureSessionResolve"]
    book = await e2e.psp.book(Op.CAPTURE, body["id"])
    assert (book.calls, book.charges) == (1, 1)
