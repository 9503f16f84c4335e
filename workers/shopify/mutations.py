"""The Payments Apps mutations payhook sends, as documents and typed builders.

Each mutation's `id` argument is the session's `gid`. Documents ask for the session state
and the `userErrors` (with `code` where Shopify has one) so a refusal can be classified.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sessions.models import CONFIRM_MUTATION

_RESOLVE = """
mutation {name}($id: ID!) {{
  {field}(id: $id) {{
    {object} {{ id state {{ __typename }} }}
    userErrors {{ field message code }}
  }}
}}
"""

_REJECT = """
mutation {name}($id: ID!, $reason: {input}!) {{
  {field}(id: $id, reason: $reason) {{
    {object} {{ id state {{ __typename }} }}
    userErrors {{ field message code }}
  }}
}}
"""


@dataclass(frozen=True)
class Mutation:
    """One GraphQL mutation call: the payload field it answers under, and its variables."""

    field: str
    document: str
    variables: dict[str, Any]


def _object_name(kind: str) -> str:
    return f"{kind}Session"


def resolve(kind: str, gid: str) -> Mutation:
    """`captureSessionResolve` and its refund and void twins."""
    name = f"{kind}SessionResolve"
    document = _RESOLVE.format(
        name=name[0].upper() + name[1:], field=name, object=_object_name(kind)
    )
    return Mutation(field=name, document=document, variables={"id": gid})


def reject(kind: str, gid: str, code: str, merchant_message: str) -> Mutation:
    """`captureSessionReject` and its refund and void twins, with a merchant-facing reason."""
    name = f"{kind}SessionReject"
    input_type = f"{kind[0].upper()}{kind[1:]}SessionRejectionReasonInput"
    document = _REJECT.format(
        name=name[0].upper() + name[1:], field=name, object=_object_name(kind), input=input_type
    )
    reason = {"code": code, "merchantMessage": merchant_message}
    return Mutation(field=name, document=document, variables={"id": gid, "reason": reason})


# Payment sessions: the next action that tells the app where to send the buyer, and the
# userErrors: a plain `UserError { field message }` for resolve and reject, a coded
# `PaymentSessionPendingUserError` for pending.
_PAYMENT = """
mutation {name}({params}) {{
  {field}({args}) {{
    paymentSession {{ id nextAction {{ action context {{
      ... on PaymentSessionActionsRedirect {{ redirectUrl }} }} }} }}
    userErrors {{ {errors} }}
  }}
}}
"""


def _payment(
    field: str, params: dict[str, str], variables: dict[str, Any], *, coded: bool = False
) -> Mutation:
    document = _PAYMENT.format(
        name=field[0].upper() + field[1:],
        params=", ".join(f"${k}: {t}" for k, t in params.items()),
        field=field,
        args=", ".join(f"{k}: ${k}" for k in params),
        errors="field message code" if coded else "field message",
    )
    return Mutation(field=field, document=document, variables=variables)


def resolve_payment(gid: str, authorization_expires_at: str | None) -> Mutation:
    """`paymentSessionResolve`; `authorizationExpiresAt` only for an authorization."""
    params = {"id": "ID!"}
    variables: dict[str, Any] = {"id": gid}
    if authorization_expires_at is not None:
        params["authorizationExpiresAt"] = "DateTime"
        variables["authorizationExpiresAt"] = authorization_expires_at
    return _payment("paymentSessionResolve", params, variables)


def reject_payment(gid: str, code: str, merchant_message: str) -> Mutation:
    return _payment(
        "paymentSessionReject",
        {"id": "ID!", "reason": "PaymentSessionRejectionReasonInput!"},
        {"id": gid, "reason": {"code": code, "merchantMessage": merchant_message}},
    )


# `paymentSessionConfirm` has coded userErrors (`PaymentSessionConfirmUserError`), unlike its
# payment siblings, and its session's state is `PaymentSessionStateConfirming`.
_CONFIRM = """
mutation PaymentSessionConfirm($id: ID!) {
  paymentSessionConfirm(id: $id) {
    paymentSession { id state { __typename } }
    userErrors { field message code }
  }
}
"""


def confirm_payment(gid: str) -> Mutation:
    """`paymentSessionConfirm`: Shopify checks the order (inventory, 3-D Secure), then POSTs
    its confirmation request to the app, which resolves or rejects the payment."""
    return Mutation(field=CONFIRM_MUTATION, document=_CONFIRM, variables={"id": gid})


def pend_payment(gid: str, pending_expires_at: str, reason: str) -> Mutation:
    return _payment(
        "paymentSessionPending",
        {
            "id": "ID!",
            "pendingExpiresAt": "DateTime!",
            "reason": "PaymentSessionStatePendingReason!",
        },
        {"id": gid, "pendingExpiresAt": pending_expires_at, "reason": reason},
        coded=True,
    )


# Onboarding: not a session's mutation. `UserError { field message }` (no code).
_CONFIGURE = """
mutation PaymentsAppConfigure($externalHandle: String, $ready: Boolean!) {
  paymentsAppConfigure(externalHandle: $externalHandle, ready: $ready) {
    paymentsAppConfiguration { externalHandle ready }
    userErrors { field message }
  }
}
"""


def configure_app(external_handle: str | None, ready: bool) -> Mutation:
    """`paymentsAppConfigure`: whether the shop may offer the payment method, and the
    merchant's handle at the provider."""
    return Mutation(
        field="paymentsAppConfigure",
        document=_CONFIGURE,
        variables={"externalHandle": external_handle, "ready": ready},
    )
