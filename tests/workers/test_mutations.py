"""payhook's mutation documents are valid against the Payments Apps schema the sandbox serves."""

from __future__ import annotations

import pytest
from graphql import parse, validate

from sandbox.shopify_schema import build_schema
from workers.shopify import mutations

SCHEMA = build_schema()


@pytest.mark.parametrize("kind", ["capture", "refund", "void"])
def test_resolve_and_reject_documents_validate(kind: str) -> None:
    gid = f"gid://shopify/{kind.capitalize()}Session/x"
    for mutation in (
        mutations.resolve(kind, gid),
        mutations.reject(kind, gid, "PROCESSING_ERROR", "no"),
    ):
        assert validate(SCHEMA, parse(mutation.document)) == []
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
