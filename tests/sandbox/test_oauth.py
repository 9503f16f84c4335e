"""The sandbox Shopify's side of the install and the onboarding: the authorize page, the token
endpoint (a code is good once), and `paymentsAppConfigure` as the Payments Apps reference has
it, recorded like the other mutations."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from graphql import GraphQLNonNull, GraphQLObjectType, get_named_type
from yarl import URL

from sandbox.oauth_state import CODE_SECONDS, Grants, Issued, sign_query
from sandbox.shopify_schema import build_schema
from tests.sandbox.conftest import ServerFactory
from tests.sandbox.helpers import AUTH, SHOP, add_fault, calls, graphql
from webhook.oauth import signed_by

APP, SECRET = "sandbox-app", "sandbox-app-secret"
REDIRECT = "https://payhook.example/shopify/callback"
CONFIGURE = """
mutation Configure($externalHandle: String, $ready: Boolean!) {
  paymentsAppConfigure(externalHandle: $externalHandle, ready: $ready) {
    paymentsAppConfiguration { externalHandle ready }
    userErrors { field message }
  }
}"""


@pytest.fixture
async def shopify(shopify_factory: ServerFactory) -> TestServer:
    return await shopify_factory(apps={APP: SECRET})


async def authorize(http: TestClient[Any, Any], **query: str) -> tuple[int, dict[str, str]]:
    """The authorize page's answer: the status and the query it redirects with."""
    params = {
        "client_id": APP,
        "scope": "write_payment_gateways,write_payment_sessions",
        "redirect_uri": REDIRECT,
        "state": "nonce-1",
        **query,
    }
    answer = await http.get(f"/{SHOP}/admin/oauth/authorize", params=params, allow_redirects=False)
    if answer.status != 302:
        return answer.status, {}
    location = URL(answer.headers["Location"])
    assert str(location.with_query(None)) == REDIRECT
    return 302, dict(location.query)


async def exchange(
    http: TestClient[Any, Any], code: str, *, shop: str = SHOP, secret: str = SECRET
) -> tuple[int, dict[str, Any]]:
    body = {"client_id": APP, "client_secret": secret, "code": code}
    answer = await http.post(f"/{shop}/admin/oauth/access_token", json=body)
    return answer.status, await answer.json()


def test_the_query_signature_is_the_one_shopify_documents() -> None:
    # Shopify's own worked example of a callback query and its hmac, secret "hush".
    query = {
        "code": "0907a61c0c8d55e99db179b68161bc00",
        "shop": "some-shop.myshopify.com",
        "timestamp": "1337178173",
    }
    expected = "4712bf92ffc2917d15a2f5a273e39f0116667419aa4b6ac0b3baaf26fa3c4d20"
    assert sign_query(query, "hush") == expected
    with_state = {**query, "state": "0.6784241404160823"}
    expected = "700e2dadb827fcc8609e9d5ce208b2e9cdaab9df07390d2cbca10d7c328fc4bf"
    assert sign_query(with_state, "hush") == expected
    assert signed_by([*with_state.items(), ("hmac", expected)], "hush")


async def test_an_approved_install_comes_back_signed_and_its_code_buys_one_token(
    http: TestClient[Any, Any],
) -> None:
    status, query = await authorize(http)
    assert status == 302
    assert set(query) == {"code", "hmac", "host", "shop", "state", "timestamp"}
    assert (query["shop"], query["state"]) == (SHOP, "nonce-1")
    # payhook's own check of the signature agrees with the sandbox's signing.
    assert signed_by(list(query.items()), SECRET)
    assert not signed_by(list(query.items()), "another-secret")

    status, issued = await exchange(http, query["code"])
    assert status == 200
    assert issued["scope"] == "write_payment_gateways,write_payment_sessions"
    assert issued["access_token"].startswith("shpat_")
    status, refused = await exchange(http, query["code"])
    assert status == 400
    assert (
        refused["error_description"] == "The authorization code was not found or was already used"
    )

    # The issued token is now the shop's only one.
    document = "mutation { paymentsAppConfigure(ready: true) { userErrors { message } } }"
    token = {"X-Shopify-Access-Token": issued["access_token"]}
    assert (await graphql(http, document, headers=token))[0] == 200
    assert (await graphql(http, document, headers=AUTH))[0] == 401
    exchanges = (await (await http.get("/_sandbox/installs")).json())["exchanges"]
    assert [(e["shop"], e["status"]) for e in exchanges] == [(SHOP, 200), (SHOP, 400)]


@pytest.mark.parametrize(
    "query",
    [
        {"client_id": "no-such-app"},
        {"redirect_uri": "/shopify/callback"},
        {"redirect_uri": "javascript:alert(1)"},
        {"scope": ""},
    ],
    ids=["unknown app", "relative redirect", "other scheme", "no scope"],
)
async def test_an_authorize_request_shopify_would_refuse_redirects_nowhere(
    http: TestClient[Any, Any], query: dict[str, str]
) -> None:
    assert (await authorize(http, **query))[0] == 400


async def test_a_code_is_good_only_at_its_shop_and_with_its_apps_secret(
    http: TestClient[Any, Any],
) -> None:
    _, query = await authorize(http)
    assert (await exchange(http, query["code"], shop="other.myshopify.com"))[0] == 400
    assert (await exchange(http, query["code"], secret="a-guess"))[0] == 400
    # Neither spent it.
    assert (await exchange(http, query["code"]))[0] == 200


def test_a_code_expires() -> None:
    now = [1000.0]
    grants = Grants({APP: SECRET}, lambda: now[0])
    code = grants.grant(SHOP, APP, "write_payment_sessions")
    now[0] += CODE_SECONDS + 1
    assert (
        grants.exchange(SHOP, APP, SECRET, code)
        == "The authorization code was not found or was already used"
    )
    fresh = grants.grant(SHOP, APP, "write_payment_sessions")
    assert isinstance(grants.exchange(SHOP, APP, SECRET, fresh), Issued)


def test_payments_app_configure_is_served_as_the_payments_apps_reference_has_it() -> None:
    schema = build_schema()
    assert schema.mutation_type is not None
    configure = schema.mutation_type.fields["paymentsAppConfigure"]
    assert {name: str(arg.type) for name, arg in configure.args.items()} == {
        "externalHandle": "String",
        "ready": "Boolean!",
    }
    payload = get_named_type(configure.type)
    assert isinstance(payload, GraphQLObjectType)
    assert str(payload) == "PaymentsAppConfigurePayload"
    assert not isinstance(configure.type, GraphQLNonNull)
    assert {name: str(f.type) for name, f in payload.fields.items()} == {
        "paymentsAppConfiguration": "PaymentsAppConfiguration",
        "userErrors": "[UserError!]!",
    }
    configuration = schema.get_type("PaymentsAppConfiguration")
    assert isinstance(configuration, GraphQLObjectType)
    assert {name: str(f.type) for name, f in configuration.fields.items()} == {
        "externalHandle": "String",
        "ready": "Boolean!",
    }
    user_error = schema.get_type("UserError")
    assert isinstance(user_error, GraphQLObjectType)
    assert {name: str(f.type) for name, f in user_error.fields.items()} == {
        "field": "[String!]",
        "message": "String!",
    }


async def test_a_configuration_is_recorded_like_a_mutation_and_the_last_one_stands(
    http: TestClient[Any, Any],
) -> None:
    status, first = await graphql(http, CONFIGURE, {"externalHandle": "acct-1", "ready": False})
    assert status == 200
    assert first["data"]["paymentsAppConfigure"] == {
        "paymentsAppConfiguration": {"externalHandle": "acct-1", "ready": False},
        "userErrors": [],
    }
    await graphql(http, CONFIGURE, {"ready": True})
    configured = (await (await http.get("/_sandbox/configurations")).json())["configurations"]
    assert configured == {SHOP: {"externalHandle": None, "ready": True}}
    recorded = await calls(http, mutation="paymentsAppConfigure")
    assert [(c["shop"], c["applied"], c["gid"], c["variables"]) for c in recorded] == [
        (SHOP, True, None, {"externalHandle": "acct-1", "ready": False}),
        (SHOP, True, None, {"ready": True}),
    ]


async def test_a_user_error_rule_refuses_the_configuration_and_changes_nothing(
    http: TestClient[Any, Any],
) -> None:
    await graphql(http, CONFIGURE, {"externalHandle": "acct-1", "ready": True})
    await add_fault(
        http,
        {
            "kind": "user_error",
            "mutation": "paymentsAppConfigure",
            "message": "External handle is too long",
            "field": ["externalHandle"],
            "times": 1,
        },
    )
    _, refused = await graphql(http, CONFIGURE, {"externalHandle": "x" * 300, "ready": True})
    assert refused["data"]["paymentsAppConfigure"] == {
        "paymentsAppConfiguration": None,
        "userErrors": [{"field": ["externalHandle"], "message": "External handle is too long"}],
    }
    configured = (await (await http.get("/_sandbox/configurations")).json())["configurations"]
    assert configured == {SHOP: {"externalHandle": "acct-1", "ready": True}}
    last = (await calls(http, mutation="paymentsAppConfigure"))[-1]
    assert (last["applied"], last["user_error_codes"], last["fault"]) == (
        False,
        [None],
        "user_error",
    )


@pytest.mark.parametrize(
    "rule",
    [
        {"kind": "user_error", "message": "no", "times": 1},
        # Shopify's `UserError` of the configuration has no code.
        {"kind": "user_error", "mutation": "paymentsAppConfigure", "code": "X", "times": 1},
    ],
)
async def test_a_user_error_rule_names_its_mutation_and_no_code_for_the_configuration(
    http: TestClient[Any, Any], rule: dict[str, Any]
) -> None:
    answer = await http.post("/_sandbox/faults", json=rule)
    assert answer.status == 400


async def test_apps_can_be_added_while_the_sandbox_runs(
    shopify_factory: ServerFactory, aiohttp_client: Any
) -> None:
    http = await aiohttp_client(await shopify_factory())
    assert (await authorize(http))[0] == 400
    added = await http.post("/_sandbox/apps", json={"api_key": APP, "api_secret": SECRET})
    assert added.status == 201
    assert (await authorize(http))[0] == 302
