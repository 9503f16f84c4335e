"""The BigCommerce connector: an order's payment actions (`X-Auth-Token`).

Capture and void are asynchronous at BigCommerce: `POST .../payment_actions/capture`
answers `201 {}` and the order's `payment_status` becomes `capture pending` (`void
pending`) until the payment request runs. The connector answers `Pending`, and payhook
polls `status`, which reads `payment_status` (`GET /v2/orders/{id}`) through a rule table.
BigCommerce captures whole orders only, so a capture for another amount than the order's
total is declined before anything is sent.

Refunds are synchronous: a refund quote (`.../refund_quotes`) tells which refund methods
are available; the refund (`.../refunds`) is sent with the first online method that covers
the amount. BigCommerce takes no idempotency key; each refund names its Shopify session in
its `reason` (`workers.connectors.marks`), so `status` (and every retry, before sending)
finds it in the order's refunds by that exact id.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sessions.models import Op
from workers.connectors.base import (
    Approved,
    Authorization,
    DeclineCode,
    Declined,
    NotFound,
    Operation,
    Pending,
    Result,
    StatusResult,
    TryAgain,
)
from workers.connectors.http_client import PspHttp, Reply
from workers.connectors.marks import is_marked_by, refund_mark
from workers.connectors.rules import Rule, RuleTable, Verdict, result, status_result

# `payment_status` after a capture was asked for.
CAPTURE_STATES = RuleTable(
    "bigcommerce capture",
    rules=(
        Rule(Verdict.PENDING, code="capture pending"),
        Rule(Verdict.APPROVED, code="captured"),
        Rule(Verdict.APPROVED, code="paid"),
        Rule(Verdict.APPROVED, code="partially refunded"),
        Rule(Verdict.APPROVED, code="refunded"),
        Rule(Verdict.NOT_FOUND, code="authorized"),  # not captured (yet): safe to ask
        Rule(Verdict.DECLINED, code="declined", message="BigCommerce declined the payment."),
        Rule(Verdict.DECLINED, code="void pending", message="The payment is being voided."),
        Rule(Verdict.DECLINED, code="void", message="The payment was voided."),
    ),
    default=Rule(Verdict.RETRY),  # a state we do not know: look again later
)

# `payment_status` after a void was asked for.
VOID_STATES = RuleTable(
    "bigcommerce void",
    rules=(
        Rule(Verdict.PENDING, code="void pending"),
        Rule(Verdict.APPROVED, code="void"),
        Rule(Verdict.APPROVED, code="declined"),  # nothing is held
        Rule(Verdict.NOT_FOUND, code="authorized"),
        Rule(Verdict.DECLINED, code="capture pending", message="The payment is being captured."),
        Rule(Verdict.DECLINED, code="captured", message="The payment was already captured."),
        Rule(Verdict.DECLINED, code="paid", message="The payment was already captured."),
    ),
    default=Rule(Verdict.RETRY),
)

# The HTTP answer to a payment action (capture, void, refund quote, refund).
ANSWERS = RuleTable(
    "bigcommerce",
    rules=(
        Rule(Verdict.APPROVED, status=(200, 299)),
        Rule(Verdict.RETRY, status=401),  # the token or its scopes: an operator's fix
        Rule(Verdict.RETRY, status=403),
        Rule(Verdict.DECLINED, status=404, message="BigCommerce does not know this order."),
        Rule(Verdict.RETRY, status=429),
        # No idempotency key: a server error may hide an applied action, so look first.
        Rule(Verdict.AMBIGUOUS, status=(500, 599)),
        Rule(Verdict.DECLINED, status=(400, 499), message="BigCommerce refused the action."),
    ),
    default=Rule(Verdict.AMBIGUOUS),
)

_CAPTURED = ("captured", "paid", "partially refunded")


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class V2Order(_Model):
    id: int | str
    payment_status: str = ""
    total_inc_tax: Decimal
    currency_code: str


class RefundPayment(_Model):
    provider_id: str = ""
    amount: Decimal = Decimal(0)
    offline: bool = False
    is_declined: bool = False
    declined_message: str = ""


class RefundItem(_Model):
    reason: str | None = ""


class Refund(_Model):
    id: int | str | None = None
    reason: str | None = ""
    items: list[RefundItem] = Field(default_factory=list)
    payments: list[RefundPayment] = Field(default_factory=list)

    def names(self, session_id: str) -> bool:
        reasons = [self.reason, *(item.reason for item in self.items)]
        return any(is_marked_by(reason, session_id) for reason in reasons)


class Transaction(_Model):
    event: str
    amount: Decimal
    currency: str
    status: str = "ok"


class BigCommerceConnector:
    name = "bigcommerce"

    def __init__(self, http: PspHttp, store_hash: str, *, live: bool = True) -> None:
        self.live = live
        self._http = http
        self._store = f"/stores/{store_hash}"

    async def settle(self, kind: Op, operation: Operation) -> Result:
        match kind:
            case Op.CAPTURE:
                return await self._capture(operation)
            case Op.REFUND:
                return await self._refund(operation)
            case Op.VOID:
                return await self._void(operation)

    async def status(self, kind: Op, operation: Operation) -> StatusResult:
        if kind is Op.REFUND:
            return await self._refund_status(operation)
        order = await self._order(operation)
        if not isinstance(order, V2Order):
            return order
        return _known(CAPTURE_STATES if kind is Op.CAPTURE else VOID_STATES, order, kind)

    async def authorization(self, operation: Operation) -> Authorization | NotFound | TryAgain:
        path = f"{self._store}/v3/orders/{operation.provider_id}/transactions"
        reply = await self._http.request("GET", path)
        if isinstance(reply, TryAgain):
            return reply
        if reply.status == 404:
            return NotFound()
        if not reply.ok:
            return TryAgain(f"bigcommerce transactions: HTTP {reply.status}", reply.retry_after)
        try:
            rows = [Transaction.model_validate(row) for row in reply.at("data") or []]
        except ValidationError:
            return TryAgain("bigcommerce transactions: an answer that is not transactions")
        done = [row for row in rows if row.status == "ok"]
        if not done:
            return NotFound()

        def total(*events: str) -> Decimal:
            return sum((row.amount for row in done if row.event in events), Decimal(0))

        return Authorization(
            provider_payment_id=operation.provider_id,
            currency=done[0].currency,
            authorized=total("authorization", "purchase"),
            captured=total("capture", "purchase"),
            refunded=total("refund"),
            voided=any(row.event == "void" for row in done),
            expires_at=None,
        )

    async def close(self) -> None:
        await self._http.close()

    async def _capture(self, operation: Operation) -> Result:
        order = await self._order(operation)
        if not isinstance(order, V2Order):
            return order
        known = _known(CAPTURE_STATES, order, Op.CAPTURE)
        if not isinstance(known, NotFound):
            return known
        if order.currency_code != operation.currency or order.total_inc_tax != operation.amount:
            return _declined(
                "BigCommerce captures whole orders only: this order is "
                f"{order.total_inc_tax} {order.currency_code}."
            )
        return await self._action(Op.CAPTURE, operation)

    async def _void(self, operation: Operation) -> Result:
        order = await self._order(operation)
        if not isinstance(order, V2Order):
            return order
        known = _known(VOID_STATES, order, Op.VOID)
        if not isinstance(known, NotFound):
            return known
        return await self._action(Op.VOID, operation)

    async def _refund(self, operation: Operation) -> Result:
        known = await self._refund_status(operation)
        if not isinstance(known, NotFound):
            return known
        assert operation.amount is not None
        items = [
            {
                "item_type": "ORDER",
                "item_id": _order_number(operation.provider_id),
                "amount": float(operation.amount),  # BigCommerce takes decimal numbers
                "reason": refund_mark(operation.session_id),
            }
        ]
        quote = await self._post(operation, "refund_quotes", {"items": items})
        if not isinstance(quote, Reply):
            return quote
        payments = _online_method(quote.at("data", "refund_methods"), operation.amount)
        if payments is None:
            return _declined("BigCommerce offers no online refund method for this amount.")
        answer = await self._post(operation, "refunds", {"items": items, "payments": payments})
        if not isinstance(answer, Reply):
            return answer
        return _refund_outcome(answer.at("data"), operation)

    async def _order(self, operation: Operation) -> V2Order | Declined | TryAgain:
        order = await self._http.read(
            f"{self._store}/v2/orders/{operation.provider_id}", V2Order, "an order"
        )
        if isinstance(order, NotFound):
            return _declined("BigCommerce does not know this order.")
        return order

    async def _action(self, kind: Op, operation: Operation) -> Result:
        reply = await self._post(operation, kind, {})
        if not isinstance(reply, Reply):
            return reply
        # Accepted: the payment request runs later; `status` polls payment_status.
        return Pending(psp_reference=f"{operation.provider_id}:{kind}")

    async def _post(self, operation: Operation, action: str, body: Any) -> Reply | Result:
        path = f"{self._store}/v3/orders/{operation.provider_id}/payment_actions/{action}"
        reply = await self._http.request("POST", path, json_body=body)
        if isinstance(reply, TryAgain):
            return reply
        rule = ANSWERS.classify(status=reply.status)
        if rule.verdict is Verdict.APPROVED:
            return reply
        return result(
            rule,
            reference=operation.provider_id,
            reason=f"bigcommerce {action}: HTTP {reply.status}",
            message=reply.message(),
            retry_after=reply.retry_after,
        )

    async def _refund_status(self, operation: Operation) -> StatusResult:
        path = f"{self._store}/v3/orders/{operation.provider_id}/payment_actions/refunds"
        reply = await self._http.request("GET", path)
        if isinstance(reply, TryAgain):
            return reply
        if reply.status == 404:
            return NotFound()
        if not reply.ok:
            return TryAgain(f"bigcommerce GET refunds: HTTP {reply.status}", reply.retry_after)
        for row in reply.at("data") or []:
            if isinstance(row, dict) and Refund.model_validate(row).names(operation.session_id):
                return _refund_outcome(row, operation)
        return NotFound()


def _known(table: RuleTable, order: V2Order, kind: Op) -> StatusResult:
    return status_result(
        table.classify(code=order.payment_status),
        reference=f"{order.id}:{kind}",
        reason=f"bigcommerce payment_status {order.payment_status!r}",
    )


def _online_method(methods: Any, amount: Decimal) -> list[dict[str, Any]] | None:
    """The first refund method (a list of payments) that is all online and covers `amount`."""
    for method in methods if isinstance(methods, list) else []:
        try:
            payments = [RefundPayment.model_validate(p) for p in method]
        except (ValidationError, TypeError):
            continue
        online = bool(payments) and not any(p.offline for p in payments)
        if online and sum((p.amount for p in payments), Decimal(0)) == amount:
            return [
                {"provider_id": p.provider_id, "amount": float(p.amount), "offline": False}
                for p in payments
            ]
    return None


def _refund_outcome(data: Any, operation: Operation) -> Result:
    try:
        refund = Refund.model_validate(data)
    except ValidationError:
        return TryAgain("bigcommerce refund: an answer that is not a refund", ambiguous=True)
    for payment in refund.payments:
        if payment.is_declined:
            return _declined(payment.declined_message or "BigCommerce declined the refund.")
    return Approved(psp_reference=f"{operation.provider_id}:refund:{refund.id}")


def _order_number(provider_id: str) -> int | str:
    return int(provider_id) if provider_id.isdigit() else provider_id


def _declined(message: str) -> Declined:
    return Declined(DeclineCode.PROCESSING_ERROR, message)
