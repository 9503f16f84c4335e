"""The bodies Shopify sends, as documented, validated at the door.

Unknown fields are ignored so that a newer API version adding a field does not turn into
refused sessions. Every amount is a `Decimal` checked against its currency's minor units.
Only what payhook reads is required: a void's `merchant_locale` is optional (Shopify's own
template reads only its `id`, `gid`, `payment_id` and `proposed_at`), and a payment's
`cancel_url` is read from the top level or from `payment_method.data`, wherever it comes.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    ValidationInfo,
    field_validator,
)

from errors import MoneyError
from sessions.models import Kind, PaymentKind
from sessions.money import is_currency, parse_amount
from sessions.urls import MAX_URL_BYTES, is_web_url

# Shopify ids are short opaque tokens; the bound keeps Redis keys and log lines sane.
SessionId = Annotated[StrictStr, Field(min_length=1, max_length=255, pattern=r"^[\x21-\x7e]+$")]
Locale = Annotated[StrictStr, Field(min_length=2, max_length=35)]
Currency = Annotated[StrictStr, Field(pattern=r"^[A-Z]{3}$")]


def _web_url(value: str) -> str:
    if not is_web_url(value):
        raise ValueError(
            f"must be an absolute http(s) URL in printable ASCII, at most {MAX_URL_BYTES} bytes"
        )
    return value


# Where the buyer is sent back to checkout: a `Location` payhook may answer with.
WebUrl = Annotated[StrictStr, AfterValidator(_web_url)]


class SessionRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    KIND: ClassVar[Kind]

    id: SessionId
    gid: StrictStr
    # Required of every kind but a void (`_MoneyRequest` asks for it).
    merchant_locale: Locale | None = None
    proposed_at: AwareDatetime
    test: StrictBool = False

    @field_validator("gid")
    @classmethod
    def _gid_of_this_kind(cls, value: str) -> str:
        prefix = f"gid://shopify/{cls.KIND.value.capitalize()}Session/"
        tail = value.removeprefix(prefix)
        if tail == value or not tail or any(not "\x21" <= c <= "\x7e" for c in tail):
            raise ValueError(f"must look like {prefix}<id>")
        return value

    @property
    def payment_ref(self) -> str:
        """The payment this session is about (a payment session is its own payment)."""
        return self.id

    @property
    def money(self) -> tuple[Decimal | None, str | None]:
        return None, None


class _MoneyRequest(SessionRequest):
    merchant_locale: Locale
    # `currency` precedes `amount` so the amount check can see which currency it is in.
    currency: Currency
    amount: Decimal

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

    @property
    def money(self) -> tuple[Decimal | None, str | None]:
        return self.amount, self.currency


class CaptureSessionRequest(_MoneyRequest):
    KIND = Kind.CAPTURE
    payment_id: SessionId

    @property
    def payment_ref(self) -> str:
        return self.payment_id


class RefundSessionRequest(_MoneyRequest):
    """A refund's `payment_id` is the authorization's id, even after capture."""

    KIND = Kind.REFUND
    payment_id: SessionId

    @property
    def payment_ref(self) -> str:
        return self.payment_id


class VoidSessionRequest(SessionRequest):
    """A void carries no amount or currency: it releases the whole authorization."""

    KIND = Kind.VOID
    payment_id: SessionId

    @property
    def payment_ref(self) -> str:
        return self.payment_id


class PaymentMethod(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    type: Annotated[StrictStr, Field(min_length=1, max_length=64)]
    data: dict[str, Any] = Field(default_factory=dict)

    @field_validator("data")
    @classmethod
    def _cancel_url_is_a_web_url(cls, value: dict[str, Any]) -> dict[str, Any]:
        url = value.get("cancel_url")
        if url is not None:
            if not isinstance(url, str):
                raise ValueError("cancel_url must be a string")
            _web_url(url)
        return value


class PaymentSessionRequest(_MoneyRequest):
    """An offsite payment. `customer` is validated as an object and then dropped: payhook
    needs nothing of the buyer to settle, so it keeps nothing."""

    KIND = Kind.PAYMENT
    group: Annotated[StrictStr, Field(min_length=1, max_length=255)]
    session_id: Annotated[StrictStr, Field(min_length=1, max_length=255)]
    payment_method: PaymentMethod
    customer: dict[str, Any] | None = None
    kind: Literal["sale", "authorization"]
    # Newer bodies carry it here; older ones (and the docs' example) in payment_method.data.
    top_cancel_url: WebUrl | None = Field(default=None, alias="cancel_url")

    @property
    def payment_kind(self) -> PaymentKind:
        return PaymentKind(self.kind)

    @property
    def cancel_url(self) -> str | None:
        """Where the buyer goes back to checkout: the top level's, else the method's."""
        if self.top_cancel_url is not None:
            return self.top_cancel_url
        url = self.payment_method.data.get("cancel_url")
        return url if isinstance(url, str) else None


REQUESTS: dict[Kind, type[SessionRequest]] = {
    Kind.CAPTURE: CaptureSessionRequest,
    Kind.REFUND: RefundSessionRequest,
    Kind.VOID: VoidSessionRequest,
    Kind.PAYMENT: PaymentSessionRequest,
}
