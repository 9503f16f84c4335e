"""The Payments Apps schema served by the sandbox, with resolvers that consult the ledger.

The schema is Shopify's own for the API version served (`sandbox.api_versions`: one
reference file per version, package data), so a document Shopify refuses is refused here
too. Resolvers only translate: GraphQL arguments into a `Ledger.apply` call, and its
`Outcome` into the payload shape Shopify returns (`<kind>Session { id state }` plus
`userErrors`, with the code Shopify's type for them has, if any). Mutations of the
reference that the sandbox has no rules for (3-D Secure redirects, modals, verification
sessions) answer a GraphQL error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from graphql import (
    GraphQLEnumType,
    GraphQLError,
    GraphQLFieldResolver,
    GraphQLObjectType,
    GraphQLResolveInfo,
    GraphQLSchema,
    get_named_type,
)
from graphql import build_schema as build_sdl_schema

from sandbox.api_versions import DEFAULT_API_VERSION, api_versions, load_sdl, schema_file
from sandbox.checkout import checkout_url
from sandbox.ledger import MUTATIONS, Ledger, Outcome, Refusal, SessionKind, SessionRecord

# Shopify's real message for a late paymentSessionResolve (issue shopify-app-template-node#1346).
_PAYMENT_RESOLVE_REFUSED = (
    "Payment session has already been resolved with a different authentication, has already "
    "been rejected, or the response to start_payment_session request has not been received."
)


# Mutations that act on no session: the ledger has no rules for them.
APP_MUTATIONS = frozenset({"paymentsAppConfigure"})


@dataclass
class MutationContext:
    """Per-request context: who is calling, when, and what each mutation field decided."""

    ledger: Ledger
    shop: str
    # Epoch seconds of the request: what a pending window is checked against.
    now: float
    outcomes: list[Outcome] = field(default_factory=list)
    # Set by a fault: every mutation of the request is refused this way, nothing applied.
    refuse: Refusal | None = None
    # Each shop's payments app configuration, as `paymentsAppConfigure` last set it.
    configurations: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Set by a `user_error` fault: every mutation of the request answers it, nothing applied.
    user_error: dict[str, Any] | None = None
    # One entry per mutation field answered: whether it was applied, and the code of the
    # userError it was refused with (None when applied, or when the error has no code).
    answers: list[tuple[bool, str | None]] = field(default_factory=list)
    # What Shopify's checks decide for a paymentSessionConfirm (a fault says "do not").
    confirm: bool = True
    # Where the sandbox is reached (the request's origin): its checkout pages, which a
    # payment's `nextAction` sends the buyer to, are there.
    base_url: str = ""


def build_schema(api_version: str = DEFAULT_API_VERSION) -> GraphQLSchema:
    """A fresh executable schema of `api_version` (`UnknownApiVersion` when the sandbox has
    none). Each app builds its own, so nothing is shared by import."""
    source = schema_file(api_version)
    schema = build_sdl_schema(load_sdl(api_version))
    if schema.mutation_type is None or schema.query_type is None:
        raise RuntimeError(f"{source} must define a query and a mutation root")
    missing = (set(MUTATIONS) | APP_MUTATIONS) - set(schema.mutation_type.fields)
    if missing:
        # The ledger has rules for a mutation this version does not have.
        raise RuntimeError(f"{source} lacks mutations the sandbox serves: {sorted(missing)}")
    for name, mutation_field in schema.mutation_type.fields.items():
        if name in MUTATIONS:
            mutation_field.resolve = _mutation_resolver(name)
        elif name not in APP_MUTATIONS:
            mutation_field.resolve = _not_served(name)
    schema.mutation_type.fields["paymentsAppConfigure"].resolve = _configure
    schema.query_type.fields["publicApiVersions"].resolve = _public_api_versions
    return schema


def user_error_codes(schema: GraphQLSchema, mutation: str) -> frozenset[str] | None:
    """The codes `mutation`'s userErrors may carry in `schema`; None when its userError type
    has no `code` (`UserError`: the payment resolve and reject, `paymentsAppConfigure`)."""
    assert schema.mutation_type is not None
    payload = get_named_type(schema.mutation_type.fields[mutation].type)
    assert isinstance(payload, GraphQLObjectType)
    error_type = get_named_type(payload.fields["userErrors"].type)
    assert isinstance(error_type, GraphQLObjectType)
    code = error_type.fields.get("code")
    if code is None:
        return None
    codes = get_named_type(code.type)
    assert isinstance(codes, GraphQLEnumType)
    return frozenset(codes.values)


# The payment mutations whose userErrors have codes, each with codes of its own
# (`PaymentSessionConfirmUserErrorCode`, `PaymentSessionPendingUserErrorCode`); resolve and
# reject answer a plain `UserError`.
_PAYMENT_CODES: dict[str, dict[Refusal, str]] = {
    "confirming": {
        Refusal.NOT_FOUND: "PAYMENT_SESSION_NOT_FOUND",
        Refusal.INVALID_STATE: "INVALID_STATE_TRANSITION",
        Refusal.NOT_SUPPORTED: "CONFIRMATION_NOT_SUPPORTED",
    },
    "pending": {
        Refusal.NOT_FOUND: "NOT_FOUND",
        Refusal.INVALID_STATE: "PENDING_INVALID_STATE",
        Refusal.EXPIRED: "EXPIRED_PENDING_EXPIRES_AT",
        Refusal.OUT_OF_RANGE: "OUT_OF_RANGE_PENDING_EXPIRES_AT",
    },
}


def user_error_code(outcome: Outcome) -> str | None:
    """The userError code Shopify gives this refusal (None for an applied outcome, and for
    the payment resolve and reject, whose userErrors have no code)."""
    kind, target = MUTATIONS[outcome.mutation]
    if outcome.refusal is None:
        return None
    if kind == "payment":
        codes = _PAYMENT_CODES.get(target)
        return None if codes is None else codes[outcome.refusal]
    return f"{kind.upper()}_SESSION_{outcome.refusal.value}"


def _public_api_versions(
    _root: object, _info: GraphQLResolveInfo[MutationContext]
) -> list[dict[str, Any]]:
    return [{"displayName": v, "handle": v, "supported": True} for v in api_versions()]


def _not_served(name: str) -> GraphQLFieldResolver:
    def resolve(_root: object, _info: GraphQLResolveInfo[MutationContext], **_args: Any) -> None:
        raise GraphQLError(f"The sandbox has no rules for {name}; it is not served here.")

    return resolve


def _mutation_resolver(name: str) -> GraphQLFieldResolver:
    def resolve(
        _root: object, info: GraphQLResolveInfo[MutationContext], **args: Any
    ) -> dict[str, Any]:
        context = info.context
        if context.user_error is not None:
            context.answers.append((False, context.user_error.get("code")))
            return {f"{MUTATIONS[name][0]}Session": None, "userErrors": [context.user_error]}
        if context.refuse is not None:
            outcome = Outcome(name, str(args["id"]), None, context.refuse)
        else:
            arguments = _ledger_arguments(name, args)
            if MUTATIONS[name][1] == "confirming":
                arguments["confirm"] = context.confirm
            outcome = context.ledger.apply(name, str(args["id"]), now=context.now, **arguments)
        context.outcomes.append(outcome)
        context.answers.append((outcome.applied, user_error_code(outcome)))
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
        context.answers.append((False, None))
        return {"paymentsAppConfiguration": None, "userErrors": [context.user_error]}
    configuration = {"externalHandle": externalHandle, "ready": ready}
    context.configurations[context.shop] = configuration
    context.answers.append((True, None))
    return {"paymentsAppConfiguration": dict(configuration), "userErrors": []}


def _ledger_arguments(name: str, args: dict[str, Any]) -> dict[str, Any]:
    target = MUTATIONS[name][1]
    if target == "confirming":
        return {}
    if target == "rejected":
        given = args["reason"]
        reason = {"code": given["code"], "merchantMessage": given.get("merchantMessage")}
        if given.get("source") is not None:
            # 2026-04 on: who declined the payment (`PaymentSessionStateRejectedSource`).
            reason["source"] = given["source"]
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
        state["source"] = reason.get("source")
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


_WINDOW = (Refusal.EXPIRED, Refusal.OUT_OF_RANGE)


def _user_error(outcome: Outcome) -> dict[str, Any]:
    kind, target = MUTATIONS[outcome.mutation]
    noun = f"{_type_prefix(kind)} session"
    if outcome.refusal is Refusal.NOT_FOUND:
        message = f"{noun} does not exist."
    elif outcome.refusal is Refusal.EXPIRED:
        message = "Pending expires at must be in the future."
    elif outcome.refusal is Refusal.OUT_OF_RANGE:
        message = "Pending expires at must be within 3 days from now."
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
    argument = "pendingExpiresAt" if outcome.refusal in _WINDOW else "id"
    error: dict[str, Any] = {"field": [argument], "message": message}
    code = user_error_code(outcome)
    if code is not None:
        error["code"] = code
    return error
