"""A GraphQL PSP fake for the `purchase` connector: purchases, captures and returns.

`POST /graphql` (`Authorization: Bearer <token>`, 401 otherwise) is parsed, validated and
executed by graphql-core against `SDL`, the schema payhook assumes (see
`workers.connectors.purchase_api`). Every mutation requires its `idempotencyKey`: a
repeated key answers the first result and moves nothing; the same key with another input
is an `IDEMPOTENCY_KEY_REUSED` error. Refusals are GraphQL errors with
`extensions.code`: `PURCHASE_NOT_FOUND`, `PURCHASE_CLOSED`, `PURCHASE_CANCELLED`,
`PURCHASE_EXPIRED`, `INVALID_ITEMS`, `INVALID_AMOUNT`, `CAPTURE_DECLINED` (magic amounts
ending in 51; 52 is `PURCHASE_EXPIRED`).
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from graphql import GraphQLError, GraphQLSchema, build_schema, graphql_sync, parse

from sandbox.psp.common import (
    Applied,
    Fault,
    bearer_ok,
    json_object,
    money_call,
    psp_app,
    read_fault,
)
from sandbox.psp.common import record_read as record
from sandbox.psp.purchases import PurchaseRecord, PurchaseRefused

SDL = """
type Query { purchases(where: PurchaseBoolExp!): [Purchase!]! }
input StringComparisonExp { _eq: String }
input PurchaseBoolExp { id: StringComparisonExp }
type Item { reference: String! name: String! quantity: Int! amount: Int! }
type ItemAmount { reference: String! amount: Int! }
type Movement { id: ID! amount: Int! items: [ItemAmount!]! }
type Purchase {
  id: String! currency: String! amount: Int! status: String! expiresAt: String
  items: [Item!]! captures: [Movement!]! returns: [Movement!]!
}
input ItemAmountInput { reference: String! amount: Int! }
input PurchaseCaptureAllInput { purchaseId: String! idempotencyKey: String! }
input PurchaseCaptureInput {
  purchaseId: String! idempotencyKey: String! items: [ItemAmountInput!]!
}
input PurchaseCaptureWithItemReferencesInput {
  purchaseId: String! idempotencyKey: String! itemReferences: [String!]!
}
input PurchaseReturnAllInput { purchaseId: String! idempotencyKey: String! }
input PurchaseReturnInput { purchaseId: String! idempotencyKey: String! items: [ItemAmountInput!]! }
type MovementResult { id: ID! amount: Int! }
type Mutation {
  newPurchaseCaptureAll(input: PurchaseCaptureAllInput!): MovementResult!
  newPurchaseCapture(input: PurchaseCaptureInput!): MovementResult!
  newPurchaseCaptureWithItemReferences(
    input: PurchaseCaptureWithItemReferencesInput!
  ): MovementResult!
  newPurchaseReturnAll(input: PurchaseReturnAllInput!): MovementResult!
  newPurchaseReturn(input: PurchaseReturnInput!): MovementResult!
}
"""

PURCHASES: web.AppKey[dict[str, PurchaseRecord]] = web.AppKey("purchases", dict)
# idempotencyKey → (input as JSON, the answer it got)
PURCHASE_KEYS: web.AppKey[dict[str, tuple[str, dict[str, Any]]]] = web.AppKey("keys", dict)


def _schema(app: web.Application, open_orders: bool) -> GraphQLSchema:
    schema = build_schema(SDL)
    assert schema.query_type is not None
    assert schema.mutation_type is not None

    def purchase(purchase_id: str) -> PurchaseRecord | None:
        purchases = app[PURCHASES]
        if purchase_id not in purchases and open_orders:
            purchases[purchase_id] = PurchaseRecord.open(purchase_id)
        return purchases.get(purchase_id)

    def purchases(_root: Any, _info: Any, where: dict[str, Any]) -> list[dict[str, Any]]:
        wanted = (where.get("id") or {}).get("_eq")
        found = purchase(str(wanted)) if wanted else None
        return [found.as_json()] if found else []

    schema.query_type.fields["purchases"].resolve = purchases

    def mutation(name: str) -> Any:
        def resolve(_root: Any, info: Any, input: dict[str, Any]) -> dict[str, Any]:
            keys = app[PURCHASE_KEYS]
            key = str(input["idempotencyKey"])
            fingerprint = json.dumps({"m": name, **input}, sort_keys=True)
            if key in keys:
                if keys[key][0] != fingerprint:
                    raise _error("IDEMPOTENCY_KEY_REUSED", "idempotencyKey used for another call")
                return keys[key][1]
            record_ = purchase(str(input["purchaseId"]))
            if record_ is None:
                raise _error("PURCHASE_NOT_FOUND", "No purchase with this id")
            try:
                answer = record_.apply(name, input)
            except PurchaseRefused as refused:
                raise _error(refused.code, str(refused)) from None
            keys[key] = (fingerprint, answer)
            info.context["applied"] = True
            return answer

        return resolve

    for name, field in schema.mutation_type.fields.items():
        field.resolve = mutation(name)
    return schema


def _error(code: str, message: str) -> GraphQLError:
    return GraphQLError(message, extensions={"code": code})


def _decline(fault: Fault) -> tuple[int, Any]:
    code = fault.code or "CAPTURE_DECLINED"
    error = {"message": fault.message or "Declined", "extensions": {"code": code}}
    return 200, {"data": None, "errors": [error]}


def _operation(document: str) -> str:
    """ "capture", "return" or "read": what a document does, from its first field."""
    try:
        node = parse(document).definitions[0]
    except (GraphQLError, IndexError):
        return "read"  # graphql-core answers a bad document with its own errors
    operation = getattr(node, "operation", None)
    selections = getattr(getattr(node, "selection_set", None), "selections", None) or []
    field = getattr(getattr(selections[0], "name", None), "value", None) if selections else None
    if getattr(operation, "value", "") != "mutation" or not isinstance(field, str):
        return "read"
    return "capture" if field.startswith("newPurchaseCapture") else "return"


def create_purchase_app(*, token: str | None = None, open_orders: bool = False) -> web.Application:
    app = psp_app()
    app[PURCHASES] = {}
    app[PURCHASE_KEYS] = {}
    schema = _schema(app, open_orders)

    async def graphql_endpoint(request: web.Request) -> web.Response:
        if not bearer_ok(request, token):
            record(request, 401)
            return web.json_response({"errors": [{"message": "Unauthorized"}]}, status=401)
        body = await json_object(request) or {}
        document = str(body.get("query") or "")
        variables = body.get("variables") or {}
        operation = _operation(document)
        context: dict[str, Any] = {"applied": False}

        async def apply() -> Applied:
            done = graphql_sync(schema, document, variable_values=variables, context_value=context)
            answer = done.formatted
            return 200, answer, bool(context["applied"])

        if operation == "read":
            faulted = await read_fault(request)
            if faulted is not None:
                return faulted
            status, answer, _ = await apply()
            record(request, status)
            return web.json_response(answer, status=status)
        amount, payment = None, None
        if isinstance(variables.get("input"), dict):
            items = variables["input"].get("items") or []
            amount = sum(int(i.get("amount", 0)) for i in items if isinstance(i, dict)) or None
            payment = variables["input"].get("purchaseId")
        return await money_call(
            request,
            operation=operation,
            amount=amount,
            key=None,
            body=body,
            apply=apply,
            decline=_decline,
            payment=payment if isinstance(payment, str) else None,
        )

    async def seed(request: web.Request) -> web.Response:
        raw = await json_object(request)
        if raw is None or "id" not in raw:
            return web.json_response({"error": 'expected {"id": ..., "items": [...]}'}, status=400)
        return web.json_response(seed_purchase(request.app, raw).as_json(), status=201)

    app.router.add_post("/graphql", graphql_endpoint)
    app.router.add_post("/_sandbox/orders", seed)
    return app


def seed_purchase(app: web.Application, raw: dict[str, Any]) -> PurchaseRecord:
    """`{"id", "currency", "items": [{"reference", "amount", "name", "quantity"}], "status"}`."""
    record_ = PurchaseRecord.from_json(raw)
    app[PURCHASES][record_.id] = record_
    return record_
