"""`PAYHOOK_REDIS_MIN_REPLICAS`: no 201 and no report to Shopify before a replica holds what
it rests on. A real primary and replica; the replica is frozen (SIGSTOP) to play one that
has fallen behind, and thawed (SIGCONT) to catch up."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from config import Settings
from errors.replication import NotReplicated
from ops.doctor import run_doctor
from ops.redis_server import LocalRedis
from redisio.replication import Replication
from sandbox.client import SandboxShopifyClient
from sandbox.psp.aplazame import APLAZAME_ORDERS, create_aplazame_app
from sandbox.shopify import RunningShopifySandbox
from sessions.claims import Claims
from sessions.keys import session_key
from sessions.ledger_store import LedgerStore
from sessions.models import Op, Outcome
from sessions.states import State
from sessions.store import SessionStore
from tests.factories import (
    CALLBACK_SECRET,
    capture_body,
    make_session,
    payment_body,
    received_event,
    shopify_headers,
    signed_callback,
)
from tests.integration.conftest import ADMIN_TOKEN, TOKEN
from webhook.app import create_app
from workers.connectors.base import (
    Approved,
    Authorization,
    NotFound,
    Operation,
    Result,
    StatusResult,
)
from workers.connectors.build import build_connector
from workers.connectors.simulator import SimulatorConnector
from workers.lifecycle.capture import CAPTURE
from workers.lifecycle.moves import Done, Policy
from workers.lifecycle.ports import Services
from workers.lifecycle.runner import run
from workers.retry_policy import RetryPolicy
from workers.shopify.gateway import GqlShopifyGateway

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalRedis, LocalRedis]]:
    directory = Path(tmp_path_factory.mktemp("replicated"))
    primary = LocalRedis(directory / "primary").start()
    replica = LocalRedis(directory / "replica", replica_of=primary.port).start()
    client = SyncRedis(port=replica.port)
    deadline = time.monotonic() + 20
    while client.info("replication").get("master_link_status") != "up":
        assert time.monotonic() < deadline, "the replica never synced"
        time.sleep(0.1)
    client.close()
    yield primary, replica
    replica.stop(kill=True)
    primary.stop(kill=True)


class Frozen:
    """The replica stopped in its tracks: connected, acknowledging nothing."""

    def __init__(self, replica: LocalRedis) -> None:
        assert replica.process is not None
        self.pid = replica.process.pid

    def __enter__(self) -> Frozen:
        os.kill(self.pid, signal.SIGSTOP)
        return self

    def __exit__(self, *_: object) -> None:
        os.kill(self.pid, signal.SIGCONT)


def settings_for(primary: LocalRedis, **overrides: Any) -> Settings:
    return Settings(
        redis_url=primary.url,
        shopify_access_token=TOKEN,
        redis_min_replicas=1,
        redis_replica_timeout_seconds=0.3,
        redis_timeout_seconds=1,
        lease_seconds=5,
        **overrides,
    )


def on_replica(replica: LocalRedis, session_id: str) -> bool:
    client = SyncRedis(port=replica.port)
    try:
        return bool(client.exists(session_key(session_id)))
    finally:
        client.close()


async def test_no_201_until_the_replica_holds_the_session_and_its_repeat_gets_it(
    pair: tuple[LocalRedis, LocalRedis], aiohttp_client: Any
) -> None:
    primary, replica = pair
    # Two web processes: the repeat reaches one whose connections never wrote the session.
    first = await aiohttp_client(create_app(settings_for(primary)))
    second = await aiohttp_client(create_app(settings_for(primary)))
    body = capture_body()
    with Frozen(replica):
        answer = await first.post("/capture_sessions", json=body, headers=shopify_headers())
        assert answer.status == 503
        assert (await answer.json())["error"]["code"] == "not_replicated"
        assert answer.headers["Retry-After"] == "1"
        # Stored on the primary all the same; the repeat must not be answered 201 either.
        repeat = await second.post("/capture_sessions", json=body, headers=shopify_headers())
        assert repeat.status == 503
    repeat = await second.post("/capture_sessions", json=body, headers=shopify_headers())
    assert repeat.status == 201
    assert on_replica(replica, body["id"])


@pytest.fixture
async def primary_client(pair: tuple[LocalRedis, LocalRedis]) -> AsyncIterator[Redis]:
    client = Redis.from_url(pair[0].url)
    yield client
    await client.aclose()


def _services(redis: Redis, connector: Any, gateway: GqlShopifyGateway, lease: float) -> Services:
    return Services(
        claims=Claims(redis, replication=Replication(1, 0.3)),
        connector=connector,
        gateway=gateway,
        ledger=LedgerStore(redis),
        policy=Policy(
            psp=RetryPolicy((0.0,), max_attempts=3),
            shopify=RetryPolicy((0.0,), max_attempts=3),
            lease_seconds=lease,
            max_deliveries=5,
        ),
        clock=time.time,
    )


@pytest.fixture
async def gateway(shopify_sandbox: RunningShopifySandbox) -> AsyncIterator[GqlShopifyGateway]:
    found = GqlShopifyGateway(
        url_template=shopify_sandbox.graphql_url_template,
        api_version="2025-10",
        tokens=_Tokens(),
        timeout_seconds=2,
    )
    yield found
    await found.close()


async def test_the_psp_is_not_asked_on_a_claim_the_replica_does_not_hold(
    pair: tuple[LocalRedis, LocalRedis],
    primary_client: Redis,
    gateway: GqlShopifyGateway,
    sandbox: SandboxShopifyClient,
) -> None:
    _, replica = pair
    lease = 3.0  # renewals every 1 s: none in flight when the 0.3 s WAIT gives up
    psp = SimulatorConnector(primary_client)
    services = _services(primary_client, psp, gateway, lease)
    session = make_session()
    await sandbox.register([session.gid])
    store = SessionStore(primary_client)
    await store.create(session, received_event(), due_at=0, queue=False)
    with Frozen(replica):
        # A failover now would promote a replica without this claim: another worker could
        # claim the session again and ask the PSP a second time.
        with pytest.raises(NotReplicated):
            await run(session.id, services, CAPTURE)
        assert (await psp.book(Op.CAPTURE, session.id)).charges == 0
        assert await sandbox.calls(gid=session.gid) == []
    await asyncio.sleep(lease + 0.2)
    assert await run(session.id, services, CAPTURE) == Done(State.REPORTED)
    assert (await psp.book(Op.CAPTURE, session.id)).charges == 1


async def test_a_run_that_ends_while_its_lease_renewal_is_in_flight_frees_its_slot_at_once(
    pair: tuple[LocalRedis, LocalRedis],
    gateway: GqlShopifyGateway,
    sandbox: SandboxShopifyClient,
) -> None:
    primary, replica = pair
    # Renewals every 0.33 s, the 0.3 s WAIT gives up just before one: the run ends (not
    # replicated) while the renewer opens a connection for its renewal, and redis-py can
    # lose the renewer's cancellation there. A renewer that went on renewing held the run,
    # and its worker slot, until the step timeout (120 s).
    with Frozen(replica):
        for _ in range(6):
            # A fresh pool each time: the renewal needs a new connection of its own.
            redis = Redis.from_url(primary.url)
            services = _services(redis, SimulatorConnector(redis), gateway, 1.0)
            session = make_session()
            await sandbox.register([session.gid])
            await SessionStore(redis).create(session, received_event(), due_at=0, queue=False)
            running = asyncio.ensure_future(run(session.id, services, CAPTURE))
            done, _ = await asyncio.wait({running}, timeout=5)
            if not done:
                running.cancel()
            await redis.aclose()
            assert done, "the run outlived its end by seconds"
            assert isinstance(running.exception(), NotReplicated)
            renewers = [
                t
                for t in asyncio.all_tasks()
                if getattr(t.get_coro(), "__qualname__", "") == "holding.<locals>.renew"
            ]
            assert not [t for t in renewers if not t.done()], "a renewer outlived its run"


class _PspThatOutrunsTheReplica:
    """A PSP that has never seen the payment: looking it up (a read, before any money
    moves) is the moment the replica falls behind. Counts the operations it is asked for."""

    name = "outrun"
    live = False

    def __init__(self, replica: LocalRedis) -> None:
        self.freeze = Frozen(replica)
        self.frozen = False
        self.operations: list[str] = []

    async def authorization(self, operation: Operation) -> Authorization:
        if not self.frozen:
            self.freeze.__enter__()
            self.frozen = True
        return Authorization(
            provider_payment_id=operation.payment_id,
            currency="EUR",
            authorized=Decimal("100.00"),
            captured=Decimal(0),
            refunded=Decimal(0),
            voided=False,
            expires_at=None,
        )

    async def settle(self, kind: Op, operation: Operation) -> Result:
        if kind is not Op.CAPTURE:
            raise AssertionError(f"no {kind} here")
        self.operations.append(f"capture {operation.amount}")
        return Approved(f"cap_{operation.session_id}")

    async def status(self, kind: Op, operation: Operation) -> StatusResult:
        return NotFound()

    async def close(self) -> None:
        if self.frozen:
            self.freeze.__exit__()
            self.frozen = False


async def test_the_psp_is_not_asked_before_the_replica_holds_the_reservation(
    primary_client: Redis,
    pair: tuple[LocalRedis, LocalRedis],
    gateway: GqlShopifyGateway,
    sandbox: SandboxShopifyClient,
) -> None:
    _, replica = pair
    lease = 3.0  # renewals every 1 s: none in flight when the 0.3 s WAIT gives up
    psp = _PspThatOutrunsTheReplica(replica)
    services = _services(primary_client, psp, gateway, lease)
    session = make_session()
    await sandbox.register([session.gid])
    await SessionStore(primary_client).create(session, received_event(), due_at=0, queue=False)
    try:
        # A failover now would promote a replica without the reservation: the capture would
        # be counted nowhere, and a refund of it refused.
        with pytest.raises(NotReplicated):
            await run(session.id, services, CAPTURE)
        assert psp.operations == []
    finally:
        await psp.close()
    await asyncio.sleep(lease + 0.2)
    assert await run(session.id, services, CAPTURE) == Done(State.REPORTED)
    assert psp.operations == ["capture 10.00"]
    book = await LedgerStore(primary_client).get(session.payment_id)
    assert book is not None
    assert (book.captured, book.reservations) == (1000, {})


async def test_shopify_hears_no_outcome_before_the_replica_holds_it(
    pair: tuple[LocalRedis, LocalRedis],
    primary_client: Redis,
    gateway: GqlShopifyGateway,
    sandbox: SandboxShopifyClient,
) -> None:
    _, replica = pair
    lease = 3.0  # renewals every 1 s: none in flight when the 0.3 s WAIT gives up
    services = _services(primary_client, SimulatorConnector(primary_client), gateway, lease)
    # Settled already (its PSP answer stored): only the report to Shopify is left.
    session = make_session(state=State.SETTLED, outcome=Outcome.APPROVED)
    await sandbox.register([session.gid])
    store = SessionStore(primary_client)
    await store.create(session, received_event(), due_at=0, queue=False)
    with Frozen(replica):
        with pytest.raises(NotReplicated):
            await run(session.id, services, CAPTURE)
        assert await sandbox.calls(gid=session.gid) == []
    # The lease lapses; the next delivery reports, once, and asks the PSP nothing.
    await asyncio.sleep(lease + 0.2)
    assert await run(session.id, services, CAPTURE) == Done(State.REPORTED)
    assert [c["mutation"] for c in await sandbox.calls(gid=session.gid)] == [
        "captureSessionResolve"
    ]
    assert (await SimulatorConnector(primary_client).book(Op.CAPTURE, session.id)).charges == 0


class _Tokens:
    async def token_for(self, shop: str) -> str | None:
        return TOKEN

    def opened(self, shop: str, stored: str | None) -> str | None:
        return TOKEN


async def test_readyz_and_doctor_show_the_replica_and_what_a_201_waits_for(
    pair: tuple[LocalRedis, LocalRedis], aiohttp_client: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    primary, replica = pair
    settings = settings_for(primary, admin_token=ADMIN_TOKEN)
    client = await aiohttp_client(create_app(settings))
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    body = await (await client.get("/readyz", headers=admin)).json()
    topology = body["topology"]
    assert (topology["mode"], topology["role"], topology["min_replicas"]) == ("single", "master", 1)
    assert [(r["address"], r["state"]) for r in topology["replicas"]] == [
        (f"127.0.0.1:{replica.port}", "online")
    ]
    assert not [w for w in body["warnings"] if "replica" in w]

    await run_doctor(settings)
    printed = capsys.readouterr().out
    assert f"replicas: 127.0.0.1:{replica.port} online" in printed
    assert "a 201 waits for 1 of them" in printed


async def test_a_psp_callback_is_not_acknowledged_before_the_replica_holds_its_verdict(
    pair: tuple[LocalRedis, LocalRedis], aiohttp_client: Any
) -> None:
    primary, replica = pair
    client = await aiohttp_client(
        create_app(settings_for(primary, simulator_webhook_secret=CALLBACK_SECRET))
    )
    body = payment_body()
    created = await client.post("/payment_sessions", json=body, headers=shopify_headers())
    assert created.status == 201
    path = f"/psp/simulator/payments/{quote(body['id'], safe='')}"
    raw, headers = signed_callback(body["id"], "approved")
    with Frozen(replica):
        answer = await client.post(path, data=raw, headers=headers)
        assert answer.status == 503
        assert (await answer.json())["error"]["code"] == "not_replicated"
    again = await client.post(path, data=raw, headers=headers)
    assert (again.status, await again.json()) == (200, {"status": "already recorded"})


async def test_aplazame_is_not_asked_before_the_replica_holds_the_captures_journal_entry(
    pair: tuple[LocalRedis, LocalRedis], primary_client: Redis, aiohttp_server: Any
) -> None:
    """Aplazame takes no idempotency key: what keeps a session's next delivery from
    capturing again is the journal entry (and the order lock) written just before the POST.
    A failover to a replica without them would let that delivery plan anew, see the first
    capture as one that was there before, and capture a second time."""
    primary, replica = pair
    fake = create_aplazame_app(open_orders=True)
    server = await aiohttp_server(fake)
    settings = settings_for(
        primary,
        connector="aplazame",
        aplazame_base_url=str(server.make_url("")).rstrip("/"),
        aplazame_private_key="sk_test",
        # A request payhook gave up on may still land for 3 x this; a short wait here.
        psp_timeout_seconds=0.2,
    )
    connector = build_connector(settings, primary_client)
    operation = Operation(
        session_id=f"cs-journal-{time.time_ns()}",
        payment_id=f"ord-journal-{time.time_ns()}",
        amount=Decimal("10.00"),
        currency="EUR",
        test=True,
    )
    try:
        with Frozen(replica):
            with pytest.raises(NotReplicated):
                await connector.settle(Op.CAPTURE, operation)
            assert fake[APLAZAME_ORDERS][operation.payment_id].captures == []
        # Thawed: once the request can no longer be in flight, it goes, once.
        await asyncio.sleep(settings.psp_in_flight_seconds + 0.1)
        approved = await connector.settle(Op.CAPTURE, operation)
        assert await connector.settle(Op.CAPTURE, operation) == approved
    finally:
        await connector.close()
    [capture] = fake[APLAZAME_ORDERS][operation.payment_id].captures
    assert approved == Approved(psp_reference=capture["id"])
