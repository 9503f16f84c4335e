"""An Aplazame captures API fake, for the `aplazame` connector.

    GET  /orders/{orderId}/captures   → {"remaining_capture_amount", "results": [capture]}
    POST /orders/{orderId}/captures   {"amount": 10050} → the capture + remaining amount

Every request must send `Accept: application/vnd.aplazame.v1+json` (406 otherwise) and
`Authorization: Bearer <private key>` (401); answers carry `X-Aplazame-Media-Type:
aplazame.v1`. Amounts are integer minor units. Refusals are `{"error": {"type",
"message"}}`: 400 for an amount above what remains, 403 for an order that is not
confirmed or a declined capture (magic amounts, `decline` faults), 404 for an unknown
order. Aplazame takes no idempotency key: every accepted POST is a new capture, which is
what the connector's journal must guard against.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from sandbox.psp.common import (
    Applied,
    Fault,
    bearer_ok,
    json_object,
    magic,
    money_call,
    psp_app,
    read_fault,
    record_read,
)

MEDIA_TYPE = "application/vnd.aplazame.v1+json"
ANSWER_HEADERS = {"X-Aplazame-Media-Type": "aplazame.v1"}
_ids = itertools.count(1)


@dataclass
class AplazameOrder:
    id: str
    total: int
    confirmed: bool = True
    captures: list[dict[str, Any]] = field(default_factory=list)

    @property
    def remaining(self) -> int:
        return self.total - sum(int(c["amount"]) for c in self.captures)


APLAZAME_ORDERS: web.AppKey[dict[str, AplazameOrder]] = web.AppKey("aplazame_orders", dict)


def _error(status: int, kind: str, message: str) -> tuple[int, Any]:
    return status, {"error": {"type": kind, "message": message}}


def _decline(fault: Fault) -> tuple[int, Any]:
    return _error(403, fault.code or "capture_declined", fault.message or "Capture declined.")


def create_aplazame_app(*, token: str | None = None, open_orders: bool = False) -> web.Application:
    app = psp_app()
    app[APLAZAME_ORDERS] = {}

    def refused(request: web.Request, operation: str) -> web.Response | None:
        if request.headers.get("Accept") != MEDIA_TYPE:
            status, body = _error(406, "not_acceptable", f"Accept must be {MEDIA_TYPE}")
        elif not bearer_ok(request, token):
            status, body = _error(401, "unauthorized", "Invalid private key")
        else:
            return None
        record_read(request, status, operation)
        return web.json_response(body, status=status, headers=ANSWER_HEADERS)

    def find(request: web.Request) -> AplazameOrder | None:
        orders = request.app[APLAZAME_ORDERS]
        order_id = request.match_info["order_id"]
        if order_id not in orders and open_orders:
            orders[order_id] = AplazameOrder(order_id, total=1_000_000)
        return orders.get(order_id)

    async def list_captures(request: web.Request) -> web.Response:
        early = refused(request, "read") or await read_fault(request)
        if early is not None:
            return early
        order = find(request)
        record_read(request, 200 if order else 404)
        if order is None:
            status, body = _error(404, "not_found", "Order not found")
            return web.json_response(body, status=status, headers=ANSWER_HEADERS)
        answer = {"remaining_capture_amount": order.remaining, "results": order.captures}
        return web.json_response(answer, headers=ANSWER_HEADERS)

    async def capture(request: web.Request) -> web.Response:
        early = refused(request, "capture")
        if early is not None:
            return early
        body = await json_object(request) or {}
        amount = body.get("amount")
        order = find(request)

        async def apply() -> Applied:
            if order is None:
                return (*_error(404, "not_found", "Order not found"), False)
            if not isinstance(amount, int) or amount <= 0 or amount > order.remaining:
                return (*_error(400, "invalid_amount", "Invalid capture amount"), False)
            if not order.confirmed:
                return (*_error(403, "order_not_confirmed", "The order is not confirmed"), False)
            if magic(amount) is not None:
                return (*_error(403, "capture_declined", "Capture declined"), False)
            capture = {
                "amount": amount,
                "id": f"{next(_ids):032x}",
                "created": datetime.now(UTC).isoformat(),
                "refunds": [],
                "refunded_amount": 0,
                "remaining_amount": amount,
            }
            order.captures.append(capture)
            return 200, {"remaining_capture_amount": order.remaining, **capture}, True

        return await money_call(
            request,
            operation="capture",
            amount=amount if isinstance(amount, int) else None,
            key=None,
            body=body,
            apply=apply,
            decline=_decline,
            headers=ANSWER_HEADERS,
            payment=request.match_info["order_id"],
        )

    async def seed(request: web.Request) -> web.Response:
        raw = await json_object(request)
        if raw is None or "id" not in raw:
            return web.json_response({"error": 'expected {"id": ..., "total": 10050}'}, status=400)
        order = seed_order(request.app, raw)
        return web.json_response({"id": order.id, "total": order.total}, status=201)

    app.router.add_get("/orders/{order_id}/captures", list_captures)
    app.router.add_post("/orders/{order_id}/captures", capture)
    app.router.add_post("/_sandbox/orders", seed)
    return app


def seed_order(app: web.Application, raw: dict[str, Any]) -> AplazameOrder:
    """`{"id", "total": minor units, "confirmed": true}`."""
    order = AplazameOrder(
        str(raw["id"]), int(raw.get("total", 10_000)), bool(raw.get("confirmed", True))
    )
    app[APLAZAME_ORDERS][order.id] = order
    return order
