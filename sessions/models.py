"""What the store keeps: sessions, their outcomes and their timelines."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from sessions.money import format_amount
from sessions.states import State

# The mutation that asks Shopify to confirm a payment (`sent_mutation` names it once sent):
# its answer comes back as Shopify's confirmation request (`webhook.confirmations`).
CONFIRM_MUTATION = "paymentSessionConfirm"


class Op(StrEnum):
    """A money movement on a payment: what a capture, refund or void session asks of the
    payment's ledger book and of the PSP. The values are stored (ledger reservations, the
    send journal's and the simulator's keys)."""

    CAPTURE = "capture"
    REFUND = "refund"
    VOID = "void"


class Kind(StrEnum):
    PAYMENT = "payment"
    CAPTURE = "capture"
    REFUND = "refund"
    VOID = "void"

    @property
    def op(self) -> Op:
        """The operation a capture, refund or void session asks for; a payment asks none
        (ValueError)."""
        return Op(self.value)


class PaymentKind(StrEnum):
    SALE = "sale"
    AUTHORIZATION = "authorization"


class Outcome(StrEnum):
    APPROVED = "approved"
    DECLINED = "declined"
    # Payment sessions only: the buyer chose a method that settles later.
    PENDING = "pending"


class PendingReason(StrEnum):
    """Why the PSP says a payment is pending: Shopify's `PaymentSessionStatePendingReason`."""

    # The buyer still has something to do (a bank transfer to make, a voucher to pay).
    BUYER_ACTION_REQUIRED = "buyer_action_required"
    # The merchant must act first (a manual review of the order at the PSP).
    MERCHANT_ACTION_REQUIRED = "merchant_action_required"
    # The card network or bank is still deciding.
    NETWORK_ACTION_REQUIRED = "network_action_required"
    # The PSP itself is still deciding.
    PARTNER_ACTION_REQUIRED = "partner_action_required"


class Report(StrEnum):
    RESOLVED = "resolved"
    REJECTED = "rejected"
    PENDING = "pending"


class Session(BaseModel):
    """A session as the store keeps it: the request, where it is, and what was decided."""

    model_config = ConfigDict(frozen=True)

    id: str
    kind: Kind
    gid: str
    shop: str
    payment_id: str
    # A void moves no amount: it releases the whole authorization.
    amount: Decimal | None = None
    currency: str | None = None
    # A void may come without one.
    merchant_locale: str | None = None
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
    # The lease's fencing token: the number of the latest claim. A write carrying an older
    # token is refused, so a worker that lost its lease changes nothing.
    fence: int = 0
    # A delivery before this moment (a retry's backoff) does nothing.
    not_before: float | None = None
    # The state a worker was working in when it claimed the session; cleared when it stores
    # what happened. Still set at the next claim: that worker stopped mid-call.
    inflight: State | None = None
    # The last mutation sent to Shopify and how many times in a row: "*_INVALID_STATE after
    # our own earlier attempt" means an earlier attempt of this same mutation.
    sent_mutation: str | None = None
    sent_mutation_attempts: int = 0
    # Payment sessions told `paymentSessionPending`: when that window closes, and why the PSP
    # said the payment is pending (None: it did not say).
    pending_expires_at: float | None = None
    pending_reason: PendingReason | None = None
    # Payment sessions with confirmation on: what Shopify's confirmation request said
    # (`confirmation_result`), None until it came.
    confirmation_result: bool | None = None
    failed_at: float | None = None
    last_error: str | None = None

    # Payment sessions only: what the buyer is paying for and how.
    payment_kind: PaymentKind | None = None
    group: str | None = None
    checkout_id: str | None = None
    cancel_url: str | None = None
    # Where Shopify said to send the buyer next (`nextAction.context.redirectUrl` of the
    # answer to the resolve, reject or pending that it took), stored with that report.
    redirect_url: str | None = None
    authorization_expires_at: datetime | None = None

    @property
    def amount_text(self) -> str:
        if self.amount is None or self.currency is None:
            return "-"
        return format_amount(self.amount, self.currency)

    def fingerprint(self) -> str:
        return fingerprint(self.kind, self.payment_id, self.amount, self.currency)


def fingerprint(kind: Kind, payment_id: str, amount: Decimal | None, currency: str | None) -> str:
    """What must match for a repeated `id` to be the same request (amounts compared as money)."""
    money = format_amount(amount, currency) if amount is not None and currency else ""
    return f"{kind}|{payment_id}|{money}|{currency or ''}"


class TimelineEvent(BaseModel):
    """One thing that happened to a session; the timeline is the session's audit trail."""

    model_config = ConfigDict(frozen=True)

    at: float
    event: str
    state: State
    attempt: int | None = None
    error: str | None = None
    detail: str | None = None
