"""Every document payhook sends, with the variables it sends, is valid against Shopify's
Payments Apps reference schema of each version the sandbox has (2025-10 and 2026-04)."""

from __future__ import annotations

import inspect
from importlib import resources
from typing import Any

import pytest
from graphql import GraphQLSchema, OperationDefinitionNode, build_schema, parse, validate
from graphql.execution.values import get_variable_values

from sandbox.api_versions import api_versions
from workers.connectors.base import DeclineCode
from workers.lifecycle.payment import SHOPIFY_PENDING_REASONS
from workers.shopify import mutations
from workers.shopify.mutations import Mutation

GID = "gid://shopify/{}Session/x"
AT = "2026-01-02T00:00:00Z"


def reference(version: str) -> GraphQLSchema:
    # The schema file as published, without any of the sandbox's resolvers.
    text = resources.files("sandbox").joinpath(f"payments_apps_{version}.graphql").read_text()
    return build_schema(text)


SCHEMAS = {version: reference(version) for version in api_versions()}


def sent() -> dict[str, list[Mutation]]:
    """Each builder of `workers.shopify.mutations` with every variant payhook sends."""
    payment = GID.format("Payment")
    ledgered: list[Mutation] = []
    for kind in ("capture", "refund", "void"):
        gid = GID.format(kind.capitalize())
        ledgered.append(mutations.resolve(kind, gid))
    rejects = [
        mutations.reject("capture", GID.format("Capture"), code.value, "no") for code in DeclineCode
    ] + [
        # Refund and void rejections only know PROCESSING_ERROR (workers.lifecycle.ledgered).
        mutations.reject(kind, GID.format(kind.capitalize()), "PROCESSING_ERROR", "no")
        for kind in ("refund", "void")
    ]
    return {
        "resolve": ledgered,
        "reject": rejects,
        "resolve_payment": [
            mutations.resolve_payment(payment, None),
            mutations.resolve_payment(payment, AT),
        ],
        "reject_payment": [
            mutations.reject_payment(payment, code, "no")
            for code in ("PROCESSING_ERROR", "CONFIRMATION_REJECTED")
        ],
        "pend_payment": [
            mutations.pend_payment(payment, AT, reason)
            for reason in SHOPIFY_PENDING_REASONS.values()
        ],
        "confirm_payment": [mutations.confirm_payment(payment)],
        "configure_app": [
            mutations.configure_app("acct-1", True),
            mutations.configure_app(None, False),
        ],
    }


def test_every_builder_of_a_mutation_is_checked() -> None:
    builders = {
        name
        for name, function in inspect.getmembers(mutations, inspect.isfunction)
        if function.__module__ == mutations.__name__
        and not name.startswith("_")
        and inspect.signature(function).return_annotation in ("Mutation", Mutation)
    }
    assert builders == set(sent())


def _variable_problems(schema: GraphQLSchema, mutation: Mutation) -> list[str]:
    (operation,) = parse(mutation.document).definitions
    assert isinstance(operation, OperationDefinitionNode)
    coerced: Any = get_variable_values(
        schema, operation.variable_definitions or (), mutation.variables
    )
    return [error.message for error in coerced] if isinstance(coerced, list) else []


@pytest.mark.parametrize("version", sorted(SCHEMAS))
@pytest.mark.parametrize("builder", sorted(sent()))
def test_payhooks_documents_and_variables_are_valid_against_the_reference(
    version: str, builder: str
) -> None:
    schema = SCHEMAS[version]
    for mutation in sent()[builder]:
        document = parse(mutation.document)
        assert [error.message for error in validate(schema, document)] == [], mutation.document
        assert _variable_problems(schema, mutation) == [], mutation.variables
        assert mutation.field in mutation.document


@pytest.mark.parametrize("version", sorted(SCHEMAS))
def test_pending_asks_for_the_code_of_its_user_errors(version: str) -> None:
    # `PaymentSessionPendingUserError` has one, and payhook acts on it.
    document = mutations.pend_payment(GID.format("Payment"), AT, "BUYER_ACTION_REQUIRED").document
    assert "userErrors { field message code }" in document
    assert validate(SCHEMAS[version], parse(document)) == []


def test_a_reason_shopify_does_not_have_is_refused_by_the_reference() -> None:
    # The check above would catch a builder sending a value Shopify does not know.
    wrong = mutations.pend_payment(GID.format("Payment"), AT, "SHOPPER_ACTION_REQUIRED")
    for schema in SCHEMAS.values():
        assert _variable_problems(schema, wrong) != []


@pytest.mark.parametrize("kind", ["capture", "refund", "void"])
def test_resolve_and_reject_name_the_sessions_gid(kind: str) -> None:
    gid = f"gid://shopify/{kind.capitalize()}Session/x"
    for mutation in (
        mutations.resolve(kind, gid),
        mutations.reject(kind, gid, "PROCESSING_ERROR", "no"),
    ):
        assert mutation.variables["id"] == gid
        assert mutation.field.startswith(f"{kind}Session")


def test_a_reject_sends_the_reason_shopify_expects() -> None:
    mutation = mutations.reject(
        "capture", "gid://shopify/CaptureSession/x", "AUTHORIZATION_EXPIRED", "expired"
    )
    assert mutation.field == "captureSessionReject"
    assert mutation.variables["reason"] == {
        "code": "AUTHORIZATION_EXPIRED",
        "merchantMessage": "expired",
    }
