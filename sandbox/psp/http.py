"""A PSP speaking payhook's generic `http` contract (DESIGN.md), for the `http` connector.

    POST /captures | /refunds | /voids   Idempotency-Key: <session id> (required: 400)
    {"session_id", "payment_id", "amount": "10.00" | null, "currency": "EUR" | null,
     "test": true | false}

A currency is a three-letter code, or null only in a void whose payment's currency payhook
does not know; anything else (an empty string) is a 400. `test` (Shopify's test mode) is a
boolean when sent, kept with the operation; the fake is a test account and takes both.

`201 {"reference"}` approves; magic amounts (`…51`, `…52` in minor units) and `decline`
faults answer `402 {"code", "message"}`; a repeated key after an approval answers `409`
with the first reference (the contract's "already done"), after a decline the same `402`.

    GET /captures/{key} | /refunds/{key} | /voids/{key}

reads what the key did and moves nothing: `200 {"reference", "amount", "currency"}` for an
applied operation, the stored `402` for a declined one, `404` when the key is unknown.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from aiohttp import web

from errors import MoneyError
from sandbox.psp.common import (
    PSP_STATE,
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
from sessions.money import to_minor

OPERATIONS = {"/captures": "capture", "/refunds": "refund", "/voids": "void"}
HTTP_BOOKS: web.AppKey[list[dict[str, Any]]] = web.AppKey("http_books", list)


def _decline(fault: Fault) -> tuple[int, Any]:
    return 402, {
        "code": fault.code or "card_declined",
        "message": fault.message or "The card was declined.",
    }


def _amount(body: dict[str, Any]) -> tuple[Decimal | None, int | None] | None:
    raw, currency = body.get("amount"), body.get("currency")
    if currency is not None and not _is_code(currency):
        return None
    if raw is None:
        return None, None
    try:
        amount = Decimal(str(raw))
        return amount, to_minor(amount, str(currency))
    except (InvalidOperation, MoneyError):
        return None


def _is_code(currency: Any) -> bool:
    return isinstance(currency, str) and len(currency) == 3 and currency.isalpha()


def create_http_psp_app(*, token: str | None = None) -> web.Application:
    app = psp_app()
    app[HTTP_BOOKS] = []

    async def operate(request: web.Request) -> web.Response:
        operation = OPERATIONS[request.path]
        if token is not None and not bearer_ok(request, token):
            return web.json_response({"code": "unauthorized", "message": "bad token"}, status=401)
        key = request.headers.get("Idempotency-Key")
        body = await json_object(request)
        parsed = _amount(body) if body is not None else None
        test = body.get("test", False) if body is not None else None
        if (
            not key
            or body is None
            or parsed is None
            or not body.get("payment_id")
            or not isinstance(test, bool)
        ):
            request.app[PSP_STATE].record(
                operation=operation, method="POST", path=request.path, status=400
            )
            message = (
                "Idempotency-Key, payment_id, a valid amount and currency are required "
                "(and test, when sent, is a boolean)"
            )
            return web.json_response({"code": "bad_request", "message": message}, status=400)
        amount, minor = parsed

        async def apply() -> Applied:
            behaviour = magic(minor)
            if behaviour == "decline":
                return 402, {"code": "card_declined", "message": "The card was declined."}, False
            if behaviour == "expired":
                message = "The authorization expired."
                return 402, {"code": "AUTHORIZATION_EXPIRED", "message": message}, False
            books = request.app[HTTP_BOOKS]
            reference = f"psp_{operation}_{len(books) + 1}"
            shown = None if amount is None else str(amount)
            currency = body.get("currency")
            books.append(
                {
                    "operation": operation,
                    "key": key,
                    "amount": shown,
                    "currency": currency,
                    "test": test,
                }
            )
            return 201, {"reference": reference}, True

        def replay(status: int, answer: Any) -> tuple[int, Any]:
            if status == 201:
                return 409, {"code": "already_processed", **answer}
            return status, answer

        return await money_call(
            request,
            operation=operation,
            amount=minor,
            key=key,
            body=body,
            apply=apply,
            decline=_decline,
            replay=replay,
            payment=str(body["payment_id"]),
        )

    async def read(request: web.Request) -> web.Response:
        operation = OPERATIONS["/" + request.path.split("/")[1]]
        if token is not None and not bearer_ok(request, token):
            return web.json_response({"code": "unauthorized", "message": "bad token"}, status=401)
        faulted = await read_fault(request, operation)
        if faulted is not None:
            return faulted
        key = request.match_info["key"]
        for book in request.app[HTTP_BOOKS]:
            if book["operation"] == operation and book["key"] == key:
                first = request.app[PSP_STATE].keys[key].body
                record_read(request, 200, operation)
                shown = {"amount": book["amount"], "currency": book["currency"]}
                return web.json_response({**first, **shown})
        stored = request.app[PSP_STATE].keys.get(key)
        if stored is not None and stored.status in (402, 422):
            record_read(request, stored.status, operation)
            return web.json_response(stored.body, status=stored.status)
        record_read(request, 404, operation)
        message = f"no {operation} under this key"
        return web.json_response({"code": "not_found", "message": message}, status=404)

    for path in OPERATIONS:
        app.router.add_post(path, operate)
        app.router.add_get(path + "/{key}", read)
    return app
