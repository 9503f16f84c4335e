"""Trusted-proxy mode: a load balancer terminates Shopify's mTLS and says so in headers.
Only a request from a configured proxy address, carrying the proxy's verification (and, when
pinned, the right subject), opens a session; the real app over a real TCP connection."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from config import Settings
from ops.redis_server import LocalRedis
from tests.factories import capture_body, shopify_headers
from webhook.app import create_app

CALLBACK_SECRET = "a-callback-secret-of-this-test-long-enough"
DB = 12
ADMIN_TOKEN = "trusted-proxy-test-admin-token-0123456789"
SUBJECT = "CN=payments.shopify.com,O=Shopify Inc."


@pytest.fixture
def settings(redis_server: LocalRedis) -> Settings:
    # The test client connects from 127.0.0.1: that is the proxy.
    return Settings(
        redis_url=f"redis://127.0.0.1:{redis_server.port}/{DB}",
        trusted_proxies="127.0.0.1",
        shopify_access_token="shpat_fallback_for_every_shop",
        simulator_webhook_secret=CALLBACK_SECRET,
    )


async def app_with(
    aiohttp_client: Any, settings: Settings, **overrides: Any
) -> TestClient[Any, Any]:
    built = Settings(
        redis_url=settings.redis_url,
        **{
            "trusted_proxies": "127.0.0.1",
            "shopify_access_token": "shpat_fallback_for_every_shop",
            "simulator_webhook_secret": CALLBACK_SECRET,
            **overrides,
        },
    )
    client: TestClient[Any, Any] = await aiohttp_client(create_app(built))
    return client


async def open_session(client: TestClient[Any, Any], **proxy_headers: str) -> tuple[int, Any]:
    headers = {**shopify_headers(), **proxy_headers}
    answer = await client.post("/capture_sessions", json=capture_body(), headers=headers)
    return answer.status, await answer.json()


async def test_the_proxys_word_opens_a_session(client: TestClient[Any, Any]) -> None:
    assert (await open_session(client, **{"X-Client-Verify": "SUCCESS"}))[0] == 201


@pytest.mark.parametrize(
    "verify",
    [None, "NONE", "FAILED:certificate has expired", "success ", ""],
    ids=["no header", "no certificate", "failed", "not exactly SUCCESS", "empty"],
)
async def test_without_the_proxys_verification_no_session_opens(
    client: TestClient[Any, Any], verify: str | None
) -> None:
    headers = {} if verify is None else {"X-Client-Verify": verify}
    status, body = await open_session(client, **headers)
    assert status == 403
    assert body["error"]["code"] == "client_certificate_required"


async def test_an_address_that_is_no_trusted_proxy_is_refused_whatever_it_says(
    aiohttp_client: Any, settings: Settings, inspect: Any
) -> None:
    client = await app_with(aiohttp_client, settings, trusted_proxies="10.0.0.0/8, fd00::/8")
    status, body = await open_session(client, **{"X-Client-Verify": "SUCCESS"})
    assert status == 403
    assert body["error"]["code"] == "untrusted_proxy"


@pytest.mark.parametrize(
    ("subject", "status"),
    [
        (SUBJECT, 201),
        ("O=Shopify Inc.,CN=payments.shopify.com", 201),  # the same names in another order
        ("CN=payments.shopify.com.evil.example,O=Shopify Inc.", 403),
        ("CN=someone,O=Shopify Inc.", 403),
        ("not a distinguished name", 403),
        (None, 403),
    ],
)
async def test_a_pinned_subject_must_be_the_one_the_proxy_verified(
    aiohttp_client: Any, settings: Settings, inspect: Any, subject: str | None, status: int
) -> None:
    client = await app_with(aiohttp_client, settings, tls_client_subject="CN=payments.shopify.com")
    headers = {"X-Client-Verify": "SUCCESS"}
    if subject is not None:
        headers["X-Client-Subject"] = subject
    assert (await open_session(client, **headers))[0] == status


async def test_the_header_names_are_the_proxys_own(
    aiohttp_client: Any, settings: Settings, inspect: Any
) -> None:
    client = await app_with(
        aiohttp_client,
        settings,
        proxy_verify_header="X-SSL-Client-Verified",
        proxy_verify_value="0",
    )
    assert (await open_session(client, **{"X-SSL-Client-Verified": "0"}))[0] == 201
    assert (await open_session(client, **{"X-Client-Verify": "SUCCESS"}))[0] == 403


async def test_health_metrics_and_callbacks_need_no_proxy_headers(
    aiohttp_client: Any, settings: Settings, inspect: Any
) -> None:
    client = await app_with(aiohttp_client, settings, admin_token=ADMIN_TOKEN)
    assert (await client.get("/healthz")).status == 200
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    assert (await client.get("/metrics", headers=admin)).status == 200
    callback = await client.post("/psp/simulator/payments/x", data=b"{}")
    assert callback.status == 401  # the callback's own signature check


@pytest.mark.parametrize("proxies", ["127.0.0.1/33", "localhost", "10.0.0.0/8, example.com"])
def test_a_proxy_list_that_is_no_list_of_addresses_is_a_configuration_error(
    proxies: str,
) -> None:
    with pytest.raises(ValueError, match="trusted_proxies"):
        Settings(trusted_proxies=proxies)
