"""The Purchase connector: a GraphQL PSP whose captures and returns settle items.

Every operation reads the purchase first (`purchases` query), then picks the mutation:

| Shopify asks                                   | mutation                                  |
|------------------------------------------------|-------------------------------------------|
| capture of the whole purchase, nothing captured | `newPurchaseCaptureAll`                   |
| capture matching uncaptured items exactly      | `newPurchaseCaptureWithItemReferences`    |
| any other capture up to what is uncaptured     | `newPurchaseCapture`, items in order with |
|                                                | restated prices (the last one in part)    |
| refund of all that was captured, nothing left  | `newPurchaseReturnAll` (closes the order) |
| any other refund up to what was captured       | `newPurchaseReturn`, captured items with  |
|                                                | restated prices                           |
| void (nothing captured)                        | `newPurchaseReturnAll`                    |

Every mutation carries `idempotencyKey` = the session id; the request is journaled and
replayed verbatim on retries. The purchase's captures and returns do not show the key they
were made under, so operations on one purchase run one at a time under its lock
(`workers.connectors.order_lock`): the capture or return that appeared since the plan is
then ours, and its id is journaled and matched exactly from then on.
"""

from __future__ import annotations

from datetime import datetime
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
from workers.connectors.journal import Journal, Sent, ours
from workers.connectors.lines import allocate, exact_lines, from_minor
from workers.connectors.order_lock import OrderLock
from workers.connectors.purchase_api import (
    PURCHASE_QUERY,
    Purchase,
    PurchaseApi,
    mutation_document,
)
from workers.connectors.rules import Rule, RuleTable, Verdict, result
from workers.connectors.sending import send_once, status_of

PURCHASE_STATES = RuleTable(
    "purchase status",
    rules=(
        Rule(Verdict.DECLINED, code="CANCELLED", message="The purchase was cancelled."),
        Rule(Verdict.DECLINED, code="CLOSED", message="The purchase is closed."),
        Rule(Verdict.EXPIRED, code="EXPIRED", message="The purchase's authorization expired."),
    ),
)

# (HTTP status, first error code or "OK") of a mutation's answer.
ANSWERS = RuleTable(
    "purchase",
    rules=(
        Rule(Verdict.APPROVED, status=(200, 299), code="OK"),
        Rule(Verdict.DECLINED, code="PURCHASE_NOT_FOUND", message="The PSP has no such purchase."),
        Rule(Verdict.EXPIRED, code="PURCHASE_EXPIRED", message="The authorization expired."),
        Rule(Verdict.DECLINED, code="PURCHASE_CLOSED", message="The purchase is closed."),
        Rule(Verdict.DECLINED, code="PURCHASE_CANCELLED", message="The purchase was cancelled."),
        Rule(Verdict.DECLINED, code="INVALID_AMOUNT", message="The PSP refused the amount."),
        Rule(Verdict.DECLINED, code="INVALID_ITEMS", message="The PSP refused the items."),
        Rule(Verdict.DECLINED, code="CAPTURE_DECLINED", message="The PSP declined the capture."),
        Rule(Verdict.AMBIGUOUS, code="IDEMPOTENCY_KEY_IN_USE"),
        Rule(Verdict.RETRY, code="THROTTLED"),
        # Our document does not fit the schema: an operator's fix, not a buyer's decline.
        Rule(Verdict.RETRY, code="GRAPHQL_VALIDATION_FAILED"),
        Rule(Verdict.RETRY, status=400),
        Rule(Verdict.RETRY, status=401),
        Rule(Verdict.RETRY, status=403),
        Rule(Verdict.RETRY, status=429),
        # A server error may hide an applied mutation: look before sending it again.
        Rule(Verdict.AMBIGUOUS, status=(500, 599)),
    ),
    # An unknown error code: look before sending again (the key makes a resend safe).
    default=Rule(Verdict.AMBIGUOUS),
)


class PurchaseConnector:
    name = "purchase"

    def __init__(
        self, api: PurchaseApi, journal: Journal, lock: OrderLock, *, live: bool = True
    ) -> None:
        self.live = live
        self._api = api
        self._journal = journal
        self._lock = lock

    async def settle(self, kind: Op, operation: Operation) -> Result:
        async def plan() -> Sent | Result:
            purchase = await self._purchase(operation)
            if isinstance(purchase, NotFound):
                return _declined("The PSP has no such purchase.")
            if isinstance(purchase, TryAgain):
                return purchase
            return _plan(kind, operation, purchase)

        return await send_once(
            self._journal,
            kind,
            operation,
            plan=plan,
            find=lambda sent: self._find(operation, sent),
            send=lambda sent: self._send(kind, operation, sent),
            lock=self._lock,
        )

    async def status(self, kind: Op, operation: Operation) -> StatusResult:
        return await status_of(
            self._journal, kind, operation, lambda s: self._find(operation, s), self._lock
        )

    async def authorization(self, operation: Operation) -> Authorization | NotFound | TryAgain:
        purchase = await self._purchase(operation)
        if not isinstance(purchase, Purchase):
            return purchase
        currency = purchase.currency
        expires = datetime.fromisoformat(purchase.expires_at) if purchase.expires_at else None
        return Authorization(
            provider_payment_id=purchase.id,
            currency=currency,
            authorized=from_minor(purchase.amount, currency),
            captured=from_minor(sum(c.amount for c in purchase.captures), currency),
            refunded=from_minor(sum(r.amount for r in purchase.returns), currency),
            voided=purchase.status == "CANCELLED"
            or (purchase.status == "CLOSED" and not purchase.captures),
            expires_at=expires,
        )

    async def close(self) -> None:
        await self._api.close()

    async def _purchase(self, operation: Operation) -> Purchase | NotFound | TryAgain:
        answer = await self._api.call(PURCHASE_QUERY, {"id": operation.provider_id}, write=False)
        if isinstance(answer, TryAgain):
            return answer
        found = answer.data.get("purchases")
        if answer.code is not None or not isinstance(found, list):
            return TryAgain(f"purchase query: HTTP {answer.status} {answer.code or 'no data'}")
        if not found:
            return NotFound()
        try:
            return Purchase.model_validate(found[0])
        except ValidationError:
            return TryAgain("purchase query: an answer that is not a purchase")

    async def _send(self, kind: Op, operation: Operation, sent: Sent) -> Result:
        field = str(sent.request["mutation"])
        answer = await self._api.call(
            mutation_document(field), {"input": sent.request["input"]}, write=True
        )
        if isinstance(answer, TryAgain):
            return answer
        rule = ANSWERS.classify(status=answer.status, code=answer.code or "OK")
        payload = answer.data.get(field)
        movement_id = payload.get("id") if isinstance(payload, dict) else None
        if rule.verdict is Verdict.APPROVED and not movement_id:
            # Done, but the answer does not say which movement: a read-back will.
            return TryAgain(f"purchase {kind}: an answer without the movement id", ambiguous=True)
        return result(
            rule,
            reference=str(movement_id) if movement_id else operation.provider_id,
            reason=f"purchase {kind}: HTTP {answer.status} {answer.code or ''}".strip(),
            message=answer.message,
        )

    async def _find(self, operation: Operation, sent: Sent) -> StatusResult:
        purchase = await self._purchase(operation)
        if not isinstance(purchase, Purchase):
            return purchase
        field = str(sent.request["mutation"])
        movements = (
            purchase.captures if field.startswith("newPurchaseCapture") else purchase.returns
        )
        return ours(sent, [(movement.id, movement.amount) for movement in movements])


def _declined(message: str) -> Declined:
    return Declined(DeclineCode.PROCESSING_ERROR, message)


def _sent(
    field: str, operation: Operation, fields: dict[str, Any], before: list[str], amount: int | None
) -> Sent:
    request_input = {
        "purchaseId": operation.provider_id,
        "idempotencyKey": operation.idempotency_key,
        **fields,
    }
    return Sent(
        request={"mutation": field, "input": request_input}, before=tuple(before), amount=amount
    )


def _plan(kind: Op, operation: Operation, purchase: Purchase) -> Sent | Result:
    refusal = PURCHASE_STATES.first([purchase.status])
    returns = [r.id for r in purchase.returns]
    if kind is Op.VOID:
        if purchase.captures:
            return _declined("The purchase was already captured; refund it instead.")
        if refusal is not None:
            return Approved(psp_reference=purchase.id)  # closed or expired: nothing is held
        return _sent("newPurchaseReturnAll", operation, {}, returns, None)
    # An expired authorization stops captures, not the return of what was captured.
    if refusal is not None and not (kind is Op.REFUND and refusal.verdict is Verdict.EXPIRED):
        return result(refusal, reference=purchase.id, reason=refusal.message)
    if purchase.currency != operation.currency:
        return _declined(f"The purchase is in {purchase.currency}, not {operation.currency}.")
    assert operation.amount is not None
    amount = to_minor(operation.amount, operation.currency)
    if kind is Op.CAPTURE:
        return _plan_capture(operation, purchase, amount)
    return _plan_return(operation, purchase, amount, returns)


def _plan_capture(operation: Operation, purchase: Purchase, amount: int) -> Sent | Result:
    captured = {item.reference for c in purchase.captures for item in c.items}
    open_items = [item for item in purchase.items if item.reference not in captured]
    left = sum(item.amount for item in open_items)
    before = [c.id for c in purchase.captures]
    if amount > left:
        return _declined(f"Only {from_minor(left, purchase.currency)} is left to capture.")
    if not purchase.captures and amount == purchase.amount:
        return _sent("newPurchaseCaptureAll", operation, {}, before, amount)
    picked = exact_lines([item.amount for item in open_items], amount)
    if picked is not None:
        references = [open_items[i].reference for i in picked]
        fields = {"itemReferences": references}
        return _sent("newPurchaseCaptureWithItemReferences", operation, fields, before, amount)
    allocated = allocate([item.amount for item in open_items], amount)
    assert allocated is not None  # amount <= left
    items = [{"reference": open_items[i].reference, "amount": paid} for i, paid in allocated]
    return _sent("newPurchaseCapture", operation, {"items": items}, before, amount)


def _plan_return(
    operation: Operation, purchase: Purchase, amount: int, before: list[str]
) -> Sent | Result:
    # What each item was charged, less what was returned of it, newest capture first.
    returned: dict[str, int] = {}
    for movement in purchase.returns:
        for item in movement.items:
            returned[item.reference] = returned.get(item.reference, 0) + item.amount
    returnable: list[tuple[str, int]] = []
    for capture in reversed(purchase.captures):
        for item in capture.items:
            left = item.amount - returned.pop(item.reference, 0)
            if left > 0:
                returnable.append((item.reference, left))
    total = sum(left for _, left in returnable)
    if amount > total:
        return _declined(f"Only {from_minor(total, purchase.currency)} can be refunded.")
    captured_refs = {item.reference for c in purchase.captures for item in c.items}
    uncaptured = [item for item in purchase.items if item.reference not in captured_refs]
    if amount == total and not uncaptured and not purchase.returns:
        return _sent("newPurchaseReturnAll", operation, {}, before, amount)
    allocated = allocate([left for _, left in returnable], amount)
    assert allocated is not None  # amount <= total
    items = [{"reference": returnable[i][0], "amount": paid} for i, paid in allocated]
    return _sent("newPurchaseReturn", operation, {"items": items}, before, amount)
