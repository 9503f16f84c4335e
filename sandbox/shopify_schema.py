"""The Payments Apps schema served by the sandbox, with resolvers that consult the ledger.

The SDL lives next to this module as package data (`payments_apps.graphql`). Resolvers
only translate: GraphQL arguments into a `Ledger.apply` call, and its `Outcome` into the
payload shape Shopify returns (`<kind>Session { id state }` plus `userErrors`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from typing import Any

from graphql import GraphQLError, GraphQLFieldResolver, GraphQLResolveInfo, GraphQLSchema
from graphql import build_schema as build_sdl_schema

from sandbox.checkout import checkout_url
from sandbox.ledger import MUTATIONS, Ledger, Outcome, Refusal, SessionKind, SessionRecord

SCHEMA_FILE = "payments_apps.graphql"

# Shopify's real message for a late paymentSessionResolve (issue shopify-app-template-node#1346).
_PAYMENT_RESOLVE_REFUSED = (
    "Payment session has already been resolved with a different authentication, has already "
    "been rejected, or the response to start_payment_session request has not been received."
)


# Mutations that act on no session: the ledger has no rules for them.
APP_MUTATIONS = frozenset({"paymentsAppConfigure"})


@dataclass
class MutationContext:
    """Per-request context: who is calling, and what each mutation field decided."""

    ledger: Ledger
    shop: str
    outcomes: list[Outcome] = field(default_factory=list)
    # Set by a fault: every mutation of the request is refused this way, nothing applied.
    refuse: Refusal | None = None
    # Each shop's payments app configuration, as `paymentsAppConfigure` last set it.
    configurations: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Set by a `user_error` fault: `paymentsAppConfigure` answers it, nothing applied.
    user_error: dict[str, Any] | None = None
    # One entry per `paymentsAppConfigure` field: whether it was applied.
    configured: list[bool] = field(default_factory=list)
    # What Shopify's checks decide for a paymentSessionConfirm (a fault says "do not").
    confirm: bool = True
    # Where the sandbox is reached (the request's origin): its checkout pages, which a
    # payment's `nextAction` sends the buyer to, are there.
    base_url: str = ""


def load_sdl() -> str:
    return resources.files("sandbox").joinpath(SCHEMA_FILE).read_text(encoding="utf-8")


def build_schema() -> GraphQLSchema:
    """A fresh executable schema. Each app builds its own, so nothing is shared by import."""
    schema = build_sdl_schema(load_sdl())
    if schema.mutation_type is None or schema.query_type is None:
        raise RuntimeError(f"{SCHEMA_FILE} must define Query and Mutation")
    served = set(schema.mutation_type.fields) - APP_MUTATIONS
    if served != set(MUTATIONS):
        # The SDL and the ledger's table must agree, or a mutation would have no rules.
        raise RuntimeError(f"{SCHEMA_FILE} and ledger.MUTATIONS differ: {served ^ set(MUTATIONS)}")
    for name, mutation_field in schema.mutation_type.fields.items():
        if name not in APP_MUTATIONS:
            mutation_field.resolve = _mutation_resolver(name)
    schema.mutation_type.fields["paymentsAppConfigure"].resolve = _configure
    schema.query_type.fields["sandbox"].resolve = _always_true
    return schema


# `PaymentSessionConfirmUserErrorCode`: the one payment mutation whose userErrors have codes.
_CONFIRM_CODES = {
    Refusal.NOT_FOUND: "PAYMENT_SESSION_NOT_FOUND",
    Refusal.INVALID_STATE: "INVALID_STATE_TRANSITION",
    Refusal.NOT_SUPPORTED: "CONFIRMATION_NOT_SUPPORTED",
}


def user_error_code(outcome: Outcome) -> str | None:
    """The userError code Shopify gives this refusal; payment mutations have none, except
    `paymentSessionConfirm`."""
    kind, target = MUTATIONS[outcome.mutation]
    if outcome.refusal is None:
        return None
    if target == "confirming":
        return _CONFIRM_CODES[outcome.refusal]
    if kind == "payment":
        return None
    return f"{kind.upper()}_SESSION_{outcome.refusal.value}"


def _always_true(_root: object, _info: GraphQLResolveInfo[MutationContext]) -> bool:
    return True


def _mutation_resolver(name: str) -> GraphQLFieldResolver:
    def resolve(
        _root: object, info: GraphQLResolveInfo[MutationContext], **args: Any
    ) -> dict[str, Any]:
        context = info.context
        if context.refuse is not None:
            outcome = Outcome(name, str(args["id"]), None, context.refuse)
        else:
            arguments = _ledger_arguments(name, args)
            if MUTATIONS[name][1] == "confirming":
                arguments["confirm"] = context.confirm
            outcome = context.ledger.apply(name, str(args["id"]), **arguments)
        context.outcomes.append(outcome)
        return _payload(outcome, context.base_url)

    return resolve


def _configure(
    _root: object,
    info: GraphQLResolveInfo[MutationContext],
    ready: bool,
    externalHandle: str | None = None,
) -> dict[str, Any]:
    """The shop's configuration is replaced by the one sent; the last one stands."""
    context = info.context
    if context.user_error is not None:
        context.configured.append(False)
        return {"paymentsAppConfiguration": None, "userErrors": [context.user_error]}
    configuration = {"externalHandle": externalHandle, "ready": ready}
    context.configurations[context.shop] = configuration
    context.configured.append(True)
    return {"paymentsAppConfiguration": dict(configuration), "userErrors": []}


def _ledger_arguments(name: str, args: dict[str, Any]) -> dict[str, Any]:
    target = MUTATIONS[name][1]
    if target == "confirming":
        return {}
    if target == "rejected":
        given = args["reason"]
        reason = {"code": given["code"], "merchantMessage": given.get("merchantMessage")}
        return {"reason": reason}
    if target == "pending":
        return {
            "reason": {"code": args["reason"]},
            "pending_expires_at": _date_time(args["pendingExpiresAt"], "pendingExpiresAt"),
        }
    expires = args.get("authorizationExpiresAt")
    if expires is None:
        return {}
    return {"authorization_expires_at": _date_time(expires, "authorizationExpiresAt")}


def _date_time(value: object, argument: str) -> str:
    # The SDL scalar passes any string through; Shopify would refuse a non-date.
    try:
        datetime.fromisoformat(str(value))
    except ValueError:
        message = f"Argument '{argument}' has an invalid DateTime value: {value!r}."
        raise GraphQLError(message) from None
    return str(value)


def _type_prefix(kind: SessionKind) -> str:
    return kind.capitalize()


def _payload(outcome: Outcome, base_url: str) -> dict[str, Any]:
    kind = MUTATIONS[outcome.mutation][0]
    key = f"{kind}Session"
    if outcome.session is None:
        return {key: None, "userErrors": [_user_error(outcome)]}
    return {key: _session_object(outcome.session, base_url), "userErrors": []}


# Where Shopify sends the buyer after each report: its order status page once the payment
# is resolved or pending, back to checkout (told why) once it is rejected.
_NEXT_PAGE = {"resolved": "thank_you", "pending": "thank_you", "rejected": "declined"}


def _session_object(record: SessionRecord, base_url: str) -> dict[str, Any]:
    assert record.state is not None  # only applied outcomes carry a session
    prefix = _type_prefix(record.kind)
    reason = record.reason or {}
    state: dict[str, Any] = {
        "__typename": f"{prefix}SessionState{record.state.capitalize()}",
        "code": record.state.upper(),
    }
    if record.state == "rejected":
        state["reason"] = reason.get("code")
        state["merchantMessage"] = reason.get("merchantMessage")
    elif record.state == "pending":
        state["reason"] = reason.get("code")
    session: dict[str, Any] = {"id": record.gid, "state": state}
    if record.kind == "payment" and record.state == "confirming":
        # Nowhere to send the buyer yet: Shopify's checks run first.
        session["nextAction"] = None
        session["authorizationExpiresAt"] = record.authorization_expires_at
        session["pendingExpiresAt"] = record.pending_expires_at
    elif record.kind == "payment":
        # Offsite apps send the buyer here next: the sandbox's own page for this checkout.
        url = checkout_url(base_url, record.local_id, _NEXT_PAGE[record.state])
        session["nextAction"] = {
            "action": "REDIRECT",
            "context": {"__typename": "PaymentSessionActionsRedirect", "redirectUrl": url},
        }
        session["authorizationExpiresAt"] = record.authorization_expires_at
        session["pendingExpiresAt"] = record.pending_expires_at
    return session


def _user_error(outcome: Outcome) -> dict[str, Any]:
    kind, target = MUTATIONS[outcome.mutation]
    noun = f"{_type_prefix(kind)} session"
    if outcome.refusal is Refusal.NOT_FOUND:
        message = f"{noun} does not exist."
    elif outcome.refusal is Refusal.NOT_SUPPORTED:
        message = "The payments app is not set up for payment confirmation."
    elif target == "confirming":
        message = f"{noun} cannot be confirmed in its current state."
    elif kind == "payment" and target == "resolved":
        message = _PAYMENT_RESOLVE_REFUSED
    elif target == "resolved":
        message = f"{noun} has already been rejected."
    elif target == "rejected":
        message = f"{noun} has already been resolved."
    else:
        message = f"{noun} has already been resolved or rejected."
    error: dict[str, Any] = {"field": ["id"], "message": message}
    code = user_error_code(outcome)
    if code is not None:
        error["code"] = code
    return error
