"""`GET /payments/{id}/return` through the real app on a real redis-server: the buyer back
from the PSP's page goes where Shopify said, back to checkout after a decline Shopify has not
heard of, or to a page that asks again; never anywhere else, and nothing is revealed about
sessions the buyer does not hold.

The payment is stored by intake and settled by the signed PSP callback; its report is the
write the worker makes (`reporting.after_report` through the store), with the answer Shopify
gave. The whole trip with a real worker and the sandbox is in
tests/integration/test_buyer_round_trip.py.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import redis
from aiohttp.test_utils import TestClient

from config import Settings
from config.settings import child_environment
from ops.redis_server import LocalRedis, free_port
from sessions.keys import session_key
from sessions.store import SessionStore
from tests.factories import (
    CALLBACK_SECRET,
    capture_body,
    new_id,
    payment_body,
    shopify_headers,
    signed_callback,
)
from webhook.app import create_app
from webhook.keys import METRICS
from workers.lifecycle import moves, reporting
from workers.runtime import policy

DB = 2
WAIT = 0.4
CANCEL = "https://shop.example/checkouts/1"
THANK_YOU = "https://shop.example/checkouts/c/tok-123/thank_you"
NOT_FOUND = "There is no such payment."
ADMIN_TOKEN = "buyer-return-admin-token-0123456789"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def settings(redis_server: LocalRedis) -> Settings:
    return Settings(
        redis_url=f"redis://127.0.0.1:{redis_server.port}/{DB}",
        public_url="https://payhook.example",
        shopify_access_token="shpat_fallback_for_every_shop",
        simulator_webhook_secret=CALLBACK_SECRET,
        buyer_return_wait_seconds=WAIT,
        admin_token=ADMIN_TOKEN,
    )


@pytest.fixture
async def store(settings: Settings) -> Any:
    client = redis.asyncio.Redis.from_url(settings.redis_url)
    yield SessionStore(client)
    await client.aclose()


async def pay(client: TestClient[Any, Any], outcome: str | None = None, **overrides: Any) -> str:
    """A payment Shopify sent, and the PSP's word on it (none: the buyer is still there)."""
    body = payment_body(**overrides)
    answer = await client.post("/payment_sessions", json=body, headers=shopify_headers())
    assert answer.status == 201
    if outcome is not None:
        raw, headers = signed_callback(body["id"], outcome)
        told = await client.post(f"/psp/simulator/payments/{body['id']}", data=raw, headers=headers)
        assert told.status == 200
    return str(body["id"])


async def report(
    store: SessionStore, settings: Settings, session_id: str, mutation: str, url: str | None
) -> None:
    """What a worker writes once Shopify took the report and answered `url` as next."""
    session = await store.get(session_id)
    assert session is not None
    taken = moves.Accepted(url)
    decision = reporting.after_report(session, mutation, taken, policy(settings), time.time())
    await store.change(session, decision.change)


async def back(client: TestClient[Any, Any], session_id: str, **options: Any) -> Any:
    """The buyer's browser at the return URL; redirects are the answer under test."""
    return await client.get(f"/payments/{session_id}/return", allow_redirects=False, **options)


@pytest.mark.parametrize(
    ("outcome", "mutation"),
    [
        ("approved", "paymentSessionResolve"),
        ("declined", "paymentSessionReject"),
        ("pending", "paymentSessionPending"),
    ],
)
async def test_once_shopify_took_the_report_the_buyer_goes_where_it_said(
    client: TestClient[Any, Any],
    store: SessionStore,
    settings: Settings,
    outcome: str,
    mutation: str,
) -> None:
    payment = await pay(client, outcome)
    await report(store, settings, payment, mutation, THANK_YOU)
    answer = await back(client, payment)
    assert (answer.status, answer.headers["Location"]) == (303, THANK_YOU)
    # The page Shopify shows does not learn payhook's URL, and nothing is cached.
    assert answer.headers["Referrer-Policy"] == "no-referrer"
    assert answer.headers["Cache-Control"] == "no-store"


async def test_a_payment_whose_id_has_braces_is_told_and_its_buyer_sent_on(
    client: TestClient[Any, Any], store: SessionStore, settings: Settings
) -> None:
    # Shopify's id is any printable text; the router must not read braces in it as its own.
    payment = "pay{1}-" + new_id()
    body = payment_body(id=payment)
    answer = await client.post("/payment_sessions", json=body, headers=shopify_headers())
    assert answer.status == 201
    raw, headers = signed_callback(payment, "approved")
    told = await client.post(f"/psp/simulator/payments/{quote(payment)}", data=raw, headers=headers)
    assert told.status == 200, await told.text()
    await report(store, settings, payment, "paymentSessionResolve", THANK_YOU)

    answer = await back(client, quote(payment))

    assert (answer.status, answer.headers["Location"]) == (303, THANK_YOU)


async def test_a_buyer_who_comes_back_early_is_sent_on_as_soon_as_the_report_lands(
    aiohttp_client: Any, inspect: redis.Redis, store: SessionStore, settings: Settings
) -> None:
    patient = settings.model_copy(update={"buyer_return_wait_seconds": 5.0})
    client = await aiohttp_client(create_app(patient))
    payment = await pay(client, "approved")

    async def worker_reports() -> None:
        await asyncio.sleep(0.5)
        await report(store, settings, payment, "paymentSessionResolve", THANK_YOU)

    started = time.monotonic()
    answer, _ = await asyncio.gather(back(client, payment), worker_reports())
    waited = time.monotonic() - started
    assert (answer.status, answer.headers["Location"]) == (303, THANK_YOU)
    assert 0.5 <= waited < 2.0


async def test_an_outcome_shopify_has_not_heard_of_yet_is_a_page_that_asks_again(
    client: TestClient[Any, Any],
) -> None:
    payment = await pay(client, "approved")
    started = time.monotonic()
    answer = await back(client, payment)
    waited = time.monotonic() - started
    page = await answer.text()
    assert answer.status == 200
    assert '<meta http-equiv="refresh" content="2">' in page
    assert "Processing your payment" in page
    # Bounded: it waited its few seconds, then answered.
    assert WAIT <= waited < WAIT + 1.5
    # An approved payment never goes back to checkout: the buyer could pay twice.
    assert CANCEL not in page


async def test_a_decline_shopify_has_not_heard_of_sends_the_buyer_back_to_checkout(
    client: TestClient[Any, Any],
) -> None:
    payment = await pay(client, "declined")
    answer = await back(client, payment)
    assert (answer.status, answer.headers["Location"]) == (303, CANCEL)


async def test_the_cancel_url_may_come_at_the_top_level(client: TestClient[Any, Any]) -> None:
    top = "https://shop.example/checkouts/top-level"
    payment = await pay(
        client,
        "declined",
        cancel_url=top,
        payment_method={"type": "offsite", "data": {}},
    )
    answer = await back(client, payment)
    assert (answer.status, answer.headers["Location"]) == (303, top)


async def test_a_reject_shopify_named_no_page_for_goes_back_to_checkout(
    client: TestClient[Any, Any], store: SessionStore, settings: Settings
) -> None:
    payment = await pay(client, "declined")
    await report(store, settings, payment, "paymentSessionReject", None)
    answer = await back(client, payment)
    assert (answer.status, answer.headers["Location"]) == (303, CANCEL)


async def test_a_resolve_shopify_named_no_page_for_is_a_final_page_not_checkout(
    client: TestClient[Any, Any], store: SessionStore, settings: Settings
) -> None:
    payment = await pay(client, "approved")
    await report(store, settings, payment, "paymentSessionResolve", None)
    started = time.monotonic()
    answer = await back(client, payment)
    page = await answer.text()
    assert answer.status == 200
    assert "Payment received" in page
    assert "refresh" not in page
    assert time.monotonic() - started < WAIT  # nothing left to wait for


async def test_the_request_cannot_choose_where_the_buyer_goes(
    client: TestClient[Any, Any], store: SessionStore, settings: Settings
) -> None:
    payment = await pay(client, "approved")
    await report(store, settings, payment, "paymentSessionResolve", THANK_YOU)
    answer = await client.get(
        f"/payments/{payment}/return",
        params={
            "redirect_url": "https://evil.example/",
            "next": "https://evil.example/",
            "return_url": "https://evil.example/",
        },
        headers={"Referer": "https://evil.example/", "X-Forwarded-Host": "evil.example"},
        allow_redirects=False,
    )
    assert answer.headers["Location"] == THANK_YOU
    # Nor can a trailing path or an encoded id reach another session's URL.
    for path in (
        f"/payments/{payment}/return/https://evil.example",
        f"/payments/{payment}%2F..%2Fother/return",
        "/payments/..%2F..%2Fhttps%3A%2F%2Fevil.example/return",
    ):
        other = await client.get(path, allow_redirects=False)
        assert other.status == 404
        assert "Location" not in other.headers


async def test_a_stored_url_no_browser_should_follow_is_never_answered(
    client: TestClient[Any, Any],
    store: SessionStore,
    settings: Settings,
    inspect: redis.Redis,
) -> None:
    payment = await pay(client, "declined")
    await report(store, settings, payment, "paymentSessionReject", None)
    # Written behind payhook's back: the answer checks what it sends all the same.
    inspect.hset(
        session_key(payment),
        mapping={"redirect_url": "javascript:alert(1)", "cancel_url": "//evil.example"},
    )
    answer = await back(client, payment)
    assert answer.status == 200
    assert "Location" not in answer.headers
    assert "evil" not in await answer.text()


@pytest.mark.parametrize(
    "session_id",
    ["unknown-payment", "x" * 256, "%0Anewline", "%20", "a%00b", "%E2%82%AC", "a%7Bb%7D"],
    ids=["unknown", "too long", "newline", "space", "nul", "not ascii", "braces"],
)
async def test_an_id_that_is_no_payment_is_the_same_plain_404_page(
    client: TestClient[Any, Any], session_id: str
) -> None:
    capture = capture_body()
    await client.post("/capture_sessions", json=capture, headers=shopify_headers())
    pages = []
    for asked in (session_id, capture["id"]):
        answer = await client.get(f"/payments/{asked}/return", allow_redirects=False)
        assert answer.status == 404
        assert answer.content_type == "text/html"
        pages.append(await answer.text())
    # The same page for an unknown id and a capture's: neither says which it was.
    assert pages[0] == pages[1]
    assert NOT_FOUND in pages[0]


async def test_every_answer_to_the_buyer_names_no_session_and_no_shop(
    client: TestClient[Any, Any],
) -> None:
    payment = await pay(client, "approved", amount="123.45")
    page = await (await back(client, payment)).text()
    for secret in (payment, "payhook-test", "123.45", "approved", "EUR"):
        assert secret not in page


async def test_with_redis_away_the_buyer_gets_the_page_that_asks_again(
    aiohttp_client: Any,
) -> None:
    away = Settings(
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
        redis_timeout_seconds=0.5,
        buyer_return_wait_seconds=WAIT,
    )
    client = await aiohttp_client(create_app(away))
    answer = await back(client, "some-payment")
    assert answer.status == 200
    assert '<meta http-equiv="refresh"' in await answer.text()


async def test_where_buyers_went_is_counted(
    client: TestClient[Any, Any], store: SessionStore, settings: Settings
) -> None:
    payment = await pay(client, "approved")
    await report(store, settings, payment, "paymentSessionResolve", THANK_YOU)
    await back(client, payment)
    await back(client, "unknown")
    sample = client.app[METRICS].registry.get_sample_value
    assert sample("payhook_buyer_returns_total", {"result": "redirected"}) == 1
    assert sample("payhook_buyer_returns_total", {"result": "not_found"}) == 1


def sessions_show(settings: Settings, session_id: str) -> str:
    """`payhook sessions show ID` as an operator runs it; its standard output."""
    return subprocess.run(
        [sys.executable, "-m", "ops", "sessions", "show", "--", session_id],
        env=child_environment({"PAYHOOK_REDIS_URL": settings.redis_url}),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout


async def test_where_shopify_sent_the_buyer_is_shown_to_operators_without_the_checkout_token(
    client: TestClient[Any, Any], store: SessionStore, settings: Settings
) -> None:
    payment = await pay(client, "approved")
    await report(store, settings, payment, "paymentSessionResolve", THANK_YOU)

    shown = await asyncio.to_thread(sessions_show, settings, payment)
    assert f"    redirect_url: {THANK_YOU}\n" in shown
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    api = await (await client.get(f"/admin/sessions/{payment}", headers=auth)).json()
    assert api["session"]["redirect_url"] == THANK_YOU
    # The dashboard shows no buyer data: the host and the page, not the checkout's token.
    page = await client.get("/admin/dashboard/session", params={"id": payment}, headers=auth)
    text = await page.text()
    assert "<td>buyer sent to</td><td>https://shop.example/…/thank_you</td>" in text
    assert "tok-123" not in text
