"""Mutual TLS over real TLS connections with certificates made at test time: Shopify's
session routes need a client certificate from Shopify's CA (and, when pinned, its subject);
every other route keeps its own authentication and needs no client certificate."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme
from aiohttp import web
from pydantic import ValidationError

from config import Settings
from ops.redis_server import LocalRedis, free_port
from tests.factories import capture_body, shopify_headers
from webhook.app import create_app
from webhook.tls import server_ssl_context

SHOPIFY_CN = "payments.shopify.com"


@dataclass
class Pki:
    shopify: trustme.CA
    stranger: trustme.CA
    server_ca: Path

    def client(self, issuer: trustme.CA | None, common_name: str = SHOPIFY_CN) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.server_ca))
        if issuer is not None:
            issuer.issue_cert("shopify-client", common_name=common_name).configure_cert(context)
        return context


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    shopify, stranger, server_ca = trustme.CA(), trustme.CA(), trustme.CA()
    server_ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(
        str(tmp_path / "server.pem")
    )
    shopify.cert_pem.write_to_path(str(tmp_path / "shopify-ca.pem"))
    server_ca.cert_pem.write_to_path(str(tmp_path / "server-ca.pem"))
    return Pki(shopify, stranger, tmp_path / "server-ca.pem")


Serve = Callable[..., Awaitable[str]]


@pytest.fixture
async def serve(tmp_path: Path, redis_server: LocalRedis, pki: Pki) -> AsyncIterator[Serve]:
    """Start the real app on a real TLS listener; returns its https:// URL."""
    runners: list[web.AppRunner] = []

    async def start(**overrides: Any) -> str:
        settings = Settings(
            redis_url=f"redis://127.0.0.1:{redis_server.port}/2",
            tls_cert_file=tmp_path / "server.pem",
            tls_key_file=tmp_path / "server.pem",
            tls_client_ca_file=tmp_path / "shopify-ca.pem",
            shopify_access_token="shpat_fallback_for_every_shop",
            simulator_webhook_secret="a-callback-secret-of-this-test-long-enough",
            **overrides,
        )
        runner = web.AppRunner(create_app(settings))
        await runner.setup()
        runners.append(runner)
        port = free_port()
        context = server_ssl_context(settings)
        await web.TCPSite(runner, "127.0.0.1", port, ssl_context=context).start()
        return f"https://127.0.0.1:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


async def call(
    url: str, context: ssl.SSLContext, method: str = "POST", path: str = "/capture_sessions"
) -> tuple[int, Any]:
    body = capture_body() if path.endswith("_sessions") and method == "POST" else {}
    headers = shopify_headers() if path.endswith("_sessions") else {}
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, url + path, json=body, headers=headers, ssl=context) as answer,
    ):
        json = answer.content_type == "application/json"
        return answer.status, await answer.json() if json else await answer.text()


async def test_a_client_certificate_from_shopifys_ca_opens_a_session(
    serve: Serve, pki: Pki
) -> None:
    assert (await call(await serve(), pki.client(pki.shopify)))[0] == 201


async def test_a_session_without_a_client_certificate_is_refused(serve: Serve, pki: Pki) -> None:
    status, body = await call(await serve(), pki.client(None))
    assert status == 403
    assert body["error"]["code"] == "client_certificate_required"


async def test_a_strangers_certificate_cannot_even_complete_the_handshake(
    serve: Serve, pki: Pki
) -> None:
    with pytest.raises(aiohttp.ClientError):
        await call(await serve(), pki.client(pki.stranger))


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/healthz", 200),
        # Its own authentication here is the admin token (the operator listener has none).
        ("GET", "/metrics", 401),
        # The PSP's callback is refused by its own signature check, not by the handshake.
        ("POST", "/psp/simulator/payments/some-session", 401),
        ("GET", "/admin/sessions", 401),
    ],
)
async def test_routes_with_their_own_authentication_need_no_client_certificate(
    serve: Serve, pki: Pki, method: str, path: str, status: int
) -> None:
    url = await serve(admin_token="admin-secret")
    assert (await call(url, pki.client(None), method, path))[0] == status


async def test_a_pinned_subject_admits_only_that_certificate(serve: Serve, pki: Pki) -> None:
    url = await serve(tls_client_subject=f"CN={SHOPIFY_CN}")
    assert (await call(url, pki.client(pki.shopify)))[0] == 201
    status, body = await call(url, pki.client(pki.shopify, common_name="someone.example"))
    assert status == 403
    assert body["error"]["code"] == "client_certificate_not_allowed"


def test_a_subject_that_is_no_distinguished_name_is_a_configuration_error() -> None:
    with pytest.raises(ValidationError, match="tls_client_subject"):
        Settings(tls_client_subject="payments.shopify.com")


def test_a_client_ca_without_a_server_certificate_is_a_configuration_error(
    tmp_path: Path,
) -> None:
    with pytest.raises(ValueError, match="TLS_CERT_FILE"):
        server_ssl_context(Settings(tls_client_ca_file=tmp_path / "ca.pem"))
