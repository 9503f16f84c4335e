"""The dashboard through the real app on a real redis-server: who gets in, what each page
shows, that outside text stays text, and that a replay needs this login's own form."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from http.cookies import SimpleCookie
from ipaddress import ip_network
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import redis
from aiohttp import DummyCookieJar
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from config import Settings
from ops.redis_server import LocalRedis
from sessions.ledger import Book
from sessions.ledger_store import LedgerStore
from sessions.models import Op, Outcome
from sessions.states import State
from sessions.store import SessionStore
from tests.factories import make_session, received_event, store_failed
from transport.messages import QUEUE
from webhook.app import create_app

DB = 4
TOKEN = "dashboard-admin-token-0123456789"
HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>"\'&'


@pytest.fixture
def settings(redis_server: LocalRedis) -> Settings:
    return Settings(redis_url=f"redis://127.0.0.1:{redis_server.port}/{DB}", admin_token=TOKEN)


@pytest.fixture
async def client(aiohttp_client: Any, settings: Settings, inspect: redis.Redis) -> Any:
    """The real app; cookies go only where a test sends them."""
    return await aiohttp_client(create_app(settings), cookie_jar=DummyCookieJar())


@pytest.fixture
async def store(settings: Settings, inspect: redis.Redis) -> AsyncIterator[SessionStore]:
    client = Redis.from_url(settings.redis_url)
    yield SessionStore(client)
    await client.aclose()


async def log_in(client: TestClient[Any, Any], token: str = TOKEN) -> dict[str, str]:
    """Log in through the form; the Cookie header a browser would send from then on."""
    answer = await client.post(
        "/admin/login", data={"token": token, "next": "/admin"}, allow_redirects=False
    )
    assert answer.status == 303, await answer.text()
    jar = SimpleCookie(answer.headers["Set-Cookie"])
    return {"Cookie": f"payhook_admin={jar['payhook_admin'].value}"}


async def csrf_of(client: TestClient[Any, Any], path: str, cookie: dict[str, str]) -> str:
    page = await (await client.get(path, headers=cookie)).text()
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert found is not None, page
    return found[1]


async def test_without_an_admin_token_the_dashboard_does_not_exist(
    aiohttp_client: Any, redis_server: LocalRedis
) -> None:
    app = create_app(Settings(redis_url=f"redis://127.0.0.1:{redis_server.port}/{DB}"))
    client = await aiohttp_client(app)
    for path in ("/admin", "/admin/", "/admin/login", "/admin/dashboard/sessions"):
        assert (await client.get(path, allow_redirects=False)).status == 404, path
    refused = await client.post("/admin/login", data={"token": ""}, allow_redirects=False)
    assert refused.status == 404


async def test_a_browser_without_a_login_is_sent_to_the_form(
    client: TestClient[Any, Any],
) -> None:
    answer = await client.get("/admin/dashboard/failed?kind=capture", allow_redirects=False)
    assert answer.status == 303
    target = urlsplit(answer.headers["Location"])
    assert target.path == "/admin/login"
    assert parse_qs(target.query) == {"next": ["/admin/dashboard/failed?kind=capture"]}
    form = await client.get(answer.headers["Location"])
    assert form.status == 200
    assert 'name="next" value="/admin/dashboard/failed?kind=capture"' in await form.text()


@pytest.mark.parametrize("next_page", ["https://evil.example/", "//evil.example/admin", "/x"])
async def test_a_login_never_sends_the_browser_off_the_dashboard(
    client: TestClient[Any, Any], next_page: str
) -> None:
    answer = await client.post(
        "/admin/login", data={"token": TOKEN, "next": next_page}, allow_redirects=False
    )
    assert answer.headers["Location"] == "/admin"


async def test_the_login_cookie_is_signed_http_only_strict_and_holds_no_token(
    client: TestClient[Any, Any],
) -> None:
    answer = await client.post("/admin/login", data={"token": TOKEN}, allow_redirects=False)
    assert answer.status == 303
    header = answer.headers["Set-Cookie"]
    morsel = SimpleCookie(header)["payhook_admin"]
    assert TOKEN not in header
    assert morsel["httponly"] is True
    assert morsel["samesite"] == "Strict"
    assert morsel["path"] == "/admin"
    assert int(morsel["max-age"]) == 28_800
    # Plain HTTP here; over TLS the cookie is Secure (webhook.auth.over_tls).
    assert not morsel["secure"]
    cookie = {"Cookie": f"payhook_admin={morsel.value}"}
    assert (await client.get("/admin", headers=cookie)).status == 200
    expires, login, signature = morsel.value.split(".")
    forged = [
        f"{int(expires) + 3600}.{login}.{signature}",
        f"{expires}.{login}.{'0' * 64}",
        f"{int(time.time()) - 1}.{login}.{signature}",
        "",
    ]
    for value in forged:
        refused = await client.get(
            "/admin", headers={"Cookie": f"payhook_admin={value}"}, allow_redirects=False
        )
        assert refused.status == 303, value


async def test_a_wrong_token_is_refused_and_sets_no_cookie(client: TestClient[Any, Any]) -> None:
    answer = await client.post("/admin/login", data={"token": "guess"}, allow_redirects=False)
    assert answer.status == 401
    assert "Set-Cookie" not in answer.headers
    assert "not the admin token" in await answer.text()


async def test_the_bearer_token_opens_the_pages_too(client: TestClient[Any, Any]) -> None:
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert (await client.get("/admin", headers=bearer)).status == 200
    wrong = await client.get("/admin", headers={"Authorization": "Bearer nope"})
    assert wrong.status == 401


async def test_after_logout_the_same_cookie_no_longer_opens_anything(
    client: TestClient[Any, Any],
) -> None:
    cookie = await log_in(client)
    csrf = await csrf_of(client, "/admin", cookie)
    # A page elsewhere cannot log the operator out: without the token nothing is revoked.
    forged = await client.post(
        "/admin/logout", data={"next": "/admin"}, headers=cookie, allow_redirects=False
    )
    assert forged.status == 403
    assert (await client.get("/admin", headers=cookie, allow_redirects=False)).status == 200
    answer = await client.post(
        "/admin/logout", data={"csrf": csrf}, headers=cookie, allow_redirects=False
    )
    assert answer.status == 303
    assert answer.headers["Location"] == "/admin/login"
    again = await client.get("/admin", headers=cookie, allow_redirects=False)
    assert again.status == 303


async def test_outside_text_is_shown_as_text_on_every_page(
    client: TestClient[Any, Any], store: SessionStore
) -> None:
    session = await store_failed(store, HOSTILE, shop=HOSTILE, id="id<b>&\"'/?#x")
    cookie = await log_in(client)
    pages: list[tuple[str, dict[str, str]]] = [
        ("/admin", {}),
        ("/admin/dashboard/sessions", {}),
        ("/admin/dashboard/sessions", {"shop": HOSTILE, "error_contains": HOSTILE}),
        ("/admin/dashboard/failed", {"shop": HOSTILE}),
        ("/admin/dashboard/bulk-replay", {}),
        ("/admin/dashboard/held", {}),
    ]
    for path, params in pages:
        answer = await client.get(path, headers=cookie, params=params)
        body = await answer.text()
        assert answer.status == 200, (path, body)
        assert "<script>" not in body, path
        assert "<img" not in body, path
        assert "script-src" not in answer.headers["Content-Security-Policy"]
        assert "default-src 'none'" in answer.headers["Content-Security-Policy"]
    shown = await client.get("/admin/dashboard/session", params={"id": session.id}, headers=cookie)
    body = await shown.text()
    assert shown.status == 200
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in body
    assert "id&lt;b&gt;&amp;&quot;&#x27;/?#x" in body
    assert "<script>" not in body
    assert "<img" not in body
    assert "<b>&" not in body


async def test_a_session_page_shows_its_timeline_and_no_buyer_data(
    client: TestClient[Any, Any], store: SessionStore
) -> None:
    session = await store_failed(
        store,
        "captureSessionResolve: HTTP 503",
        cancel_url="https://shop.example/cancel?checkout_token=secret-checkout",
        checkout_id="checkout-123",
    )
    cookie = await log_in(client)
    body = await (
        await client.get("/admin/dashboard/session", params={"id": session.id}, headers=cookie)
    ).text()
    assert "received" in body
    assert "captureSessionResolve: HTTP 503" in body
    assert "Timeline (2 events)" in body
    assert "secret-checkout" not in body
    assert "checkout-123" not in body
    assert TOKEN not in body


async def test_a_replay_needs_the_forms_csrf_token_and_a_same_site_origin(
    client: TestClient[Any, Any], store: SessionStore, inspect: redis.Redis
) -> None:
    session = await store_failed(store, "HTTP 503", state=State.SETTLED, outcome=Outcome.APPROVED)
    cookie = await log_in(client)
    csrf = await csrf_of(client, "/admin/dashboard/failed", cookie)
    # Another login's token is a valid token, but not this login's.
    other = await csrf_of(client, "/admin/dashboard/failed", await log_in(client))
    same_site = {"Origin": str(client.make_url("")).rstrip("/")}
    refusals = [
        ({"id": session.id}, {}),
        ({"id": session.id, "csrf": "0" * 64}, {}),
        ({"id": session.id, "csrf": other}, same_site),
        ({"id": session.id, "csrf": csrf}, {"Origin": "https://evil.example"}),
    ]
    for form, headers in refusals:
        answer = await client.post(
            "/admin/dashboard/replay", data=form, headers={**cookie, **headers}
        )
        assert answer.status == 403, form
        assert (await store.get(session.id)).state is State.FAILED  # type: ignore[union-attr]
    assert inspect.llen(QUEUE) == 0
    answer = await client.post(
        "/admin/dashboard/replay",
        data={"id": session.id, "csrf": csrf},
        headers={**cookie, **same_site},
        allow_redirects=False,
    )
    assert answer.status == 303
    shown = await client.get(answer.headers["Location"], headers=cookie)
    assert "Replayed: it resumes at settled" in await shown.text()
    resumed = await store.get(session.id)
    assert resumed is not None
    assert resumed.state is State.SETTLED
    assert inspect.llen(QUEUE) == 1


@pytest.mark.parametrize(
    ("method", "path", "form", "status"),
    [
        ("GET", "/admin/dashboard/sessions?state=bogus", None, 422),
        ("GET", "/admin/dashboard/sessions?limit=0", None, 422),
        ("GET", "/admin/dashboard/sessions?since=yesterday", None, 422),
        ("GET", "/admin/dashboard/sessions?colour=red", None, 422),
        ("GET", "/admin/dashboard/session", None, 400),
        ("GET", "/admin/dashboard/session?id=" + "x" * 256, None, 400),
        ("GET", "/admin/dashboard/session?id=nope", None, 404),
        ("GET", "/admin/dashboard/bulk-replay?state=reported", None, 422),
        ("POST", "/admin/dashboard/replay", {"id": "nope"}, 404),
        ("POST", "/admin/dashboard/replay", {}, 400),
        ("POST", "/admin/dashboard/bulk-replay", {"kind": "refund_or_what"}, 422),
    ],
)
async def test_bad_input_is_a_4xx_page_that_changes_nothing(
    client: TestClient[Any, Any],
    inspect: redis.Redis,
    method: str,
    path: str,
    form: dict[str, str] | None,
    status: int,
) -> None:
    cookie = await log_in(client)
    if form is not None:
        form = {**form, "csrf": await csrf_of(client, "/admin", cookie)}
    answer = await client.request(method, path, data=form, headers=cookie)
    assert answer.status == status, await answer.text()
    assert answer.content_type == "text/html"
    assert inspect.llen(QUEUE) == 0


async def test_a_live_session_is_not_replayed(
    client: TestClient[Any, Any], store: SessionStore, inspect: redis.Redis
) -> None:
    alive = make_session()
    await store.create(alive, received_event(), due_at=0, queue=False)
    cookie = await log_in(client)
    csrf = await csrf_of(client, "/admin", cookie)
    answer = await client.post(
        "/admin/dashboard/replay", data={"id": alive.id, "csrf": csrf}, headers=cookie
    )
    assert answer.status == 409
    assert "not failed (it is received)" in await answer.text()
    assert inspect.llen(QUEUE) == 0


async def test_bulk_replay_counts_in_a_dry_run_then_replays_what_it_counted(
    client: TestClient[Any, Any], store: SessionStore, inspect: redis.Redis
) -> None:
    first = await store_failed(store, "HTTP 503", shop="a.myshopify.com")
    second = await store_failed(store, "HTTP 503", shop="a.myshopify.com")
    other = await store_failed(store, "HTTP 503", shop="b.myshopify.com")
    cookie = await log_in(client)
    preview = await client.get(
        "/admin/dashboard/bulk-replay", params={"shop": "a.myshopify.com"}, headers=cookie
    )
    body = await preview.text()
    assert "Dry run: <b>2</b> failed session(s) would be replayed (2 at received)" in body
    assert inspect.llen(QUEUE) == 0
    assert len(await store.failed_ids()) == 3
    confirm = dict(re.findall(r'name="(\w+)" value="([^"]*)"', body.split("Replay 2")[0]))
    late = await store_failed(store, "HTTP 503", shop="a.myshopify.com")
    answer = await client.post("/admin/dashboard/bulk-replay", data=confirm, headers=cookie)
    text = await answer.text()
    assert "Replayed <b>2</b> session(s); skipped 0 (the dry run counted 2)" in text
    assert sorted(await store.failed_ids()) == sorted([other.id, late.id])
    assert {first.id, second.id} <= set(re.findall(r"<code>([0-9a-f]+)</code>", text))


async def test_held_money_and_counts_show_on_their_pages(
    client: TestClient[Any, Any], store: SessionStore
) -> None:
    session = make_session(amount=Decimal("25.00"))
    ledger = LedgerStore(store.redis)
    await ledger.open(session.payment_id, Book(currency="EUR", authorized=10_000))
    await ledger.reserve(session.payment_id, session.id, Op.CAPTURE, 2500, "EUR", time.time())
    await store_failed(store, "ambiguous: timeout", id=session.id, amount=Decimal("25.00"))
    await store.create(make_session(), received_event(), due_at=0, queue=False)
    cookie = await log_in(client)
    held = await (await client.get("/admin/dashboard/held", headers=cookie)).text()
    assert f"capture 25.00 EUR on payment {session.payment_id}" in held
    overview = await (await client.get("/admin", headers=cookie)).text()
    assert "25.00 EUR (1 sessions)" in overview
    assert "<svg" in overview
    assert "Last hour: 2 received" in overview


async def test_a_form_sent_as_anything_but_url_encoded_is_refused(
    client: TestClient[Any, Any], store: SessionStore, inspect: redis.Redis
) -> None:
    session = await store_failed(store, "HTTP 503")
    cookie = await log_in(client)
    csrf = await csrf_of(client, "/admin", cookie)
    for content_type in ("multipart/form-data", "application/json"):
        answer = await client.post(
            "/admin/dashboard/replay",
            data=f'{{"id": "{session.id}", "csrf": "{csrf}"}}',
            headers={**cookie, "Content-Type": content_type},
        )
        assert answer.status == 415, content_type
    assert inspect.llen(QUEUE) == 0
    assert await store.failed_ids() == [session.id]


async def secure_login(aiohttp_client: Any, settings: Settings, **headers: str) -> bool:
    client = await aiohttp_client(create_app(settings), cookie_jar=DummyCookieJar())
    answer = await client.post(
        "/admin/login", data={"token": TOKEN}, headers=headers, allow_redirects=False
    )
    assert answer.status == 303
    return bool(SimpleCookie(answer.headers["Set-Cookie"])["payhook_admin"]["secure"])


async def test_behind_the_tls_proxy_the_login_cookie_is_secure(
    aiohttp_client: Any, settings: Settings, inspect: redis.Redis
) -> None:
    # The test client connects from 127.0.0.1: that is the proxy that terminated TLS.
    proxied = settings.model_copy(update={"trusted_proxies": (ip_network("127.0.0.1/32"),)})
    assert await secure_login(aiohttp_client, proxied, **{"X-Forwarded-Proto": "https"})
    assert not await secure_login(aiohttp_client, proxied, **{"X-Forwarded-Proto": "http"})
    assert not await secure_login(aiohttp_client, proxied)


async def test_an_https_public_url_makes_the_login_cookie_secure(
    aiohttp_client: Any, settings: Settings, inspect: redis.Redis
) -> None:
    public = settings.model_copy(update={"public_url": "https://payments.example.com"})
    assert await secure_login(aiohttp_client, public)


async def test_a_client_that_is_no_trusted_proxy_cannot_say_https(
    aiohttp_client: Any, settings: Settings, inspect: redis.Redis
) -> None:
    elsewhere = settings.model_copy(update={"trusted_proxies": (ip_network("10.0.0.0/8"),)})
    assert not await secure_login(aiohttp_client, elsewhere, **{"X-Forwarded-Proto": "https"})
    assert not await secure_login(aiohttp_client, settings, **{"X-Forwarded-Proto": "https"})
