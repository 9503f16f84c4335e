"""Mutual TLS: only a client holding a certificate from the configured CA opens a session."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import trustme
from aiohttp import web

from config import Settings
from ops.redis_server import LocalRedis, free_port
from tests.factories import capture_body, shopify_headers
from webhook.app import create_app
from webhook.tls import server_ssl_context


@pytest.fixture
def authorities() -> tuple[trustme.CA, trustme.CA]:
    return trustme.CA(), trustme.CA()  # Shopify's CA, and a stranger's


@pytest.fixture
async def https_url(
    tmp_path: Path, redis_server: LocalRedis, authorities: tuple[trustme.CA, trustme.CA]
) -> AsyncIterator[str]:
    shopify_ca, _ = authorities
    server_ca = trustme.CA()
    server_cert = server_ca.issue_cert("127.0.0.1")
    server_cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    shopify_ca.cert_pem.write_to_path(str(tmp_path / "shopify-ca.pem"))
    server_ca.cert_pem.write_to_path(str(tmp_path / "server-ca.pem"))
    settings = Settings(
        redis_url=f"redis://127.0.0.1:{redis_server.port}/2",
        tls_cert_file=tmp_path / "server.pem",
        tls_key_file=tmp_path / "server.pem",
        tls_client_ca_file=tmp_path / "shopify-ca.pem",
        shopify_access_token="shpat_fallback_for_every_shop",
    )
    runner = web.AppRunner(create_app(settings))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=server_ssl_context(settings)).start()
    yield f"https://127.0.0.1:{port}"
    await runner.cleanup()


def client_context(tmp_path: Path, issuer: trustme.CA | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(tmp_path / "server-ca.pem"))
    if issuer is not None:
        issuer.issue_cert("shopify-client").configure_cert(context)
    return context


async def post(url: str, context: ssl.SSLContext) -> int:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{url}/capture_sessions", json=capture_body(), headers=shopify_headers(), ssl=context
        ) as answer,
    ):
        return answer.status


async def test_a_client_certificate_from_shopifys_ca_is_accepted(
    https_url: str, tmp_path: Path, authorities: tuple[trustme.CA, trustme.CA]
) -> None:
    assert await post(https_url, client_context(tmp_path, authorities[0])) == 201


@pytest.mark.parametrize("who", ["no certificate", "a stranger's certificate"])
async def test_anyone_else_cannot_even_complete_the_handshake(
    https_url: str, tmp_path: Path, authorities: tuple[trustme.CA, trustme.CA], who: str
) -> None:
    issuer = None if who == "no certificate" else authorities[1]
    with pytest.raises(aiohttp.ClientError):
        await post(https_url, client_context(tmp_path, issuer))


def test_a_client_ca_without_a_server_certificate_is_a_configuration_error(
    tmp_path: Path,
) -> None:
    with pytest.raises(ValueError, match="TLS_CERT_FILE"):
        server_ssl_context(Settings(tls_client_ca_file=tmp_path / "ca.pem"))
