"""The generic `http` connector, for a PSP that speaks payhook's own contract (DESIGN.md).

    POST {PAYHOOK_HTTP_CONNECTOR_URL}/{captures|refunds|voids}
    Idempotency-Key: <session id>
    {"session_id": ..., "payment_id": ..., "amount": "10.00" | null, "currency": "EUR" | null,
     "test": false}

`payment_id` is the provider's id for the payment (`Operation.provider_id`); `amount` is a
decimal string (never a float) and null for a void, whose `currency` is the payment's (null
only if payhook does not know it); `test` is Shopify's test-mode flag (true only towards a
test account: the lifecycle never sends a test session to a live one).

`status` reads what the key did, `GET {url}/{captures|refunds|voids}/{key}`: `2xx {"reference",
"amount", "currency"}` applied, `402`/`422` declined, `404` unknown. A read, never a resend:
an operator's check (`payhook reconcile`, `payhook sessions release`) must not apply an
operation the PSP never saw. A PSP without the read answers `404`, which the lifecycle takes
as "send it": the resend under the same key is safe, the contract answers it with the first
outcome. `authorization` is `NotFound`: such a PSP's payments are the ones payhook opened
itself.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote

from sessions.models import Op
from workers.connectors.base import (
    Approved,
    Authorization,
    NotFound,
    Operation,
    Result,
    StatusResult,
    TryAgain,
)
from workers.connectors.http_client import PspHttp, Reply
from workers.connectors.rules import Rule, RuleTable, Verdict, result

_PATHS = {Op.CAPTURE: "/captures", Op.REFUND: "/refunds", Op.VOID: "/voids"}

RULES = RuleTable(
    "http",
    rules=(
        Rule(Verdict.APPROVED, status=(200, 299)),
        Rule(Verdict.APPROVED, status=409),  # already done under this key
        Rule(
            Verdict.EXPIRED,
            status=402,
            code="AUTHORIZATION_EXPIRED",
            message="The authorization expired.",
        ),
        Rule(
            Verdict.EXPIRED,
            status=422,
            code="AUTHORIZATION_EXPIRED",
            message="The authorization expired.",
        ),
        Rule(Verdict.DECLINED, status=402, message="The payment provider declined."),
        Rule(Verdict.DECLINED, status=422, message="The payment provider declined."),
        Rule(Verdict.RETRY, status=408),
        Rule(Verdict.RETRY, status=429),
        # Our credentials or our side's configuration: an operator can fix it, so retry
        # (and dead-letter visibly) rather than decline a buyer's payment.
        Rule(Verdict.RETRY, status=401),
        Rule(Verdict.RETRY, status=403),
        Rule(Verdict.RETRY, status=(500, 599)),
        Rule(
            Verdict.DECLINED,
            status=(400, 499),
            message="The payment provider refused the request.",
        ),
    ),
    # 1xx/3xx are not part of the contract: treat as "may have happened".
    default=Rule(Verdict.AMBIGUOUS),
)


class HttpConnector:
    name = "http"

    def __init__(self, http: PspHttp, *, live: bool = True) -> None:
        self.live = live
        self._http = http

    async def settle(self, kind: Op, operation: Operation) -> Result:
        body: dict[str, Any] = {
            "session_id": operation.session_id,
            "payment_id": operation.provider_id,
            "amount": None if operation.amount is None else str(operation.amount),
            # A void's currency is the payment's (from its ledger book); null if unknown.
            "currency": operation.currency or None,
            # Shopify's test mode: only ever true towards a test account.
            "test": operation.test,
        }
        reply = await self._http.request(
            "POST",
            _PATHS[kind],
            json_body=body,
            headers={"Idempotency-Key": operation.idempotency_key},
        )
        if isinstance(reply, TryAgain):
            return reply
        return _read(kind, operation, reply)

    async def status(self, kind: Op, operation: Operation) -> StatusResult:
        key = quote(operation.idempotency_key, safe="")
        reply = await self._http.request("GET", f"{_PATHS[kind]}/{key}")
        if isinstance(reply, TryAgain):
            return reply
        if reply.status == 404:
            return NotFound()
        answer = _read(kind, operation, reply)
        if isinstance(answer, Approved):
            return Approved(answer.psp_reference, amount=_amount(reply.at("amount")))
        return answer

    async def authorization(self, operation: Operation) -> Authorization | NotFound | TryAgain:
        return NotFound()

    async def close(self) -> None:
        await self._http.close()


def _read(kind: Op, operation: Operation, reply: Reply) -> Result:
    code = reply.at("code")
    rule = RULES.classify(status=reply.status, code=code if isinstance(code, str) else None)
    message = reply.at("message")
    reference = reply.at("reference") or reply.at("id") or f"{kind}:{operation.idempotency_key}"
    return result(
        rule,
        reference=str(reference),
        reason=f"http {kind}: HTTP {reply.status}",
        message=message if isinstance(message, str) and message else None,
        retry_after=reply.retry_after,
    )


def _amount(shown: Any) -> Decimal | None:
    """The amount a read shows, exactly as a decimal string; None when it shows none."""
    if not isinstance(shown, str):
        return None
    try:
        amount = Decimal(shown)
    except InvalidOperation:
        return None
    return amount if amount.is_finite() else None
