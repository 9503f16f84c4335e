"""What capture, refund and void share: reserve on the payment's ledger, ask the PSP, then
commit or release (in the same write that stores the PSP's outcome), so no combination of
sessions ever moves more money than the payment allows.

A payment payhook has never seen is looked up at the PSP first (the PSP is the source of
truth) and its book opened from what the PSP says.
"""

from __future__ import annotations

from sessions.change import LedgerOperation
from sessions.ledger import Book, Refusal, Refused, Reserved, merchant_message
from sessions.ledger_store import LedgerStore
from sessions.models import Kind, Op, Outcome, Session
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
from workers.lifecycle.ports import Services
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


def _minor_amount(session: Session) -> int:
    if session.amount is None or session.currency is None:
        return 0
    return to_minor(session.amount, session.currency)


class LedgeredLifecycle:
    def __init__(self, kind: Kind) -> None:
        self.kind = kind
        self.op = kind.op

    def ledger_operation(self, session: Session) -> LedgerOperation:
        # A void reserves the whole authorization; its reservation counts it as 1.
        amount = 1 if self.op is Op.VOID else _minor_amount(session)
        return LedgerOperation(session.payment_id, self.op, amount)

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

    async def prepare(self, services: Services, session: Session) -> Operation | Result:
        """Reserve, and say what to ask the PSP; or refuse without asking. The outcome
        settles the reservation when it is stored."""
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
        return self._operation(session, held.provider_payment_id, held.currency)

    async def send(self, services: Services, operation: Operation) -> Result:
        return await services.connector.settle(self.op, operation)

    async def _reserve(self, services: Services, session: Session) -> Reserved | Refused:
        return await services.ledger.reserve(
            session.payment_id,
            session.id,
            self.op,
            _minor_amount(session),
            session.currency,
            services.clock(),
        )

    async def status(self, services: Services, session: Session) -> StatusResult:
        return await self.psp_status(services.connector, services.ledger, session)

    async def psp_status(
        self, connector: Connector, ledger: LedgerStore, session: Session
    ) -> StatusResult:
        """What the PSP knows of this session's operation (also asked by operators)."""
        provider_id, currency = await ledger.provider_payment(session.payment_id)
        return await connector.status(self.op, self._operation(session, provider_id, currency))

    async def before_report(self, services: Services, session: Session) -> None:
        return None

    def report(self, services: Services, session: Session) -> Mutation:
        kind = self.kind.value
        if session.outcome is Outcome.APPROVED:
            return mutations.resolve(kind, session.gid)
        code = session.reject_code or DeclineCode.PROCESSING_ERROR.value
        if self.kind is not Kind.CAPTURE:
            # Refund and void rejections only know PROCESSING_ERROR.
            code = DeclineCode.PROCESSING_ERROR.value
        message = session.merchant_message or f"The {kind} was declined by the payment provider."
        return mutations.reject(kind, session.gid, code, message)

    def _refuse(self, session: Session, refused: Refused) -> Declined:
        code = DeclineCode.PROCESSING_ERROR
        if refused.reason is Refusal.EXPIRED:
            code = DeclineCode.AUTHORIZATION_EXPIRED
        message = merchant_message(
            refused, self.op, session.amount, session.currency or "", refused.book_currency
        )
        return Declined(code, message)
