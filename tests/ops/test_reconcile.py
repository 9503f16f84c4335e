"""`payhook reconcile` against the sandbox PSPs, with mismatches planted on purpose: the
simulator (its books in Redis) and the `http` PSP fake (a real HTTP server). The real CLI
runs as a subprocess against a real redis-server; it must find every planted mismatch,
nothing else, and move no money while it looks."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from config.settings import child_environment
from ops.redis_server import LocalRedis
from sandbox.psp import connector_environment, start_psp_fake
from sandbox.psp.common import PSP_STATE
from sessions.ledger import Book
from sessions.ledger_store import LedgerStore
from sessions.models import Kind, Op, Outcome, Report, Session
from sessions.states import Event, State
from sessions.store import SessionStore
from tests.factories import change_to, make_session, new_id, received_event
from workers.connectors.base import Connector, Operation
from workers.connectors.http import HttpConnector
from workers.connectors.http_client import PspHttp
from workers.connectors.simulator import SimulatorConnector

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration


class Planter:
    """Sessions in the store as the lifecycle leaves them, and operations at the PSP."""

    def __init__(self, redis: Redis, connector: Connector) -> None:
        self.store, self.ledger, self.psp = SessionStore(redis), LedgerStore(redis), connector

    async def session(
        self, state: State, outcome: Outcome | None, amount: str | None = "10.00", **fields: Any
    ) -> Session:
        money = {"amount": None, "currency": None} if amount is None else {"amount": amount}
        session = make_session(state=State.RECEIVED, **{**money, **fields})
        await self.store.create(session, received_event(), due_at=0, queue=False)
        if outcome is not None:
            await self.store.change(session, change_to(Event.PSP_SETTLED, outcome=outcome))
        if state is State.REPORTED:
            report = Report.RESOLVED if outcome is Outcome.APPROVED else Report.REJECTED
            await self.store.change(session, change_to(Event.REPORTED, report=report))
        elif state is State.FAILED:
            await self.store.change(session, change_to(Event.FAILED, failed_at=time.time()))
        return session

    async def at_psp(self, session: Session, amount: str | None = None) -> None:
        """The PSP applies the session's operation (for `amount`, if given)."""
        shown = session.amount if amount is None else Decimal(amount)
        op = Operation(session.id, session.payment_id, shown, session.currency or "EUR", True)
        await self.psp.settle(session.kind.op, op)

    async def reservation(self, payment_id: str, session_id: str, minor: int = 500) -> None:
        await self.ledger.open(payment_id, Book(currency="EUR", authorized=100_000))
        await self.ledger.reserve(payment_id, session_id, Op.CAPTURE, minor, "EUR", time.time())

    async def committed(self, session: Session) -> None:
        """The session's capture on its payment's book, reserved and committed."""
        await self.reservation(session.payment_id, session.id, minor=1000)
        await self.ledger.commit(session.payment_id, session.id)


async def plant_consistent(plant: Planter) -> None:
    """Sessions whose PSP side matches what Shopify was told, and some with nothing to check."""
    for kind, amount in ((Kind.CAPTURE, "10.00"), (Kind.REFUND, "5.00"), (Kind.VOID, None)):
        done = await plant.session(State.REPORTED, Outcome.APPROVED, amount, kind=kind)
        await plant.at_psp(done)
    declined = await plant.session(State.REPORTED, Outcome.DECLINED, "10.51")
    await plant.at_psp(declined)
    await plant.session(State.FAILED, None)  # never reached the PSP: nothing moved
    await plant.session(State.RECEIVED, None)  # in flight: not checked
    await plant.session(State.REPORTED, Outcome.APPROVED, kind=Kind.PAYMENT)  # not ours


async def plant_mismatches(plant: Planter) -> dict[str, str]:
    """One session per mismatch; returns {session id: the code reconcile must report}."""
    never = await plant.session(State.REPORTED, Outcome.APPROVED)
    rejected = await plant.session(State.REPORTED, Outcome.DECLINED)
    await plant.at_psp(rejected)
    short = await plant.session(State.REPORTED, Outcome.APPROVED, "10.00")
    await plant.at_psp(short, amount="9.00")
    gone = f"gone-{new_id()}"
    await plant.reservation(f"pay_{gone}", gone)
    return {
        never.id: "not_at_psp",
        rejected.id: "rejected_but_at_psp",
        short.id: "amount_differs",
        gone: "reservation_orphaned",
    }


async def payhook(url: str, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ops",
        *args,
        env=child_environment({"PAYHOOK_REDIS_URL": url, **(env or {})}),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def fresh(redis_server: LocalRedis, db: int) -> tuple[str, Redis]:
    url = f"{redis_server.url[:-2]}/{db}"
    redis = Redis.from_url(url)
    await redis.flushdb()
    return url, redis


def codes(report: dict[str, Any]) -> dict[str, str]:
    return {m["session_id"]: m["code"] for m in report["mismatches"]}


async def test_the_simulator_every_planted_mismatch_and_nothing_else(
    redis_server: LocalRedis,
) -> None:
    url, redis = await fresh(redis_server, 9)
    simulator = SimulatorConnector(redis)
    plant = Planter(redis, simulator)
    try:
        await plant_consistent(plant)
        planted = await plant_mismatches(plant)
        # Reported resolved, done at the PSP, but its reservation was never settled.
        unsettled = await plant.session(State.REPORTED, Outcome.APPROVED)
        await plant.at_psp(unsettled)
        # Its book holds the capture as a reservation: the PSP's capture is accounted for.
        await plant.reservation(unsettled.payment_id, unsettled.id, minor=1000)
        planted[unsettled.id] = "reservation_not_settled"
        # The PSP cannot say (the simulator's `…56` is unreachable): unknown, not a mismatch.
        dark = await plant.session(State.REPORTED, Outcome.APPROVED, "10.56")
        charges = await simulator.totals()

        code, out, err = await payhook(url, "reconcile", "--json", "--rate", "200")

        assert code == 1, err
        report = json.loads(out)
        assert codes(report) == planted
        assert [u["session_id"] for u in report["unknown"]] == [dark.id]
        assert report["checked"] == 10
        assert report["amounts_not_comparable"] == 0
        assert "reconcile: 10 checked, 4 mismatched" in err
        # Reconciling reads: no operation was sent, no money moved.
        assert await simulator.totals() == charges
    finally:
        await redis.aclose()


async def test_the_http_psp_every_planted_mismatch_and_no_money_moved(
    redis_server: LocalRedis,
) -> None:
    url, redis = await fresh(redis_server, 10)
    fake = await start_psp_fake("http")
    http = HttpConnector(PspHttp(fake.url, name="http", timeout_seconds=5, headers={}))
    plant = Planter(redis, http)
    try:
        await plant_consistent(plant)
        planted = await plant_mismatches(plant)
        state = fake.runner.app[PSP_STATE]
        applied = len(state.applied())
        env = connector_environment("http", fake.url, "any-token")

        code, out, err = await payhook(url, "reconcile", "--rate", "200", env=env)

        assert code == 1, err
        lines = [line.split()[:3] for line in out.splitlines() if line.startswith("MISMATCH")]
        assert {session: found for _, found, session in lines} == planted
        assert "8 session(s) checked, 4 mismatch(es), 0 unknown" in out
        # Reconciling reads: nothing the PSP never did was applied by asking.
        assert len(state.applied()) == applied
        assert not [c for c in state.calls[-8:] if c.method != "GET"]
    finally:
        await http.close()
        await fake.close()
        await redis.aclose()


async def test_test_sessions_are_not_looked_up_at_a_live_account(
    redis_server: LocalRedis,
) -> None:
    url, redis = await fresh(redis_server, 10)
    fake = await start_psp_fake("http")
    plant = Planter(redis, HttpConnector(PspHttp(fake.url, name="http", timeout_seconds=5)))
    try:
        await plant.session(State.REPORTED, Outcome.DECLINED, test=True)
        live = await plant.session(State.REPORTED, Outcome.APPROVED, test=False)
        await plant.at_psp(live)
        state = fake.runner.app[PSP_STATE]
        calls = len(state.calls)
        env = {
            **connector_environment("http", fake.url, "any-token"),
            "PAYHOOK_HTTP_CONNECTOR_ACCOUNT": "live",
        }

        code, out, err = await payhook(url, "reconcile", "--json", "--rate", "200", env=env)

        assert code == 0, err
        assert json.loads(out)["checked"] == 1
        # One status read, for the live session; the test one never reached this account.
        assert [c.path for c in state.calls[calls:]] == [f"/captures/{live.id}"]
    finally:
        await fake.close()
        await redis.aclose()


async def test_a_psp_it_cannot_reach_exits_3_unless_something_is_known_to_mismatch(
    redis_server: LocalRedis,
) -> None:
    url, redis = await fresh(redis_server, 13)
    plant = Planter(redis, SimulatorConnector(redis))
    # Nothing listens on port 1: every status call fails.
    env = connector_environment("http", "http://127.0.0.1:1", "any-token")
    try:
        for _ in range(4):
            await plant.session(State.REPORTED, Outcome.APPROVED)

        code, out, err = await payhook(url, "reconcile", "--rate", "200", env=env)
        as_json = await payhook(url, "reconcile", "--json", "--rate", "200", env=env)

        assert code == 3, err
        assert "4 session(s) checked, 0 mismatch(es), 4 unknown" in out
        assert "no mismatch, but 4 could not be checked" in err
        assert as_json[0] == 3
        assert len(json.loads(as_json[1])["unknown"]) == 4
        # A mismatch found without the PSP still says so: 1 wins over 3.
        unsettled = await plant.session(State.REPORTED, Outcome.APPROVED)
        await plant.reservation(unsettled.payment_id, unsettled.id)
        mixed, out, _ = await payhook(url, "reconcile", "--rate", "200", env=env)
        assert mixed == 1
        assert "1 mismatch(es), 5 unknown" in out
    finally:
        await redis.aclose()


async def test_a_book_whose_totals_differ_from_the_psp_is_a_mismatch_and_a_true_one_is_not(
    redis_server: LocalRedis,
) -> None:
    url, redis = await fresh(redis_server, 14)
    plant = Planter(redis, SimulatorConnector(redis))
    try:
        # Captured at the PSP and on its book.
        kept = await plant.session(State.REPORTED, Outcome.APPROVED, "10.00")
        await plant.at_psp(kept)
        await plant.committed(kept)
        clean, out, err = await payhook(url, "reconcile", "--json", "--rate", "200")
        assert clean == 0, out + err
        assert json.loads(out)["books_checked"] == 1
        # Shopify was told, the PSP holds the capture, but the book says nothing was
        # captured (its commit was lost in a failover): only the book shows it.
        lost = await plant.session(State.REPORTED, Outcome.APPROVED, "10.00")
        await plant.at_psp(lost)
        await plant.ledger.open(lost.payment_id, Book(currency="EUR", authorized=100_000))

        code, out, err = await payhook(url, "reconcile", "--json", "--rate", "200")

        assert code == 1, err
        report = json.loads(out)
        assert codes(report) == {lost.id: "book_differs"}
        [finding] = report["mismatches"]
        assert finding["payment_id"] == lost.payment_id
        assert "captured 0.00" in finding["detail"]
        assert "the PSP: captured 10.00" in finding["detail"]
        assert report["books_checked"] == 2
        text_code, text, _ = await payhook(url, "reconcile", "--rate", "200")
        assert text_code == 1
        assert f"MISMATCH book_differs  {lost.id}" in text
    finally:
        await redis.aclose()


async def test_a_clean_window_exits_0_and_the_window_leaves_older_mismatches_out(
    redis_server: LocalRedis,
) -> None:
    url, redis = await fresh(redis_server, 11)
    plant = Planter(redis, SimulatorConnector(redis))
    try:
        await plant.session(State.REPORTED, Outcome.APPROVED)  # never at the PSP
        await asyncio.sleep(0.05)
        since = time.time()
        await plant_consistent(plant)

        older = await payhook(url, "reconcile")
        window = await payhook(url, "reconcile", "--since", f"@{since}")
        code, out, _ = await payhook(url, "reconcile", "--since", _iso(since), "--rate", "200")

        assert older[0] == 1
        assert window[0] == 2  # not a time: a usage error
        assert code == 0
        assert "5 session(s) checked, 0 mismatch(es)" in out
    finally:
        await redis.aclose()


async def test_usage_errors_exit_2(redis_server: LocalRedis) -> None:
    url = f"{redis_server.url[:-2]}/12"
    for args in (
        ("--rate", "0"),
        ("--since", "2026-11-24", "--until", "2026-11-23"),
        ("--shop",),
    ):
        code, _, err = await payhook(url, "reconcile", *args)
        assert code == 2, (args, err)


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat()
