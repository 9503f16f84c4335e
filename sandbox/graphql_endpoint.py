"""`POST /{shop}/payments_apps/api/{version}/graphql.json`, answered the way Shopify does.

Order of checks: the API version in the path (404 for any but the one served), access
token (401), request body (400), fault rules, then GraphQL parse/validate against that
version's schema (HTTP 200 with `errors`, as Shopify answers them) and execution. Every
request is written to the call log, whatever its fate.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from functools import lru_cache
from http import HTTPStatus
from typing import Any

from aiohttp import web
from graphql import (
    DocumentNode,
    FieldNode,
    GraphQLError,
    GraphQLSchema,
    OperationType,
    StringValueNode,
    VariableNode,
    execute_sync,
    get_operation_ast,
    parse,
    validate,
)

from sandbox.cost import MUTATION_COST, QUERY_COST
from sandbox.faults import (
    CommitThenStatusFault,
    DelayFault,
    DoNotConfirmFault,
    FaultRule,
    Html429Fault,
    InvalidStateFault,
    MalformedFault,
    StatusFault,
    ThrottledFault,
    UserErrorFault,
)
from sandbox.ledger import Outcome, Refusal
from sandbox.shopify_schema import MutationContext
from sandbox.state import SANDBOX_STATE, SandboxState

UNAUTHORIZED_MESSAGE = (
    "[API] Invalid API key or access token (unrecognized login or wrong password)"
)

# Seen from payments_apps endpoints in 2026 (notes §4.4): Cloudflare's managed challenge.
CHALLENGE_PAGE = """<!DOCTYPE html>
<html lang="en-US">
<head><title>Just a moment...</title><meta name="robots" content="noindex,nofollow"></head>
<body>
<div class="main-wrapper" role="main">
<h1>Your connection needs to be verified before you can proceed</h1>
<p>This sandbox page stands in for a Cloudflare managed challenge.</p>
</div>
</body>
</html>
"""


@dataclass
class _Call:
    """What the handler learned about one request, filled in as checks pass."""

    shop: str
    query: str | None = None
    variables: dict[str, Any] = field(default_factory=dict)
    operation_name: str | None = None
    document: DocumentNode | None = None
    syntax_error: GraphQLError | None = None
    mutation: str | None = None
    gid: str | None = None
    cost: int = 0


async def graphql_endpoint(request: web.Request) -> web.Response:
    state = request.app[SANDBOX_STATE]
    call = _Call(shop=request.match_info["shop"])
    body_ok = _read_body(call, await request.text())

    version = request.match_info["version"]
    if version != state.api_version:
        # No schema to validate against: payhook's PAYHOOK_SHOPIFY_API_VERSION and the
        # sandbox's differ.
        unknown = {
            "errors": f"Not Found: this sandbox serves Payments Apps API version "
            f"{state.api_version}, not {version[:20]!r}"
        }
        return _finish(state, call, web.json_response(unknown, status=404))
    token = request.headers.get("X-Shopify-Access-Token", "")
    if not state.token_accepted(call.shop, token):
        return _finish(state, call, web.json_response({"errors": UNAUTHORIZED_MESSAGE}, status=401))
    if not body_ok:
        problem = {"errors": {"query": "Required parameter missing or invalid"}}
        return _finish(state, call, web.json_response(problem, status=400))

    fault = state.faults.take(call.mutation)
    early = _early_fault_response(state, call, fault)
    if early is not None:
        return _finish(state, call, early, fault=fault)
    if isinstance(fault, DelayFault):
        # aiohttp does not cancel handlers when the client hangs up, so a client that
        # times out during the delay still has its mutation applied: a lost response.
        await asyncio.sleep(fault.seconds)

    refuse = Refusal.INVALID_STATE if isinstance(fault, InvalidStateFault) else None
    user_error = _fault_user_error(fault) if isinstance(fault, UserErrorFault) else None
    confirm = not isinstance(fault, DoNotConfirmFault)
    response, context = _run_graphql(
        state,
        call,
        refuse=refuse,
        user_error=user_error,
        confirm=confirm,
        base_url=str(request.url.origin()),
    )
    if isinstance(fault, CommitThenStatusFault):
        response = _server_error(fault.status)
    outcomes = context.outcomes if context is not None else []
    _request_confirmations(state, call, outcomes, request.match_info["version"])
    return _finish(state, call, response, context=context, fault=fault)


def _fault_user_error(fault: UserErrorFault) -> dict[str, Any]:
    error: dict[str, Any] = {"field": fault.field, "message": fault.message}
    if fault.code is not None:
        error["code"] = fault.code
    return error


def _request_confirmations(
    state: SandboxState, call: _Call, outcomes: list[Outcome], api_version: str
) -> None:
    """Each payment this request confirmed for the first time gets its confirmation request,
    whatever became of the mutation's own answer (a lost answer too, as on Shopify)."""
    for outcome in outcomes:
        record = outcome.session
        if record is None or outcome.repeat or record.state != "confirming":
            continue
        assert record.confirmation_callback_url is not None
        assert record.confirmation_result is not None
        state.confirmations.send(
            gid=record.gid,
            url=record.confirmation_callback_url,
            confirmed=record.confirmation_result,
            shop=call.shop,
            api_version=api_version,
        )


def _read_body(call: _Call, raw: str) -> bool:
    """Fill `call` from the JSON body; False when the body is not a usable request."""
    try:
        body = json.loads(raw)
    except ValueError:
        return False
    if not isinstance(body, dict) or not isinstance(body.get("query"), str):
        return False
    variables = body.get("variables") or {}
    operation_name = body.get("operationName")
    if not isinstance(variables, dict) or not isinstance(operation_name, str | None):
        return False
    call.query, call.variables, call.operation_name = body["query"], variables, operation_name
    parsed = _parse(body["query"])
    if isinstance(parsed, GraphQLError):
        call.syntax_error = parsed
        return True
    call.document = parsed
    _peek_operation(call, call.document)
    return True


# A client sends the same few documents over and over; parsing and validating each one
# again made the sandbox, not the client under test, the slowest part of a benchmark.
# Documents are immutable once parsed, so one parse can serve every request.
@lru_cache(maxsize=256)
def _parse(query: str) -> DocumentNode | GraphQLError:
    try:
        return parse(query)
    except GraphQLError as exc:
        return exc


@lru_cache(maxsize=256)
def _validate(schema: GraphQLSchema, query: str) -> tuple[GraphQLError, ...]:
    document = _parse(query)
    assert not isinstance(document, GraphQLError)  # only parsed documents are validated
    return tuple(validate(schema, document))


def _peek_operation(call: _Call, document: DocumentNode) -> None:
    """Find the mutation name and gid before execution, for fault filters and the log."""
    operation = get_operation_ast(document, call.operation_name)
    if operation is None:
        return
    fields = [node for node in operation.selection_set.selections if isinstance(node, FieldNode)]
    if operation.operation is not OperationType.MUTATION:
        call.cost = QUERY_COST
        return
    call.cost = MUTATION_COST * len(fields)
    if not fields:
        return
    first = fields[0]
    call.mutation = first.name.value
    for argument in first.arguments or ():
        if argument.name.value != "id":
            continue
        if isinstance(argument.value, VariableNode):
            value = call.variables.get(argument.value.name.value)
            call.gid = value if isinstance(value, str) else None
        elif isinstance(argument.value, StringValueNode):
            call.gid = argument.value.value


def _malformed(fault: MalformedFault) -> web.Response:
    """A 200 that is no GraphQL answer, as a proxy or a cut connection may hand back."""
    if fault.body == "html":
        return web.Response(status=200, text=CHALLENGE_PAGE, content_type="text/html")
    if fault.body == "no_data":
        return web.json_response({"extensions": {}})
    return web.Response(
        status=200, text='{"data": {"captureSessionRes', content_type="application/json"
    )


def _early_fault_response(
    state: SandboxState, call: _Call, fault: FaultRule | None
) -> web.Response | None:
    """The answer for faults that stop the request before GraphQL runs."""
    if isinstance(fault, StatusFault):
        return _server_error(fault.status)
    if isinstance(fault, Html429Fault):
        headers = {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
        return web.Response(
            status=429, text=CHALLENGE_PAGE, content_type="text/html", headers=headers
        )
    if isinstance(fault, MalformedFault):
        return _malformed(fault)
    if isinstance(fault, ThrottledFault):
        throttled = {
            "errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}],
            "extensions": {"cost": state.bucket.throttled(call.cost)},
        }
        return web.json_response(throttled)
    return None


def _run_graphql(
    state: SandboxState,
    call: _Call,
    *,
    refuse: Refusal | None = None,
    user_error: dict[str, Any] | None = None,
    confirm: bool = True,
    base_url: str = "",
) -> tuple[web.Response, MutationContext | None]:
    """Validate and execute; GraphQL-level problems are still HTTP 200, as on Shopify."""
    if call.syntax_error is not None:
        return _graphql_errors(state, [call.syntax_error]), None
    # _read_body parsed the query when there was no syntax error.
    assert call.document is not None
    assert call.query is not None
    problems = _validate(state.schema, call.query)
    if problems:
        return _graphql_errors(state, list(problems)), None
    context = MutationContext(
        ledger=state.ledger,
        shop=call.shop,
        now=state.wall_clock(),
        refuse=refuse,
        configurations=state.configurations,
        user_error=user_error,
        confirm=confirm,
        base_url=base_url,
    )
    result = execute_sync(
        state.schema,
        call.document,
        context_value=context,
        variable_values=call.variables,
        operation_name=call.operation_name,
    )
    payload: dict[str, Any] = {"data": result.data}
    if result.errors:
        payload["errors"] = [error.formatted for error in result.errors]
    payload["extensions"] = {"cost": state.bucket.charge(call.cost)}
    return web.json_response(payload), context


def _graphql_errors(state: SandboxState, errors: list[GraphQLError]) -> web.Response:
    payload = {
        "errors": [error.formatted for error in errors],
        "extensions": {"cost": state.bucket.charge(0)},
    }
    return web.json_response(payload)


def _server_error(status: int) -> web.Response:
    # 5xx answers come from Shopify's edge as HTML, not as GraphQL JSON; a client that
    # parsed an `errors` key out of them would mistake an outage for a GraphQL error.
    title = f"{status} {HTTPStatus(status).phrase}"
    page = f"<html><head><title>{title}</title></head><body><h1>{title}</h1></body></html>\n"
    return web.Response(status=status, text=page, content_type="text/html")


def _finish(
    state: SandboxState,
    call: _Call,
    response: web.Response,
    *,
    context: MutationContext | None = None,
    fault: FaultRule | None = None,
) -> web.Response:
    answers = context.answers if context is not None else []
    state.calls.record(
        shop=call.shop,
        mutation=call.mutation,
        gid=call.gid,
        variables=call.variables,
        status=response.status,
        applied=bool(answers) and all(applied for applied, _ in answers),
        # None for a userError without a code (the payment resolve and reject, the
        # configuration: Shopify's `UserError` has none).
        user_error_codes=[code for applied, code in answers if not applied],
        fault=fault.kind if fault is not None else None,
    )
    return response
