"""Payment sessions (offsite): the buyer pays on the PSP's page; the PSP tells payhook the
outcome (`webhook.psp_callbacks`), which is stored as the session's settlement; the worker then
opens the payment's ledger book and reports `paymentSessionResolve` (with
`authorizationExpiresAt` for an authorization), `paymentSessionReject` or
`paymentSessionPending` (with the PSP's reason: `BUYER_ACTION_REQUIRED` unless it said
`MERCHANT_ACTION_REQUIRED` or another of Shopify's).

If the PSP's word never arrives, the session falls due when the buyer's window closes and is
rejected: the buyer can pay again at checkout. A payment reported pending falls due when its
pending window closes (`pendingExpiresAt`, `PAYHOOK_PENDING_SECONDS` after Shopify's request,
inside Shopify's three days) and is rejected then unless the PSP's final word came first.

With payment confirmation on (`PAYHOOK_PAYMENT_CONFIRMATION`), an approved payment is first
`paymentSessionConfirm`ed; Shopify's confirmation request (`webhook.confirmations`) then says
whether to confirm, and the payment is resolved, or rejected with `CONFIRMATION_REJECTED`.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sessions.decisions import NOT_CONFIRMED
from sessions.ledger import Book
from sessions.models import Kind, Outcome, PaymentKind, PendingReason, Session
from sessions.money import to_minor
from workers.connectors.base import (
    Operation,
    Result,
    StatusResult,
)
from workers.lifecycle import reporting, settling
from workers.lifecycle.ports import Services
from workers.shopify import mutations
from workers.shopify.mutations import Mutation

# The PSP's reason as Shopify's `PaymentSessionStatePendingReason`; a PSP that gives none is
# taken to wait for the buyer, the usual case of an offsite payment left pending.
SHOPIFY_PENDING_REASONS = {
    None: "BUYER_ACTION_REQUIRED",
    PendingReason.BUYER_ACTION_REQUIRED: "BUYER_ACTION_REQUIRED",
    PendingReason.MERCHANT_ACTION_REQUIRED: "MERCHANT_ACTION_REQUIRED",
    PendingReason.NETWORK_ACTION_REQUIRED: "NETWORK_ACTION_REQUIRED",
    PendingReason.PARTNER_ACTION_REQUIRED: "PARTNER_ACTION_REQUIRED",
}


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class PaymentLifecycle:
    kind = Kind.PAYMENT

    def ledger_operation(self, session: Session) -> None:
        # The payment's book is opened when it is reported, not reserved against.
        return None

    async def prepare(self, services: Services, session: Session) -> Result:
        """No call of ours settles a payment: the buyer's window is still open, or it closed."""
        return settling.buyer_window(session, services.buyer_window_seconds, services.clock())

    async def send(self, services: Services, operation: Operation) -> Result:
        raise AssertionError("a payment session sends the PSP nothing")

    async def status(self, services: Services, session: Session) -> StatusResult:
        return await self.prepare(services, session)

    async def before_report(self, services: Services, session: Session) -> None:
        # The book must exist before Shopify can send a capture, refund or void for it, and
        # only a payment Shopify is told is resolved has one.
        if self.report(services, session).field != "paymentSessionResolve":
            return
        assert session.amount is not None
        assert session.currency is not None
        amount = to_minor(session.amount, session.currency)
        sale = session.payment_kind is PaymentKind.SALE
        expires = session.authorization_expires_at
        await services.ledger.open(
            session.id,
            Book(
                currency=session.currency,
                authorized=amount,
                sale=sale,
                captured=amount if sale else 0,
                expires_at=None if sale or expires is None else expires.timestamp(),
            ),
        )

    def report(self, services: Services, session: Session) -> Mutation:
        if reporting.awaits_confirmation(session, confirmation=services.payment_confirmation):
            return mutations.confirm_payment(session.gid)
        if session.outcome is Outcome.APPROVED and session.confirmation_result is False:
            return mutations.reject_payment(
                session.gid,
                session.reject_code or "CONFIRMATION_REJECTED",
                session.merchant_message or NOT_CONFIRMED,
            )
        if session.outcome is Outcome.APPROVED:
            expires = session.authorization_expires_at
            authorization = session.payment_kind is PaymentKind.AUTHORIZATION
            return mutations.resolve_payment(
                session.gid,
                _iso(expires.timestamp()) if authorization and expires is not None else None,
            )
        if session.outcome is Outcome.PENDING:
            closes = session.pending_expires_at or session.updated_at
            reason = SHOPIFY_PENDING_REASONS[session.pending_reason]
            return mutations.pend_payment(session.gid, _iso(closes), reason)
        return mutations.reject_payment(
            session.gid, "PROCESSING_ERROR", session.merchant_message or settling.ABANDONED
        )


PAYMENT = PaymentLifecycle()
