"""Reports to Shopify racing the PSP's word and a worker's death, with real processes: the web
app on a TCP port, `payhook worker` and `payhook beat` as subprocesses, a real redis-server
and the sandbox Shopify over HTTP.

- A PSP's approval that arrives while Shopify has not yet taken "pending" (its report failing,
  or in flight) wins: the payment is resolved, never left to expire as rejected.
- A worker killed after Shopify took its mutation, but before the report was stored, leaves
  a mark: the repeat that Shopify answers `*_INVALID_STATE` counts as done, not as a dead
  letter.
"""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from sandbox.client import SandboxShopifyClient
from sessions.models import Op, Outcome, Report
from sessions.states import State
from sessions.store import SessionStore
from tests.integration import faults_support
from tests.integration.conftest import open_payment, psp_says, until, wait_final
from tests.integration.faults_support import RESOLVE, SHOP, Fleet, kill_group, send
from workers.connectors.simulator import SimulatorConnector

pytestmark = pytest.mark.integration

PENDING, PAY_RESOLVE = "paymentSessionPending", "paymentSessionResolve"


# The fault modules' fixtures (tests/integration/faults_support.py).
settings = faults_support.settings_with_psp_callbacks
fresh_database = faults_support.fresh_database
fleet = faults_support.fleet


async def test_an_approval_while_shopify_refuses_pending_resolves_the_payment(
    fleet: Fleet,
    http: aiohttp.ClientSession,
    app_url: str,
    sandbox: SandboxShopifyClient,
    store: SessionStore,
) -> None:
    env = fleet.env()
    await asyncio.gather(asyncio.to_thread(fleet.worker, env), asyncio.to_thread(fleet.beat, env))
    refuse_pending = {"kind": "status", "status": 503, "for_seconds": 4, "mutation": PENDING}
    await sandbox.add_fault(refuse_pending)
    payment = await open_payment(http, app_url, sandbox, shop=SHOP)
    session_id, gid = payment.id, payment.gid
    assert (await psp_says(http, app_url, session_id, "pending"))[0] == 200

    async def pending_refused() -> bool:
        return any(c["status"] == 503 for c in await sandbox.calls(gid=gid))

    await until(pending_refused, "a paymentSessionPending refused")
    stored = await store.get(session_id)
    assert stored is not None
    assert (stored.state, stored.outcome) == (State.SETTLED, Outcome.PENDING)

    # The buyer paid: Shopify has not heard "pending" yet, and that must not stand in the way.
    assert await psp_says(http, app_url, session_id, "approved") == (200, {"status": "accepted"})
    late, _ = await psp_says(http, app_url, session_id, "declined")
    assert late == 409  # now it is truly final
    session = await wait_final(store, session_id, patience=30)
    assert (session.state, session.outcome, session.report) == (
        State.REPORTED,
        Outcome.APPROVED,
        Report.RESOLVED,
    )
    applied = [c["mutation"] for c in await sandbox.calls(gid=gid) if c["applied"]]
    assert applied[-1] == PAY_RESOLVE
    assert "paymentSessionReject" not in applied
    assert (await sandbox.session_state(gid) or {})["state"] == "resolved"


async def test_an_approval_during_the_pending_report_is_not_overwritten_by_it(
    fleet: Fleet,
    http: aiohttp.ClientSession,
    app_url: str,
    sandbox: SandboxShopifyClient,
    store: SessionStore,
) -> None:
    env = fleet.env()
    await asyncio.gather(asyncio.to_thread(fleet.worker, env), asyncio.to_thread(fleet.beat, env))
    # Shopify takes "pending" slowly, yet within the worker's 2 s timeout: the approval lands
    # while the worker waits for an answer that will say "accepted".
    await sandbox.add_fault({"kind": "delay", "seconds": 1, "times": 1, "mutation": PENDING})
    payment = await open_payment(http, app_url, sandbox, shop=SHOP)
    session_id, gid = payment.id, payment.gid
    assert (await psp_says(http, app_url, session_id, "pending"))[0] == 200

    async def pending_in_flight() -> bool:
        return await sandbox.faults() == []

    await until(pending_in_flight, "the slow paymentSessionPending taken")
    assert await psp_says(http, app_url, session_id, "approved") == (200, {"status": "accepted"})

    session = await wait_final(store, session_id, patience=30)
    assert (session.state, session.outcome, session.report) == (
        State.REPORTED,
        Outcome.APPROVED,
        Report.RESOLVED,
    )
    assert (await sandbox.session_state(gid) or {})["state"] == "resolved"
    timeline = [e.event for e in await store.timeline(session_id)]
    assert "pending_expired" not in timeline


async def test_a_worker_killed_after_shopify_took_its_mutation_counts_the_repeat_as_done(
    fleet: Fleet,
    http: aiohttp.ClientSession,
    app_url: str,
    sandbox: SandboxShopifyClient,
    store: SessionStore,
    psp: SimulatorConnector,
) -> None:
    env = fleet.env()
    first, _ = await asyncio.gather(
        asyncio.to_thread(fleet.worker, env), asyncio.to_thread(fleet.beat, env)
    )
    # Shopify applies the resolve, then answers slowly; the worker dies waiting for it.
    await sandbox.add_fault({"kind": "delay", "seconds": 1.5, "times": 1, "mutation": RESOLVE})
    sent = await send(http, app_url, sandbox, "42.00")
    assert sent.status == 201

    async def resolve_in_flight() -> bool:
        return await sandbox.faults() == []

    await until(resolve_in_flight, "the slow captureSessionResolve taken")
    await asyncio.to_thread(kill_group, first)

    async def resolve_applied() -> bool:
        return any(c["applied"] for c in await sandbox.calls(gid=sent.gid))

    await until(resolve_applied, "the resolve applied at Shopify")
    # The repeat meets a session Shopify considers moved on, as it may answer a late repeat.
    await sandbox.add_fault({"kind": "invalid_state", "times": 1, "mutation": RESOLVE})
    await asyncio.to_thread(fleet.worker, env)

    session = await wait_final(store, sent.id, patience=30)
    assert (session.state, session.report) == (State.REPORTED, Report.RESOLVED), session.last_error
    timeline = await store.timeline(sent.id)
    assert "already applied by an earlier attempt" in (timeline[-1].detail or "")
    calls = await sandbox.calls(gid=sent.gid)
    assert [c["applied"] for c in calls] == [True, False]
    assert (await psp.book(Op.CAPTURE, sent.id)).charges == 1
