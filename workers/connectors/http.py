"""The generic `http` connector, for a PSP that speaks payhook's own contract (DESIGN.md).

    POST {PAYHOOK_HTTP_CONNECTOR_URL}/{captures|refunds|voids}
    Idempotency-Key: <session id>
    {"session_id": ..., "payment_id": ..., "amount": "10.00" | null, "currency": "EUR" | null}

`payment_id` is the provider's id for the payment (`Operation.provider_id`); `amount` is a
decimal string (never a float) and null for a void, whose `currency` is the payment's (null
only if payhook does not know it). The contract has no read endpoint, so
`status` sends the identical request again under the same key: the contract obliges the
PSP to answer a repeated key with the first outcome (or `409`, already done), so this
never moves money twice. `authorization` is `NotFound`: such a PSP's payments are the ones
payhook opened itself.
"""

from __future__ import annotations

from typing import Any

from workers.connectors.base import (
    Authorization,
    NotFound,
    Operation,
    OperationKind,
    Result,
    StatusResult,
    TryAgain,
)
from workers.connectors.http_client import PspHttp, Reply
from workers.connectors.rules import Rule, RuleTable, Verdict, result

_PATHS: dict[OperationKind, str] = {"capture": "/captures", "refund": "/refunds", "void": "/voids"}

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

    def __init__(self, http: PspHttp) -> None:
        self._http = http

    async def capture(self, operation: Operation) -> Result:
        return await self._send("capture", operation)

    async def refund(self, operation: Operation) -> Result:
        return await self._send("refund", operation)

    async def void(self, operation: Operation) -> Result:
        return await self._send("void", operation)

    async def status(self, kind: OperationKind, operation: Operation) -> StatusResult:
        return await self._send(kind, operation)

    async def authorization(self, operation: Operation) -> Authorization | NotFound | TryAgain:
        return NotFound()

    async def close(self) -> None:
        await self._http.close()

    async def _send(self, kind: OperationKind, operation: Operation) -> Result:
        body: dict[str, Any] = {
            "session_id": operation.session_id,
            "payment_id": operation.provider_id,
            "amount": None if operation.amount is None else str(operation.amount),
            # A void's currency is the payment's (from its ledger book); null if unknown.
            "currency": operation.currency or None,
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


def _read(kind: OperationKind, operation: Operation, reply: Reply) -> Result:
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
