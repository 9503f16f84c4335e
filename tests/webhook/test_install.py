"""The OAuth install over real HTTP: the app on a TCP port, the sandbox Shopify as a real
server playing the authorize page and the token endpoint, a real redis-server. A callback
that is forged, replayed, stale, for another shop or for a bad domain is a 4xx and stores
nothing; the nonce it carried, when it was a good one, still completes its own install."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
import redis
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.fernet import Fernet
from yarl import URL

from config import Settings
from ops.redis_server import LocalRedis, free_port
from sandbox.oauth import AUTHORIZE_PATH, TOKEN_PATH
from sandbox.oauth_state import sign_query
from sandbox.shopify import GRAPHQL_PATH, create_shopify_app
from sandbox.state import SANDBOX_STATE
from sessions.keys import SHOPS
from shops.installs import STATE_PREFIX, STATE_SECONDS
from shops.onboarding import ONBOARDING_DUE, onboarding_key
from shops.tokens import TokenCipher
from webhook.app import create_app
from webhook.install import INSTALLS_PER_CLIENT

DB = 11
API_KEY = "install-test-app"
API_SECRET = "install-test-app-secret-0123456789"
KEY = Fernet.generate_key().decode()
SCOPES = "write_payment_gateways,write_payment_sessions"

Params = dict[str, str]


@pytest.fixture
async def shopify(aiohttp_server: Any) -> TestServer:
    server: TestServer = await aiohttp_server(create_shopify_app(apps={API_KEY: API_SECRET}))
    return server


@pytest.fixture
def app_port() -> int:
    return free_port()


def install_settings(
    redis_server: LocalRedis, shopify: TestServer, port: int, **overrides: Any
) -> Settings:
    base = str(shopify.make_url("")).rstrip("/")
    fields: dict[str, Any] = {
        "redis_url": f"redis://127.0.0.1:{redis_server.port}/{DB}",
        "shopify_api_key": API_KEY,
        "shopify_api_secret": API_SECRET,
        "token_keys": KEY,
        "shopify_authorize_url": base + AUTHORIZE_PATH,
        "shopify_token_url": base + TOKEN_PATH,
        "shopify_graphql_url": base + GRAPHQL_PATH,
        "public_url": f"http://127.0.0.1:{port}",
        **overrides,
    }
    return Settings(**{name: value for name, value in fields.items() if value is not None})


@pytest.fixture
def settings(redis_server: LocalRedis, shopify: TestServer, app_port: int) -> Settings:
    return install_settings(redis_server, shopify, app_port)


@pytest.fixture
async def app_url(
    aiohttp_server: Any, settings: Settings, inspect: redis.Redis, app_port: int
) -> str:
    server = await aiohttp_server(create_app(settings), port=app_port)
    return str(server.make_url("")).rstrip("/")


@pytest.fixture
async def browser() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def new_shop() -> str:
    return f"install-{secrets.token_hex(4)}.myshopify.com"


async def approved(browser: aiohttp.ClientSession, app_url: str, shop: str) -> URL:
    """Start an install and let the sandbox approve it: the callback URL Shopify sends the
    merchant back to, not yet followed."""
    async with browser.get(
        f"{app_url}/shopify/install", params={"shop": shop}, allow_redirects=False
    ) as started:
        assert started.status == 302, await started.text()
        authorize = started.headers["Location"]
    async with browser.get(authorize, allow_redirects=False) as approving:
        assert approving.status == 302, await approving.text()
        return URL(approving.headers["Location"], encoded=True)


async def visit(browser: aiohttp.ClientSession, url: URL) -> tuple[int, dict[str, Any]]:
    async with browser.get(url, allow_redirects=False) as answer:
        return answer.status, await answer.json()


def resigned(callback: URL, **changes: str | None) -> URL:
    """The callback with `changes` (None drops a parameter), signed again with the app's
    secret, as Shopify would sign such a query."""
    params: Params = dict(callback.query)
    for name, value in changes.items():
        if value is None:
            params.pop(name, None)
        else:
            params[name] = value
    params.pop("hmac", None)
    params["hmac"] = sign_query(params, API_SECRET)
    return callback.with_query(params)


def stored_nothing(inspect: redis.Redis, shop: str) -> bool:
    return (
        inspect.hget(SHOPS, shop) is None
        and not inspect.exists(onboarding_key(shop))
        and inspect.zscore(ONBOARDING_DUE, shop) is None
    )


async def test_an_install_ends_with_the_shops_token_stored_encrypted_and_its_onboarding_queued(
    browser: aiohttp.ClientSession, app_url: str, shopify: TestServer, inspect: redis.Redis
) -> None:
    shop = new_shop()
    # The merchant's browser: every redirect followed, to the callback's answer.
    async with browser.get(f"{app_url}/shopify/install", params={"shop": shop}) as answer:
        assert answer.status == 200
        body = await answer.json()
    assert body == {
        "shop": shop,
        "installed": True,
        "scopes": SCOPES.split(","),
        "onboarding": {"handle": shop, "ready": True, "state": "queued"},
    }
    issued = shopify.app[SANDBOX_STATE].tokens[shop]
    stored = inspect.hget(SHOPS, shop)
    assert stored is not None
    assert stored.startswith("fernet:")
    assert issued not in stored
    assert TokenCipher([KEY]).open(stored) == issued
    onboarding = inspect.hgetall(onboarding_key(shop))
    assert onboarding["state"] == "queued"
    assert onboarding["ready"] == "1"
    assert onboarding["asked_by"] == "install"
    assert inspect.zscore(ONBOARDING_DUE, shop) is not None
    # The nonce is spent: nothing of the install's is left for a replay.
    assert not inspect.keys(STATE_PREFIX + "*")


async def test_the_install_sends_the_merchant_to_authorize_with_a_nonce_bound_to_the_shop(
    browser: aiohttp.ClientSession, app_url: str, shopify: TestServer, inspect: redis.Redis
) -> None:
    shop = new_shop()
    async with browser.get(
        f"{app_url}/shopify/install", params={"shop": shop.upper()}, allow_redirects=False
    ) as answer:
        assert answer.status == 302
        assert answer.headers["Cache-Control"] == "no-store"
        location = URL(answer.headers["Location"])
    assert str(location.with_query(None)) == str(shopify.make_url(f"/{shop}/admin/oauth/authorize"))
    query = dict(location.query)
    assert set(query) == {"client_id", "scope", "redirect_uri", "state"}
    assert (query["client_id"], query["scope"]) == (API_KEY, SCOPES)
    assert query["redirect_uri"] == f"{app_url}/shopify/callback"
    key = STATE_PREFIX + query["state"]
    assert inspect.get(key) == shop
    assert 0 < inspect.ttl(key) <= STATE_SECONDS


TAMPERED: list[tuple[str, Callable[[URL], URL], int, str]] = [
    (
        "a forged hmac",
        lambda u: u.update_query(
            hmac=u.query["hmac"][:-1] + ("0" if u.query["hmac"][-1] != "0" else "1")
        ),
        401,
        "bad_hmac",
    ),
    (
        "no hmac",
        lambda u: u.with_query({k: v for k, v in u.query.items() if k != "hmac"}),
        401,
        "bad_hmac",
    ),
    ("a value changed after signing", lambda u: u.update_query(code="0" * 32), 401, "bad_hmac"),
    (
        "a stale timestamp",
        lambda u: resigned(u, timestamp=str(int(u.query["timestamp"]) - 3600)),
        401,
        "stale_timestamp",
    ),
    (
        "a timestamp from the future",
        lambda u: resigned(u, timestamp=str(int(u.query["timestamp"]) + 3600)),
        401,
        "stale_timestamp",
    ),
    (
        "a shop that is no Shopify shop",
        lambda u: resigned(u, shop="evil.example.com"),
        400,
        "invalid_shop",
    ),
    (
        "a shop with a second label",
        lambda u: resigned(u, shop="a.b.myshopify.com"),
        400,
        "invalid_shop",
    ),
    ("no state", lambda u: resigned(u, state=None), 400, "missing_parameter"),
    (
        "a state payhook never made",
        lambda u: resigned(u, state=secrets.token_urlsafe(32)),
        403,
        "unknown_state",
    ),
    (
        "a state that is no nonce",
        lambda u: resigned(u, state="../../payhook:shops"),
        403,
        "unknown_state",
    ),
    ("a code that is no code", lambda u: resigned(u, code="a b"), 400, "invalid_parameter"),
]


@pytest.mark.parametrize(
    ("tamper", "status", "code"), [t[1:] for t in TAMPERED], ids=[t[0] for t in TAMPERED]
)
async def test_a_tampered_callback_is_a_4xx_that_stores_nothing_and_spends_no_nonce(
    browser: aiohttp.ClientSession,
    app_url: str,
    inspect: redis.Redis,
    tamper: Callable[[URL], URL],
    status: int,
    code: str,
) -> None:
    shop = new_shop()
    callback = await approved(browser, app_url, shop)
    refused, body = await visit(browser, tamper(callback))
    assert (refused, body["error"]["code"]) == (status, code), body
    assert stored_nothing(inspect, shop)
    assert stored_nothing(inspect, "evil.example.com")
    # The genuine callback still completes: the refusal spent nothing.
    assert (await visit(browser, callback))[0] == 200
    assert inspect.hget(SHOPS, shop) is not None


async def test_a_replayed_callback_is_refused_and_changes_nothing(
    browser: aiohttp.ClientSession, app_url: str, inspect: redis.Redis
) -> None:
    shop = new_shop()
    callback = await approved(browser, app_url, shop)
    assert (await visit(browser, callback))[0] == 200
    token, record = inspect.hget(SHOPS, shop), inspect.hgetall(onboarding_key(shop))
    status, body = await visit(browser, callback)
    assert (status, body["error"]["code"]) == (403, "unknown_state")
    assert inspect.hget(SHOPS, shop) == token
    assert inspect.hgetall(onboarding_key(shop)) == record


async def test_a_callback_after_its_state_expired_is_refused(
    browser: aiohttp.ClientSession, app_url: str, inspect: redis.Redis
) -> None:
    shop = new_shop()
    callback = await approved(browser, app_url, shop)
    # Redis lets the nonce go as its TTL would after ten minutes.
    inspect.pexpire(STATE_PREFIX + callback.query["state"], 1)
    await asyncio.sleep(0.05)
    status, body = await visit(browser, callback)
    assert (status, body["error"]["code"]) == (403, "unknown_state")
    assert stored_nothing(inspect, shop)


async def test_a_state_made_for_another_shop_is_refused_and_still_installs_its_own(
    browser: aiohttp.ClientSession, app_url: str, inspect: redis.Redis
) -> None:
    mine, theirs = new_shop(), new_shop()
    my_callback = await approved(browser, app_url, mine)
    their_callback = await approved(browser, app_url, theirs)
    # Their merchant approved, but the callback carries the nonce made for my shop.
    crossed = resigned(their_callback, state=my_callback.query["state"])
    status, body = await visit(browser, crossed)
    assert (status, body["error"]["code"]) == (403, "state_for_another_shop")
    assert stored_nothing(inspect, theirs)
    assert stored_nothing(inspect, mine)
    assert (await visit(browser, my_callback))[0] == 200
    assert (await visit(browser, their_callback))[0] == 200


async def test_a_replayed_code_is_refused_by_shopify_and_the_first_token_stays(
    browser: aiohttp.ClientSession, app_url: str, shopify: TestServer, inspect: redis.Redis
) -> None:
    shop = new_shop()
    first = await approved(browser, app_url, shop)
    assert (await visit(browser, first))[0] == 200
    token, record = inspect.hget(SHOPS, shop), inspect.hgetall(onboarding_key(shop))
    second = await approved(browser, app_url, shop)
    # A fresh nonce, signed as Shopify signs, with the code the first install spent.
    replayed = resigned(second, code=first.query["code"])
    status, body = await visit(browser, replayed)
    assert (status, body["error"]["code"]) == (400, "code_refused")
    assert "already used" in body["error"]["message"]
    assert inspect.hget(SHOPS, shop) == token
    assert inspect.hgetall(onboarding_key(shop)) == record
    exchanges = shopify.app[SANDBOX_STATE].grants.exchanges
    assert [e.status for e in exchanges if e.shop == shop] == [200, 400]


async def test_a_token_without_every_scope_asked_for_is_not_stored(
    browser: aiohttp.ClientSession, app_url: str, inspect: redis.Redis
) -> None:
    shop = new_shop()
    async with browser.get(
        f"{app_url}/shopify/install", params={"shop": shop}, allow_redirects=False
    ) as started:
        authorize = URL(started.headers["Location"])
    # The merchant's browser came to the authorize page with a scope taken out.
    narrowed = authorize.update_query(scope="write_payment_sessions")
    async with browser.get(narrowed) as answer:
        status, body = answer.status, await answer.json()
    assert (status, body["error"]["code"]) == (403, "scopes_not_granted")
    assert "write_payment_gateways" in body["error"]["message"]
    assert stored_nothing(inspect, shop)


async def test_shopify_unreachable_for_the_token_is_a_502_that_stores_nothing(
    aiohttp_server: Any,
    browser: aiohttp.ClientSession,
    redis_server: LocalRedis,
    shopify: TestServer,
    inspect: redis.Redis,
) -> None:
    port = free_port()
    settings = install_settings(
        redis_server, shopify, port, shopify_token_url=f"http://127.0.0.1:{free_port()}/{{shop}}/t"
    )
    server = await aiohttp_server(create_app(settings), port=port)
    shop = new_shop()
    callback = await approved(browser, str(server.make_url("")).rstrip("/"), shop)
    status, body = await visit(browser, callback)
    assert (status, body["error"]["code"]) == (502, "shopify_unavailable")
    assert stored_nothing(inspect, shop)


@pytest.mark.parametrize("missing", ["shopify_api_key", "shopify_api_secret", "token_keys"])
async def test_without_the_apps_credentials_the_install_routes_answer_404_not_configured(
    aiohttp_client: Any,
    redis_server: LocalRedis,
    shopify: TestServer,
    inspect: redis.Redis,
    missing: str,
) -> None:
    settings = install_settings(redis_server, shopify, free_port(), **{missing: None})
    client = await aiohttp_client(create_app(settings))
    for path in ("/shopify/install?shop=a.myshopify.com", "/shopify/callback?shop=a.myshopify.com"):
        answer = await client.get(path, allow_redirects=False)
        body = await answer.json()
        assert (answer.status, body["error"]["code"]) == (404, "not_configured")
        assert f"PAYHOOK_{missing.upper()}" in body["error"]["message"]
    assert not inspect.keys("*")


async def test_the_install_routes_need_no_client_certificate(
    aiohttp_client: Any, redis_server: LocalRedis, shopify: TestServer, inspect: redis.Redis
) -> None:
    # Session routes only from a proxy that verified Shopify's certificate; not this client.
    settings = install_settings(redis_server, shopify, free_port(), trusted_proxies="10.9.0.0/16")
    client = await aiohttp_client(create_app(settings))
    session = await client.post("/capture_sessions", json={})
    assert (await session.json())["error"]["code"] == "untrusted_proxy"
    started = await client.get("/shopify/install?shop=a.myshopify.com", allow_redirects=False)
    assert started.status == 302


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("", "missing_parameter"),
        ("?shop=", "missing_parameter"),
        ("?shop=evil.example.com", "invalid_shop"),
        ("?shop=a.myshopify.com.evil.example.com", "invalid_shop"),
        ("?shop=a.myshopify.com&shop=b.myshopify.com", "invalid_parameter"),
        ("?shop=" + "a" * 300 + ".myshopify.com", "invalid_shop"),
    ],
)
async def test_an_install_for_no_shop_or_a_bad_one_is_a_400_and_keeps_no_nonce(
    browser: aiohttp.ClientSession, app_url: str, inspect: redis.Redis, query: str, code: str
) -> None:
    status, body = await visit(browser, URL(f"{app_url}/shopify/install{query}"))
    assert (status, body["error"]["code"]) == (400, code)
    assert not inspect.keys(STATE_PREFIX + "*")


async def test_installs_past_a_clients_budget_are_refused_with_retry_after(
    browser: aiohttp.ClientSession, app_url: str, inspect: redis.Redis
) -> None:
    shop = new_shop()
    for _ in range(INSTALLS_PER_CLIENT):
        async with browser.get(
            f"{app_url}/shopify/install", params={"shop": shop}, allow_redirects=False
        ) as answer:
            assert answer.status == 302
    async with browser.get(
        f"{app_url}/shopify/install", params={"shop": shop}, allow_redirects=False
    ) as refused:
        assert refused.status == 429
        assert int(refused.headers["Retry-After"]) >= 1
        assert (await refused.json())["error"]["code"] == "too_many_installs"
    assert len(inspect.keys(STATE_PREFIX + "*")) == INSTALLS_PER_CLIENT


async def test_a_callback_larger_than_any_shopify_sends_is_refused_before_its_signature(
    browser: aiohttp.ClientSession, app_url: str, inspect: redis.Redis
) -> None:
    query = "&".join(f"p{i}=v" for i in range(40))
    status, body = await visit(browser, URL(f"{app_url}/shopify/callback?{query}"))
    assert (status, body["error"]["code"]) == (400, "invalid_query")
    assert not inspect.keys("*")


TOKEN_BODY = b'{"access_token": "shpat_from_a_slow_shopify", "scope": "' + SCOPES.encode() + b'"}'


async def _in_pieces(request: web.Request) -> web.StreamResponse:
    answer = web.StreamResponse(headers={"Content-Type": "application/json"})
    await answer.prepare(request)
    for start in range(0, len(TOKEN_BODY), 7):
        await answer.write(TOKEN_BODY[start : start + 7])
        await asyncio.sleep(0.01)
    await answer.write_eof()
    return answer


async def _huge(_: web.Request) -> web.Response:
    return web.json_response({"access_token": "shpat_x", "scope": SCOPES, "pad": "x" * 70_000})


async def _redirect(_: web.Request) -> web.Response:
    raise web.HTTPFound("http://127.0.0.1:9/elsewhere")


async def _error(_: web.Request) -> web.Response:
    return web.Response(status=503, text="<html>down</html>", content_type="text/html")


async def _not_a_token(_: web.Request) -> web.Response:
    return web.json_response({"token": "shpat_x"})


@pytest.mark.parametrize(
    ("answers", "status"),
    [
        (_in_pieces, 200),
        (_huge, 502),
        (_redirect, 502),
        (_error, 502),
        (_not_a_token, 502),
    ],
    ids=["in pieces", "huge", "a redirect", "a 503 page", "no token in it"],
)
async def test_only_a_whole_token_answer_of_a_sane_size_stores_a_token(
    aiohttp_server: Any,
    browser: aiohttp.ClientSession,
    redis_server: LocalRedis,
    shopify: TestServer,
    inspect: redis.Redis,
    answers: Callable[[web.Request], Any],
    status: int,
) -> None:
    peer = web.Application()
    peer.router.add_post("/{shop}/admin/oauth/access_token", answers)
    token_endpoint = await aiohttp_server(peer)
    port = free_port()
    template = str(token_endpoint.make_url("")).rstrip("/") + TOKEN_PATH
    settings = install_settings(redis_server, shopify, port, shopify_token_url=template)
    server = await aiohttp_server(create_app(settings), port=port)
    shop = new_shop()
    callback = await approved(browser, str(server.make_url("")).rstrip("/"), shop)
    answered, body = await visit(browser, callback)
    assert answered == status, body
    if status == 200:
        stored = inspect.hget(SHOPS, shop)
        assert stored is not None
        assert TokenCipher([KEY]).open(stored) == "shpat_from_a_slow_shopify"
    else:
        assert body["error"]["code"] == "shopify_unavailable"
        assert stored_nothing(inspect, shop)


async def test_the_same_callback_twice_at_once_installs_once(
    browser: aiohttp.ClientSession, app_url: str, shopify: TestServer, inspect: redis.Redis
) -> None:
    shop = new_shop()
    callback = await approved(browser, app_url, shop)
    answers = await asyncio.gather(visit(browser, callback), visit(browser, callback))
    assert sorted(status for status, _ in answers) == [200, 403]
    exchanges = shopify.app[SANDBOX_STATE].grants.exchanges
    assert [e.status for e in exchanges if e.shop == shop] == [200]
    assert inspect.hget(onboarding_key(shop), "request") == "1"
