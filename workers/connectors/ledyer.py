"""The Ledyer connector (order management API, `Authorization: Bearer`, `Idempotency-Key`).

Every operation reads the order first (`GET /v1/orders/{orderId}`) and decides from its
`status`, `uncapturedAmount` and each sub-order's `availableActions`:

| Shopify asks                        | Ledyer call                                              |
|-------------------------------------|----------------------------------------------------------|
| capture of all that is uncaptured   | `POST /v1/orders/{id}/capture`, the remaining lines      |
| capture of less                     | `POST /v1/orders/{id}/partialcapture`, the uncaptured    |
|                                     | lines (with ids) that add up to exactly the amount       |
| refund of a whole capture           | `POST /v1/orders/{id}/refund/{ledgerId}`                 |
| refund of part of a capture         | `POST /v1/orders/{id}/partialrefund/{ledgerId}`: the     |
|                                     | capture's lines that add up to it, else one line at the  |
|                                     | capture's VAT rate                                       |
| void                                | `DELETE /v1/orders/{id}/{ledgerId of the uncaptured part}` |

The request is journaled before it is sent and replayed verbatim (same `Idempotency-Key`)
on every retry. Which sub-order is a session's: a refund's `note` names its session
(`workers.connectors.marks`), compared whole. A capture or cancel carries no such mark in
what Ledyer shows back, so those run one at a time on an order under its lock
(`workers.connectors.order_lock`): the new captured sub-order (or the `cancel` event of the
journaled sub-order) that appeared since the plan is then ours, and its `ledgerId` is
journaled and matched exactly from then on.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from sessions.models import Op
from sessions.money import to_minor
from workers.connectors.base import (
    Approved,
    Authorization,
    DeclineCode,
    Declined,
    NotFound,
    Operation,
    Result,
    StatusResult,
    TryAgain,
)
from workers.connectors.http_client import PspHttp
from workers.connectors.journal import Journal, Sent, ours
from workers.connectors.ledyer_models import Chunk, Order, OrderLine
from workers.connectors.lines import exact_lines, from_minor
from workers.connectors.marks import is_marked_by, refund_mark
from workers.connectors.order_lock import OrderLock
from workers.connectors.rules import Rule, RuleTable, Verdict, result
from workers.connectors.sending import send_once, status_of

# The order's `status` entries that refuse a capture or refund before anything is sent.
ORDER_STATES = RuleTable(
    "ledyer order status",
    rules=(
        Rule(Verdict.DECLINED, code="cancelled", message="The Ledyer order was cancelled."),
        Rule(Verdict.EXPIRED, code="expired", message="The Ledyer order has expired."),
    ),
)

# The HTTP answer to a capture, refund or cancel.
ANSWERS = RuleTable(
    "ledyer",
    rules=(
        Rule(Verdict.APPROVED, status=(200, 299)),
        Rule(Verdict.DECLINED, status=400, message="Ledyer refused the request."),
        Rule(Verdict.RETRY, status=401),  # token expired or wrong: an operator's fix
        Rule(Verdict.RETRY, status=403),
        Rule(Verdict.DECLINED, status=404, message="Ledyer does not know this order."),
        Rule(Verdict.AMBIGUOUS, status=409),  # the key is held by a request still running
        Rule(Verdict.RETRY, status=429),
        # A server error may hide an applied request: look before sending it again.
        Rule(Verdict.AMBIGUOUS, status=(500, 599)),
        Rule(Verdict.DECLINED, status=(400, 499), message="Ledyer refused the request."),
    ),
    default=Rule(Verdict.AMBIGUOUS),
)


class LedyerConnector:
    name = "ledyer"

    def __init__(
        self, http: PspHttp, journal: Journal, lock: OrderLock, *, live: bool = True
    ) -> None:
        self.live = live
        self._http = http
        self._journal = journal
        self._lock = lock

    async def settle(self, kind: Op, operation: Operation) -> Result:
        async def plan() -> Sent | Result:
            order = await self._order(operation)
            if isinstance(order, NotFound):
                return Declined(DeclineCode.PROCESSING_ERROR, "Ledyer does not know this order.")
            if isinstance(order, TryAgain):
                return order
            return _plan(kind, operation, order)

        return await send_once(
            self._journal,
            kind,
            operation,
            plan=plan,
            find=lambda sent: self._find(kind, operation, sent),
            send=lambda sent: self._send(kind, operation, sent),
            lock=self._locked(kind),
        )

    async def status(self, kind: Op, operation: Operation) -> StatusResult:
        return await status_of(
            self._journal,
            kind,
            operation,
            lambda sent: self._find(kind, operation, sent),
            self._locked(kind),
        )

    async def authorization(self, operation: Operation) -> Authorization | NotFound | TryAgain:
        order = await self._order(operation)
        if not isinstance(order, Order):
            return order
        currency = order.currency
        captured = order.captured_amount.minor_units if order.captured_amount else 0
        refunded = order.refunded_amount.minor_units if order.refunded_amount else 0
        return Authorization(
            provider_payment_id=order.id,
            currency=currency,
            authorized=from_minor(order.order_amount.minor_units, currency),
            captured=from_minor(captured, currency),
            refunded=from_minor(refunded, currency),
            voided="cancelled" in order.status,
            expires_at=order.expires_at,
        )

    async def close(self) -> None:
        await self._http.close()

    def _locked(self, kind: Op) -> OrderLock | None:
        # A refund's note names its session; captures and cancels need the order's lock.
        return None if kind is Op.REFUND else self._lock

    async def _order(self, operation: Operation) -> Order | NotFound | TryAgain:
        return await self._http.read(f"/v1/orders/{operation.provider_id}", Order, "an order")

    async def _send(self, kind: Op, operation: Operation, sent: Sent) -> Result:
        method = str(sent.request["method"])
        # Ledyer takes the key on captures and refunds; a DELETE is idempotent by itself.
        headers = {"Idempotency-Key": operation.idempotency_key} if method == "POST" else {}
        reply = await self._http.request(
            method, str(sent.request["path"]), json_body=sent.request.get("body"), headers=headers
        )
        if isinstance(reply, TryAgain):
            return reply
        rule = ANSWERS.classify(status=reply.status)
        if rule.verdict is Verdict.APPROVED:
            found = _match(kind, _order_or_none(reply.body), sent, operation)
            if not isinstance(found, Approved):
                # Done, but the answer does not show which sub-order: a read-back will.
                return TryAgain(
                    f"ledyer {kind}: HTTP {reply.status} without our sub-order", ambiguous=True
                )
            return found
        return result(
            rule,
            reference=operation.provider_id,
            reason=f"ledyer {kind}: HTTP {reply.status}",
            message=reply.message(),
            retry_after=reply.retry_after,
        )

    async def _find(self, kind: Op, operation: Operation, sent: Sent) -> StatusResult:
        order = await self._order(operation)
        if not isinstance(order, Order):
            return order
        return _match(kind, order, sent, operation)


def _order_or_none(body: Any) -> Order | None:
    try:
        return Order.model_validate(body)
    except ValidationError:
        return None


def _match(kind: Op, order: Order | None, sent: Sent, operation: Operation) -> StatusResult:
    """Our operation in the order: the refund our note names, the cancel event of our
    sub-order, or the capture that appeared since the plan (under the order's lock)."""
    if order is None:
        return NotFound()
    if kind is Op.VOID:
        ledger_id = str(sent.request.get("ledger_id", ""))
        cancelled = any(e.type == "cancel" and e.ledger_id == ledger_id for e in order.events)
        return Approved(psp_reference=ledger_id) if cancelled else NotFound()
    if kind is Op.REFUND:
        for chunk in order.refunded:
            if is_marked_by(chunk.note, operation.session_id):
                return Approved(psp_reference=chunk.ledger_id)
        return NotFound()
    return ours(sent, [(chunk.ledger_id, chunk.total) for chunk in order.captured])


def _declined(message: str) -> Declined:
    return Declined(DeclineCode.PROCESSING_ERROR, message)


def _plan(kind: Op, operation: Operation, order: Order) -> Sent | Result:
    if kind is Op.VOID:
        return _plan_void(order)
    # The order's state refuses a capture; a refund is up to the capture's own actions
    # (an expired order's captured part can still be refunded).
    refusal = ORDER_STATES.first(order.status) if kind is Op.CAPTURE else None
    if refusal is not None:
        return result(refusal, reference=order.id, reason=refusal.message)
    if order.currency != operation.currency:
        return _declined(f"The Ledyer order is in {order.currency}, not {operation.currency}.")
    assert operation.amount is not None
    amount = to_minor(operation.amount, operation.currency)
    if kind is Op.CAPTURE:
        return _plan_capture(order, amount)
    return _plan_refund(operation, order, amount)


def _plan_capture(order: Order, amount: int) -> Sent | Result:
    chunk = order.uncaptured
    left = order.uncaptured_minor
    if chunk is None or left <= 0:
        return _declined("Nothing is left to capture on the Ledyer order.")
    if amount > left:
        return _declined(f"The Ledyer order has only {left} (minor units) left to capture.")
    before = tuple(c.ledger_id for c in order.captured)
    base = f"/v1/orders/{order.id}"
    if amount == left and "capture" in chunk.actions:
        lines = [line.request_line(keep_id=False) for line in chunk.order_lines]
        body = {"orderLines": lines, "totalCaptureAmount": amount}
        return _sent("POST", f"{base}/capture", body, before, amount)
    if "partialCapture" not in chunk.actions:
        return _declined("Ledyer does not allow capturing this order now.")
    picked = exact_lines([line.total_amount for line in chunk.order_lines], amount)
    if picked is None:
        return _declined(
            "Ledyer captures whole order lines, and no combination of the remaining lines "
            "adds up to this amount."
        )
    # With their ids, the captured lines leave the uncaptured part of the order.
    lines = [chunk.order_lines[i].request_line(keep_id=True) for i in picked]
    body = {"orderLines": lines, "totalCaptureAmount": amount}
    return _sent("POST", f"{base}/partialcapture", body, before, amount)


def _plan_refund(operation: Operation, order: Order, amount: int) -> Sent | Result:
    # Found by its note, not by what came before it.
    before: tuple[str, ...] = ()
    note = refund_mark(operation.session_id)
    base = f"/v1/orders/{order.id}"
    # The newest capture first: a refund usually follows the last shipment.
    for chunk in reversed(order.captured):
        if chunk.total == amount and "refund" in chunk.actions:
            path = f"{base}/refund/{chunk.ledger_id}"
            return _sent("POST", path, {"note": note}, before, amount)
        if chunk.total >= amount and "partialRefund" in chunk.actions:
            lines = _refund_lines(chunk, amount)
            if lines is not None:
                body = {"orderLines": lines, "totalRefundAmount": amount, "note": note}
                return _sent(
                    "POST", f"{base}/partialrefund/{chunk.ledger_id}", body, before, amount
                )
    return _declined("No single Ledyer capture of this order can be refunded for this amount.")


def _refund_lines(chunk: Chunk, amount: int) -> list[dict[str, object]] | None:
    picked = exact_lines([line.total_amount for line in chunk.order_lines], amount)
    if picked is not None:
        return [chunk.order_lines[i].request_line(keep_id=False) for i in picked]
    rates = {line.vat for line in chunk.order_lines}
    if len(rates) != 1:
        return None  # mixed VAT rates: one line cannot carry the right tax
    (vat,) = rates
    line = OrderLine(
        description="Refund",
        reference="refund",
        total_amount=amount,
        total_vat_amount=round(amount * vat / (10_000 + vat)),
        unit_price=amount,
        vat=vat,
    )
    return [line.request_line(keep_id=False)]


def _plan_void(order: Order) -> Sent | Result:
    chunk = order.uncaptured
    if "cancelled" in order.status or "expired" in order.status:
        # Nothing is held any more, which is what a void asks for.
        return Approved(psp_reference=order.id)
    if chunk is None or chunk.total <= 0:
        return _declined("Nothing uncaptured is left to void on the Ledyer order.")
    if "cancel" not in chunk.actions:
        return _declined("Ledyer does not allow cancelling this order now.")
    path = f"/v1/orders/{order.id}/{chunk.ledger_id}"
    return Sent(request={"method": "DELETE", "path": path, "ledger_id": chunk.ledger_id})


def _sent(
    method: str, path: str, body: dict[str, Any], before: tuple[str, ...], amount: int
) -> Sent:
    return Sent(
        request={"method": method, "path": path, "body": body}, before=before, amount=amount
    )
