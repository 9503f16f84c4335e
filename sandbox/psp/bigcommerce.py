"""A BigCommerce payment-actions fake, for the `bigcommerce` connector.

Under `/stores/{store_hash}`, with `X-Auth-Token` (401 otherwise):

| method | path                                               | does                          |
|--------|----------------------------------------------------|-------------------------------|
| GET    | /v2/orders/{id}                                    | `payment_status`, total       |
| GET    | /v3/orders/{id}/transactions                       | the payment's transactions    |
| POST   | /v3/orders/{id}/payment_actions/capture            | `201 {}`, `capture pending`   |
| POST   | /v3/orders/{id}/payment_actions/void               | `201 {}`, `void pending`      |
| POST   | /v3/orders/{id}/payment_actions/refund_quotes      | refund methods for an amount  |
| POST   | /v3/orders/{id}/payment_actions/refunds            | the refund                    |
| GET    | /v3/orders/{id}/payment_actions/refunds            | the order's refunds           |

Refusals are `{"status", "title"}` (422 for an action the payment status does not allow).
BigCommerce takes no idempotency key; a second capture of a captured order is a 422.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from aiohttp import web

from sandbox.psp.bigcommerce_orders import BcOrder
from sandbox.psp.common import (
    Applied,
    Fault,
    bearer_ok,
    json_object,
    money_call,
    psp_app,
    read_fault,
    record_read,
)

BC_ORDERS: web.AppKey[dict[str, BcOrder]] = web.AppKey("bc_orders", dict)
V3 = "/stores/{store}/v3/orders/{order_id}"


def _decline(fault: Fault) -> tuple[int, Any]:
    title = fault.message or "The payment gateway declined the action."
    return 422, {"status": 422, "title": title, "type": "about:blank", "errors": {}}


def create_bigcommerce_app(
    *, token: str | None = None, open_orders: bool = False, settle_after_reads: int = 1
) -> web.Application:
    app = psp_app()
    app[BC_ORDERS] = {}

    def find(request: web.Request) -> BcOrder | None:
        orders = request.app[BC_ORDERS]
        order_id = request.match_info["order_id"]
        if order_id not in orders and open_orders:
            # Lenient: BigCommerce's order ids are integers, payhook dev's payment ids are not.
            number = int(order_id) if order_id.isdigit() else len(orders) + 1
            orders[order_id] = BcOrder(
                number, Decimal("10000.00"), settle_after_reads=settle_after_reads
            )
        return orders.get(order_id)

    async def readable(request: web.Request) -> BcOrder | web.Response:
        if not bearer_ok(request, token, header="X-Auth-Token"):
            record_read(request, 401)
            return web.json_response({"status": 401, "title": "Unauthorized"}, status=401)
        faulted = await read_fault(request)
        if faulted is not None:
            return faulted
        order = find(request)
        record_read(request, 200 if order else 404)
        if order is None:
            return web.json_response({"status": 404, "title": "Order not found"}, status=404)
        return order

    async def get_order(request: web.Request) -> web.Response:
        order = await readable(request)
        return order if isinstance(order, web.Response) else web.json_response(order.read())

    async def transactions(request: web.Request) -> web.Response:
        order = await readable(request)
        if isinstance(order, web.Response):
            return order
        return web.json_response({"data": order.transactions, "meta": {}})

    async def refunds(request: web.Request) -> web.Response:
        order = await readable(request)
        if isinstance(order, web.Response):
            return order
        return web.json_response({"data": order.refunds, "meta": {}})

    async def action(request: web.Request) -> web.Response:
        name = request.path.rsplit("/", 1)[1]
        operation = {"refund_quotes": "quote", "refunds": "refund"}.get(name, name)
        if not bearer_ok(request, token, header="X-Auth-Token"):
            record_read(request, 401, operation)
            return web.json_response({"status": 401, "title": "Unauthorized"}, status=401)
        order = find(request)
        body = await json_object(request) or {}
        items = [i for i in body.get("items") or [] if isinstance(i, dict)]
        payments = [p for p in body.get("payments") or [] if isinstance(p, dict)]
        amount = sum((Decimal(str(i.get("amount", 0))) for i in items), Decimal(0))

        async def apply() -> Applied:
            if order is None:
                return 404, {"status": 404, "title": "Order not found"}, False
            if operation == "quote":
                return order.quote(items)
            if operation == "refund":
                return order.refund(items, payments)
            return order.act(operation)

        return await money_call(
            request,
            operation=operation,
            amount=int(amount * 100) if items else None,
            key=None,
            body=body,
            apply=apply,
            decline=_decline,
            payment=request.match_info["order_id"],
        )

    app.router.add_get("/stores/{store}/v2/orders/{order_id}", get_order)
    app.router.add_get(V3 + "/transactions", transactions)
    app.router.add_get(V3 + "/payment_actions/refunds", refunds)
    for name in ("capture", "void", "refund_quotes", "refunds"):
        app.router.add_post(f"{V3}/payment_actions/{name}", action)

    async def seed(request: web.Request) -> web.Response:
        raw = await json_object(request)
        if raw is None or not str(raw.get("id", "")).isdigit():
            return web.json_response(
                {"error": 'expected {"id": 100, "total": "12.50"}'}, status=400
            )
        order = seed_order(request.app, raw, settle_after_reads=settle_after_reads)
        return web.json_response(order.v2_json(), status=201)

    app.router.add_post("/_sandbox/orders", seed)
    return app


def seed_order(
    app: web.Application, raw: dict[str, Any], *, settle_after_reads: int = 1
) -> BcOrder:
    """`{"id": 100, "total": "12.50", "currency": "EUR"}`: an authorized payment."""
    order = BcOrder(
        int(raw["id"]),
        Decimal(str(raw.get("total", "100.00"))),
        str(raw.get("currency", "EUR")),
        settle_after_reads=int(raw.get("settle_after_reads", settle_after_reads)),
    )
    app[BC_ORDERS][str(order.id)] = order
    return order
