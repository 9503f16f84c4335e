"""`payhook doctor` against a real redis-server: the security findings an operator must see
before Shopify points at this deployment, and a clean bill when they are addressed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from redis.asyncio import Redis

from config import Settings
from ops.doctor import run_doctor
from ops.redis_server import LocalRedis
from ops.reindex import reindex
from sessions.keys import CONFIRMING, DUE, DUE_INDEXED, PENDING, SHOPS, WORKABLE
from sessions.store import SessionStore
from shops.tokens import ShopTokens, TokenCipher
from tests.factories import make_session, received_event
from webhook.signing import PUBLIC_DEV_SECRET

DB = 14
KEY = Fernet.generate_key().decode()


@pytest.fixture
async def settings(redis_server: LocalRedis, tmp_path: Path) -> Settings:
    url = f"redis://127.0.0.1:{redis_server.port}/{DB}"
    client = Redis.from_url(url)
    await client.flushdb()
    await client.aclose()
    ca = tmp_path / "shopify-ca.pem"
    ca.write_text("-")
    # Everything addressed; each test undoes one thing.
    return Settings(
        redis_url=url,
        tls_cert_file=tmp_path / "server.pem",
        tls_client_ca_file=ca,
        simulator_webhook_secret="a-secret-of-this-deployment-long-and-random-enough",
        token_keys=KEY,
    )


def changed(settings: Settings, **update: Any) -> Settings:
    """`settings` with `update` applied; None puts a setting back to its default."""
    fields = {**settings.model_dump(exclude_unset=True), **update}
    return Settings(**{name: value for name, value in fields.items() if value is not None})


async def doctor(settings: Settings, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    status = await run_doctor(settings)
    return status, capsys.readouterr().out


async def test_a_deployment_that_addressed_everything_passes_the_security_checks(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out = await doctor(settings, capsys)
    assert status == 0, out
    assert "development" not in out
    assert "any client" not in out
    assert "Flower" not in out.replace("ok    Flower", "")
    assert "plain text" not in out


@pytest.mark.parametrize(
    ("secret", "said"),
    [
        (PUBLIC_DEV_SECRET, "is the public development value"),
        ("short", "is shorter than"),
    ],
)
async def test_a_callback_secret_anyone_could_know_or_guess_is_flagged(
    settings: Settings, capsys: pytest.CaptureFixture[str], secret: str, said: str
) -> None:
    status, out = await doctor(changed(settings, simulator_webhook_secret=secret), capsys)
    assert status == 1
    assert f"WARN  PAYHOOK_SIMULATOR_WEBHOOK_SECRET {said}" in out


async def test_session_routes_without_a_client_ca_or_a_trusted_proxy_are_flagged(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out = await doctor(changed(settings, tls_client_ca_file=None), capsys)
    assert status == 1
    assert "WARN  no PAYHOOK_TLS_CLIENT_CA_FILE and no PAYHOOK_TRUSTED_PROXIES" in out
    _, behind_proxy = await doctor(
        changed(settings, tls_client_ca_file=None, trusted_proxies="10.0.0.5"), capsys
    )
    assert "PAYHOOK_TLS_CLIENT_CA_FILE" not in behind_proxy


async def test_an_unauthenticated_flower_beyond_localhost_is_flagged(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out = await doctor(changed(settings, flower_address="0.0.0.0"), capsys)
    assert status == 1
    assert "WARN  Flower on 0.0.0.0 without PAYHOOK_FLOWER_BASIC_AUTH" in out
    _, with_users = await doctor(
        changed(settings, flower_address="0.0.0.0", flower_basic_auth="ops:pw"), capsys
    )
    assert "WARN  Flower" not in with_users


async def test_tokens_in_plain_text_or_under_a_lost_key_are_flagged(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    redis = Redis.from_url(settings.redis_url)
    try:
        await redis.hset(SHOPS, "old.myshopify.com", "shpat_plain")
        lost = TokenCipher([Fernet.generate_key().decode()])
        await ShopTokens(redis, lost).add("lost.myshopify.com", "shpat_x")
    finally:
        await redis.aclose()
    status, out = await doctor(settings, capsys)
    assert status == 1
    assert "WARN  1 shop token(s) stored in plain text (old.myshopify.com)" in out
    assert "WARN  1 shop token(s) no key in PAYHOOK_TOKEN_KEYS decrypts (lost.myshopify.com)" in out
    assert "shpat_" not in out


async def test_an_admin_token_short_enough_to_guess_at_the_login_form_is_flagged(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out = await doctor(changed(settings, admin_token="admin"), capsys)
    assert status == 1
    assert "WARN  PAYHOOK_ADMIN_TOKEN is shorter than 32 characters" in out
    _, long_enough = await doctor(changed(settings, admin_token="a" * 32), capsys)
    assert "PAYHOOK_ADMIN_TOKEN" not in long_enough


async def test_a_broker_other_than_the_session_redis_fails(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    # The same server, another database: it answers, yet no worker would see a session.
    elsewhere = settings.redis_url.rsplit("/", 1)[0] + "/15"
    status, out = await doctor(changed(settings, broker_url=elsewhere), capsys)
    assert status == 1
    assert "FAIL  PAYHOOK_BROKER_URL" in out
    assert "is not the session Redis" in out
    _, same = await doctor(changed(settings, broker_url=settings.redis_url + "/"), capsys)
    assert "ok    broker is the session Redis" in same


async def test_the_due_summary_indexes_are_noted_while_built_and_a_drift_is_a_warning(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    redis = Redis.from_url(settings.redis_url)
    store = SessionStore(redis)
    sessions = [make_session() for _ in range(3)]
    for session in sessions:
        await store.create(session, received_event(), due_at=0, queue=False)
    status, out = await doctor(settings, capsys)
    assert (status, "ok    due summary indexed (3 due sessions)" in out) == (0, True), out

    # A store from before the indexes: a note, not a fault (the sweeper builds them).
    await redis.delete(WORKABLE, PENDING, CONFIRMING, DUE_INDEXED)
    status, out = await doctor(settings, capsys)
    assert status == 0, out
    assert "note  the sweeper is indexing the due set (3 sessions, not begun)" in out

    # Built, then a session moved by a process that keeps no index (an older version).
    await reindex(settings)
    await redis.zrem(DUE, sessions[0].id)
    status, out = await doctor(settings, capsys)
    assert status == 1
    assert "WARN  the due summary's indexes hold 3 entries for 2 due sessions" in out
    await reindex(settings)
    status, out = await doctor(settings, capsys)
    assert (status, "ok    due summary indexed (2 due sessions)" in out) == (0, True), out
    await redis.aclose()


async def test_doctor_says_whether_merchants_can_install_the_app(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out = await doctor(settings, capsys)
    assert status == 0, out
    assert "the OAuth install is off" in out
    public = "https://pay.example"
    installs = changed(
        settings, shopify_api_key="app-key", shopify_api_secret="app-secret", public_url=public
    )
    status, out = await doctor(installs, capsys)
    assert status == 0, out
    assert "ok    OAuth install: client id app-key, scopes write_payment_gateways," in out
    assert f"back to {public}/shopify/callback" in out


@pytest.mark.parametrize(
    ("update", "finding"),
    [
        ({"shopify_api_key": "app-key"}, "set PAYHOOK_SHOPIFY_API_SECRET"),
        (
            {"shopify_api_key": "k", "shopify_api_secret": "s", "token_keys": None},
            "set PAYHOOK_TOKEN_KEYS",
        ),
        (
            {"shopify_api_key": "k", "shopify_api_secret": "s", "public_url": "http://pay.example"},
            "is not https",
        ),
    ],
    ids=["no secret", "no token keys", "plain http"],
)
async def test_an_install_that_cannot_work_or_is_not_private_is_a_warning(
    settings: Settings, capsys: pytest.CaptureFixture[str], update: dict[str, Any], finding: str
) -> None:
    status, out = await doctor(changed(settings, **update), capsys)
    assert status == 1
    assert "WARN" in out
    assert finding in out
