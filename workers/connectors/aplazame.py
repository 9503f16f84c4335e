"""The Aplazame connector: captures of an order (`/orders/{orderId}/captures`).

    GET  /orders/{orderId}/captures   → {"remaining_capture_amount", "results": [capture]}
    POST /orders/{orderId}/captures   {"amount": 10050}
    Accept: application/vnd.aplazame.v1+json, Authorization: Bearer <private key>

Amounts are integer minor units (the reference's examples: `10050` is 100.50). Aplazame
takes no idempotency key and a capture carries nothing but its amount, so nothing in its
reads says which session asked for it. Captures on one order therefore run one at a time
under the order's lock (`workers.connectors.order_lock`): the session journals the ids of
the order's existing captures, sends, and keeps the lock until the answer (or a read-back)
names its capture, whose id is then journaled; every later attempt (a retry, a redelivered
task, `status`) matches that id. Any answer that may mean "applied" (5xx, timeout, reset)
is ambiguous for that reason, and keeps the order locked until it is resolved.

Refunds and voids are not in the reference this connector follows: they are declined with
a message telling the merchant to use Aplazame's own panel.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from sessions.models import Op
from sessions.money import to_minor
from workers.connectors.base import (
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
from workers.connectors.lines import from_minor
from workers.connectors.order_lock import OrderLock
from workers.connectors.rules import Rule, RuleTable, Verdict, result
from workers.connectors.sending import send_once, status_of

MEDIA_TYPE = "application/vnd.aplazame.v1+json"
_ACCEPT = {"Accept": MEDIA_TYPE}
UNSUPPORTED = (
    "payhook's Aplazame connector does not {kind}; please {kind} this order in the Aplazame "
    "merchant panel."
)

ANSWERS = RuleTable(
    "aplazame",
    rules=(
        Rule(Verdict.APPROVED, status=(200, 299)),
        Rule(Verdict.DECLINED, status=400, message="Aplazame refused the capture."),
        Rule(Verdict.RETRY, status=401),  # the private key: an operator's fix
        Rule(Verdict.DECLINED, status=403, message="Aplazame does not allow this capture."),
        Rule(Verdict.DECLINED, status=404, message="Aplazame does not know this order."),
        Rule(Verdict.RETRY, status=406),  # the media type: ours to fix, nothing applied
        Rule(Verdict.RETRY, status=429),
        # No idempotency key: a server error may hide an applied capture, so look first.
        Rule(Verdict.AMBIGUOUS, status=(500, 599)),
        Rule(Verdict.DECLINED, status=(400, 499), message="Aplazame refused the capture."),
    ),
    default=Rule(Verdict.AMBIGUOUS),
)


class Capture(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    amount: int
    refunded_amount: int = 0


class Captures(BaseModel):
    model_config = ConfigDict(extra="ignore")

    remaining_capture_amount: int
    results: list[Capture] = Field(default_factory=list)


class AplazameConnector:
    name = "aplazame"

    def __init__(
        self, http: PspHttp, journal: Journal, lock: OrderLock, *, live: bool = True
    ) -> None:
        self.live = live
        self._http = http
        self._journal = journal
        self._lock = lock

    async def settle(self, kind: Op, operation: Operation) -> Result:
        match kind:
            case Op.CAPTURE:
                return await self._capture(operation)
            case Op.REFUND:
                return _declined(UNSUPPORTED.format(kind="refund"))
            case Op.VOID:
                return _declined(UNSUPPORTED.format(kind="cancel"))

    async def status(self, kind: Op, operation: Operation) -> StatusResult:
        if kind is not Op.CAPTURE:
            return NotFound()  # never sent: refunds and voids are declined before any call
        return await status_of(
            self._journal, kind, operation, lambda sent: self._find(operation, sent), self._lock
        )

    async def authorization(self, operation: Operation) -> Authorization | NotFound | TryAgain:
        known = await self._captures(operation)
        if not isinstance(known, Captures):
            return known
        currency = operation.currency  # the captures answer carries none
        captured = sum(c.amount for c in known.results)
        return Authorization(
            provider_payment_id=operation.provider_id,
            currency=currency,
            authorized=from_minor(captured + known.remaining_capture_amount, currency),
            captured=from_minor(captured, currency),
            refunded=from_minor(sum(c.refunded_amount for c in known.results), currency),
            voided=False,
            expires_at=None,
        )

    async def close(self) -> None:
        await self._http.close()

    async def _capture(self, operation: Operation) -> Result:
        async def plan() -> Sent | Result:
            known = await self._captures(operation)
            if isinstance(known, NotFound):
                return _declined("Aplazame does not know this order.")
            if isinstance(known, TryAgain):
                return known
            assert operation.amount is not None
            amount = to_minor(operation.amount, operation.currency)
            if amount > known.remaining_capture_amount:
                left = from_minor(known.remaining_capture_amount, operation.currency)
                return _declined(f"Aplazame has only {left} {operation.currency} left to capture.")
            path = f"/orders/{operation.provider_id}/captures"
            return Sent(
                request={"path": path, "body": {"amount": amount}},
                before=tuple(c.id for c in known.results),
                amount=amount,
            )

        return await send_once(
            self._journal,
            Op.CAPTURE,
            operation,
            plan=plan,
            find=lambda sent: self._find(operation, sent),
            send=lambda sent: self._send(operation, sent),
            lock=self._lock,
        )

    async def _captures(self, operation: Operation) -> Captures | NotFound | TryAgain:
        return await self._http.read(
            f"/orders/{operation.provider_id}/captures",
            Captures,
            "a captures list",
            headers=_ACCEPT,
        )

    async def _send(self, operation: Operation, sent: Sent) -> Result:
        reply = await self._http.request(
            "POST", str(sent.request["path"]), json_body=sent.request["body"], headers=_ACCEPT
        )
        if isinstance(reply, TryAgain):
            return reply
        rule = ANSWERS.classify(status=reply.status)
        capture_id = reply.at("id")
        if rule.verdict is Verdict.APPROVED and not capture_id:
            # Applied, but which capture is ours? The read-back under the lock will say.
            return TryAgain(f"aplazame capture: HTTP {reply.status} without an id", ambiguous=True)
        return result(
            rule,
            reference=str(capture_id) if capture_id else operation.provider_id,
            reason=f"aplazame capture: HTTP {reply.status}",
            message=reply.message(),
            retry_after=reply.retry_after,
        )

    async def _find(self, operation: Operation, sent: Sent) -> StatusResult:
        known = await self._captures(operation)
        if not isinstance(known, Captures):
            return known
        return ours(sent, [(capture.id, capture.amount) for capture in known.results])


def _declined(message: str) -> Declined:
    return Declined(DeclineCode.PROCESSING_ERROR, message)
