"""A Ledyer order-management API fake, for the `ledyer` connector.

| method | path                                        | does                               |
|--------|---------------------------------------------|------------------------------------|
| GET    | /v1/orders/{orderId}                        | the order                          |
| POST   | /v1/orders/{orderId}/capture                | full capture (the remaining lines) |
| POST   | /v1/orders/{orderId}/partialcapture         | partial capture                    |
| POST   | /v1/orders/{orderId}/refund/{ledgerId}      | full refund of one capture         |
| POST   | /v1/orders/{orderId}/partialrefund/{ledgerId} | partial refund                   |
| DELETE | /v1/orders/{orderId}/{ledgerId}             | cancel the uncaptured sub-order    |
| POST   | /_sandbox/orders                            | seed an order (see `seed_order`)   |

`Authorization: Bearer <token>` is required (401). Stricter than Ledyer, every capture and
refund must carry an `Idempotency-Key` (400 otherwise), so a connector that forgets it
fails here first. `open_orders`: an unknown order id is created on first read
(`LedyerOrder.open`), for `payhook dev`.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

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
from sandbox.psp.ledyer_orders import LedyerOrder, Line

LEDYER_ORDERS: web.AppKey[dict[str, LedyerOrder]] = web.AppKey("ledyer_orders", dict)


def seed_order(app: web.Application, raw: dict[str, Any]) -> LedyerOrder:
    """`{"id", "currency", "lines": [{"totalAmount", "reference", "vat", ...}], "expired",
    "cancelled"}`; lines default to one line of 100.00."""
    lines = [Line.from_json(line, keep_id=False) for line in raw.get("lines") or []]
    order = LedyerOrder(
        id=str(raw["id"]),
        currency=str(raw.get("currency", "EUR")),
        uncaptured=lines or [Line(total_amount=10_000)],
        expired=bool(raw.get("expired", False)),
        cancelled=bool(raw.get("cancelled", False)),
    )
    app[LEDYER_ORDERS][order.id] = order
    return order


def _decline(fault: Fault) -> tuple[int, Any]:
    return 400, {"message": fault.message or "Ledyer declined the request."}


def create_ledyer_app(*, token: str | None = None, open_orders: bool = False) -> web.Application:
    app = psp_app()
    app[LEDYER_ORDERS] = {}

    def find(request: web.Request) -> LedyerOrder | None:
        orders = request.app[LEDYER_ORDERS]
        order_id = request.match_info["order_id"]
        if order_id not in orders and open_orders:
            orders[order_id] = LedyerOrder.open(order_id)
        return orders.get(order_id)

    def refused(request: web.Request, status: int, message: str, operation: str) -> web.Response:
        record_read(request, status, operation)
        return web.json_response({"message": message}, status=status)

    async def get_order(request: web.Request) -> web.Response:
        if not bearer_ok(request, token):
            return refused(request, 401, "Unauthorized", "read")
        faulted = await read_fault(request)
        if faulted is not None:
            return faulted
        order = find(request)
        record_read(request, 200 if order else 404)
        if order is None:
            return web.json_response({"message": "order not found"}, status=404)
        return web.json_response(order.as_json())

    async def modify(
        request: web.Request, operation: str, amount_field: str | None
    ) -> web.Response:
        if not bearer_ok(request, token):
            return refused(request, 401, "Unauthorized", operation)
        body = await json_object(request) if request.method == "POST" else {}
        key = request.headers.get("Idempotency-Key")
        if request.method == "POST" and not key:
            return refused(request, 400, "This sandbox requires an Idempotency-Key.", operation)
        order = find(request)
        if order is None:
            return refused(request, 404, "order not found", operation)
        amount = (body or {}).get(amount_field) if amount_field else None

        async def apply() -> Applied:
            assert order is not None
            ledger_id = request.match_info.get("ledger_id", "")
            path = request.path
            if operation == "capture":
                return order.capture(body or {}, partial=path.endswith("/partialcapture"))
            if operation == "refund":
                return order.refund(ledger_id, body, partial="/partialrefund/" in path)
            return order.cancel(ledger_id)

        return await money_call(
            request,
            operation=operation,
            amount=amount if isinstance(amount, int) else None,
            key=key,
            body=body,
            apply=apply,
            decline=_decline,
            payment=request.match_info["order_id"],
        )

    async def capture(request: web.Request) -> web.Response:
        return await modify(request, "capture", "totalCaptureAmount")

    async def refund(request: web.Request) -> web.Response:
        return await modify(request, "refund", "totalRefundAmount")

    async def cancel(request: web.Request) -> web.Response:
        return await modify(request, "void", None)

    async def seed(request: web.Request) -> web.Response:
        raw = await json_object(request)
        if raw is None or "id" not in raw:
            return web.json_response({"error": 'expected {"id": ..., "lines": [...]}'}, status=400)
        return web.json_response(seed_order(request.app, raw).as_json(), status=201)

    app.router.add_get("/v1/orders/{order_id}", get_order)
    app.router.add_post("/v1/orders/{order_id}/capture", capture)
    app.router.add_post("/v1/orders/{order_id}/partialcapture", capture)
    app.router.add_post("/v1/orders/{order_id}/refund/{ledger_id}", refund)
    app.router.add_post("/v1/orders/{order_id}/partialrefund/{ledger_id}", refund)
    app.router.add_delete("/v1/orders/{order_id}/{ledger_id}", cancel)
    app.router.add_post("/_sandbox/orders", seed)
    return app
