"""Pydantic models at the boundaries: what Shopify sends, and what the store keeps."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    ValidationInfo,
    field_validator,
)

from sessions.money import MoneyError, format_amount, is_currency, parse_amount
from sessions.states import State


class Kind(StrEnum):
    PAYMENT = "payment"
    CAPTURE = "capture"
    REFUND = "refund"
    VOID = "void"


# Shopify ids are short opaque tokens; the bound keeps Redis keys and log lines sane.
SessionId = Annotated[StrictStr, Field(min_length=1, max_length=255, pattern=r"^[\x21-\x7e]+$")]


class CaptureSessionRequest(BaseModel):
    """Body of `POST /capture_sessions`, as documented by Shopify.

    Unknown fields are ignored so that a newer API version adding a field does not turn
    into rejected captures.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: SessionId
    gid: Annotated[StrictStr, Field(pattern=r"^gid://shopify/CaptureSession/[\x21-\x7e]+$")]
    payment_id: SessionId
    # `currency` precedes `amount` so the amount check can see which currency it is in.
    currency: Annotated[StrictStr, Field(pattern=r"^[A-Z]{3}$")]
    amount: Decimal
    merchant_locale: Annotated[StrictStr, Field(min_length=2, max_length=35)]
    proposed_at: AwareDatetime
    test: StrictBool = False

    @field_validator("currency")
    @classmethod
    def _known_currency(cls, value: str) -> str:
        if not is_currency(value):
            raise ValueError(f"{value!r} is not an ISO 4217 currency code")
        return value

    @field_validator("amount", mode="plain")
    @classmethod
    def _amount_fits_currency(cls, value: Any, info: ValidationInfo) -> Decimal:
        # The docs call the amount "Numeric" but send a string. Text is taken as is; a JSON
        # number arrives as a Decimal (the body is decoded with parse_float=Decimal), never
        # as a float, so no cent is ever rounded away.
        if isinstance(value, Decimal) and value.is_finite():
            value = format(value, "f")
        if not isinstance(value, str):
            raise ValueError("amount must be a decimal string such as '123.00'")
        currency = info.data.get("currency")
        if currency is None:
            raise ValueError("amount cannot be checked without a valid currency")
        try:
            return parse_amount(value, currency)
        except MoneyError as exc:
            raise ValueError(str(exc)) from None


class Outcome(StrEnum):
    APPROVED = "approved"
    DECLINED = "declined"


class Report(StrEnum):
    RESOLVED = "resolved"
    REJECTED = "rejected"


class Session(BaseModel):
    """A session as the store keeps it: the request, where it is, and what was decided."""

    model_config = ConfigDict(frozen=True)

    id: str
    kind: Kind
    gid: str
    shop: str
    payment_id: str
    amount: Decimal
    currency: str
    merchant_locale: str
    proposed_at: datetime
    test: bool
    request_id: str
    api_version: str
    state: State
    created_at: float
    updated_at: float
    outcome: Outcome | None = None
    reject_code: str | None = None
    merchant_message: str | None = None
    psp_reference: str | None = None
    report: Report | None = None
    # Cumulative attempts, never reset (the audit trail and the INVALID_STATE rule use them).
    psp_attempts: int = 0
    report_attempts: int = 0
    # The current phase (settling, then reporting) since it began or since the last replay:
    # what a retry ladder's cap and deadline are measured against.
    phase_attempts: int = 0
    phase_since: float | None = None
    # The last PSP answer was lost after the request may have been applied: ask the PSP
    # for the operation's status before trying it again.
    psp_uncertain: bool = False
    deliveries: int = 0
    replays: int = 0
    failed_at: float | None = None
    last_error: str | None = None

    @property
    def amount_text(self) -> str:
        return format_amount(self.amount, self.currency)

    def fingerprint(self) -> str:
        return fingerprint(self.kind, self.payment_id, self.amount, self.currency)


def fingerprint(kind: Kind, payment_id: str, amount: Decimal, currency: str) -> str:
    """What must match for a repeated `id` to be the same request (amounts compared as money)."""
    return f"{kind}|{payment_id}|{format_amount(amount, currency)}|{currency}"


class TimelineEvent(BaseModel):
    """One thing that happened to a session; the timeline is the session's audit trail."""

    model_config = ConfigDict(frozen=True)

    at: float
    event: str
    state: State
    attempt: int | None = None
    error: str | None = None
    detail: str | None = None
