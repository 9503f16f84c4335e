"""Shared constants, documents and small HTTP helpers for the sandbox Shopify tests."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from aiohttp.test_utils import TestClient
from gql import GraphQLRequest
from gql.client import AsyncClientSession

SHOP = "sandbox-shop.myshopify.com"
TOKEN = "shpat_sandbox_token"
GRAPHQL_PATH = f"/{SHOP}/payments_apps/api/2025-10/graphql.json"
AUTH = {"X-Shopify-Access-Token": TOKEN}


def moment(seconds_from_now: float) -> str:
    """A GraphQL DateTime that many seconds from now (a pending window is checked against
    the time of the call)."""
    at = datetime.fromtimestamp(time.time() + seconds_from_now, UTC)
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def gid(kind: str, local_id: str = "sess1") -> str:
    return f"gid://shopify/{kind.capitalize()}Session/{local_id}"


def resolve_doc(kind: str) -> str:
    title = kind.capitalize()
    return f"""
    mutation Resolve($id: ID!) {{
      {kind}SessionResolve(id: $id) {{
        {kind}Session {{ id state {{ __typename ... on {title}SessionStateResolved {{ code }} }} }}
        userErrors {{ field message code }}
      }}
    }}"""


def reject_doc(kind: str) -> str:
    title = kind.capitalize()
    return f"""
    mutation Reject($id: ID!, $reason: {title}SessionRejectionReasonInput!) {{
      {kind}SessionReject(id: $id, reason: $reason) {{
        {kind}Session {{
          id
          state {{
            __typename
            ... on {title}SessionStateRejected {{ code reason merchantMessage }}
          }}
        }}
        userErrors {{ field message code }}
      }}
    }}"""


async def register(http: TestClient[Any, Any], *gids: str) -> None:
    response = await http.post("/_sandbox/sessions", json={"gids": list(gids)})
    assert response.status == 200


async def mutate(session: AsyncClientSession, document: str, **variables: Any) -> dict[str, Any]:
    """Run one mutation through gql and return its payload (the only field of `data`)."""
    data = await session.execute(GraphQLRequest(document, variable_values=variables))
    (payload,) = data.values()
    assert isinstance(payload, dict)
    return payload


async def session_state(http: TestClient[Any, Any], session_gid: str) -> dict[str, Any]:
    response = await http.get("/_sandbox/sessions/" + session_gid)
    assert response.status == 200
    body: dict[str, Any] = await response.json()
    return body


async def graphql(
    http: TestClient[Any, Any],
    document: str,
    variables: dict[str, Any] | None = None,
    *,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    """One raw GraphQL POST, for when the HTTP status matters; a non-JSON body reads as {}."""
    body = {"query": document, "variables": variables or {}}
    response = await http.post(
        GRAPHQL_PATH, json=body, headers=AUTH if headers is None else headers
    )
    if response.content_type != "application/json":
        return response.status, {}
    answer: dict[str, Any] = await response.json()
    return response.status, answer


async def calls(http: TestClient[Any, Any], **filters: str) -> list[dict[str, Any]]:
    response = await http.get("/_sandbox/calls", params=filters)
    assert response.status == 200
    recorded: list[dict[str, Any]] = (await response.json())["calls"]
    return recorded


async def add_fault(http: TestClient[Any, Any], rule: dict[str, Any]) -> None:
    response = await http.post("/_sandbox/faults", json=rule)
    assert response.status == 201, await response.text()


PAYMENT_SESSION_FIELDS = """
  paymentSession {
    id
    state {
      __typename
      ... on PaymentSessionStateResolved { code }
      ... on PaymentSessionStateRejected { code reason merchantMessage }
      ... on PaymentSessionStatePending { code pendingReason: reason }
    }
    nextAction { action context { ... on PaymentSessionActionsRedirect { redirectUrl } } }
    authorizationExpiresAt
    pendingExpiresAt
  }
  userErrors { field message }
"""

PAYMENT_RESOLVE = f"""
mutation PaymentSessionResolve($id: ID!, $authorizationExpiresAt: DateTime) {{
  paymentSessionResolve(id: $id, authorizationExpiresAt: $authorizationExpiresAt) {{
    {PAYMENT_SESSION_FIELDS}
  }}
}}"""

PAYMENT_REJECT = f"""
mutation PaymentSessionReject($id: ID!, $reason: PaymentSessionRejectionReasonInput!) {{
  paymentSessionReject(id: $id, reason: $reason) {{ {PAYMENT_SESSION_FIELDS} }}
}}"""

PAYMENT_PENDING = f"""
mutation PaymentSessionPending(
  $id: ID!, $pendingExpiresAt: DateTime!, $reason: PaymentSessionStatePendingReason!
) {{
  paymentSessionPending(id: $id, pendingExpiresAt: $pendingExpiresAt, reason: $reason) {{
    {PAYMENT_SESSION_FIELDS}
  }}
}}"""
