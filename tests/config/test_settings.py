"""The fleet settings: sentinels, the broker they imply, and the replica wait's bounds."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from config import Settings


def test_sentinels_name_the_broker_too_with_the_store_database_and_password() -> None:
    settings = Settings(
        redis_url="redis://:s3cret@ignored:6379/2",
        redis_sentinels="10.0.0.1:26379, sentinel-b:26380",
        redis_sentinel_master="payments",
    )
    assert settings.redis_sentinels == (("10.0.0.1", 26379), ("sentinel-b", 26380))
    assert settings.broker == (
        "sentinel://:s3cret@10.0.0.1:26379/2;sentinel://:s3cret@sentinel-b:26380/2"
    )
    assert settings.broker_is_store


def test_without_sentinels_the_broker_is_the_store_url() -> None:
    assert Settings(redis_url="redis://r:6379/1").broker == "redis://r:6379/1"


@pytest.mark.parametrize("entry", ["sentinel-a", "sentinel-a:", ":26379", "host:99999", "h:p"])
def test_a_sentinel_without_host_and_port_is_refused(entry: str) -> None:
    with pytest.raises(ValidationError, match="host:port"):
        Settings(redis_sentinels=entry)


def test_the_replica_wait_must_end_before_the_redis_command_times_out() -> None:
    with pytest.raises(ValidationError, match="REPLICA_TIMEOUT"):
        Settings(redis_min_replicas=1, redis_replica_timeout_seconds=2, redis_timeout_seconds=2)
    # No replica required, no wait: any command timeout will do.
    Settings(redis_min_replicas=0, redis_timeout_seconds=0.4)


@pytest.mark.parametrize(
    ("store", "broker", "same"),
    [
        ("redis://127.0.0.1:6379/0", None, True),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0", True),
        # Spelled differently, the same server and database.
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379", True),
        ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379/0", True),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1/0", True),
        ("redis://Redis.Internal:6379/2", "redis://redis.internal:6379/2/", True),
        ("redis://:pw@r:6379/1", "redis://:pw@r:6379/1?health_check_interval=10", True),
        # Another database, port, host or transport is another keyspace.
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/1", False),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6380/0", False),
        ("redis://redis-a:6379/0", "redis://redis-b:6379/0", False),
        ("redis://r:6379/0", "rediss://r:6379/0", False),
        ("redis://r:6379/0", "amqp://r:5672//", False),
        # A database in the query is read one way by redis-py, another by kombu: refused.
        ("redis://r:6379/3", "redis://r:6379?db=3", False),
    ],
)
def test_the_broker_is_the_store_only_when_it_names_the_same_redis_and_database(
    store: str, broker: str | None, same: bool
) -> None:
    settings = Settings(redis_url=store, broker_url=broker)
    assert settings.broker_is_store is same
    assert (settings.broker_problem is None) is same


def test_with_sentinels_only_the_broker_they_imply_is_the_store() -> None:
    fleet = {"redis_url": "redis://:pw@x:6379/2", "redis_sentinels": "s1:26379,s2:26379"}
    assert Settings(**fleet).broker_is_store
    implied = Settings(**fleet).broker
    assert Settings(**fleet, broker_url=implied).broker_is_store
    assert not Settings(**fleet, broker_url="redis://x:6379/2").broker_is_store
    other_database = implied.replace("/2", "/3")
    assert not Settings(**fleet, broker_url=other_database).broker_is_store


def test_the_broker_problem_names_both_urls_without_their_passwords() -> None:
    settings = Settings(redis_url="redis://:s3cret@r:6379/0", broker_url="redis://:s3cret@b:6379")
    problem = settings.broker_problem
    assert problem is not None
    assert "PAYHOOK_BROKER_URL" in problem
    assert "redis://***@b:6379" in problem
    assert "s3cret" not in problem


def test_an_empty_variable_is_an_unset_one(monkeypatch: pytest.MonkeyPatch) -> None:
    # `${PAYHOOK_ADMIN_TOKEN:-}` in a compose file gives an empty value when the operator
    # sets none: that must not be an admin token anyone matches with "Bearer ".
    for name in ("PAYHOOK_ADMIN_TOKEN", "PAYHOOK_SHOPIFY_ACCESS_TOKEN", "PAYHOOK_TLS_CERT_FILE"):
        monkeypatch.setenv(name, "")
    settings = Settings()
    assert settings.admin_token is None
    assert settings.shopify_access_token is None
    assert settings.tls_cert_file is None


def test_an_empty_admin_token_given_in_code_is_refused() -> None:
    with pytest.raises(ValidationError, match="admin_token"):
        Settings(admin_token="")


def test_the_install_asks_the_payments_apps_scopes_unless_told_others(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings().shopify_scopes == ("write_payment_gateways", "write_payment_sessions")
    monkeypatch.setenv("PAYHOOK_SHOPIFY_SCOPES", "write_payment_sessions, read_orders")
    assert Settings().shopify_scopes == ("write_payment_sessions", "read_orders")


@pytest.mark.parametrize("scopes", [",", "write payment", "WRITE_ORDERS", "write_orders;drop"])
def test_scopes_that_shopify_has_no_name_for_are_refused(
    monkeypatch: pytest.MonkeyPatch, scopes: str
) -> None:
    monkeypatch.setenv("PAYHOOK_SHOPIFY_SCOPES", scopes)
    with pytest.raises(ValidationError, match="access scopes"):
        Settings()


@pytest.mark.parametrize(
    "template",
    ["https://shop.example/admin/oauth/authorize", "https://{shop}/{version}/x", "https://{shop"],
)
def test_an_oauth_url_without_shop_as_its_only_placeholder_is_refused(template: str) -> None:
    with pytest.raises(ValidationError, match="only placeholder"):
        Settings(shopify_authorize_url=template)
    with pytest.raises(ValidationError, match="only placeholder"):
        Settings(shopify_token_url=template)


def test_the_install_says_which_of_its_settings_are_missing() -> None:
    assert "PAYHOOK_SHOPIFY_API_KEY" in str(Settings().install_problem)
    key = "TnRK0fV5qVvHj0gY2N4kH4Rz5m8qEo2b7q7jv0Qe3Jc="
    ready = Settings(shopify_api_key="k", shopify_api_secret="s", token_keys=key)
    assert ready.install_problem is None
    assert Settings(public_url="https://pay.example/").install_callback_url == (
        "https://pay.example/shopify/callback"
    )


def test_a_pending_window_stays_inside_shopifys_three_days_with_a_margin(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # An hour inside the limit by default, and never closer to it than the margin.
    assert Settings().pending_seconds == 2 * 86400 + 23 * 3600
    assert Settings(pending_seconds=3 * 86400 - 600).pending_seconds == 258600
    for edge in ("259200", "258601"):
        monkeypatch.setenv("PAYHOOK_PENDING_SECONDS", edge)
        with pytest.raises(ValidationError, match="at most 258600 s: Shopify takes"):
            Settings()
    monkeypatch.setenv("PAYHOOK_PENDING_SECONDS", "0")
    with pytest.raises(ValidationError, match="pending_seconds"):
        Settings()


@pytest.mark.parametrize(
    "template",
    [
        "https://psp.example/pay/{session}",
        "https://psp.example/pay/{session_id}?{amount",
        "https://psp.example/pay/{session_id[0]}",
        "https://psp.example/pay/{0}",
    ],
)
def test_a_buyer_page_template_with_an_unknown_placeholder_fails_at_start(template: str) -> None:
    with pytest.raises(ValidationError, match="buyer_page_url"):
        Settings(buyer_page_url=template)


def test_a_buyer_page_template_may_use_any_of_its_placeholders_or_none() -> None:
    assert Settings(buyer_page_url="https://psp.example/pay").buyer_page_url
    every = "https://psp.example/{session_id}?a={amount}&c={currency}&cb={callback}&r={return_url}"
    assert Settings(buyer_page_url=every).buyer_page_url == every
