"""The install's checks that do no I/O: the callback's signature, the authorize URL, scopes."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import pytest

from webhook.oauth import authorize_url, missing_scopes, query_digest, signed_by, signed_text

# Shopify's worked example: this query, signed with the secret "hush".
EXAMPLE = [
    ("code", "0907a61c0c8d55e99db179b68161bc00"),
    ("shop", "some-shop.myshopify.com"),
    ("state", "0.6784241404160823"),
    ("timestamp", "1337178173"),
]
EXAMPLE_HMAC = "700e2dadb827fcc8609e9d5ce208b2e9cdaab9df07390d2cbca10d7c328fc4bf"


def test_the_documented_example_verifies_in_any_order() -> None:
    assert query_digest(EXAMPLE, "hush") == EXAMPLE_HMAC
    assert signed_by([("hmac", EXAMPLE_HMAC), *reversed(EXAMPLE)], "hush")


@pytest.mark.parametrize(
    "sent",
    [
        [("hmac", EXAMPLE_HMAC.upper())],
        [("hmac", EXAMPLE_HMAC[:-1])],
        [("hmac", EXAMPLE_HMAC), ("hmac", EXAMPLE_HMAC)],
        [],
    ],
    ids=["upper case", "short", "twice", "missing"],
)
def test_an_hmac_that_is_not_one_lowercase_digest_never_verifies(
    sent: list[tuple[str, str]],
) -> None:
    assert not signed_by([*EXAMPLE, *sent], "hush")


def test_separators_inside_a_value_cannot_move_a_parameter_boundary() -> None:
    # `a=1&b=2` as one value must not sign like two parameters.
    one = [("a", "1&b=2")]
    two = [("a", "1"), ("b", "2")]
    assert signed_text(one) == "a=1%26b=2"
    assert query_digest(one, "k") != query_digest(two, "k")
    assert signed_text([("a=b", "%")]) == "a%3Db=%25"
    assert signed_text([*EXAMPLE, ("signature", "legacy"), ("hmac", "x")]) == signed_text(EXAMPLE)


def test_the_authorize_url_asks_for_an_offline_token() -> None:
    url = authorize_url(
        "https://{shop}/admin/oauth/authorize",
        "a.myshopify.com",
        api_key="key",
        scopes=("write_payment_gateways", "write_payment_sessions"),
        redirect_uri="https://pay.example/shopify/callback?x=1",
        state="n",
    )
    parts = urlsplit(url)
    assert (parts.netloc, parts.path) == ("a.myshopify.com", "/admin/oauth/authorize")
    assert dict(parse_qsl(parts.query)) == {
        "client_id": "key",
        "scope": "write_payment_gateways,write_payment_sessions",
        "redirect_uri": "https://pay.example/shopify/callback?x=1",
        "state": "n",
    }


@pytest.mark.parametrize(
    ("granted", "missing"),
    [
        ("write_payment_gateways,write_payment_sessions", []),
        ("write_payment_sessions", ["write_payment_gateways"]),
        ("read_payment_sessions,write_payment_gateways", ["write_payment_sessions"]),
        ("", ["write_payment_gateways", "write_payment_sessions"]),
    ],
)
def test_granted_scopes_must_cover_the_asked_ones(granted: str, missing: list[str]) -> None:
    asked = ["write_payment_gateways", "write_payment_sessions"]
    assert missing_scopes(asked, granted) == missing


def test_a_write_scope_grants_its_read_twin() -> None:
    assert missing_scopes(["read_payment_sessions"], "write_payment_sessions") == []
