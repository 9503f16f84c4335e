"""Fault tests: payhook's two promises (a session that got its `201` is never lost, nothing is
settled twice) under SIGKILLed workers, a SIGKILLed Redis, a Shopify outage, a lost Celery
message and an exhausted retry ladder followed by an operator's replay.

Everything is real: the web app on a TCP port, `payhook worker` and `payhook beat` as
subprocesses, the session store and broker on a real redis-server (AOF, fsync always), the
sandbox Shopify over HTTP. The module uses its own Redis database so the module-scoped worker
of the other end-to-end tests (database 0) never takes these messages; it is flushed before
every test, once the previous test's processes are gone.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import random
import time

import aiohttp
import pytest
from redis.asyncio import Redis

from ops.redis_server import LocalRedis
from sandbox.client import SandboxShopifyClient
from sandbox.shopify_side import SentSession
from sessions.models import Op, Outcome, Report
from sessions.states import State
from sessions.store import SessionStore
from tests.integration import faults_support
from tests.integration.conftest import wait_final
from tests.integration.faults_support import (
    FINAL,
    LEASE_SECONDS,
    RESOLVE,
    Fleet,
    Killer,
    audit,
    chaos_amount,
    expected_mutation,
    payhook,
    send,
    send_paced,
    wait_all_final,
)
from transport.messages import QUEUE
from workers.connectors.simulator import SimulatorConnector

pytestmark = pytest.mark.integration


# The fault modules' fixtures (tests/integration/faults_support.py).
settings = faults_support.settings
fresh_database = faults_support.fresh_database
fleet = faults_support.fleet
restartable_redis = faults_support.restartable_redis


# --- helpers ------------------------------------------------------------------------------


# A flaky PSP answer (…53) needs three retries, an ambiguous one (…54) one.


async def test_sigkilled_workers_lose_no_session_and_charge_none_twice(
    fleet: Fleet,
    http: aiohttp.ClientSession,
    app_url: str,
    sandbox: SandboxShopifyClient,
    store: SessionStore,
    psp: SimulatorConnector,
    redis: Redis,
) -> None:
    count, seed = 1000, random.randrange(1_000_000)
    env = fleet.env()
    first, second, _ = await asyncio.gather(
        asyncio.to_thread(fleet.worker, env, "w0", 2),
        asyncio.to_thread(fleet.worker, env, "w1", 2),
        asyncio.to_thread(fleet.beat, env),
    )
    killer = Killer(fleet, env, [first, second], random.Random(seed))

    async def one(index: int) -> SentSession:
        return await send(http, app_url, sandbox, chaos_amount(index))

    sent, _ = await asyncio.gather(
        send_paced(count, per_second=80, concurrency=16, make=one), killer.run(12.0)
    )
    assert [s.status for s in sent] == [201] * count

    states = await wait_all_final(redis, [s.id for s in sent], patience=120)
    drained = time.monotonic() - killer.last_kill
    result = await audit(sent, store=store, psp=psp, sandbox=sandbox)
    approved = sum(expected_mutation(s.body["amount"]) == RESOLVE for s in sent)
    totals = await psp.totals()
    stuck = [i for i, state in states.items() if state not in FINAL]
    figures = (
        f"FIGURES: sigkill chaos seed={seed} sessions={count} approved={approved} "
        f"kills={killer.kills} (children={killer.children_killed} "
        f"groups={killer.groups_killed}) redelivered={result.redelivered} "
        f"drain_after_last_kill={drained:.1f}s "
        f"duplicates={result.duplicates} repeated_reports={result.repeated_reports} "
        f"stuck={len(stuck)}"
    )
    print(figures)
    assert killer.children_killed, figures
    assert killer.groups_killed, figures
    assert not stuck, f"{figures}\n{len(stuck)} stuck: {stuck[:5]}\n{fleet.health()}"
    assert not result.problems, f"{figures}\n" + "\n".join(result.problems[:20])
    assert result.duplicates == 0, figures
    assert totals.get("capture:charges", 0) == approved == result.charges, f"{figures} {totals}"
    assert await store.due_count() == 0, figures


# --- 2. Redis restart -----------------------------------------------------------------------


async def test_a_sigkilled_redis_restarting_from_its_aof_loses_no_accepted_session(
    fleet: Fleet,
    restartable_redis: LocalRedis,
    http: aiohttp.ClientSession,
    app_url: str,
    sandbox: SandboxShopifyClient,
    store: SessionStore,
    psp: SimulatorConnector,
    redis: Redis,
) -> None:
    env = fleet.env()
    await asyncio.gather(asyncio.to_thread(fleet.worker, env), asyncio.to_thread(fleet.beat, env))

    async def one(index: int) -> tuple[SentSession, float]:
        # The chaos mix: its flaky and ambiguous PSP answers keep retries in the worker's
        # hands, as real traffic does. Shopify keeps retrying an app that answers 5xx; this
        # ladder spans a restart.
        sent = await send(http, app_url, sandbox, chaos_amount(index), (0.2, 0.5, 1.0, 2.0))
        return sent, time.monotonic()

    sending = asyncio.create_task(send_paced(1000, per_second=100, concurrency=16, make=one))
    # When each restarted server answered again: sessions answered 201 after it were taken
    # by a Redis that had just come back from its AOF.
    restarted_at: list[float] = []
    for pause in (3.0, 3.0):
        await asyncio.sleep(pause)
        await asyncio.to_thread(restartable_redis.restart, kill=True)
        restarted_at.append(time.monotonic())
    restarts = len(restarted_at)
    answered = await sending
    sent = [one for one, _ in answered]

    accepted = [s for s in sent if s.status == 201]
    # The sessions accepted in each stretch: before the first restart, between, after the last.
    bounds = [float("-inf"), *restarted_at, float("inf")]
    stretches = [
        [one.id for one, at in answered if one.status == 201 and start < at <= end]
        for start, end in itertools.pairwise(bounds)
    ]
    began = time.monotonic()
    states = await wait_all_final(redis, [s.id for s in accepted], patience=150)
    drained = time.monotonic() - began
    result = await audit(accepted, store=store, psp=psp, sandbox=sandbox)
    figures = (
        f"FIGURES: redis restart restarts={restarts} sent={len(sent)} accepted={len(accepted)} "
        f"per_stretch={[len(s) for s in stretches]} "
        f"retried_posts={sum(s.attempts > 1 for s in sent)} "
        f"redelivered={result.redelivered} drain={drained:.1f}s "
        f"duplicates={result.duplicates} "
        f"repeated_reports={result.repeated_reports}"
    )
    print(figures)
    assert accepted, figures
    # Each restart was followed by sessions accepted and settled, not only by the old ones.
    assert all(stretches), f"{figures}\naccepted per stretch: {[len(s) for s in stretches]}"
    for stretch in stretches:
        assert all(states.get(i) in FINAL for i in stretch), figures
    stuck = [i for i, state in states.items() if state not in FINAL]
    assert not stuck, f"{figures}\n{len(stuck)} stuck: {stuck[:5]}\n{fleet.health()}"
    assert not result.problems, f"{figures}\n" + "\n".join(result.problems[:20])
    assert result.duplicates == 0, figures


# --- 3. Shopify down, then throttling -----------------------------------------------------


async def test_sessions_sent_while_shopify_fails_are_resolved_once_it_recovers(
    fleet: Fleet,
    http: aiohttp.ClientSession,
    app_url: str,
    sandbox: SandboxShopifyClient,
    store: SessionStore,
    psp: SimulatorConnector,
    redis: Redis,
) -> None:
    env = fleet.env()
    await asyncio.gather(asyncio.to_thread(fleet.worker, env), asyncio.to_thread(fleet.beat, env))
    # Rules are taken in the order added: 503 for 4 s, then HTML 429 until 7 s.
    await sandbox.add_fault(
        {"kind": "status", "status": 503, "for_seconds": 4, "mutation": RESOLVE}
    )
    await sandbox.add_fault(
        {"kind": "html_429", "retry_after": 1, "for_seconds": 7, "mutation": RESOLVE}
    )
    window_closed = time.time() + 7

    async def one(index: int) -> SentSession:
        return await send(http, app_url, sandbox, f"{40 + index}.00")

    sent = await send_paced(30, per_second=15, concurrency=8, make=one)
    assert [s.status for s in sent] == [201] * len(sent)
    states = await wait_all_final(redis, [s.id for s in sent], patience=30)
    stuck = [i for i, state in states.items() if state not in FINAL]
    sessions = [await store.get(s.id) for s in sent]
    last_report = max(s.updated_at for s in sessions if s is not None)
    drained = last_report - window_closed
    result = await audit(sent, store=store, psp=psp, sandbox=sandbox)
    ours = {s.gid for s in sent}
    faults_seen = {c["fault"] for c in await sandbox.calls() if c["gid"] in ours} - {None}
    figures = (
        f"FIGURES: shopify window sessions={len(sent)} drain_after_window={drained:.1f}s "
        f"faults_seen={sorted(faults_seen)} repeated_reports={result.repeated_reports}"
    )
    print(figures)
    assert not stuck, f"{figures}\n{len(stuck)} stuck: {stuck[:5]}\n{fleet.health()}"
    assert not result.problems, f"{figures}\n" + "\n".join(result.problems)
    assert faults_seen == {"status", "html_429"}, figures
    for one_sent in sent:
        book = await psp.book(Op.CAPTURE, one_sent.id)
        assert (book.calls, book.charges) == (1, 1), f"{one_sent.id}: {book}"
        calls = await sandbox.calls(gid=one_sent.gid)
        # Every session met the outage, and only the call after it went through.
        assert calls[0]["fault"] is not None
        assert [c["applied"] for c in calls] == [False] * (len(calls) - 1) + [True]
    # The ladder's top rung is 1 s and Retry-After asks for 1 s: recovery is prompt.
    assert drained < 10, figures


# --- 4. A lost Celery message ---------------------------------------------------------------


async def test_a_session_whose_task_message_is_lost_is_recovered_by_the_sweeper(
    fleet: Fleet,
    http: aiohttp.ClientSession,
    app_url: str,
    sandbox: SandboxShopifyClient,
    store: SessionStore,
    psp: SimulatorConnector,
    redis: Redis,
) -> None:
    sent = await send(http, app_url, sandbox, "50.00")
    assert sent.status == 201
    queued = await redis.lrange(QUEUE, 0, -1)
    assert len(queued) == 1
    body = json.loads(base64.b64decode(json.loads(queued[0])["body"]))
    assert body[0] == [sent.id]
    # The broker loses the message (a Redis failover, a flushed queue...).
    await redis.delete(QUEUE)
    assert await redis.llen(QUEUE) == 0

    env = fleet.env()
    await asyncio.gather(asyncio.to_thread(fleet.worker, env), asyncio.to_thread(fleet.beat, env))
    session = await wait_final(store, sent.id, patience=30)
    assert (session.state, session.outcome, session.report) == (
        State.REPORTED,
        Outcome.APPROVED,
        Report.RESOLVED,
    )
    timeline = await store.timeline(sent.id)
    first_attempt = next(e for e in timeline if e.event == "psp_settled")
    recovered_after = first_attempt.at - session.created_at
    print(f"FIGURES: lost message recovered_after={recovered_after:.1f}s lease={LEASE_SECONDS}s")
    # Nothing touched it before its due time: the sweeper, not a message, brought it back.
    assert recovered_after >= LEASE_SECONDS
    assert any(
        "re-kicked due session" in line and sent.id in line for line in fleet.logs().splitlines()
    )
    book = await psp.book(Op.CAPTURE, sent.id)
    assert (book.calls, book.charges) == (1, 1)
    calls = await sandbox.calls(gid=sent.gid)
    assert [(c["mutation"], c["applied"]) for c in calls] == [(RESOLVE, True)]


# --- 5. Ladder exhausted, then replay -------------------------------------------------------


async def test_a_session_failed_after_its_ladder_is_replayed_without_a_second_capture(
    fleet: Fleet,
    http: aiohttp.ClientSession,
    app_url: str,
    sandbox: SandboxShopifyClient,
    store: SessionStore,
    psp: SimulatorConnector,
) -> None:
    env = fleet.env(PAYHOOK_SHOPIFY_MAX_ATTEMPTS="3", PAYHOOK_SHOPIFY_RETRY_DEADLINE_SECONDS="0")
    await asyncio.gather(asyncio.to_thread(fleet.worker, env), asyncio.to_thread(fleet.beat, env))
    await sandbox.add_fault(
        {"kind": "status", "status": 503, "for_seconds": 120, "mutation": RESOLVE}
    )
    sent = await send(http, app_url, sandbox, "60.00")
    assert sent.status == 201

    failed = await wait_final(store, sent.id, patience=30)
    assert (failed.state, failed.outcome, failed.report_attempts) == (
        State.FAILED,
        Outcome.APPROVED,
        3,
    )
    assert "503" in (failed.last_error or "")
    timeline = await store.timeline(sent.id)
    assert [e.event for e in timeline].count("report_retry") == 2
    assert timeline[-1].event == "failed"

    code, out = await payhook(env, "sessions", "list", "--state", "failed", "--json")
    assert code == 0
    listed = {row["id"]: row for row in json.loads(out)}
    assert listed[sent.id]["state"] == "failed"
    assert "503" in listed[sent.id]["last_error"]

    code, out = await payhook(env, "replay", "--failed", "--dry-run")
    assert code == 0
    assert [line for line in out.splitlines() if sent.id in line], out
    await asyncio.sleep(1.0)  # room for a replay the dry run should not have made
    assert (await store.get(sent.id) or failed).state is State.FAILED
    assert len(await sandbox.calls(gid=sent.gid)) == 3

    await sandbox.clear_faults()
    code, out = await payhook(env, "replay", "--", sent.id)
    assert code == 0
    assert [line for line in out.splitlines() if sent.id in line], out

    session = await wait_final(store, sent.id, patience=30)
    assert (session.state, session.report) == (State.REPORTED, Report.RESOLVED)
    assert "replayed" in [e.event for e in await store.timeline(sent.id)]
    calls = await sandbox.calls(gid=sent.gid)
    assert [(c["status"], c["applied"]) for c in calls] == [(503, False)] * 3 + [(200, True)]
    state = await sandbox.session_state(sent.gid)
    assert state is not None
    assert state["state"] == "resolved"
    book = await psp.book(Op.CAPTURE, sent.id)
    assert (book.calls, book.charges) == (1, 1)
    code, out = await payhook(env, "sessions", "list", "--state", "failed", "--json")
    assert code == 0
    assert sent.id not in {row["id"] for row in json.loads(out)}
    assert await store.due_count() == 0
