"""`payhook shops configure` and what it leaves to read: the command line as an operator runs
it (the real parser and settings from the environment), the sandbox Shopify as a real
server, a real redis-server; then `payhook shops list`, the admin API and the dashboard."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import redis
from aiohttp.test_utils import TestClient, TestServer
from cryptography.fernet import Fernet

from config import Settings
from ops.cli import main
from ops.redis_server import LocalRedis
from sandbox.shopify import GRAPHQL_PATH, create_shopify_app
from sandbox.state import SANDBOX_STATE
from webhook.app import create_app

DB = 3
SHOP = "configure-shop.myshopify.com"
ADMIN = "configure-admin-token-0123456789abcdef"
KEY = Fernet.generate_key().decode()


@pytest.fixture
def url(redis_server: LocalRedis) -> str:
    address = f"redis://127.0.0.1:{redis_server.port}/{DB}"
    client = redis.Redis.from_url(address)
    client.flushdb()
    client.close()
    return address


@pytest.fixture
async def shopify(aiohttp_server: Any) -> TestServer:
    server: TestServer = await aiohttp_server(create_shopify_app())
    return server


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch, url: str, shopify: TestServer) -> None:
    graphql = str(shopify.make_url("")).rstrip("/") + GRAPHQL_PATH
    for name, value in {
        "PAYHOOK_REDIS_URL": url,
        "PAYHOOK_SHOPIFY_GRAPHQL_URL": graphql,
        "PAYHOOK_TOKEN_KEYS": KEY,
        "PAYHOOK_SHOPIFY_TIMEOUT_SECONDS": "2",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("PAYHOOK_SHOPIFY_ACCESS_TOKEN", raising=False)


@pytest.fixture
async def admin(aiohttp_client: Any, url: str) -> TestClient[Any, Any]:
    client: TestClient[Any, Any] = await aiohttp_client(
        create_app(Settings(redis_url=url, admin_token=ADMIN))
    )
    return client


async def payhook(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """`payhook ARGV`, in a thread so the sandbox keeps serving on this loop."""
    code = await asyncio.to_thread(main, list(argv))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


async def shops_in_admin_api(admin: TestClient[Any, Any]) -> dict[str, Any]:
    answer = await admin.get("/admin/shops", headers={"Authorization": f"Bearer {ADMIN}"})
    assert answer.status == 200
    return {s["shop"]: s for s in (await answer.json())["shops"]}


async def shops_page(admin: TestClient[Any, Any]) -> str:
    answer = await admin.get("/admin/dashboard/shops", headers={"Authorization": f"Bearer {ADMIN}"})
    assert answer.status == 200
    return await answer.text()


@pytest.mark.usefixtures("environment")
async def test_a_shop_configured_ready_is_ready_at_shopify_and_everywhere_payhook_shows_it(
    capsys: pytest.CaptureFixture[str], shopify: TestServer, admin: TestClient[Any, Any]
) -> None:
    assert (await payhook(capsys, "shops", "add", SHOP, "--token", "shpat_configure"))[0] == 0
    code, out = await payhook(capsys, "shops", "configure", SHOP, "--handle", "acct-1", "--ready")
    assert code == 0, out
    assert "configured" in out
    assert "paymentsAppConfigure(ready: yes, externalHandle: acct-1) asked by operator" in out
    assert shopify.app[SANDBOX_STATE].configurations[SHOP] == {
        "externalHandle": "acct-1",
        "ready": True,
    }

    code, listed = await payhook(capsys, "shops", "list")
    assert code == 0
    row = next(line for line in listed.splitlines() if line.startswith(SHOP))
    assert row.split() == [SHOP, "encrypted", "yes", "acct-1", "configured"]
    assert "shpat_configure" not in listed
    code, as_json = await payhook(capsys, "shops", "list", "--json")
    [status] = json.loads(as_json)
    assert status["onboarding"]["accepted_ready"] is True

    shown = (await shops_in_admin_api(admin))[SHOP]
    assert shown["token"] == "encrypted"
    assert (shown["onboarding"]["state"], shown["onboarding"]["accepted_handle"]) == (
        "configured",
        "acct-1",
    )
    page = await shops_page(admin)
    assert SHOP in page
    assert "<code>acct-1</code>" in page
    assert "shpat_configure" not in page

    # Taken off: the handle stays the one asked last.
    code, out = await payhook(capsys, "shops", "configure", SHOP, "--not-ready")
    assert code == 0, out
    assert shopify.app[SANDBOX_STATE].configurations[SHOP] == {
        "externalHandle": "acct-1",
        "ready": False,
    }
    assert (await shops_in_admin_api(admin))[SHOP]["onboarding"]["accepted_ready"] is False


@pytest.mark.usefixtures("environment")
async def test_user_errors_are_shown_by_the_command_the_listing_the_api_and_the_dashboard(
    capsys: pytest.CaptureFixture[str], shopify: TestServer, admin: TestClient[Any, Any]
) -> None:
    await payhook(capsys, "shops", "add", SHOP, "--token", "shpat_configure")
    message = "Merchant <b>onboarding</b> is not complete"
    fault = await (
        await admin.session.post(
            shopify.make_url("/_sandbox/faults"),
            json={
                "kind": "user_error",
                "mutation": "paymentsAppConfigure",
                "message": message,
                "field": ["ready"],
                "times": 1,
            },
        )
    ).json()
    assert fault["fault"]["kind"] == "user_error"
    code, out = await payhook(capsys, "shops", "configure", SHOP, "--ready")
    assert code == 1, out
    assert f"userError ready: {message}" in out
    _, listed = await payhook(capsys, "shops", "list")
    assert "refused" in listed
    assert f"userError ready: {message}" in listed
    shown = (await shops_in_admin_api(admin))[SHOP]["onboarding"]
    assert shown["state"] == "refused"
    assert shown["user_errors"] == [{"field": ["ready"], "message": message}]
    page = await shops_page(admin)
    assert "Merchant &lt;b&gt;onboarding&lt;/b&gt; is not complete" in page
    assert shopify.app[SANDBOX_STATE].configurations == {}


@pytest.mark.usefixtures("environment")
async def test_with_shopify_away_the_ask_stays_queued_for_the_workers(
    capsys: pytest.CaptureFixture[str], shopify: TestServer, admin: TestClient[Any, Any]
) -> None:
    await payhook(capsys, "shops", "add", SHOP, "--token", "shpat_configure")
    await admin.session.post(
        shopify.make_url("/_sandbox/faults"),
        json={"kind": "status", "status": 503, "for_seconds": 30},
    )
    code, out = await payhook(capsys, "shops", "configure", SHOP, "--ready")
    assert code == 3, out
    assert "queued" in out
    assert "the workers retry it" in out
    shown = (await shops_in_admin_api(admin))[SHOP]["onboarding"]
    assert shown["state"] == "queued"
    assert "503" in shown["last_error"]


@pytest.mark.usefixtures("environment")
async def test_a_shop_without_a_token_fails_with_the_fix(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out = await payhook(capsys, "shops", "configure", SHOP, "--ready")
    assert code == 1, out
    assert "failed" in out
    assert f"payhook shops add {SHOP}" in out


@pytest.mark.usefixtures("environment")
@pytest.mark.parametrize(
    "argv",
    [
        ["shops", "configure", "evil.example.com", "--ready"],
        ["shops", "configure", SHOP],
        ["shops", "configure", SHOP, "--ready", "--not-ready"],
    ],
    ids=["not a shop", "neither flag", "both flags"],
)
async def test_a_configure_that_says_nothing_clear_is_refused(
    capsys: pytest.CaptureFixture[str], shopify: TestServer, argv: list[str]
) -> None:
    try:
        code, _ = await payhook(capsys, *argv)
    except SystemExit as exit_:  # argparse's refusal
        code = int(str(exit_.code))
    assert code == 2
    assert shopify.app[SANDBOX_STATE].calls.select() == []


@pytest.mark.usefixtures("environment")
async def test_removing_a_shop_forgets_its_onboarding(
    capsys: pytest.CaptureFixture[str], admin: TestClient[Any, Any]
) -> None:
    await payhook(capsys, "shops", "add", SHOP, "--token", "shpat_configure")
    assert (await payhook(capsys, "shops", "configure", SHOP, "--ready"))[0] == 0
    assert (await payhook(capsys, "shops", "remove", SHOP))[0] == 0
    assert await shops_in_admin_api(admin) == {}
    _, listed = await payhook(capsys, "shops", "list")
    assert SHOP not in listed
