"""The sandbox speaks Shopify's Payments Apps schema of the version it serves: what the
reference refuses, it refuses; what the reference accepts, it runs; its userErrors carry the
codes the reference declares."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from graphql import build_schema as build_sdl_schema
from graphql import parse, validate

from sandbox.api_versions import UnknownApiVersion, api_versions
from sandbox.ledger import MUTATIONS, Outcome, Refusal
from sandbox.shopify import create_shopify_app
from sandbox.shopify_schema import build_schema, user_error_code, user_error_codes
from tests.sandbox.conftest import ServerFactory
from tests.sandbox.helpers import AUTH, SHOP, gid

VERSIONS = ["2025-10", "2026-04"]
ROOT = Path(__file__).resolve().parents[2]


def reference(version: str) -> Any:
    """The reference schema file itself, built without the sandbox's resolvers."""
    text = resources.files("sandbox").joinpath(f"payments_apps_{version}.graphql").read_text()
    return build_sdl_schema(text)


def path(version: str) -> str:
    return f"/{SHOP}/payments_apps/api/{version}/graphql.json"


async def post(
    http: TestClient[Any, Any], version: str, document: str, variables: dict[str, Any] | None = None
) -> tuple[int, dict[str, Any]]:
    body = {"query": document, "variables": variables or {}}
    response = await http.post(path(version), json=body, headers=AUTH)
    answer: dict[str, Any] = await response.json()
    return response.status, answer


async def sandbox_for(
    version: str, shopify_factory: ServerFactory, aiohttp_client: Any
) -> TestClient[Any, Any]:
    client: TestClient[Any, Any] = await aiohttp_client(
        await shopify_factory(api_version=version, strict_sessions=False)
    )
    return client


def test_the_sandbox_has_both_reference_versions() -> None:
    assert api_versions() == tuple(VERSIONS)


# Each accepted by the sandbox's former hand-written schema, refused by Shopify's.
REFUSED_BY_BOTH = [
    pytest.param(
        'mutation { paymentSessionPending(id: "x", pendingExpiresAt: "x", '
        "reason: BUYER_ACTION_REQUIRED) { paymentSession { state { "
        "... on PaymentSessionStatePending { reason } "
        "... on PaymentSessionStateRejected { reason } } } } }",
        id="pending-reason-is-nullable-so-it-conflicts-with-the-rejected-one",
    ),
    pytest.param("{ sandbox }", id="no-sandbox-query-field"),
    pytest.param(
        'mutation { captureSessionResolve(id: "x", reason: {code: PROCESSING_ERROR}) '
        "{ userErrors { code } } }",
        id="wrong-argument",
    ),
    pytest.param(
        'mutation { paymentSessionResolve(id: "x") { userErrors { code } } }',
        id="payment-resolve-errors-have-no-code",
    ),
    pytest.param(
        'mutation { voidSessionResolve(id: "x") { voidSession { state { code } } } }',
        id="a-union-has-no-fields-of-its-own",
    ),
]

REFUSED_IN_2025_10 = [
    pytest.param(
        'mutation { paymentSessionReject(id: "x", reason: {code: INSUFFICIENT_FUNDS}) '
        "{ userErrors { message } } }",
        id="2026-04-rejection-reason",
    ),
    pytest.param(
        'mutation { paymentSessionReject(id: "x", reason: {code: PROCESSING_ERROR, '
        "source: PROVIDER}) { userErrors { message } } }",
        id="2026-04-rejection-source",
    ),
]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("document", REFUSED_BY_BOTH + REFUSED_IN_2025_10)
async def test_the_sandbox_refuses_what_the_reference_refuses_and_nothing_else(
    version: str, document: str, shopify_factory: ServerFactory, aiohttp_client: Any
) -> None:
    http = await sandbox_for(version, shopify_factory, aiohttp_client)
    expected = [error.message for error in validate(reference(version), parse(document))]

    status, answer = await post(http, version, document)

    assert status == 200
    if expected:
        assert "data" not in answer
        assert [error["message"] for error in answer["errors"]] == expected
    else:
        # 2026-04 has the newer reasons: the document runs (and finds no such session).
        assert answer["data"] is not None


async def test_a_document_only_the_reference_allows_is_run(
    shopify_factory: ServerFactory, aiohttp_client: Any
) -> None:
    # The hand-written schema had no `code` on pending userErrors, no `paymentDetails`.
    http = await sandbox_for("2025-10", shopify_factory, aiohttp_client)
    document = """
    mutation {
      paymentSessionResolve(
        id: "gid://shopify/PaymentSession/ref-1"
        paymentDetails: {cardNotPresent: {avsResultCode: Y}}
      ) { paymentSession { id state { __typename } } userErrors { field message } }
      paymentSessionPending(
        id: "gid://shopify/PaymentSession/ref-2"
        pendingExpiresAt: "2020-01-01T00:00:00Z"
        reason: MERCHANT_ACTION_REQUIRED
      ) { paymentSession { id } userErrors { field message code } }
    }"""

    status, answer = await post(http, "2025-10", document)

    assert status == 200
    assert "errors" not in answer
    assert answer["data"]["paymentSessionResolve"]["paymentSession"]["state"] == {
        "__typename": "PaymentSessionStateResolved"
    }
    assert answer["data"]["paymentSessionPending"]["userErrors"] == [
        {
            "field": ["pendingExpiresAt"],
            "message": "Pending expires at must be in the future.",
            "code": "EXPIRED_PENDING_EXPIRES_AT",
        }
    ]


@pytest.mark.parametrize("version", VERSIONS)
async def test_the_sandbox_serves_the_version_it_was_started_for_and_no_other(
    version: str, shopify_factory: ServerFactory, aiohttp_client: Any
) -> None:
    http = await sandbox_for(version, shopify_factory, aiohttp_client)
    other = next(v for v in VERSIONS if v != version)

    status, answer = await post(http, version, "{ publicApiVersions { handle supported } }")
    assert (status, answer["data"]["publicApiVersions"]) == (
        200,
        [{"handle": v, "supported": True} for v in VERSIONS],
    )
    status, answer = await post(http, other, "{ publicApiVersions { handle } }")
    assert status == 404
    assert f"serves Payments Apps API version {version}" in answer["errors"]
    recorded = (await (await http.get("/_sandbox/calls")).json())["calls"]
    assert [call["status"] for call in recorded] == [200, 404]


def test_a_version_without_a_schema_file_is_refused_saying_which_there_are() -> None:
    with pytest.raises(UnknownApiVersion) as refused:
        create_shopify_app(api_version="2024-07")
    assert str(refused.value) == (
        "the sandbox has no Payments Apps schema for API version '2024-07' (it has 2025-10, "
        "2026-04): set PAYHOOK_SHOPIFY_API_VERSION to one of them"
    )


@pytest.mark.parametrize("command", [["sandbox", "--port", "0"], ["dev"]])
def test_payhook_sandbox_and_dev_will_not_start_for_a_version_without_a_schema(
    command: list[str], tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "PAYHOOK_SHOPIFY_API_VERSION": "2024-07",
        "PAYHOOK_STATE_DIR": str(tmp_path),
    }
    finished = subprocess.run(
        [sys.executable, "-m", "ops", *command],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert finished.returncode == 2
    assert "no Payments Apps schema for API version '2024-07'" in finished.stderr


# Every refusal the ledger can give each mutation (resolve and reject of a payment answer a
# `UserError`, which has no code).
REFUSALS = {
    "paymentSessionPending": [
        Refusal.NOT_FOUND,
        Refusal.INVALID_STATE,
        Refusal.EXPIRED,
        Refusal.OUT_OF_RANGE,
    ],
    "paymentSessionConfirm": [Refusal.NOT_FOUND, Refusal.INVALID_STATE, Refusal.NOT_SUPPORTED],
    "paymentSessionResolve": [Refusal.NOT_FOUND, Refusal.INVALID_STATE],
    "paymentSessionReject": [Refusal.NOT_FOUND, Refusal.INVALID_STATE],
    **{
        f"{kind}Session{action}": [Refusal.NOT_FOUND, Refusal.INVALID_STATE]
        for kind in ("capture", "refund", "void")
        for action in ("Resolve", "Reject")
    },
}


@pytest.mark.parametrize("version", VERSIONS)
def test_every_user_error_code_the_sandbox_gives_is_one_the_reference_declares(
    version: str,
) -> None:
    schema = build_schema(version)
    assert set(REFUSALS) == set(MUTATIONS)
    for mutation, refusals in REFUSALS.items():
        declared = user_error_codes(schema, mutation)
        for refusal in refusals:
            code = user_error_code(Outcome(mutation, gid("payment"), None, refusal))
            if declared is None:
                assert code is None, mutation
            else:
                assert code in declared, (mutation, refusal)
    assert user_error_codes(schema, "paymentSessionPending") == {
        "EXPIRED_PENDING_EXPIRES_AT",
        "NOT_FOUND",
        "OUT_OF_RANGE_PENDING_EXPIRES_AT",
        "PENDING_INVALID_STATE",
        "UNSUPPORTED_PAYMENT_METHOD",
    }


async def test_a_mutation_of_the_reference_without_sandbox_rules_says_so(
    http: TestClient[Any, Any],
) -> None:
    document = (
        'mutation { paymentSessionRedirect(id: "x", redirectUrl: "https://3ds.example/x") '
        "{ userErrors { code } } }"
    )
    status, answer = await post(http, "2025-10", document)
    assert status == 200
    assert answer["data"] == {"paymentSessionRedirect": None}
    assert "not served here" in answer["errors"][0]["message"]
