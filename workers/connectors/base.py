"""The PSP connector port and the outcomes a connector can report.

A connector never raises for an answer the PSP gave: declines, pending operations and
transient failures are values, so the lifecycle handles each explicitly. Only programming
errors raise. Every connector translates its library's errors (aiohttp, gql) into these.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Protocol

from sessions.models import Op


class DeclineCode(StrEnum):
    """Why a PSP refused; mapped one-to-one onto Shopify's rejection reason codes."""

    PROCESSING_ERROR = "PROCESSING_ERROR"
    AUTHORIZATION_EXPIRED = "AUTHORIZATION_EXPIRED"


@dataclass(frozen=True)
class Operation:
    """One money movement to ask of the PSP.

    `payment_id` is Shopify's; `provider_payment_id` is the PSP's own order or purchase id
    for it (the same id unless the payment's record maps it). `amount` is None for a void,
    which releases the whole authorization.
    """

    session_id: str
    payment_id: str
    amount: Decimal | None
    currency: str
    test: bool
    provider_payment_id: str = ""

    @property
    def idempotency_key(self) -> str:
        # The Shopify session id is already unique per attempt and stable across Shopify's
        # retries, our retries and Celery re-deliveries, which is exactly what a PSP needs.
        return self.session_id

    @property
    def provider_id(self) -> str:
        return self.provider_payment_id or self.payment_id


@dataclass(frozen=True)
class Approved:
    """Done at the PSP. `amount` is what the PSP shows it moved, where its read shows one
    (a `status` answer); None where it cannot say, or for a void."""

    psp_reference: str
    amount: Decimal | None = None


@dataclass(frozen=True)
class Declined:
    code: DeclineCode
    message: str


@dataclass(frozen=True)
class Pending:
    """Accepted but not final (an asynchronous capture or void): poll `status` later."""

    psp_reference: str
    retry_after: float | None = None


@dataclass(frozen=True)
class TryAgain:
    """The PSP could not answer now. `ambiguous` means the request may have been applied."""

    reason: str
    retry_after: float | None = None
    ambiguous: bool = False


@dataclass(frozen=True)
class NotFound:
    """The PSP has no record of the operation: it never happened, so it is safe to send."""


@dataclass(frozen=True)
class Authorization:
    """What the PSP says of a payment: the source of truth for a payment payhook never saw."""

    provider_payment_id: str
    currency: str
    authorized: Decimal
    captured: Decimal
    refunded: Decimal
    voided: bool
    expires_at: datetime | None


Result = Approved | Declined | Pending | TryAgain
StatusResult = Approved | Declined | Pending | NotFound | TryAgain


class Connector(Protocol):
    """A PSP, as the lifecycle asks it.

    `settle(kind, operation)` asks for one money movement: the capture, refund or void
    (`kind`) of `operation`. It is asked again under the same `operation.idempotency_key`
    (a retry, a redelivered task, a second worker) and must never move the money twice.
    `status(kind, operation)` reads what became of that movement without sending anything;
    `authorization` reads what the PSP holds for the payment. Every answer is a value, never
    an exception (see the module docstring).
    """

    name: str
    # The provider account moves real money. Shopify's test-mode sessions are never sent to
    # a live account: the lifecycle refuses them before any call (docs/connectors.md).
    live: bool

    async def settle(self, kind: Op, operation: Operation) -> Result: ...

    async def status(self, kind: Op, operation: Operation) -> StatusResult:
        """What the PSP knows of `kind` under the operation's idempotency key."""
        ...

    async def authorization(self, operation: Operation) -> Authorization | NotFound | TryAgain:
        """What the PSP knows of the payment `operation` is for (`operation.provider_id`)."""
        ...

    async def close(self) -> None: ...
