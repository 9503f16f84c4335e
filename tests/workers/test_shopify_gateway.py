"""The gql gateway against the sandbox Shopify as a real aiohttp server: every answer
Shopify (or the network) can give maps onto payhook's own retryable/permanent errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from errors import MissingCredentials, ShopifyUnavailable, ShopifyUserError, TokenRejected
from ops.redis_server import free_port
from sandbox.client import SandboxShopifyClient
from sandbox.shopify import GRAPHQL_PATH, create_shopify_app
from workers.shopify import mutations
from workers.shopify.gateway import GqlShopifyGateway
from workers.shopify.tokens import CachedTokens

SHOP = "gateway-shop.myshopify.com"
GID = "gid://shopify/CaptureSession/gw-1"


class Tokens:
    def __init__(self, token: str | None) -> None:
        self.token = token

    async def token_for(self, shop: str) -> str | None:
        return self.token

    def opened(self, shop: str, stored: str | None) -> str | None:
        return self.token


@pytest.fixture
async def server(aiohttp_server: Any) -> Any:
    return await aiohttp_server(create_shopify_app(tokens={"locked.myshopify.com": "right"}))


@pytest.fixture
async def sandbox(server: Any) -> AsyncIterator[SandboxShopifyClient]:
    async with aiohttp.ClientSession() as http:
        client = SandboxShopifyClient(str(server.make_url("")).rstrip("/"), http)
        await client.register([GID])
        yield client


def gateway_for(
    base: str, token: str | None = "shpat_x", timeout: float = 2.0
) -> GqlShopifyGateway:
    return GqlShopifyGateway(
        url_template=base + GRAPHQL_PATH,
        api_version="2025-10",
        tokens=Tokens(token),
        timeout_seconds=timeout,
    )


@pytest.fixture
async def gateway(server: Any) -> AsyncIterator[GqlShopifyGateway]:
    gateway = gateway_for(str(server.make_url("")).rstrip("/"))
    yield gateway
    await gateway.close()


async def test_a_resolve_lands_and_a_repeat_is_harmless(
    gateway: GqlShopifyGateway, sandbox: SandboxShopifyClient
) -> None:
    await gateway.send(SHOP, mutations.resolve("capture", GID))
    await gateway.send(SHOP, mutations.resolve("capture", GID))
    assert (await sandbox.session_state(GID) or {})["state"] == "resolved"


async def test_a_reject_carries_code_and_merchant_message(
    gateway: GqlShopifyGateway, sandbox: SandboxShopifyClient
) -> None:
    await gateway.send(SHOP, mutations.reject("capture", GID, "AUTHORIZATION_EXPIRED", "too late"))
    [call] = await sandbox.calls(gid=GID)
    assert call["variables"]["reason"] == {
        "code": "AUTHORIZATION_EXPIRED",
        "merchantMessage": "too late",
    }
    assert (await sandbox.session_state(GID) or {})["state"] == "rejected"


@pytest.mark.parametrize("body", ["truncated", "html", "no_data"])
async def test_a_body_that_is_no_graphql_answer_is_retryable_and_applies_nothing(
    gateway: GqlShopifyGateway, sandbox: SandboxShopifyClient, body: str
) -> None:
    await sandbox.add_fault({"kind": "malformed", "body": body, "times": 1})
    with pytest.raises(ShopifyUnavailable) as caught:
        await gateway.send(SHOP, mutations.resolve("capture", GID))
    assert caught.value.cause == "malformed"
    assert [call["applied"] for call in await sandbox.calls(gid=GID)] == [False]
    await gateway.send(SHOP, mutations.resolve("capture", GID))  # and then it works
    assert (await sandbox.session_state(GID) or {})["state"] == "resolved"


@pytest.mark.parametrize(
    ("rule", "retry_after"),
    [
        ({"kind": "status", "status": 500, "times": 1}, None),
        ({"kind": "status", "status": 503, "times": 1}, None),
        ({"kind": "html_429", "times": 1}, None),
        ({"kind": "html_429", "times": 1, "retry_after": 7}, 7.0),
        ({"kind": "commit_then_status", "status": 502, "times": 1}, None),
    ],
    ids=["500", "503", "html 429", "html 429 retry-after", "lost answer"],
)
async def test_server_trouble_is_retryable(
    gateway: GqlShopifyGateway,
    sandbox: SandboxShopifyClient,
    rule: dict[str, Any],
    retry_after: float | None,
) -> None:
    await sandbox.add_fault(rule)
    with pytest.raises(ShopifyUnavailable) as caught:
        await gateway.send(SHOP, mutations.resolve("capture", GID))
    assert caught.value.retry_after == retry_after
    await gateway.send(SHOP, mutations.resolve("capture", GID))  # and then it works


@pytest.mark.parametrize(
    ("header", "retry_after"),
    [
        ("1e12", 1e12),  # passed on as asked; the retry policy caps it
        ("-3", None),
        ("nan", None),
        ("inf", None),
        ("when you are ready", None),
        ("Thu, 01 Jan 1970 00:00:00 GMT", 0.0),
    ],
)
async def test_any_retry_after_is_read_as_seconds_or_ignored(
    gateway: GqlShopifyGateway,
    sandbox: SandboxShopifyClient,
    header: str,
    retry_after: float | None,
) -> None:
    await sandbox.add_fault({"kind": "html_429", "times": 1, "retry_after": header})
    with pytest.raises(ShopifyUnavailable) as caught:
        await gateway.send(SHOP, mutations.resolve("capture", GID))
    assert caught.value.retry_after == retry_after


async def test_an_http_date_retry_after_is_the_time_until_then(
    gateway: GqlShopifyGateway, sandbox: SandboxShopifyClient
) -> None:
    then = format_datetime(datetime.now(UTC) + timedelta(seconds=90), usegmt=True)
    await sandbox.add_fault({"kind": "html_429", "times": 1, "retry_after": then})
    with pytest.raises(ShopifyUnavailable) as caught:
        await gateway.send(SHOP, mutations.resolve("capture", GID))
    assert caught.value.retry_after is not None
    assert 80 <= caught.value.retry_after <= 90


async def test_throttling_is_retryable_with_the_bucket_refill_time(
    gateway: GqlShopifyGateway, sandbox: SandboxShopifyClient
) -> None:
    await sandbox.add_fault({"kind": "throttled", "times": 1})
    with pytest.raises(ShopifyUnavailable, match="Throttled") as caught:
        await gateway.send(SHOP, mutations.resolve("capture", GID))
    assert caught.value.retry_after is not None
    assert caught.value.retry_after > 0


async def test_a_slow_answer_past_the_timeout_is_retryable(
    server: Any, sandbox: SandboxShopifyClient
) -> None:
    await sandbox.add_fault({"kind": "delay", "seconds": 2.5, "times": 1})
    gateway = gateway_for(str(server.make_url("")).rstrip("/"), timeout=1.0)
    try:
        with pytest.raises(ShopifyUnavailable):
            await gateway.send(SHOP, mutations.resolve("capture", GID))
    finally:
        await gateway.close()


async def test_nobody_listening_is_retryable() -> None:
    gateway = gateway_for(f"http://127.0.0.1:{free_port()}")
    try:
        with pytest.raises(ShopifyUnavailable):
            await gateway.send(SHOP, mutations.resolve("capture", GID))
    finally:
        await gateway.close()


async def test_the_other_mutation_after_a_final_state_is_an_invalid_state_user_error(
    gateway: GqlShopifyGateway, sandbox: SandboxShopifyClient
) -> None:
    await gateway.send(SHOP, mutations.resolve("capture", GID))
    with pytest.raises(ShopifyUserError) as caught:
        await gateway.send(SHOP, mutations.reject("capture", GID, "PROCESSING_ERROR", "no"))
    assert caught.value.code == "CAPTURE_SESSION_INVALID_STATE"
    assert caught.value.invalid_state


async def test_an_unknown_session_is_a_permanent_not_found(gateway: GqlShopifyGateway) -> None:
    with pytest.raises(ShopifyUserError) as caught:
        await gateway.send(SHOP, mutations.resolve("capture", "gid://shopify/CaptureSession/nope"))
    assert caught.value.code == "CAPTURE_SESSION_NOT_FOUND"
    assert not caught.value.invalid_state


async def test_a_wrong_token_is_permanent_and_names_the_shop_and_the_fix(
    server: Any, sandbox: SandboxShopifyClient
) -> None:
    gateway = gateway_for(str(server.make_url("")).rstrip("/"), token="wrong")
    try:
        with pytest.raises(TokenRejected, match=r"locked\.myshopify\.com \(HTTP 401.*shops add"):
            await gateway.send("locked.myshopify.com", mutations.resolve("capture", GID))
    finally:
        await gateway.close()


async def test_a_token_fixed_after_shopify_refused_it_is_used_at_once(
    server: Any, sandbox: SandboxShopifyClient
) -> None:
    # The worker caches tokens for a few seconds; a refusal drops the shop from the cache,
    # so the replay that follows `payhook shops add` sends the new token, not the old one.
    registry = Tokens("wrong")
    cached = CachedTokens(registry)
    gateway = GqlShopifyGateway(
        url_template=str(server.make_url("")).rstrip("/") + GRAPHQL_PATH,
        api_version="2025-10",
        tokens=cached,
        timeout_seconds=2,
        on_token_rejected=cached.forget,
    )
    try:
        with pytest.raises(TokenRejected):
            await gateway.send("locked.myshopify.com", mutations.resolve("capture", GID))
        registry.token = "right"
        await gateway.send("locked.myshopify.com", mutations.resolve("capture", GID))
    finally:
        await gateway.close()


async def test_a_shop_without_a_token_is_refused_before_any_call(
    server: Any, sandbox: SandboxShopifyClient
) -> None:
    gateway = gateway_for(str(server.make_url("")).rstrip("/"), token=None)
    with pytest.raises(MissingCredentials, match=SHOP):
        await gateway.send(SHOP, mutations.resolve("capture", GID))
    assert await sandbox.calls() == []


@pytest.mark.parametrize(
    "shop", ["evil.example", "169.254.169.254", "a.myshopify.com.evil.example", "a.b.myshopify.com"]
)
async def test_no_token_leaves_for_a_host_that_is_not_a_shopify_shop(
    gateway: GqlShopifyGateway, sandbox: SandboxShopifyClient, shop: str
) -> None:
    # Intake refuses such shops; a session stored before that rule (or by hand) must still
    # never carry the token elsewhere.
    with pytest.raises(MissingCredentials, match="not a Shopify shop domain"):
        await gateway.send(shop, mutations.resolve("capture", GID))
    assert await sandbox.calls() == []


def _tomorrow() -> str:
    # Shopify takes a pending window of at most 3 days from now.
    return (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")


PAYMENT_REPORTS = [
    pytest.param(lambda gid: mutations.resolve_payment(gid, None), "thank_you", id="resolve"),
    pytest.param(
        lambda gid: mutations.reject_payment(gid, "PROCESSING_ERROR", "Declined."),
        "declined",
        id="reject",
    ),
    pytest.param(
        lambda gid: mutations.pend_payment(gid, _tomorrow(), "BUYER_ACTION_REQUIRED"),
        "thank_you",
        id="pending",
    ),
]


@pytest.mark.parametrize(("report", "page"), PAYMENT_REPORTS)
async def test_a_payment_report_comes_back_with_where_shopify_sends_the_buyer(
    gateway: GqlShopifyGateway,
    sandbox: SandboxShopifyClient,
    server: Any,
    report: Any,
    page: str,
) -> None:
    gid = "gid://shopify/PaymentSession/pay-gw"
    await sandbox.register([gid])
    taken = await gateway.send(SHOP, report(gid))
    assert taken.redirect_url == str(server.make_url(f"/_sandbox/checkout/pay-gw/{page}"))
    # A capture's answer names no next action.
    assert (await gateway.send(SHOP, mutations.resolve("capture", GID))).redirect_url is None


def _answering(next_action: Any) -> web.Application:
    """A GraphQL peer that takes a paymentSessionResolve and names `next_action`."""

    async def answer(request: web.Request) -> web.Response:
        payload = {"paymentSession": {"id": "x", "nextAction": next_action}, "userErrors": []}
        return web.json_response({"data": {"paymentSessionResolve": payload}})

    app = web.Application()
    app.router.add_post(GRAPHQL_PATH, answer)
    return app


@pytest.mark.parametrize(
    "next_action",
    [
        None,
        {"action": "REDIRECT", "context": {"redirectUrl": "javascript:alert(1)"}},
        {"action": "REDIRECT", "context": {"redirectUrl": "//evil.example/x"}},
        {"action": "REDIRECT", "context": {"redirectUrl": "https://a.example\\@b.example/"}},
        {"action": "REDIRECT", "context": {"redirectUrl": "https://shop.example/\r\nSet-Cookie"}},
        {"action": "REDIRECT", "context": {"redirectUrl": "https://" + "a" * 9000}},
        {"action": "MODAL", "context": {"redirectUrl": "https://shop.example/x"}},
        {"action": "REDIRECT", "context": {}},
        {"action": "REDIRECT", "context": {"redirectUrl": 7}},
        "REDIRECT",
    ],
    ids=[
        "none",
        "javascript",
        "scheme-relative",
        "backslash",
        "header-split",
        "too-long",
        "other-action",
        "no-url",
        "not-text",
        "not-an-object",
    ],
)
async def test_a_next_action_no_browser_should_follow_is_dropped_and_the_report_still_lands(
    aiohttp_server: Any, next_action: Any
) -> None:
    peer = await aiohttp_server(_answering(next_action))
    gateway = gateway_for(str(peer.make_url("")).rstrip("/"))
    try:
        taken = await gateway.send(
            SHOP, mutations.resolve_payment("gid://shopify/PaymentSession/p", None)
        )
    finally:
        await gateway.close()
    assert taken.redirect_url is None
