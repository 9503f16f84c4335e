"""The simulator PSP: the default connector, so every path can be shown without a real PSP.

It behaves like an idempotent PSP (one charge per idempotency key, the stored answer returned
on every repeat) and keeps its books in Redis, so all worker processes share them and tests
can count exactly how many times money moved.

Magic amounts, read from the last two digits of the amount in minor units
(`10.51 EUR` → 51, `1051 JPY` → 51):

| ends in | behaviour |
|---|---|
| 51 | declined: `PROCESSING_ERROR` ("card declined") |
| 52 | declined: `AUTHORIZATION_EXPIRED` |
| 53 | unavailable for the first 3 calls, then approved (charged once) |
| 54 | charged, but the first answer is lost (ambiguous); `status` then reports the approval |
| 55 | every answer lost (ambiguous) and nothing ever charged; `status` finds nothing |
| 56 | charged on the first call, then unreachable: every answer lost, `status` unavailable |
| anything else | approved |

(57 is the buyer page's: a payment left pending there is held for the merchant's review,
`MERCHANT_ACTION_REQUIRED`; see `sandbox.buyer`.)

A payment id the simulator has not seen is an authorization of 10,000 in the currency of the
first operation asking about it (7 days); ids starting with `unknown` are unknown to it. Its
authorization shows what the simulator captured, refunded and voided of the payment.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import IntEnum

from redis.asyncio import Redis

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
from workers.connectors.lines import from_minor

_KEY = "payhook:sim:{operation}:{key}"
# A payment's authorization and what the simulator captured, refunded or voided of it.
_PAYMENT = "payhook:sim:payment:{id}"
TOTALS = "payhook:sim:totals"


class Magic(IntEnum):
    """The last two digits (in minor units) of an amount that makes the simulator misbehave
    on purpose, as the module's table says; any other amount is approved."""

    DECLINE = 51
    EXPIRED = 52
    FLAKY = 53
    AMBIGUOUS = 54
    VANISHING = 55
    UNREACHABLE = 56


def magic_amount(behaviour: Magic, units: int = 10) -> str:
    """An amount in a two-decimal currency that the simulator answers with `behaviour`."""
    return f"{units}.{behaviour.value}"


# What the settle script calls each: the member's name in lower case.
_BEHAVIOUR = {magic.value: magic.name.lower() for magic in Magic}

_SETTLE = """
local calls = redis.call('HINCRBY', KEYS[1], 'calls', 1)
redis.call('HINCRBY', KEYS[2], ARGV[5] .. ':calls', 1)
local behaviour = ARGV[1]
if behaviour == 'vanishing' then return {'lost', calls} end
local stored = redis.call('HGET', KEYS[1], 'result')
if stored and behaviour == 'unreachable' then return {'lost', calls} end
if stored then return {stored, calls} end
if behaviour == 'flaky' and calls <= 3 then return {'unavailable', calls} end
if behaviour == 'decline' or behaviour == 'expired' then
  redis.call('HSET', KEYS[1], 'result', behaviour)
  return {behaviour, calls}
end
redis.call('HSET', KEYS[1], 'result', 'approved', 'reference', ARGV[2],
           'amount', ARGV[3], 'currency', ARGV[4])
redis.call('HINCRBY', KEYS[1], 'charges', 1)
redis.call('HINCRBY', KEYS[2], ARGV[5] .. ':charges', 1)
-- The payment's own totals, as a PSP's authorization shows them.
if ARGV[5] == 'void' then
  redis.call('HSET', KEYS[3], 'voided', 1)
else
  redis.call('HINCRBY', KEYS[3], ARGV[5] == 'refund' and 'refunded' or 'captured', ARGV[6])
end
if ARGV[4] ~= '' then redis.call('HSETNX', KEYS[3], 'currency', ARGV[4]) end
if behaviour == 'unreachable' then return {'lost', calls} end
if behaviour == 'ambiguous' and calls == 1 then return {'lost', calls} end
return {'approved', calls}
"""


# The payment as first seen, remembered: one call.
_AUTHORIZE = """
redis.call('HSETNX', KEYS[1], 'currency', ARGV[1])
redis.call('HSETNX', KEYS[1], 'expires_at', ARGV[2])
return redis.call('HGETALL', KEYS[1])
"""


@dataclass(frozen=True)
class SimulatorBook:
    """What the simulator saw for one idempotency key."""

    calls: int
    charges: int
    result: str | None
    status_calls: int = 0
    # What the charge moved, as the operation named it; None for a void.
    amount: Decimal | None = None


class SimulatorConnector:
    name = "simulator"
    # It moves no money: a test account, whatever the session.
    live = False

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._settle = redis.register_script(_SETTLE)
        self._authorize = redis.register_script(_AUTHORIZE)

    async def settle(self, kind: Op, operation: Operation) -> Result:
        behaviour = _behaviour(operation)
        reference = f"sim_{kind}_{operation.idempotency_key}"
        minor = 0 if operation.amount is None else to_minor(operation.amount, operation.currency)
        reply = await self._settle(
            keys=[
                _KEY.format(operation=kind, key=operation.idempotency_key),
                TOTALS,
                _PAYMENT.format(id=operation.provider_id),
            ],
            args=[
                behaviour,
                reference,
                str(operation.amount or ""),
                operation.currency,
                kind,
                minor,
            ],
        )
        answer = reply[0].decode() if isinstance(reply[0], bytes) else str(reply[0])
        return self._answer(answer, reference)

    async def authorization(self, operation: Operation) -> Authorization | NotFound | TryAgain:
        # The simulator keeps its own authorizations: a payment id it has not seen (and that
        # does not start with "unknown") is taken as authorized for 10,000 major units of
        # the asking operation's currency, valid for 7 days, and remembered from then on.
        if operation.provider_id.startswith("unknown"):
            return NotFound()
        key = _PAYMENT.format(id=operation.provider_id)
        expires = time.time() + 7 * 86400
        reply = await self._authorize(keys=[key], args=[operation.currency, repr(expires)])
        stored = {_text(reply[i]): _text(reply[i + 1]) for i in range(0, len(reply), 2)}
        currency = stored["currency"]
        return Authorization(
            provider_payment_id=operation.provider_id,
            currency=currency,
            authorized=Decimal(10_000),
            captured=from_minor(int(stored.get("captured", 0)), currency),
            refunded=from_minor(int(stored.get("refunded", 0)), currency),
            voided=stored.get("voided") == "1",
            expires_at=datetime.fromtimestamp(float(stored["expires_at"]), UTC),
        )

    async def close(self) -> None:
        """Nothing to close: the Redis client belongs to the caller."""

    async def status(self, kind: Op, operation: Operation) -> StatusResult:
        await self._redis.hincrby(
            _KEY.format(operation=kind, key=operation.idempotency_key), "status_calls", 1
        )
        if _behaviour(operation) == "unreachable":
            return TryAgain("simulated PSP outage: status unavailable", ambiguous=True)
        book = await self.book(kind, operation.idempotency_key)
        if book.result is None:
            return NotFound()
        answer = self._answer(book.result, f"sim_{kind}_{operation.idempotency_key}")
        if isinstance(answer, Approved):
            return Approved(answer.psp_reference, amount=book.amount)
        return answer

    @staticmethod
    def _answer(answer: str, reference: str) -> Result:
        if answer == "approved":
            return Approved(psp_reference=reference)
        if answer == "decline":
            return Declined(DeclineCode.PROCESSING_ERROR, "The card was declined by the issuer.")
        if answer == "expired":
            return Declined(
                DeclineCode.AUTHORIZATION_EXPIRED, "The authorization expired before capture."
            )
        if answer == "lost":
            return TryAgain("simulated timeout: the answer was lost", ambiguous=True)
        return TryAgain("simulated PSP outage (503)")

    async def book(self, kind: Op, idempotency_key: str) -> SimulatorBook:
        fields = await self._redis.hgetall(_KEY.format(operation=kind, key=idempotency_key))
        data = {_text(k): _text(v) for k, v in fields.items()}
        return SimulatorBook(
            calls=int(data.get("calls", 0)),
            charges=int(data.get("charges", 0)),
            result=data.get("result"),
            status_calls=int(data.get("status_calls", 0)),
            amount=Decimal(data["amount"]) if data.get("amount") else None,
        )

    async def totals(self) -> dict[str, int]:
        fields = await self._redis.hgetall(TOTALS)
        return {_text(k): int(v) for k, v in fields.items()}


def _behaviour(operation: Operation) -> str:
    magic = 0 if operation.amount is None else to_minor(operation.amount, operation.currency)
    return _BEHAVIOUR.get(magic % 100, "approve")


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
