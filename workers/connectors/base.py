"""The PSP connector port and the outcomes a connector can report.

A connector never raises for an answer the PSP gave: declines and transient failures are
values, so the lifecycle handles each explicitly. Only programming errors raise.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Protocol


class DeclineCode(StrEnum):
    """Why a PSP refused; mapped one-to-one onto Shopify's rejection reason codes."""

    PROCESSING_ERROR = "PROCESSING_ERROR"
    AUTHORIZATION_EXPIRED = "AUTHORIZATION_EXPIRED"


@dataclass(frozen=True)
class Operation:
    """One money movement to ask of the PSP."""

    session_id: str
    payment_id: str
    amount: Decimal
    currency: str
    test: bool

    @property
    def idempotency_key(self) -> str:
        # The Shopify session id is already unique per attempt and stable across Shopify's
        # retries, our retries and Celery re-deliveries, which is exactly what a PSP needs.
        return self.session_id


@dataclass(frozen=True)
class Approved:
    psp_reference: str


@dataclass(frozen=True)
class Declined:
    code: DeclineCode
    message: str


@dataclass(frozen=True)
class TryAgain:
    """The PSP could not answer now. `ambiguous` means the request may have been applied."""

    reason: str
    retry_after: float | None = None
    ambiguous: bool = False


@dataclass(frozen=True)
class NotFound:
    """The PSP has no record of the operation: it never happened, so it is safe to send."""


Result = Approved | Declined | TryAgain
StatusResult = Approved | Declined | NotFound | TryAgain


class Connector(Protocol):
    name: str

    async def capture(self, operation: Operation) -> Result: ...

    async def status(self, kind: str, operation: Operation) -> StatusResult:
        """What the PSP knows of `kind` (capture, refund, void) under the operation's key."""
        ...
