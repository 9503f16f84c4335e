"""What capture, refund and void share: reserve on the payment's ledger, ask the PSP, then
commit or release (in the same write that stores the PSP's outcome), so no combination of
sessions ever moves more money than the payment allows.

A payment payhook has never seen is looked up at the PSP first (the PSP is the source of
truth) and its book opened from what the PSP says.
"""

from __future__ import annotations

from sessions.ledger import Book, Op, Refusal, Refused, Reserved, merchant_message
from sessions.ledger_store import LedgerStore
from sessions.models import Kind, Outcome, Session
from sessions.money import to_minor
from workers.connectors.base import (
    Authorization,
    Connector,
    DeclineCode,
    Declined,
    NotFound,
    Operation,
    Result,
    StatusResult,
    TryAgain,
)
from workers.lifecycle.runner import Services
from workers.shopify import mutations
from workers.shopify.mutations import Mutation


def _book_from(authorization: Authorization) -> Book:
    currency = authorization.currency
    return Book(
        currency=currency,
        authorized=to_minor(authorization.authorized, currency),
        captured=to_minor(authorization.captured, currency),
        refunded=to_minor(authorization.refunded, currency),
        voided=authorization.voided,
        expires_at=authorization.expires_at.timestamp() if authorization.expires_at else None,
    )


class LedgeredLifecycle:
    def __init__(self, kind: Kind, op: Op) -> None:
        self.kind = kind
        self.op = op

    def ledger_payment(self, session: Session) -> str | None:
        return session.payment_id

    def _operation(
        self, session: Session, provider_payment_id: str, book_currency: str = ""
    ) -> Operation:
        # A void session names no currency; the payment's book knows it.
        return Operation(
            session_id=session.id,
            payment_id=session.payment_id,
            amount=session.amount,
            currency=session.currency or book_currency,
            test=session.test,
            provider_payment_id=provider_payment_id,
        )

    async def settle(self, services: Services, session: Session) -> Result:
        """Reserve, then ask the PSP. The outcome settles the reservation when it is stored."""
        held = await self._reserve(services, session)
        if isinstance(held, Refused) and held.reason is Refusal.UNKNOWN_PAYMENT:
            known = await services.connector.authorization(self._operation(session, ""))
            if isinstance(known, TryAgain):
                return known
            if isinstance(known, NotFound):
                return self._refuse(session, held)
            await services.ledger.open(
                session.payment_id, _book_from(known), known.provider_payment_id
            )
            held = await self._reserve(services, session)
        if isinstance(held, Refused):
            return self._refuse(session, held)
        operation = self._operation(session, held.provider_payment_id, held.currency)
        return await self._call(services, operation)

    async def _reserve(self, services: Services, session: Session) -> Reserved | Refused:
        amount = 0
        if session.amount is not None and session.currency is not None:
            amount = to_minor(session.amount, session.currency)
        return await services.ledger.reserve(
            session.payment_id, session.id, self.op, amount, session.currency, services.clock()
        )

    async def status(self, services: Services, session: Session) -> StatusResult:
        # The reservation is taken again (a no-op while it is held) so that an operation the
        # look-up finds is committed to the book: an operator may have released it meanwhile
        # (`payhook sessions release`), and the provider's money would be missing from it.
        await self._reserve(services, session)
        return await self.psp_status(services.connector, services.ledger, session)

    async def psp_status(
        self, connector: Connector, ledger: LedgerStore, session: Session
    ) -> StatusResult:
        """What the PSP knows of this session's operation (also asked by operators)."""
        provider_id, currency = await ledger.provider_payment(session.payment_id)
        return await connector.status(
            self.op.value, self._operation(session, provider_id, currency)
        )

    async def before_report(self, services: Services, session: Session) -> None:
        return None

    def report(self, session: Session) -> Mutation:
        kind = self.kind.value
        if session.outcome is Outcome.APPROVED:
            return mutations.resolve(kind, session.gid)
        code = session.reject_code or DeclineCode.PROCESSING_ERROR.value
        if self.kind is not Kind.CAPTURE:
            # Refund and void rejections only know PROCESSING_ERROR.
            code = DeclineCode.PROCESSING_ERROR.value
        message = session.merchant_message or f"The {kind} was declined by the payment provider."
        return mutations.reject(kind, session.gid, code, message)

    async def _call(self, services: Services, operation: Operation) -> Result:
        connector = services.connector
        if self.op is Op.CAPTURE:
            return await connector.capture(operation)
        if self.op is Op.REFUND:
            return await connector.refund(operation)
        return await connector.void(operation)

    def _refuse(self, session: Session, refused: Refused) -> Declined:
        code = DeclineCode.PROCESSING_ERROR
        if refused.reason is Refusal.EXPIRED:
            code = DeclineCode.AUTHORIZATION_EXPIRED
        message = merchant_message(
            refused, self.op, session.amount, session.currency or "", refused.book_currency
        )
        return Declined(code, message)
